// Benchmarks of built packages under Node, side by side in one process:
// the same stub `fetch` (a Response-shaped object, so what is measured is
// the client, not Node's undici) and the same synchronous in-memory storage.
//
//   node adapters/wasm/bench/bench.mjs [--quick | --smoke] [--pkg DIR]... [--label NAME]...
//
// Each `--pkg DIR` is a built package (adapters/wasm/pkg by default; the
// baseline is built by bench/run.sh). The first package is the reference
// for the ratio column ("x faster" = first / other). Each case runs a
// warm-up, then timed rounds alternating between the packages; the median
// round is reported, in µs per operation.

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
// --smoke: one short round per case, to prove in CI that the bench runs.
const smoke = args.includes('--smoke');
const ROUNDS = smoke ? 1 : quick ? 5 : 15;
const SCALE = smoke ? 0.01 : quick ? 0.2 : 1;
const pkgs = [];
const labels = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--pkg') pkgs.push(args[++i]);
  if (args[i] === '--label') labels.push(args[++i]);
}
if (pkgs.length === 0) pkgs.push(new URL('../pkg', import.meta.url).pathname);

const b64 = (s) => Buffer.from(s).toString('base64url');
const accessToken = (n) =>
  `${b64('{"alg":"HS256","typ":"JWT"}')}.${b64(JSON.stringify({ sub: 'u1', is_anonymous: true, exp: 2e9, n }))}.${'s'.repeat(43)}`;

let serial = 0;
function tokenReply(withUser) {
  serial += 1;
  const body = {
    access_token: accessToken(serial),
    refresh_token: `rt-${serial}-${'x'.repeat(20)}`,
    expires_in: 3600,
    expires_at: Math.floor(Date.now() / 1000) + 3600,
    token_type: 'bearer',
  };
  if (withUser) body.user = { id: 'u1', email: null, is_anonymous: true };
  return JSON.stringify(body);
}

const encoder = new TextEncoder();
const jsonHeaders = { get: (name) => (name.toLowerCase() === 'content-type' ? 'application/json' : null) };

/** What `fetch` resolves to, minus undici: status, headers and the body readers. */
class StubResponse {
  constructor(text) {
    this.status = 200;
    this.statusText = 'OK';
    this.ok = true;
    this.type = 'basic';
    this.redirected = false;
    this.headers = jsonHeaders;
    this._text = text;
  }
  async text() {
    return this._text;
  }
  async json() {
    return JSON.parse(this._text);
  }
  async arrayBuffer() {
    return encoder.encode(this._text).buffer;
  }
}

async function stubFetch(url) {
  if (url.endsWith('/auth/anonymous/signin')) return new StubResponse(tokenReply(true));
  if (url.endsWith('/auth/refresh')) return new StubResponse(tokenReply(false));
  return new StubResponse('{"ok":true}');
}

function memoryStorage(initial) {
  const m = new Map(initial);
  return {
    map: m,
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, v),
    removeItem: (k) => void m.delete(k),
  };
}

const PID = 'pw_bench';
const options = (storage = memoryStorage()) => ({ paywallId: PID, apiOrigin: 'https://api.bench.test', fetch: stubFetch, storage });

function end(client) {
  // `free()` ends the client like `destroy()` and releases its wasm memory.
  if (typeof client.free === 'function') client.free();
  else client.destroy();
}

async function signedIn(AuthClient, extra) {
  const client = new AuthClient(options());
  await client.signInAnonymously();
  if (extra) extra(client);
  return { client };
}

/** [name, per-round ops, setup(AuthClient) → ctx, op(ctx, AuthClient)] */
const cases = [
  [
    'fresh sign-in + hard sign-out',
    2000,
    async (A) => ({ client: new A(options()) }),
    async ({ client }) => {
      await client.signInAnonymously();
      await client.signOut({ forgetAnonymous: true });
    },
  ],
  [
    'soft sign-out + resume',
    2000,
    signedIn,
    async ({ client }) => {
      await client.signOut();
      await client.signInAnonymously();
    },
  ],
  ['refresh', 2000, signedIn, async ({ client }) => void (await client.refresh())],
  ['getAccessToken, fresh session', 200000, signedIn, async ({ client }) => void (await client.getAccessToken())],
  ['getCachedSession (sync)', 200000, signedIn, async ({ client }) => void client.getCachedSession()],
  [
    '100 parallel signInAnonymously (new client, 100 joined calls, end)',
    300,
    async () => ({}),
    async (_, A) => {
      const client = new A(options());
      const calls = [];
      for (let i = 0; i < 100; i++) calls.push(client.signInAnonymously());
      await Promise.all(calls);
      end(client);
    },
  ],
  [
    'new client + ready() with a stored session (+ end)',
    20000,
    async (A) => {
      // The records a signed-in client wrote, read by every new client.
      const stored = memoryStorage();
      const src = new A(options(stored));
      await src.signInAnonymously();
      end(src);
      return { stored };
    },
    async ({ stored }, A) => {
      const client = new A(options(stored));
      await client.ready();
      end(client);
    },
  ],
  [
    'refresh with 1,000 onAuthChange listeners',
    500,
    async (A) => {
      const { client } = await signedIn(A);
      let calls = 0;
      for (let i = 0; i < 1000; i++) client.onAuthChange(() => void (calls += 1));
      await new Promise((r) => setTimeout(r, 0));
      return { client, calls: () => calls };
    },
    async ({ client }) => void (await client.refresh()),
  ],
];

/**
 * Median µs per operation of each package on one case. Rounds alternate
 * between the packages (A B A B …) so that a slow spell of the machine,
 * common on shared hosts, hits every package alike instead of skewing the
 * ratio.
 */
async function measure(As, [, perRound, setup, op]) {
  const n = Math.max(20, Math.round(perRound * SCALE));
  const ctxs = [];
  for (const A of As) {
    const ctx = await setup(A);
    for (let i = 0; i < n / 4; i++) await op(ctx, A);
    ctxs.push(ctx);
  }
  const rounds = As.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < As.length; k++) {
      const A = As[k];
      const ctx = ctxs[k];
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await op(ctx, A);
      rounds[k].push(((performance.now() - t0) * 1000) / n);
    }
  }
  for (const ctx of ctxs) if (ctx.client) end(ctx.client);
  return rounds.map((rs) => rs.sort((a, b) => a - b)[Math.floor(rs.length / 2)]);
}

const clients = [];
for (const dir of pkgs) {
  const mod = await import(pathToFileURL(resolve(dir, 'node.js')).href);
  clients.push(mod.AuthClient);
}
const names = pkgs.map((p, i) => labels[i] ?? p);

console.log(`node ${process.version}, ${ROUNDS} rounds, median round, µs per operation`);
console.log(['flow', ...names, ...(pkgs.length > 1 ? names.slice(1).map((n) => `${names[0]} / ${n}`) : [])].join(' | '));
for (const c of cases) {
  const us = await measure(clients, c);
  const ratios = us.slice(1).map((u) => `${(us[0] / u).toFixed(2)}x`);
  console.log([c[0], ...us.map((u) => (u < 10 ? u.toFixed(3) : u.toFixed(1))), ...ratios].join(' | '));
}
