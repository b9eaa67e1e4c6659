// Benchmarks of the built package under Node with a stub fetch and an
// in-memory synchronous storage (so what is measured is the client: the
// wasm core, the driver loop, the JS glue, and Node's Response parsing).
//
//   node adapters/wasm/bench/bench.mjs [--quick]
//
// Each case runs a warm-up, then timed rounds; the median round is reported.

import { AuthClient } from '../pkg/node.js';

const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 3 : 7;
const PER_ROUND = quick ? 300 : 2000;

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

function json(text) {
  return new Response(text, { status: 200, headers: { 'content-type': 'application/json' } });
}

async function stubFetch(url) {
  if (url.endsWith('/auth/anonymous/signin')) return json(tokenReply(true));
  if (url.endsWith('/auth/refresh')) return json(tokenReply(false));
  return json('{"ok":true}');
}

function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, v),
    removeItem: (k) => void m.delete(k),
  };
}

const options = () => ({ paywallId: 'pw_bench', apiOrigin: 'https://api.bench.test', fetch: stubFetch, storage: memoryStorage() });

async function measure(name, setup, op) {
  const ctx = await setup();
  for (let i = 0; i < PER_ROUND / 4; i++) await op(ctx);
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    for (let i = 0; i < PER_ROUND; i++) await op(ctx);
    rounds.push((performance.now() - t0) / PER_ROUND);
  }
  rounds.sort((a, b) => a - b);
  const median = rounds[Math.floor(rounds.length / 2)];
  ctx.client?.free();
  return { name, us: median * 1000, opsPerSec: 1000 / median };
}

const cases = [
  [
    'stub fetch alone (baseline: Response + arrayBuffer)',
    async () => ({}),
    async () => {
      await (await stubFetch('https://x/auth/anonymous/signin')).arrayBuffer();
    },
  ],
  [
    'fresh anonymous cycle (new client, sign-in, free)',
    async () => ({}),
    async () => {
      const c = new AuthClient(options());
      await c.signInAnonymously();
      c.free();
    },
  ],
  [
    'soft sign-out + resume (signOut, signInAnonymously via /auth/refresh)',
    async () => {
      const client = new AuthClient(options());
      await client.signInAnonymously();
      return { client };
    },
    async ({ client }) => {
      await client.signOut();
      await client.signInAnonymously();
    },
  ],
  [
    'refresh (rotation, both records written)',
    async () => {
      const client = new AuthClient(options());
      await client.signInAnonymously();
      return { client };
    },
    async ({ client }) => {
      await client.refresh();
    },
  ],
  [
    'getAccessToken on a fresh session (no request)',
    async () => {
      const client = new AuthClient(options());
      await client.signInAnonymously();
      return { client };
    },
    async ({ client }) => {
      await client.getAccessToken();
    },
  ],
  [
    'getCachedSession (sync)',
    async () => {
      const client = new AuthClient(options());
      await client.signInAnonymously();
      return { client };
    },
    async ({ client }) => {
      client.getCachedSession();
    },
  ],
];

console.log(`node ${process.version}, ${ROUNDS} rounds x ${PER_ROUND} ops, median round`);
for (const [name, setup, op] of cases) {
  const r = await measure(name, setup, op);
  console.log(`${r.name.padEnd(72)} ${r.us.toFixed(1).padStart(8)} µs/op ${Math.round(r.opsPerSec).toString().padStart(9)} ops/s`);
}
