// The package in a real browser: headless Chromium (Debian's, driven by
// playwright-core) loads a page served on 127.0.0.1 that imports the built
// package, against the emulator on another loopback port (so every call is
// a CORS request with a preflight). Then an esbuild and a Vite build of a
// small app, each loaded in the browser and signed in.
//
//   npm ci --prefix adapters/wasm/browser-test
//   node --test adapters/wasm/browser-test/browser.test.mjs
//
// Needs adapters/wasm/pkg (build.sh), /usr/bin/chromium (or CHROMIUM), and
// the emulator runner (built on demand, or PAYWALL_EMULATOR_RUNNER).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '../../../');
const pkg = join(here, '../pkg');
const runnerPath = process.env.PAYWALL_EMULATOR_RUNNER ?? join(root, 'target/debug/paywall-auth-wasm-emulator-runner');
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm' };

let server;
let pageOrigin;
let emulator;
let api;
let pid;
let browser;
let userDataDir;
let work;
/** URL prefix → directory served under it. */
const mounts = new Map();

function serve(req, res) {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  // Longest prefix first: `/esbuild/` before `/`.
  for (const [prefix, dir] of [...mounts].sort((a, b) => b[0].length - a[0].length)) {
    if (!path.startsWith(prefix)) continue;
    const file = normalize(join(dir, path.slice(prefix.length) || 'index.html'));
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) break;
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(readFileSync(file));
    return;
  }
  res.writeHead(404).end();
}

async function control(path, body) {
  const init = body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) };
  const res = await fetch(`${api}/__emulator/${path}`, init);
  assert.ok(res.ok, `${path}: ${res.status}`);
  return res.json();
}

/** The API routes the emulator saw since the last reset, in order. */
async function routes() {
  const log = await control('requests');
  return log.map((r) => r.path.replace(/^.*\/api\/v1\/paywall\/[^/]+\//, ''));
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'paywall-auth-browser-'));
  server = createServer(serve);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  pageOrigin = `http://127.0.0.1:${server.address().port}`;
  mounts.set('/pkg/', normalize(pkg + '/'));
  mounts.set('/', normalize(here + '/'));

  if (!existsSync(runnerPath)) {
    execFileSync('cargo', ['build', '-q', '-p', 'paywall-auth-wasm-emulator-runner'], { cwd: root, stdio: 'inherit' });
  }
  emulator = spawn(runnerPath, [], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, PAYWALL_EMULATOR_CORS: pageOrigin },
  });
  const line = await new Promise((resolve, reject) => {
    emulator.once('error', reject);
    emulator.once('exit', (code) => reject(new Error(`emulator runner exited with ${code}`)));
    createInterface({ input: emulator.stdout }).once('line', resolve);
  });
  ({ origin: api, paywallId: pid } = JSON.parse(line));

  userDataDir = join(work, 'profile');
  mkdirSync(userDataDir);
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
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
  });
});

after(async () => {
  await browser?.close();
  emulator?.stdin.end();
  server?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function openPage() {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`${pageOrigin}/page.html?pid=${encodeURIComponent(pid)}&api=${encodeURIComponent(api)}`);
  await page.waitForFunction(() => document.title === 'ready' || document.title.startsWith('failed'));
  assert.deepEqual(errors, []);
  return page;
}

const user = (page) => page.evaluate(() => window.auth.getCachedSession()?.user ?? null);

describe('the package in headless Chromium, against the emulator over CORS', () => {
  let tab;

  it('signs in: one request, the session in localStorage under the reference key', async () => {
    await control('reset-log', {});
    tab = await openPage();
    const session = await tab.evaluate(() => window.auth.signInAnonymously());
    assert.equal(session.user.is_anonymous, true);
    assert.deepEqual(await routes(), ['auth/anonymous/signin']);
    const stored = await tab.evaluate((k) => localStorage.getItem(k), `pw-${pid}-auth-v1`);
    assert.equal(JSON.parse(stored).user.id, session.user.id);
    assert.equal(await tab.evaluate((k) => localStorage.getItem(k), `pw-${pid}-anon-rt-v1`), session.refresh_token);
    assert.deepEqual(await tab.evaluate(() => window.events), [
      ['INITIAL_SESSION', null],
      ['SIGNED_IN', session.user.id],
    ]);
  });

  it('after a reload, the same guest comes back from localStorage without a request', async () => {
    const before = await user(tab);
    await control('reset-log', {});
    await tab.reload();
    await tab.waitForFunction(() => document.title === 'ready');
    assert.equal((await user(tab)).id, before.id);
    const again = await tab.evaluate(() => window.auth.signInAnonymously());
    assert.equal(again.user.id, before.id);
    assert.deepEqual(await routes(), []);
  });

  it('a soft sign-out keeps the guest resumable; signing in again resumes it', async () => {
    const { id } = await user(tab);
    await control('reset-log', {});
    await tab.evaluate(() => window.auth.signOut());
    assert.equal(await user(tab), null);
    const resumed = await tab.evaluate(() => window.auth.signInAnonymously());
    assert.equal(resumed.user.id, id);
    assert.deepEqual(await routes(), ['auth/refresh']);
  });

  it('two tabs: a sign-out in one is seen by the other (storage event)', async () => {
    const { id } = await user(tab);
    const other = await openPage();
    assert.equal((await user(other)).id, id);
    await other.evaluate(() => {
      window.events.length = 0;
    });
    await tab.evaluate(() => window.auth.signOut({ forgetAnonymous: true }));
    await other.waitForFunction(() => window.events.some(([e]) => e === 'SIGNED_OUT'));
    assert.equal(await user(other), null);
    assert.deepEqual(await other.evaluate(() => window.events), [['SIGNED_OUT', null]]);
    await other.close();
  });

  it('upgrade: the guest becomes a named user with the same id', async () => {
    const guest = await tab.evaluate(() => window.auth.signInAnonymously());
    const email = `browser-${Date.now()}@example.test`;
    const result = await tab.evaluate((email) => window.auth.upgradeAnonymousToEmail({ email, password: 'correct horse 9' }), email);
    assert.equal(result.kind, 'updated');
    assert.equal(result.session.user.id, guest.user.id);
    assert.equal(result.session.user.is_anonymous, false);
    assert.equal(result.session.user.email, email);
    assert.equal(await tab.evaluate((k) => localStorage.getItem(k), `pw-${pid}-anon-rt-v1`), null);
  });
});

describe('bundlers: a small app built without copying the .wasm by hand', () => {
  before(() => {
    // The package as an installed dependency of the app.
    const scope = join(here, 'node_modules/@paywall-auth');
    mkdirSync(scope, { recursive: true });
    rmSync(join(scope, 'wasm'), { force: true, recursive: true });
    symlinkSync(pkg, join(scope, 'wasm'), 'dir');
  });

  async function signsIn(prefix) {
    const page = await browser.newPage();
    // A first visit: not the named account the upgrade test left behind.
    await page.addInitScript(() => localStorage.clear());
    await page.goto(`${pageOrigin}${prefix}index.html?pid=${encodeURIComponent(pid)}&api=${encodeURIComponent(api)}`);
    await page.waitForFunction(() => document.title !== 'loading', null, { timeout: 20000 });
    const title = await page.title();
    await page.close();
    assert.match(title, /^signed-in:[0-9a-f-]{36}$/);
  }

  it('esbuild (the inline entry)', async () => {
    const esbuild = await import('esbuild');
    const out = join(work, 'esbuild');
    mkdirSync(out);
    await esbuild.build({
      entryPoints: [join(here, 'app/main-inline.js')],
      bundle: true,
      format: 'esm',
      outfile: join(out, 'main.js'),
      logLevel: 'warning',
    });
    execFileSync('cp', [join(here, 'app/index.html'), out]);
    mounts.set('/esbuild/', normalize(out + '/'));
    await signsIn('/esbuild/');
  });

  it('Vite (the default entry; the .wasm is emitted as an asset)', async () => {
    const { build } = await import('vite');
    const out = join(work, 'vite');
    await build({
      root: join(here, 'app'),
      base: './',
      logLevel: 'warn',
      configFile: false,
      build: { outDir: out, emptyOutDir: true },
    });
    const assets = execFileSync('ls', [join(out, 'assets')]).toString();
    assert.match(assets, /\.wasm/);
    mounts.set('/vite/', normalize(out + '/'));
    await signsIn('/vite/');
  });
});
