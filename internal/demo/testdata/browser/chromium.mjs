// chromium.mjs is what the browser scripts share: Debian's Chromium, launched headless with
// a fresh profile and no background networking, every request that leaves the page's origin
// refused (and noted), a watchdog, and the one-line protocol the Go tests read: one line of
// JSON on standard output and exit 0, or the reason on standard error and exit 1.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// failer returns the script's fail: the reason on standard error, exit 1.
export function failer(name) {
  return (reason) => {
    process.stderr.write(`${name}: ${reason}\n`);
    process.exit(1);
  };
}

// runInChromium launches Chromium for origin and calls body(context, offOrigin); offOrigin
// collects the URLs refused because they left origin. What body returns is printed as the
// script's JSON line, with the browser's version added. A hung browser must not hang the
// Go test: the script gives up after watchdogMs.
export function runInChromium(name, { origin, viewport, actionTimeoutMs, watchdogMs }, body) {
  const fail = failer(name);
  const watchdog = setTimeout(() => fail(`gave up after ${watchdogMs} ms`), watchdogMs);
  watchdog.unref();
  const main = async () => {
    const profile = await mkdtemp(join(tmpdir(), 'terragate-chromium-'));
    const offOrigin = [];
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
        viewport,
        timeout: 15_000,
      });
      context.setDefaultTimeout(actionTimeoutMs);
      context.setDefaultNavigationTimeout(actionTimeoutMs);
      await context.route('**/*', (route) => {
        const url = route.request().url();
        if (new URL(url).origin !== origin) {
          offOrigin.push(url);
          return route.abort('blockedbyclient');
        }
        return route.continue();
      });
      const summary = await body(context, offOrigin);
      return { ...summary, browser: context.browser()?.version() ?? null };
    } finally {
      await context?.close().catch(() => {});
      await rm(profile, { recursive: true, force: true }).catch(() => {});
    }
  };
  main().then(
    (summary) => {
      process.stdout.write(JSON.stringify(summary) + '\n');
      process.exit(0);
    },
    (err) => fail(err?.stack || String(err)),
  );
}
