// connect.mjs drives the built app in a real Chromium against a demo gateway, as a person
// would: sign in as the demo user, press "Connect a device", finish in the widget's new tab
// (Oura, Allow), and watch the first tab show the connection without reloading; then
// disconnect it and watch it go.
//
//   APP_URL=http://localhost:4173 GATEWAY_URL=http://localhost:8080 SCREENSHOT=out.png \
//     node e2e/connect.mjs
//
// The gateway must run with -demo, CORS_ALLOWED_ORIGINS=<APP_URL's origin> and
// ALLOWED_REDIRECT_URLS=<APP_URL's origin>/. Every request must stay on those two origins:
// anything else is blocked and fails the run. On success it prints one line of JSON and exits
// 0; on failure it prints the reason to standard error and exits 1. It never downloads
// anything: it drives the system's Chromium.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ACTION_TIMEOUT_MS = 5_000;
const CONNECTED_TIMEOUT_MS = 8_000;
const WATCHDOG_MS = 40_000;

function fail(reason) {
  process.stderr.write(`connect.mjs: ${reason}\n`);
  process.exit(1);
}

function originOf(name, raw) {
  try {
    return new URL(raw).origin;
  } catch {
    return fail(`${name} is not a URL: ${JSON.stringify(raw)}`);
  }
}

const appURL = (process.env.APP_URL || '').replace(/\/+$/, '');
const gatewayURL = (process.env.GATEWAY_URL || '').replace(/\/+$/, '');
const screenshot = process.env.SCREENSHOT || '';
if (!appURL || !gatewayURL || !screenshot) {
  fail('set APP_URL, GATEWAY_URL and SCREENSHOT');
}
const appOrigin = originOf('APP_URL', appURL);
const gatewayOrigin = originOf('GATEWAY_URL', gatewayURL);
// This script only ever drives pages on this machine.
for (const origin of [appOrigin, gatewayOrigin]) {
  if (!['localhost', '127.0.0.1', '[::1]'].includes(new URL(origin).hostname)) {
    fail(`${origin} is not a loopback origin`);
  }
}
const allowed = new Set([appOrigin, gatewayOrigin]);
// WebSocket origins are the same with ws: or wss: for http: or https:.
const httpOrigin = (wsURL) => new URL(wsURL.replace(/^ws/, 'http')).origin;

const check = (cond, message) => {
  if (!cond) throw new Error(message);
};

async function main() {
  const started = Date.now();
  const steps = {};
  const mark = (name) => (steps[name] = Date.now() - started);
  const profile = await mkdtemp(join(tmpdir(), 'terragate-react-e2e-'));
  const blocked = [];
  const problems = []; // uncaught errors and console errors in the app's tab
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 960, height: 720 },
      timeout: 15_000,
    });
    context.setDefaultTimeout(ACTION_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(ACTION_TIMEOUT_MS);
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (!allowed.has(new URL(url).origin)) {
        blocked.push(url);
        return route.abort('blockedbyclient');
      }
      return route.continue();
    });

    const app = context.pages()[0] ?? (await context.newPage());
    app.on('pageerror', (err) => problems.push(`uncaught: ${err.message}`));
    app.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });

    // What crosses the app's WebSocket: the live updates must come from there.
    const sockets = [];
    const liveEvents = [];
    app.on('websocket', (ws) => {
      sockets.push(ws.url());
      if (!allowed.has(httpOrigin(ws.url()))) blocked.push(ws.url());
      if (httpOrigin(ws.url()) !== gatewayOrigin) return; // e.g. the dev server's reloader
      ws.on('framereceived', ({ payload }) => {
        try {
          const msg = JSON.parse(String(payload));
          const ev = msg.type === 'next' ? msg.payload?.data?.connectionEvents : undefined;
          if (ev) liveEvents.push({ type: ev.type, userId: ev.terraUser?.userId, provider: ev.terraUser?.provider, status: ev.terraUser?.status });
        } catch {
          // not JSON: not ours to read
        }
      });
    });

    await app.goto(`${appURL}/?gateway=${encodeURIComponent(gatewayURL)}`);
    // Any navigation of the app's tab from here on would be a reload: there must be none.
    const navigations = [];
    app.on('framenavigated', (frame) => {
      if (frame === app.mainFrame()) navigations.push(frame.url());
    });
    await app.evaluate(() => {
      window.__sameDocument = true;
    });

    await app.getByRole('button', { name: 'Sign in as demo user', exact: true }).click();
    await app.getByText('No devices connected yet.').waitFor();
    await app.locator('.live-live').waitFor(); // the subscription's WebSocket is up
    mark('signedIn');

    // Offer Oura and Garmin only.
    await app.getByText('Choose providers').click();
    await app.getByRole('checkbox', { name: 'Oura', exact: true }).check();
    await app.getByRole('checkbox', { name: 'Garmin', exact: true }).check();

    // The widget opens in a new tab, never in this page.
    const [tab] = await Promise.all([
      context.waitForEvent('page'),
      app.getByRole('button', { name: 'Connect a device', exact: true }).click(),
    ]);
    const tabURLs = [];
    tab.on('framenavigated', (frame) => {
      if (frame === tab.mainFrame()) tabURLs.push(frame.url());
    });
    await tab.waitForURL((u) => u.pathname.includes('/widget/session/'));
    const widgetURL = tab.url();
    mark('widgetOpen');
    check(await app.locator('iframe').count() === 0, 'the app page has an iframe');
    const isolated = await tab.evaluate(() => window.top === window && window.opener === null);
    check(isolated, 'the widget tab is framed or can reach the app through window.opener');
    await app.getByText('Waiting for you to finish in the other tab…').waitFor();

    await tab.getByRole('link', { name: 'Garmin', exact: true }).waitFor();
    await tab.getByRole('link', { name: 'Oura', exact: true }).click();
    // Allow sends the tab back to the app, whose return page may close the tab at once.
    await tab.getByRole('button', { name: 'Allow', exact: true }).click({ noWaitAfter: true });
    mark('allowed');

    // The first tab: the session's status, and the connection in the list, both live.
    await app.getByText('Connected Oura.', { exact: true }).waitFor({ timeout: CONNECTED_TIMEOUT_MS });
    const item = app.getByRole('list', { name: 'Connections' }).getByRole('listitem').filter({ hasText: 'Oura' });
    await item.filter({ hasText: 'Connected' }).waitFor({ timeout: CONNECTED_TIMEOUT_MS });
    check((await item.count()) === 1, `expected one Oura connection, found ${await item.count()}`);
    mark('connectedShown');
    const connected = liveEvents.find((e) => e.type === 'CONNECTED' && e.provider === 'OURA' && e.status === 'CONNECTED');
    check(connected, `no CONNECTED event for OURA came over the WebSocket: ${JSON.stringify(liveEvents)}`);

    // The widget's tab went back to the app's return page, which closes it when it can.
    if (!tab.isClosed()) await tab.waitForEvent('close', { timeout: 3_000 }).catch(() => {});
    const returnTab = tab.isClosed() ? 'closed' : 'open';
    if (!tab.isClosed()) await tab.getByText('You can close this tab and return to the app').waitFor();
    const returned = tabURLs.map((u) => new URL(u)).find((u) => u.origin === appOrigin && u.searchParams.has('returned'));
    check(returned, `the widget tab never came back to the app: ${tabURLs.join(' ')}`);

    await app.screenshot({ path: screenshot, fullPage: true });
    mark('screenshot');

    // Disconnect: the row goes away, still without a reload.
    await item.getByRole('button', { name: 'Disconnect', exact: true }).click();
    await item.waitFor({ state: 'detached', timeout: CONNECTED_TIMEOUT_MS });
    await app.getByText('No devices connected yet.').waitFor();
    mark('disconnected');
    const gone = () => liveEvents.some((e) => e.type === 'DISCONNECTED' && e.userId === connected.userId);
    for (const deadline = Date.now() + CONNECTED_TIMEOUT_MS; !gone() && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    check(gone(), `no DISCONNECTED event for ${connected.userId} came over the WebSocket: ${JSON.stringify(liveEvents)}`);

    check(navigations.length === 0, `the app's tab navigated: ${navigations.join(' ')}`);
    check(await app.evaluate(() => window.__sameDocument === true), "the app's tab was reloaded");
    check(blocked.length === 0, `requests left ${[...allowed].join(' and ')}: ${blocked.join(' ')}`);
    check(problems.length === 0, `the app's tab logged errors: ${problems.join(' | ')}`);

    return {
      ok: true,
      app: appOrigin,
      gateway: gatewayOrigin,
      widgetUrl: widgetURL,
      returnPath: returned.pathname + returned.search,
      returnTab,
      connection: { userId: connected.userId, provider: connected.provider, status: connected.status },
      liveEvents,
      webSockets: sockets,
      screenshot,
      browser: context.browser()?.version() ?? null,
      stepsMs: steps,
      elapsedMs: Date.now() - started,
    };
  } finally {
    await context?.close().catch(() => {});
    await rm(profile, { recursive: true, force: true }).catch(() => {});
  }
}

// A hung browser must not hang the caller: give up well before the Go test's deadline.
const watchdog = setTimeout(() => fail(`gave up after ${WATCHDOG_MS} ms`), WATCHDOG_MS);
watchdog.unref();

main().then(
  (summary) => {
    process.stdout.write(JSON.stringify(summary) + '\n');
    process.exit(0);
  },
  (err) => fail(err?.stack || String(err)),
);
