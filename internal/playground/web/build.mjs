// build.mjs bundles the playground (GraphiQL, its explorer plugin, React) into one script and
// one stylesheet in ../assets, named by a hash of their content, for the Go package to embed.
// `go generate ./...` runs it; it installs the locked packages first when node_modules does
// not match package-lock.json, so a fresh clone needs only Node and npm.
//
// The output is committed and CI checks that regenerating it changes nothing, so the build
// must be deterministic: pinned esbuild, no source maps or timestamps, sorted file names.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'assets');

// npm ci wipes and reinstalls node_modules, which takes a while: do it only when the lock
// file changed since the last install, recorded by its hash in a stamp file.
const lockHash = createHash('sha256').update(readFileSync(join(here, 'package-lock.json'))).digest('hex');
const stamp = join(here, 'node_modules', '.terragate-lock-sha256');
if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== lockHash) {
  execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: here, stdio: ['ignore', process.stderr, 'inherit'] });
  writeFileSync(stamp, lockHash);
}

const { build } = await import('esbuild');

// Stale hashed files would otherwise linger (and be embedded) after every change.
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  absWorkingDir: here,
  entryPoints: { playground: 'src/main.js' },
  entryNames: '[name]-[hash]',
  outdir: out,
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome120', 'firefox120', 'safari16'],
  define: { 'process.env.NODE_ENV': '"production"' },
  legalComments: 'eof',
  sourcemap: false,
  charset: 'utf8',
  logLevel: 'warning',
});

const files = readdirSync(out).sort();
for (const f of files) {
  console.log(`playground: ${f} ${(statSync(join(out, f)).size / 1024).toFixed(0)} KiB`);
}
