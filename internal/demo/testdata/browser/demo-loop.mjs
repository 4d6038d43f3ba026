// demo-loop.mjs walks terragate's demo loop in a real Chromium, as a person would: an app page
// on the gateway's origin asks for a widget session, the widget opens in a new tab, the user
// picks Oura and presses Allow, the tab lands on the demo's return page, and the app then
// sees the connection in connectedUsers (which comes from the signed webhook, not from the
// redirect).
//
//   node demo-loop.mjs BASE_URL TOKEN SCREENSHOT_PATH
//
// Each argument may instead come from the environment: DEMO_BASE_URL, DEMO_TOKEN and
// DEMO_SCREENSHOT (the token is better passed that way: it stays out of process listings).
// On success it prints one line of JSON and exits 0; on failure it prints the reason to
// standard error and exits 1. It never downloads anything: it drives the system's Chromium.

import { failer, runInChromium } from './chromium.mjs';

const CONNECTION_TIMEOUT_MS = 10_000;

const [baseArg, tokenArg, shotArg] = process.argv.slice(2);
const base = (baseArg || process.env.DEMO_BASE_URL || '').replace(/\/+$/, '');
const token = tokenArg || process.env.DEMO_TOKEN || '';
const screenshot = shotArg || process.env.DEMO_SCREENSHOT || '';

const fail = failer('demo-loop');
if (!base || !token || !screenshot) {
  fail('usage: node demo-loop.mjs BASE_URL TOKEN SCREENSHOT_PATH (or DEMO_BASE_URL, DEMO_TOKEN, DEMO_SCREENSHOT)');
}
const origin = new URL(base).origin;
const returnURL = `${base}/demo/return`;

// graphql runs one operation from inside the page, as the app's own code would: a same-origin
// fetch carrying the end user's token.
async function graphql(page, query, variables) {
  const { status, body } = await page.evaluate(
    async ({ query, variables, token }) => {
      const res = await fetch('/graphql', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ query, variables }),
      });
      return { status: res.status, body: await res.text() };
    },
    { query, variables, token },
  );
  let out;
  try {
    out = JSON.parse(body);
  } catch {
    throw new Error(`/graphql answered ${status} with non-JSON: ${body.slice(0, 200)}`);
  }
  if (out.errors?.length) {
    throw new Error(`/graphql errors: ${JSON.stringify(out.errors)}`);
  }
  return out.data;
}

// Requests that leave the gateway's origin are refused: the loop must stay on this machine.
const started = Date.now();
const options = { origin, viewport: { width: 900, height: 700 }, actionTimeoutMs: 5_000, watchdogMs: 45_000 };
runInChromium('demo-loop', options, async (context, offOrigin) => {
  // The app: a page on the gateway's origin, so fetch('/graphql') needs no CORS.
  const app = context.pages()[0] ?? (await context.newPage());
  await app.goto(returnURL);

  const { createWidgetSession: session } = await graphql(
    app,
    `mutation($in: CreateWidgetSessionInput) { createWidgetSession(input: $in) { sessionId url expiresAt } }`,
    { in: { providers: ['OURA', 'GARMIN'], successRedirectUrl: returnURL } },
  );
  if (!session?.url) throw new Error(`createWidgetSession returned no url: ${JSON.stringify(session)}`);

  // The widget goes in a new tab, never an iframe.
  const tab = await context.newPage();
  await tab.goto(session.url);
  if (!(await tab.evaluate(() => window.top === window))) throw new Error('the widget is not a top-level page');

  await tab.getByRole('link', { name: 'Oura', exact: true }).click();
  await tab.getByRole('button', { name: 'Allow', exact: true }).click();
  await tab.waitForURL((u) => u.pathname === '/demo/return');
  await tab.getByRole('cell', { name: 'OURA', exact: true }).waitFor();
  const landed = new URL(tab.url());
  // terragate's return page sends the browser on with what it confirmed with Terra.
  if (landed.searchParams.get('provider') !== 'OURA' || landed.searchParams.get('status') !== 'COMPLETED') {
    throw new Error(`redirect does not confirm OURA: ${landed}`);
  }
  await tab.screenshot({ path: screenshot, fullPage: true });

  // Back in the app: the connection is known once the signed webhook has arrived.
  const deadline = Date.now() + CONNECTION_TIMEOUT_MS;
  let users = [];
  for (;;) {
    ({ connectedUsers: users } = await graphql(app, `{ connectedUsers { userId provider status } }`));
    if (users.length === 1 && users[0].provider === 'OURA' && users[0].status === 'CONNECTED') break;
    if (Date.now() > deadline) throw new Error(`no CONNECTED OURA connection after ${CONNECTION_TIMEOUT_MS} ms: ${JSON.stringify(users)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (users[0].userId !== landed.searchParams.get('user_id')) {
    throw new Error(`the redirect's user_id ${landed.searchParams.get('user_id')} is not the connection ${users[0].userId}`);
  }
  if (offOrigin.length) throw new Error(`requests left ${origin}: ${offOrigin.join(' ')}`);

  return {
    ok: true,
    sessionId: session.sessionId,
    widgetUrl: session.url,
    redirect: landed.pathname + landed.search,
    connection: users[0],
    screenshot,
    elapsedMs: Date.now() - started,
  };
});
