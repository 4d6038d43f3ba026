// playground.mjs opens terragate's GraphQL playground in a real Chromium with every request
// to another origin refused, as on a machine without internet: the page must render from the
// gateway alone, run connectedUsers with the demo's pre-filled token, and show the schema's
// descriptions in its docs explorer.
//
//   PLAYGROUND_URL=http://127.0.0.1:PORT/ PLAYGROUND_TOKEN=... PLAYGROUND_DOC=... node playground.mjs
//
// PLAYGROUND_DOC is text from connectedUsers' description, which the docs must show. On
// success it prints one line of JSON (what the page showed) and exits 0; on failure it
// prints the reason to standard error and exits 1.

import { failer, runInChromium } from './chromium.mjs';

const pageURL = process.env.PLAYGROUND_URL || '';
const token = process.env.PLAYGROUND_TOKEN || '';
const doc = process.env.PLAYGROUND_DOC || '';

const fail = failer('playground');
if (!pageURL || !token || !doc) fail('usage: PLAYGROUND_URL=... PLAYGROUND_TOKEN=... PLAYGROUND_DOC=... node playground.mjs');
const squash = (s) => s.replace(/\s+/g, ' ').replace(/[‘’]/g, "'").trim();

// Offline, as far as the page can tell: anything not from the gateway is refused.
const options = { origin: new URL(pageURL).origin, viewport: { width: 1280, height: 800 }, actionTimeoutMs: 10_000, watchdogMs: 45_000 };
runInChromium('playground', options, async (context, offOrigin) => {
  const consoleErrors = [];
  // The page's Content-Security-Policy must not have to block anything the playground does.
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.effectiveDirective} ${e.blockedURI || '(inline)'} ${e.sourceFile || ''}:${e.lineNumber || ''}`);
    });
  });

  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const sent = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/graphql' && r.method() === 'POST') {
      sent.push({ authorization: r.headers()['authorization'] || '', body: r.postData() || '' });
    }
  });

  await page.goto(pageURL);
  // GraphiQL replaces the page's "Loading…" once its bundle has run.
  const queryEditor = page.locator('.graphiql-query-editor .CodeMirror');
  await queryEditor.waitFor();

  // The query goes in through CodeMirror's own API: typing would fight its bracket
  // auto-closing and completion popups.
  await page.evaluate((q) => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q), '{ connectedUsers { userId } }');
  const answered = page.waitForResponse(
    (r) => new URL(r.url()).pathname === '/graphql' && (r.request().postData() || '').includes('connectedUsers'),
  );
  await page.getByRole('button', { name: /^Execute query/ }).click();
  const response = await answered;
  if (response.status() !== 200) throw new Error(`/graphql answered ${response.status()}`);
  const request = sent.find((s) => s.body.includes('connectedUsers'));
  if (request?.authorization !== `Bearer ${token}`) {
    throw new Error(`the query went without the demo's token: Authorization ${JSON.stringify(request?.authorization)}`);
  }
  // What the result pane shows, once it shows the answer.
  const resultPane = page.locator('.graphiql-response .CodeMirror');
  await page.waitForFunction(() => document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror.getValue().includes('connectedUsers'));
  const shown = JSON.parse(await resultPane.evaluate((el) => el.CodeMirror.getValue()));
  if (shown.errors?.length) throw new Error(`the playground shows errors: ${JSON.stringify(shown.errors)}`);

  // The docs: Query, then connectedUsers, whose description must be there.
  await page.getByRole('button', { name: 'Show Documentation Explorer' }).click();
  const docs = page.locator('.graphiql-doc-explorer');
  await docs.getByText('Query', { exact: true }).first().click();
  await docs.getByText('connectedUsers', { exact: true }).first().click();
  await page.waitForFunction(
    ({ doc }) => {
      const el = document.querySelector('.graphiql-doc-explorer');
      return el && el.innerText.replace(/\s+/g, ' ').replace(/[‘’]/g, "'").includes(doc);
    },
    { doc: squash(doc) },
  );
  const docTitle = squash(await docs.locator('.graphiql-doc-explorer-title').first().innerText());

  const violations = await page.evaluate(() => window.__cspViolations);
  if (violations.length) throw new Error(`the page's policy blocked: ${violations.join('; ')}`);
  if (offOrigin.length) throw new Error(`the playground asked other origins: ${offOrigin.join(' ')}`);

  return { ok: true, data: shown.data, docTitle, graphqlRequests: sent.length, consoleErrors };
});
