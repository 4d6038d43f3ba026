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

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ACTION_TIMEOUT_MS = 10_000;
const WATCHDOG_MS = 45_000;

const pageURL = process.env.PLAYGROUND_URL || '';
const token = process.env.PLAYGROUND_TOKEN || '';
const doc = process.env.PLAYGROUND_DOC || '';

function fail(reason) {
  process.stderr.write(`playground: ${reason}\n`);
  process.exit(1);
}

if (!pageURL || !token || !doc) fail('usage: PLAYGROUND_URL=... PLAYGROUND_TOKEN=... PLAYGROUND_DOC=... node playground.mjs');
const origin = new URL(pageURL).origin;
const squash = (s) => s.replace(/\s+/g, ' ').replace(/[‘’]/g, "'").trim();

async function main() {
  const profile = await mkdtemp(join(tmpdir(), 'terragate-chromium-'));
  const offOrigin = [];
  const consoleErrors = [];
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
      viewport: { width: 1280, height: 800 },
      timeout: 15_000,
    });
    context.setDefaultTimeout(ACTION_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(ACTION_TIMEOUT_MS);
    // Offline, as far as the page can tell: anything not from the gateway is refused.
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (new URL(url).origin !== origin) {
        offOrigin.push(url);
        return route.abort('internetdisconnected');
      }
      return route.continue();
    });
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

    return {
      ok: true,
      data: shown.data,
      docTitle,
      graphqlRequests: sent.length,
      consoleErrors,
      browser: context.browser()?.version() ?? null,
    };
  } finally {
    await context?.close().catch(() => {});
    await rm(profile, { recursive: true, force: true }).catch(() => {});
  }
}

// A hung browser must not hang the caller: give up well before the Go test's own deadline.
const watchdog = setTimeout(() => fail(`gave up after ${WATCHDOG_MS} ms`), WATCHDOG_MS);
watchdog.unref();

main().then(
  (summary) => {
    process.stdout.write(JSON.stringify(summary) + '\n');
    process.exit(0);
  },
  (err) => fail(err?.stack || String(err)),
);
