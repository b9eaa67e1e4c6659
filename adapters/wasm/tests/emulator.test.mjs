// End to end over loopback: the built package with Node's real `fetch`
// against the paywall-auth emulator (started through the emulator-runner
// binary, steered through its /__emulator/ control routes).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { AuthClient, PaywallError } from '../pkg/node.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const runnerPath =
  process.env.PAYWALL_EMULATOR_RUNNER ?? `${root}target/debug/paywall-auth-wasm-emulator-runner`;

let emulator;
let origin;
let paywallId;

before(async () => {
  if (!existsSync(runnerPath)) {
    execFileSync('cargo', ['build', '-q', '-p', 'paywall-auth-wasm-emulator-runner'], { cwd: root, stdio: 'inherit' });
  }
  emulator = spawn(runnerPath, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await new Promise((resolve, reject) => {
    emulator.once('error', reject);
    emulator.once('exit', (code) => reject(new Error(`emulator runner exited with ${code}`)));
    createInterface({ input: emulator.stdout }).once('line', resolve);
  });
  ({ origin, paywallId } = JSON.parse(line));
});

after(() => {
  // Closing stdin is the runner's signal to stop.
  emulator?.stdin.end();
});

async function control(path, body) {
  const init = body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) };
  const res = await fetch(`${origin}/__emulator/${path}`, init);
  assert.ok(res.ok, `${path}: ${res.status}`);
  return res.json();
}

function storage() {
  const data = new Map();
  return {
    data,
    getItem: (k) => (data.has(k) ? data.get(k) : null),
    setItem: (k, v) => void data.set(k, v),
    removeItem: (k) => void data.delete(k),
  };
}

function newClient(store = storage()) {
  return { c: new AuthClient({ paywallId, apiOrigin: origin, storage: store }), store };
}

const sessionKey = () => `pw-${paywallId}-auth-v1`;
const anonKey = () => `pw-${paywallId}-anon-rt-v1`;

describe('against the emulator', () => {
  it('signs in anonymously; the backend saw exactly the core headers and body', async () => {
    await control('reset-log', {});
    const { c, store } = newClient();
    const session = await c.signInAnonymously({ userMeta: { source: 'e2e' } });
    assert.equal(session.user.is_anonymous, true);
    assert.equal(session.user.email, null);
    assert.match(session.user.id, /^[0-9a-f-]{36}$/);
    assert.equal(store.data.get(anonKey()), session.refresh_token);
    assert.deepEqual(JSON.parse(store.data.get(sessionKey())), session);

    const [req] = await control('requests');
    assert.equal(req.method, 'POST');
    assert.equal(req.path, `/api/v1/paywall/${paywallId}/auth/anonymous/signin`);
    assert.equal(req.body, '{"user_meta":{"source":"e2e"}}');
    assert.equal(req.headers.accept, 'application/json');
    assert.equal(req.headers['x-paywall-id'], paywallId);
    assert.equal(req.headers['content-type'], 'application/json');
    assert.equal(req.headers.authorization, undefined);
    assert.equal(req.headers.cookie, undefined);
    const users = await control('users');
    assert.ok(users.some((u) => u.id === session.user.id && u.user_meta.source === 'e2e'));
  });

  it('refresh rotates; a soft sign-out resumes the same user with the rotated token', async () => {
    const { c, store } = newClient();
    const first = await c.signInAnonymously();
    const refreshed = await c.refresh();
    assert.notEqual(refreshed.refresh_token, first.refresh_token);
    assert.equal(store.data.get(anonKey()), refreshed.refresh_token);

    await c.signOut();
    assert.equal(store.data.has(sessionKey()), false);
    const { anonymous_users_created: before } = await control('counters');
    const resumed = await c.signInAnonymously();
    const { anonymous_users_created: afterResume } = await control('counters');
    assert.equal(resumed.user.id, first.user.id);
    assert.equal(afterResume, before);
    assert.equal(await c.getAccessToken(), resumed.access_token);
  });

  it('a new client restores the stored session and resumes without a request', async () => {
    const { c, store } = newClient();
    const session = await c.signInAnonymously();
    c.destroy();
    await control('reset-log', {});
    const { c: again } = newClient(store);
    assert.deepEqual(again.getCachedSession(), session);
    assert.deepEqual(await again.signInAnonymously(), session);
    assert.deepEqual(await control('requests'), []);
  });

  it('upgrade keeps the user id; USER_UPDATED; the anonymous record is gone', async () => {
    const { c, store } = newClient();
    const guest = await c.signInAnonymously();
    const events = [];
    c.onAuthChange((e, s) => events.push([e, s && s.user.email]));
    const email = `e2e-${Date.now()}@example.test`;
    const result = await c.upgradeAnonymousToEmail({
      email,
      password: 'correct horse 1',
      idempotencyKey: crypto.randomUUID(),
    });
    assert.equal(result.kind, 'updated');
    assert.equal(result.session.user.id, guest.user.id);
    assert.equal(result.session.user.email, email);
    assert.equal(result.session.user.is_anonymous, false);
    assert.equal(store.data.has(anonKey()), false);
    await new Promise((r) => setTimeout(r, 0));
    // Subscribed while a guest: INITIAL_SESSION carries the guest (no email).
    assert.deepEqual(events, [['INITIAL_SESSION', null], ['USER_UPDATED', email]]);
  });

  it('upgrade with email confirmation on answers confirmation_required', async () => {
    await control('config', { confirm_email: true });
    try {
      const { c, store } = newClient();
      const guest = await c.signInAnonymously();
      const email = `confirm-${Date.now()}@example.test`;
      const result = await c.upgradeAnonymousToEmail({ email, password: 'correct horse 2' });
      assert.deepEqual(result, { kind: 'confirmation_required', email });
      assert.equal(c.getCachedUser().is_anonymous, true);
      assert.equal(store.data.get(anonKey()), guest.refresh_token);
    } finally {
      await control('config', { confirm_email: false });
    }
  });

  it('a hard sign-out revokes the session server-side', async () => {
    const { c, store } = newClient();
    const session = await c.signInAnonymously();
    await c.signOut({ forgetAnonymous: true });
    assert.equal(store.data.size, 0);
    // The revocation is fire-and-forget: wait until the backend has it.
    let revoked = false;
    for (let i = 0; i < 50 && !revoked; i++) {
      const sessions = await control('sessions');
      revoked = sessions.some((s) => s.user_id === session.user.id && s.revoked);
      if (!revoked) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(revoked);
  });

  it('anonymous_disabled comes back as a PaywallError with status 403', async () => {
    await control('config', { allow_anonymous: false });
    try {
      const { c, store } = newClient();
      const error = await c.signInAnonymously().catch((e) => e);
      assert.ok(error instanceof PaywallError);
      assert.equal(error.code, 'anonymous_disabled');
      assert.equal(error.status, 403);
      assert.equal(store.data.size, 0);
    } finally {
      await control('config', { allow_anonymous: true });
    }
  });

  it('a refresh token spent elsewhere ends in a fresh anonymous user on resume', async () => {
    await control('config', { reuse_interval_ms: 0 });
    try {
      const { c, store } = newClient();
      const first = await c.signInAnonymously();
      await c.signOut();
      // Another party spends the stored token twice: the family is revoked.
      for (let i = 0; i < 2; i++) {
        await fetch(`${origin}/api/v1/paywall/${paywallId}/auth/refresh`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ refresh_token: first.refresh_token }),
        });
      }
      const next = await c.signInAnonymously();
      assert.notEqual(next.user.id, first.user.id);
      assert.equal(store.data.get(anonKey()), next.refresh_token);
    } finally {
      await control('config', { reuse_interval_ms: 10000 });
    }
  });
});
