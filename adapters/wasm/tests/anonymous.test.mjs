// The anonymous flows of docs/protocol.md §7 through the built package, against
// a stub `fetch` and a recording storage adapter: requests (URL, method,
// headers, body), storage keys and values, and event order.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import {
  AuthClient, Backend, FRESH_S, KEYS, NOW, ORIGIN, PID, PaywallError, anonUser, baseHeaders, client, held, listen,
  recordingStorage, settle, storedSession, tokens,
} from './harness.mjs';

const ANON_SIGNIN = 'auth/anonymous/signin';
const REFRESH = 'auth/refresh';
const UPGRADE = 'auth/anonymous/upgrade';
const SIGNOUT = 'auth/signout';

/** A client already signed in as anonymous `u1` with refresh token `r1`. */
async function signedIn({ backend = new Backend(), timeline = [], storageOptions = {} } = {}) {
  const storage = recordingStorage({}, { timeline, ...storageOptions });
  const c = client(backend, storage);
  backend.on(ANON_SIGNIN, { body: tokens({ user: anonUser('u1') }) });
  const session = await c.signInAnonymously();
  timeline.length = 0;
  backend.requests.length = 0;
  return { c, backend, storage, timeline, session };
}

describe('signInAnonymously', () => {
  it('creates a user: one request, both records stored, then SIGNED_IN, then the promise', async () => {
    const timeline = [];
    const backend = new Backend();
    const storage = recordingStorage({}, { timeline });
    const reply = tokens({ user: anonUser('u1') });
    backend.on(ANON_SIGNIN, { body: reply });
    // Any path, query or fragment of apiOrigin is dropped (§1.1).
    const c = client(backend, storage, { apiOrigin: `${ORIGIN}/ignored/path?q=1#f` });
    listen(c, timeline);

    const session = await c.signInAnonymously();
    timeline.push(['resolved']);

    assert.equal(backend.requests.length, 1);
    const [req] = backend.requests;
    assert.equal(req.url, `${ORIGIN}/api/v1/paywall/${PID}/auth/anonymous/signin`);
    assert.equal(req.method, 'POST');
    assert.deepEqual(req.headers, baseHeaders());
    assert.equal(req.body, '{}');
    assert.equal(req.credentials, 'omit');
    assert.deepEqual(req.keys, ['body', 'credentials', 'headers', 'method', 'redirect']);
    // A redirect would carry the body (tokens, passwords) elsewhere: never followed.
    assert.equal(req.redirect, 'manual');

    const stored = storedSession(reply, anonUser('u1'));
    assert.deepEqual(timeline, [
      ['INITIAL_SESSION', null],
      ['set', KEYS.anon, 'r1'],
      ['set', KEYS.session, stored],
      ['SIGNED_IN', 'u1'],
      ['resolved'],
    ]);
    assert.deepEqual(session, JSON.parse(stored));
    assert.deepEqual(c.getCachedSession(), session);
    assert.deepEqual(c.getCachedUser(), anonUser('u1'));
  });

  it('sends captcha, visitor id and user meta when given', async () => {
    const backend = new Backend().on(ANON_SIGNIN, { body: tokens({ user: anonUser() }) });
    const storage = recordingStorage({ [KEYS.visitor]: '0123456789abcdef-visitor' });
    const c = client(backend, storage);
    await c.signInAnonymously({ captchaToken: 'cap-1', userMeta: { source: 'test', plan: 'x' } });
    assert.equal(
      backend.requests[0].body,
      '{"captcha_token":"cap-1","visitor_id":"0123456789abcdef-visitor","user_meta":{"source":"test","plan":"x"}}',
    );
  });

  it('is a no-op when an anonymous session exists: no request, no event, same session', async () => {
    const { c, backend, timeline, session } = await signedIn();
    listen(c, timeline);
    await settle();
    timeline.length = 0;
    const again = await c.signInAnonymously();
    await settle();
    assert.deepEqual(again, session);
    assert.equal(backend.requests.length, 0);
    assert.deepEqual(timeline, []);
  });

  it('resumes the stored anonymous account through /auth/refresh', async () => {
    const timeline = [];
    const backend = new Backend();
    const storage = recordingStorage({ [KEYS.anon]: 'r-stored' }, { timeline });
    const reply = tokens({ sub: 'u-old', refresh: 'r-next' }); // no `user`: the access token names it
    backend.on(REFRESH, { body: reply });
    const c = client(backend, storage);
    listen(c, timeline);

    const session = await c.signInAnonymously();

    assert.deepEqual(backend.routes(), [REFRESH]);
    assert.deepEqual(backend.requests[0].headers, baseHeaders());
    assert.equal(backend.requests[0].body, '{"refresh_token":"r-stored"}');
    const stored = storedSession(reply, anonUser('u-old'));
    assert.deepEqual(timeline, [
      ['INITIAL_SESSION', null],
      // The proof that storage takes the rotated token, before it is spent
      // (docs/protocol.md §13.2): the record rewritten with its own value.
      ['set', KEYS.anon, 'r-stored'],
      ['set', KEYS.anon, 'r-next'],
      ['set', KEYS.session, stored],
      ['SIGNED_IN', 'u-old'],
    ]);
    assert.equal(session.user.id, 'u-old');
    assert.equal(storage.data.get(KEYS.anon), 'r-next');
  });

  it('a dead stored token (401) is removed and a new user is created', async () => {
    const timeline = [];
    const backend = new Backend()
      .on(REFRESH, { status: 401, body: { code: 'invalid_refresh_token', message: 'spent' } })
      .on(ANON_SIGNIN, { body: tokens({ sub: 'u-new', refresh: 'r-new', user: anonUser('u-new') }) });
    const storage = recordingStorage({ [KEYS.anon]: 'r-dead' }, { timeline });
    const c = client(backend, storage);

    const session = await c.signInAnonymously();

    assert.deepEqual(backend.routes(), [REFRESH, ANON_SIGNIN]);
    assert.deepEqual(timeline.map(([op, key]) => [op, key]), [
      ['set', KEYS.anon], // the proof write before the resume (§13.2)
      ['remove', KEYS.anon],
      ['set', KEYS.anon],
      ['set', KEYS.session],
    ]);
    assert.equal(session.user.id, 'u-new');
    assert.equal(storage.data.get(KEYS.anon), 'r-new');
  });

  it('a transient resume failure keeps the stored token and creates nobody', async () => {
    const backend = new Backend().on(REFRESH, { status: 503, body: '', contentType: null });
    const storage = recordingStorage({ [KEYS.anon]: 'r-kept' });
    const c = client(backend, storage);
    await assert.rejects(c.signInAnonymously(), { name: 'PaywallError', code: 'http_503', status: 503 });
    assert.deepEqual(backend.routes(), [REFRESH]);
    assert.equal(storage.data.get(KEYS.anon), 'r-kept');
    // Only the proof write (the record's own value) before the request.
    assert.deepEqual(storage.timeline, [['set', KEYS.anon, 'r-kept']]);
  });

  it('anonymous_disabled rejects with the server code, nothing stored', async () => {
    const backend = new Backend().on(ANON_SIGNIN, {
      status: 403,
      body: { code: 'anonymous_disabled', message: 'Anonymous sign-in is disabled' },
    });
    const storage = recordingStorage();
    const c = client(backend, storage);
    const error = await c.signInAnonymously().catch((e) => e);
    assert.ok(error instanceof PaywallError);
    assert.ok(error instanceof Error);
    assert.equal(error.name, 'PaywallError');
    assert.equal(error.code, 'anonymous_disabled');
    assert.equal(error.status, 403);
    assert.equal(error.message, 'Anonymous sign-in is disabled');
    assert.deepEqual(storage.timeline, []);
    assert.equal(c.getCachedSession(), null);
  });

  it('without a message in the body, the message is the response\'s statusText, as in the reference', async () => {
    const backend = new Backend().on(
      ANON_SIGNIN,
      { status: 503, body: '', contentType: null, statusText: 'Down For Maintenance' },
      { status: 503, body: '', contentType: null }, // HTTP/2: no status text
    );
    const c = client(backend, recordingStorage());
    await assert.rejects(c.signInAnonymously(), { code: 'http_503', message: 'Down For Maintenance' });
    await assert.rejects(c.signInAnonymously(), { code: 'http_503', message: 'Request failed' });
  });

  it('a fetch that rejects is a network_error', async () => {
    const backend = new Backend().on(ANON_SIGNIN, new TypeError('fetch failed'));
    const c = client(backend, recordingStorage());
    await assert.rejects(c.signInAnonymously(), { code: 'network_error', status: undefined });
  });

  it('parallel calls collapse into one request and one session', async () => {
    const gate = held({ body: tokens({ user: anonUser('u1') }) });
    const backend = new Backend().on(ANON_SIGNIN, gate.reply);
    const c = client(backend, recordingStorage());
    const calls = [c.signInAnonymously(), c.signInAnonymously(), c.signInAnonymously({ userMeta: { a: 'b' } })];
    await settle();
    assert.equal(backend.requests.length, 1);
    gate.release();
    const sessions = await Promise.all(calls);
    assert.equal(backend.requests.length, 1);
    for (const s of sessions) assert.deepEqual(s, sessions[0]);
    assert.equal(sessions[0].user.id, 'u1');
  });

  it('plain calls joining a sign-in in flight share its completion: one request, one read, one object', async () => {
    const gate = held({ body: tokens({ user: anonUser('u1') }) });
    const backend = new Backend().on(ANON_SIGNIN, gate.reply);
    const timeline = [];
    const storage = recordingStorage({}, { timeline });
    const c = client(backend, storage);
    await c.ready();
    const read = storage.getItem;
    const reads = [];
    storage.getItem = (key) => {
      reads.push(key);
      return read(key);
    };
    const first = c.signInAnonymously();
    await settle();
    // The leader re-read the guest record before its request (§6.4).
    assert.deepEqual(reads, [KEYS.anon]);
    // Later calls (another task) join the sign-in in flight.
    const later = Array.from({ length: 50 }, () => c.signInAnonymously());
    // One Promise for the calls that joined, as the reference hands its
    // in-flight promise to every caller.
    for (const p of later) assert.equal(p, later[0]);
    await settle();
    assert.equal(backend.requests.length, 1);
    gate.release();
    const sessions = await Promise.all([first, ...later]);
    assert.equal(backend.requests.length, 1);
    for (const s of sessions) assert.equal(s, sessions[0], 'the very same object');
    assert.equal(sessions[0], c.getCachedSession());
    assert.equal(sessions[0].user.id, 'u1');
    // No joiner read storage; records written once, by the one completion.
    assert.deepEqual(reads, [KEYS.anon]);
    assert.deepEqual(timeline.filter((e) => e[0] === 'set').map((e) => e[1]), [KEYS.anon, KEYS.session]);
  });

  it('joined calls learn what the sign-in they joined learns: superseded by a sign-out, aborted by destroy', async () => {
    const gate = held({ body: tokens({ user: anonUser('u1') }) });
    const backend = new Backend().on(ANON_SIGNIN, gate.reply);
    const c = client(backend, recordingStorage());
    await c.ready();
    const first = c.signInAnonymously();
    await settle();
    const joined = c.signInAnonymously();
    await c.signOut();
    await assert.rejects(first, { code: 'superseded' });
    await assert.rejects(joined, { code: 'superseded' });
    gate.release();
    await settle();

    const gate2 = held({ body: tokens({ user: anonUser('u2'), sub: 'u2', refresh: 'r2' }) });
    const c2 = client(new Backend().on(ANON_SIGNIN, gate2.reply), recordingStorage());
    await c2.ready();
    const lead = c2.signInAnonymously();
    await settle();
    const waiting = c2.signInAnonymously();
    c2.destroy();
    await assert.rejects(lead, { code: 'aborted' });
    await assert.rejects(waiting, { code: 'aborted' });
    gate2.release();
  });

  it('a listener that signs in after the joined sign-in was superseded by another context is answered', async () => {
    const gate = held({ body: tokens({ user: anonUser('u1') }) });
    const backend = new Backend().on(ANON_SIGNIN, gate.reply);
    const storage = recordingStorage({}, { watch: true });
    const c = client(backend, storage);
    await c.ready();
    const first = c.signInAnonymously();
    await settle();
    const joined = c.signInAnonymously();
    // Another tab signs a guest in: the sign-in in flight is superseded,
    // then SIGNED_IN fires; a listener asks for a guest session right then.
    let fromListener;
    c.onAuthChange((event) => {
      if (event === 'SIGNED_IN') fromListener = c.signInAnonymously();
    });
    await settle();
    const other = tokens({ sub: 'u9', refresh: 'r9' });
    storage.external(KEYS.session, storedSession(other, anonUser('u9')));
    await assert.rejects(first, { code: 'superseded' });
    await assert.rejects(joined, { code: 'superseded' });
    assert.ok(fromListener, 'the listener ran');
    // The listener's call waits for the superseded request to end (never
    // two sign-ups at once), then finds the other tab's guest signed in.
    gate.release();
    const session = await Promise.race([
      fromListener,
      new Promise((_, reject) => setTimeout(() => reject(new Error('the listener\'s call never settled')), 500)),
    ]);
    assert.equal(session.user.id, 'u9');
    assert.equal(backend.requests.length, 1);
    c.destroy();
  });

  it('forceNewAnon creates a new user and replaces the resumable one', async () => {
    const { c, backend, storage, timeline } = await signedIn();
    listen(c, timeline);
    await settle();
    timeline.length = 0;
    backend.on(ANON_SIGNIN, { body: tokens({ sub: 'u2', refresh: 'r2', user: anonUser('u2') }) });

    const session = await c.signInAnonymously({ forceNewAnon: true });

    assert.deepEqual(backend.routes(), [ANON_SIGNIN]);
    assert.equal(session.user.id, 'u2');
    // The old guest's session record goes first, so a new guest record
    // never sits beside it (docs/protocol.md §13.8).
    assert.deepEqual(timeline.map((e) => e.slice(0, 2)), [
      ['remove', KEYS.session],
      ['set', KEYS.anon],
      ['set', KEYS.session],
      ['SIGNED_IN', 'u2'],
    ]);
    assert.equal(storage.data.get(KEYS.anon), 'r2');
  });

  it('rejects user meta that is not string to string', async () => {
    const backend = new Backend();
    const c = client(backend, recordingStorage());
    await assert.rejects(c.signInAnonymously({ userMeta: { n: 1 } }), { code: 'invalid_argument' });
    assert.equal(backend.requests.length, 0);
  });
});

describe('upgradeAnonymousToEmail', () => {
  it('updated: bearer + idempotency key, session patched, anon key removed, USER_UPDATED', async () => {
    const { c, backend, storage, timeline, session } = await signedIn();
    listen(c, timeline);
    await settle();
    timeline.length = 0;
    const named = { id: 'u1', email: 'a@b.c', is_anonymous: false };
    backend.on(UPGRADE, { body: { status: 'updated', user: named } });

    const result = await c.upgradeAnonymousToEmail({
      email: 'a@b.c',
      password: 'hunter22',
      userMeta: { from: 'guest' },
      idempotencyKey: 'idem-1',
    });

    const [req] = backend.requests;
    assert.equal(req.route, UPGRADE);
    assert.deepEqual(req.headers, baseHeaders({ bearer: session.access_token, idempotencyKey: 'idem-1' }));
    assert.equal(req.body, '{"email":"a@b.c","password":"hunter22","user_meta":{"from":"guest"}}');
    const upgraded = { ...session, user: named };
    assert.deepEqual(result, { kind: 'updated', session: upgraded });
    assert.deepEqual(timeline, [
      ['remove', KEYS.anon],
      ['set', KEYS.session, JSON.stringify(upgraded)],
      ['USER_UPDATED', 'u1'],
    ]);
    assert.equal(storage.data.has(KEYS.anon), false);
    assert.deepEqual(c.getCachedUser(), named);
  });

  it('confirmation_required: nothing changes locally', async () => {
    const { c, backend, storage, timeline, session } = await signedIn();
    backend.on(UPGRADE, { body: { status: 'confirmation_required', email: 'a@b.c' } });
    const result = await c.upgradeAnonymousToEmail({ email: 'a@b.c', password: 'hunter22' });
    assert.deepEqual(result, { kind: 'confirmation_required', email: 'a@b.c' });
    assert.deepEqual(backend.requests[0].headers, baseHeaders({ bearer: session.access_token }));
    assert.deepEqual(timeline, []);
    assert.equal(storage.data.get(KEYS.anon), 'r1');
    assert.deepEqual(c.getCachedSession(), session);
  });

  it('without a session: not_authenticated, no request', async () => {
    const backend = new Backend();
    const c = client(backend, recordingStorage());
    await assert.rejects(c.upgradeAnonymousToEmail({ email: 'a@b.c', password: 'x' }), { code: 'not_authenticated' });
    assert.equal(backend.requests.length, 0);
  });

  it('requires email and password', async () => {
    const { c } = await signedIn();
    await assert.rejects(c.upgradeAnonymousToEmail({ password: 'x' }), { code: 'invalid_argument' });
  });

  it('a header with a newline is never sent; the body carries any text', async () => {
    const { c, backend, storage, timeline, session } = await signedIn();
    await assert.rejects(
      c.upgradeAnonymousToEmail({ email: 'a@b.c', password: 'x', idempotencyKey: 'k\nAuthorization: x' }),
      { code: 'invalid_argument' },
    );
    assert.equal(backend.requests.length, 0);
    // A server's access token with a newline would go out as a header: the
    // request fails without being sent.
    const bad = new Backend().on(ANON_SIGNIN, { body: { ...tokens({ user: anonUser('u9') }), access_token: 'a\nb' } });
    const c2 = client(bad, recordingStorage());
    assert.equal((await c2.signInAnonymously()).access_token, 'a\nb');
    await assert.rejects(c2.upgradeAnonymousToEmail({ email: 'a@b.c', password: 'x' }), {
      code: 'network_error',
      message: 'request not sent: a header value holds a control character',
    });
    assert.deepEqual(bad.routes(), [ANON_SIGNIN]);
    assert.deepEqual(timeline, []);
    assert.deepEqual(c.getCachedSession(), session);

    // Newlines and non-ASCII in the body (after the headers) arrive intact.
    backend.on(UPGRADE, { body: { status: 'confirmation_required', email: 'é@b.c' } });
    await c.upgradeAnonymousToEmail({ email: 'é@b.c', password: 'pa\nß✓', idempotencyKey: 'k-2' });
    const [req] = backend.requests;
    assert.deepEqual(req.headers, baseHeaders({ bearer: session.access_token, idempotencyKey: 'k-2' }));
    assert.deepEqual(JSON.parse(req.body), { email: 'é@b.c', password: 'pa\nß✓' });
    assert.equal(storage.data.get(KEYS.anon), 'r1');
  });
});

describe('signOut', () => {
  it('soft: no request, session removed, anon key kept, then resumable', async () => {
    const { c, backend, storage, timeline } = await signedIn();
    listen(c, timeline);
    await settle();
    timeline.length = 0;

    await c.signOut();
    await settle();

    assert.equal(backend.requests.length, 0);
    assert.deepEqual(timeline, [['remove', KEYS.session], ['SIGNED_OUT', null]]);
    assert.equal(storage.data.get(KEYS.anon), 'r1');
    assert.equal(c.getCachedSession(), null);

    backend.on(REFRESH, { body: tokens({ sub: 'u1', refresh: 'r1b' }) });
    const resumed = await c.signInAnonymously();
    assert.deepEqual(backend.routes(), [REFRESH]);
    assert.equal(backend.requests[0].body, '{"refresh_token":"r1"}');
    assert.equal(resumed.user.id, 'u1');
  });

  it('hard: both records removed and the session revoked with its bearer', async () => {
    const { c, backend, storage, timeline, session } = await signedIn();
    backend.on(SIGNOUT, { body: { ok: true } });

    await c.signOut({ forgetAnonymous: true });
    await settle();

    assert.deepEqual(timeline, [['remove', KEYS.session], ['remove', KEYS.anon]]);
    assert.equal(storage.data.size, 0);
    assert.deepEqual(backend.routes(), [SIGNOUT]);
    const [req] = backend.requests;
    assert.deepEqual(req.headers, baseHeaders({ body: false, bearer: session.access_token }));
    assert.equal(req.body, undefined);
    assert.deepEqual(req.keys, ['credentials', 'headers', 'method', 'redirect']);
  });

  it('a failing /auth/signout is swallowed', async () => {
    const { c, backend } = await signedIn();
    backend.on(SIGNOUT, new TypeError('offline'));
    await c.signOut({ forgetAnonymous: true });
    await settle();
    assert.equal(c.getCachedSession(), null);
  });
});

describe('refresh and getAccessToken', () => {
  /**
   * Signed in with an 80 ms token: its proactive refresh (half-way through
   * a lifetime shorter than the lead) is due 40 ms after NOW.
   */
  async function dueSoon() {
    const timeline = [];
    const backend = new Backend().on(ANON_SIGNIN, { body: tokens({ user: anonUser('u1'), expiresIn: 0.08 }) });
    const storage = recordingStorage({}, { timeline });
    const c = client(backend, storage);
    listen(c, timeline);
    await c.signInAnonymously();
    return { c, backend, storage, timeline };
  }

  /**
   * The frozen clock moved past the deadline, until `done()` holds (at
   * most 5 s, so a loaded machine does not fail the test) or, without
   * `done`, for 100 ms: several wakes of a 40 ms timer.
   */
  async function afterDeadline(done) {
    Date.now = () => NOW + 50;
    try {
      if (done === undefined) await settle(100);
      for (let waited = 0; done !== undefined && !done() && waited < 5000; waited += 10) await settle(10);
    } finally {
      Date.now = () => NOW;
    }
  }

  it('the timer refreshes proactively once the deadline has passed, not before', async () => {
    const { c, backend, storage, timeline } = await dueSoon();
    backend.on(REFRESH, { body: tokens({ refresh: 'r2', user: anonUser('u1') }) });
    await settle(60);
    // Real time passed, the (frozen) clock did not: nothing is due.
    assert.deepEqual(backend.routes(), [ANON_SIGNIN]);
    timeline.length = 0;
    await afterDeadline(() => timeline.length === 4);
    assert.deepEqual(backend.routes(), [ANON_SIGNIN, REFRESH]);
    assert.equal(backend.requests[1].body, '{"refresh_token":"r1"}');
    assert.deepEqual(
      timeline.map(([what, key]) => [what, key]),
      [['set', KEYS.anon], ['set', KEYS.anon], ['set', KEYS.session], ['TOKEN_REFRESHED', 'u1']],
    );
    assert.equal(storage.data.get(KEYS.anon), 'r2');
    assert.equal(c.getCachedSession().refresh_token, 'r2');
    c.destroy();
  });

  it('clients share one timer: each acts on its own deadline, an ended one on none', async () => {
    const due = await dueSoon();
    const ended = await dueSoon();
    const later = await signedIn();
    for (const { backend } of [due, ended, later]) {
      backend.on(REFRESH, { body: tokens({ refresh: 'r2', user: anonUser('u1') }) });
    }
    ended.c.destroy();
    // The ended client's deadline was the due one's: it would have fired
    // with it.
    await afterDeadline(() => due.storage.data.get(KEYS.anon) === 'r2');
    assert.deepEqual(due.backend.routes(), [ANON_SIGNIN, REFRESH]);
    assert.deepEqual(ended.backend.routes(), [ANON_SIGNIN]);
    assert.deepEqual(later.backend.routes(), []);
    due.c.destroy();
    later.c.destroy();
  });

  it('a deadline that moved later is waited out: the earlier timer wakes and asks nothing', async () => {
    const { c, backend } = await dueSoon();
    // A manual refresh moves the next refresh an hour out.
    backend.on(REFRESH, { body: tokens({ refresh: 'r2', user: anonUser('u1') }) });
    await c.refresh();
    await afterDeadline();
    assert.deepEqual(backend.routes(), [ANON_SIGNIN, REFRESH]);
    c.destroy();
  });

  it('refresh rotates both tokens, writes the anon key, TOKEN_REFRESHED', async () => {
    const { c, backend, storage, timeline } = await signedIn();
    listen(c, timeline);
    await settle();
    timeline.length = 0;
    const reply = tokens({ sub: 'u1', refresh: 'r2' });
    backend.on(REFRESH, { body: reply });

    const session = await c.refresh();

    assert.equal(backend.requests[0].body, '{"refresh_token":"r1"}');
    assert.deepEqual(backend.requests[0].headers, baseHeaders());
    const stored = storedSession(reply, anonUser('u1'));
    assert.deepEqual(timeline, [
      ['set', KEYS.anon, 'r1'], // the proof write before the token is spent (§13.2)
      ['set', KEYS.anon, 'r2'],
      ['set', KEYS.session, stored],
      ['TOKEN_REFRESHED', 'u1'],
    ]);
    assert.deepEqual(session, JSON.parse(stored));
    assert.equal(storage.data.get(KEYS.anon), 'r2');
  });

  it('refresh with a dead token resolves null, signs out and forgets the anon key', async () => {
    const { c, backend, storage, timeline } = await signedIn();
    listen(c, timeline);
    await settle();
    timeline.length = 0;
    backend.on(REFRESH, { status: 401, body: { error: 'invalid_refresh_token' } });

    assert.equal(await c.refresh(), null);
    assert.deepEqual(timeline, [
      ['set', KEYS.anon, 'r1'], // the proof write (§13.2)
      ['remove', KEYS.anon],
      ['remove', KEYS.session],
      ['SIGNED_OUT', null],
    ]);
    assert.equal(storage.data.size, 0);
    assert.equal(await c.getAccessToken(), null);
  });

  it('refresh without a session resolves null without a request', async () => {
    const backend = new Backend();
    const c = client(backend, recordingStorage());
    assert.equal(await c.refresh(), null);
    assert.equal(backend.requests.length, 0);
  });

  it('getAccessToken on a fresh session answers without a request', async () => {
    const { c, backend, session } = await signedIn();
    assert.equal(await c.getAccessToken(), session.access_token);
    assert.equal(backend.requests.length, 0);
  });

  it('getAccessToken on a stale session refreshes once for all callers', async () => {
    const backend = new Backend();
    const stale = tokens({ user: anonUser('u1'), expiresIn: 30 });
    const fresh = tokens({ sub: 'u1', refresh: 'r2' });
    const gate = held({ body: fresh });
    backend.on(ANON_SIGNIN, { body: stale }).on(REFRESH, gate.reply);
    const c = client(backend, recordingStorage());
    await c.signInAnonymously();
    const calls = [c.getAccessToken(), c.getAccessToken()];
    await settle();
    gate.release();
    assert.deepEqual(await Promise.all(calls), [fresh.access_token, fresh.access_token]);
    assert.deepEqual(backend.routes(), [ANON_SIGNIN, REFRESH]);
  });

  it('getAccessToken without a session is null', async () => {
    const c = client(new Backend(), recordingStorage());
    assert.equal(await c.getAccessToken(), null);
  });
});

describe('onAuthChange', () => {
  it('INITIAL_SESSION comes first, for listeners added before and after sign-in', async () => {
    const backend = new Backend().on(ANON_SIGNIN, { body: tokens({ user: anonUser('u1') }) });
    const c = client(backend, recordingStorage());
    const early = listen(c).timeline;
    const signIn = c.signInAnonymously(); // same tick as the subscription
    await signIn;
    const late = listen(c).timeline;
    await settle();
    assert.deepEqual(early, [['INITIAL_SESSION', null], ['SIGNED_IN', 'u1']]);
    assert.deepEqual(late, [['INITIAL_SESSION', 'u1']]);
  });

  it('a listener added during an emit is not visited by it; its first call is INITIAL_SESSION', async () => {
    const backend = new Backend().on(ANON_SIGNIN, { body: tokens({ user: anonUser('u1') }) });
    const c = client(backend, recordingStorage());
    const inner = [];
    c.onAuthChange((event) => {
      if (event === 'SIGNED_IN') c.onAuthChange((e, s) => inner.push([e, s && s.user.id]));
    });
    await c.signInAnonymously();
    await settle();
    assert.deepEqual(inner, [['INITIAL_SESSION', 'u1']]);
  });

  it('a throwing listener breaks neither the client nor other listeners', async () => {
    const backend = new Backend().on(ANON_SIGNIN, { body: tokens({ user: anonUser('u1') }) });
    const c = client(backend, recordingStorage());
    const logged = [];
    const original = console.error;
    console.error = (...args) => logged.push(args);
    try {
      c.onAuthChange(() => {
        throw new Error('listener bug');
      });
      const { timeline } = listen(c);
      const session = await c.signInAnonymously();
      await settle();
      assert.equal(session.user.id, 'u1');
      assert.deepEqual(timeline, [['INITIAL_SESSION', null], ['SIGNED_IN', 'u1']]);
      assert.equal(logged.length, 2);
      assert.equal(await c.getAccessToken(), session.access_token);
    } finally {
      console.error = original;
    }
  });

  it('unsubscribe stops delivery, also before INITIAL_SESSION', async () => {
    const backend = new Backend().on(ANON_SIGNIN, { body: tokens({ user: anonUser('u1') }) });
    const c = client(backend, recordingStorage());
    const { timeline, unsubscribe } = listen(c);
    unsubscribe();
    await c.signInAnonymously();
    await settle();
    assert.deepEqual(timeline, []);
  });

  it('a listener may call the client; calls made inside an emit run after it', async () => {
    const backend = new Backend().on(ANON_SIGNIN, { body: tokens({ user: anonUser('u1') }) });
    const c = client(backend, recordingStorage());
    const { timeline } = listen(c);
    c.onAuthChange((event) => {
      if (event === 'SIGNED_IN') c.signOut();
    });
    await c.signInAnonymously();
    await settle();
    assert.deepEqual(timeline, [['INITIAL_SESSION', null], ['SIGNED_IN', 'u1'], ['SIGNED_OUT', null]]);
  });
});

describe('storage', () => {
  it('restores a session written by the reference client', async () => {
    const reply = tokens({ sub: 'u9', refresh: 'r9' });
    // The reference stores extra user keys verbatim; after a resume it even
    // stores the placeholder id "" (docs/protocol.md §12.1): the access token names the user.
    const written = JSON.stringify({
      access_token: reply.access_token,
      refresh_token: 'r9',
      expires_at: FRESH_S * 1000,
      user: { id: '', email: null, is_anonymous: true, extra: 'kept by the reference' },
    });
    const backend = new Backend();
    const storage = recordingStorage({ [KEYS.session]: written, [KEYS.anon]: 'r9' });
    const c = client(backend, storage);
    await c.ready();
    const { timeline } = listen(c);
    await settle();
    assert.deepEqual(timeline, [['INITIAL_SESSION', 'u9']]);
    assert.deepEqual(c.getCachedSession(), {
      access_token: reply.access_token,
      refresh_token: 'r9',
      expires_at: FRESH_S * 1000,
      // The id comes from the access token; the other keys stay as stored.
      user: { ...anonUser('u9'), extra: 'kept by the reference' },
    });
    assert.equal(await c.getAccessToken(), reply.access_token);
    assert.equal((await c.signInAnonymously()).user.id, 'u9');
    assert.equal(backend.requests.length, 0);
  });

  it('keeps the user object the server sent: unknown keys and nulls, nothing added', async () => {
    // Keys the core does not know, nested and null; no is_anonymous on the
    // named user of the refresh (absent means false, and stays absent).
    const guest = { id: 'u1', email: null, is_anonymous: true, created_at: '2026-11-27', app_metadata: { provider: null, roles: ['a'] }, phone: null };
    const named = { id: 'u1', email: 'a@b.c', plan: { tier: 'trial', seats: 3 }, avatar: null };
    const backend = new Backend()
      .on(ANON_SIGNIN, { body: tokens({ user: guest }) })
      .on(REFRESH, { body: tokens({ refresh: 'r2', anonymous: false, user: named }) });
    const storage = recordingStorage();
    const c = client(backend, storage);

    const session = await c.signInAnonymously();
    assert.deepEqual(session.user, guest);
    assert.deepEqual(JSON.parse(storage.data.get(KEYS.session)).user, guest);
    assert.equal(c.getCachedUser(), c.getCachedSession().user);

    const refreshed = await c.refresh();
    assert.deepEqual(refreshed.user, named);
    assert.equal('is_anonymous' in refreshed.user, false);
    assert.equal(storage.data.get(KEYS.session), storedSession(tokens({ refresh: 'r2', anonymous: false }), named));

    // A new client on the same storage (a reload) sees the same object.
    const again = client(new Backend(), storage);
    await again.ready();
    assert.deepEqual(again.getCachedSession().user, named);
    assert.equal(again.getCachedSession(), again.getCachedSession(), 'stable identity');
    c.destroy();
    again.destroy();
  });

  it('writes records the reference client reads back (its hydrate validation)', async () => {
    const { storage, session } = await signedIn();
    const raw = storage.data.get(KEYS.session);
    const parsed = JSON.parse(raw);
    assert.equal(typeof parsed.access_token, 'string');
    assert.equal(typeof parsed.refresh_token, 'string');
    assert.equal(typeof parsed.expires_at, 'number');
    assert.ok(parsed.user);
    assert.equal(raw, JSON.stringify(parsed)); // compact, as JSON.stringify writes it
    assert.equal(storage.data.get(KEYS.anon), session.refresh_token); // raw string, not JSON
  });

  it('an asynchronous adapter is awaited: the promise resolves after both writes finished', async () => {
    const timeline = [];
    const storage = recordingStorage({}, { timeline, async: true, delay: 5 });
    const inner = { setItem: storage.setItem };
    storage.setItem = (key, value) =>
      inner.setItem(key, value).then(() => {
        timeline.push(['written', key]);
      });
    const backend = new Backend().on(ANON_SIGNIN, { body: tokens({ user: anonUser('u1') }) });
    const c = client(backend, storage);
    listen(c, timeline);
    await c.signInAnonymously();
    timeline.push(['resolved']);
    assert.deepEqual(timeline.map((e) => e.slice(0, 2)), [
      ['INITIAL_SESSION', null],
      ['set', KEYS.anon],
      ['written', KEYS.anon],
      ['set', KEYS.session],
      ['written', KEYS.session],
      ['SIGNED_IN', 'u1'],
      ['resolved'],
    ]);
  });

  it('calls made before an asynchronous restore wait for it', async () => {
    const reply = tokens({ sub: 'u3', refresh: 'r3' });
    const storage = recordingStorage(
      { [KEYS.session]: storedSession(reply, anonUser('u3')) },
      { async: true, delay: 10 },
    );
    const backend = new Backend();
    const c = client(backend, storage);
    assert.equal(c.getCachedSession(), null); // not restored yet
    const [token, session] = await Promise.all([c.getAccessToken(), c.signInAnonymously()]);
    assert.equal(token, reply.access_token);
    assert.equal(session.user.id, 'u3');
    assert.equal(backend.requests.length, 0);
  });

  it('a failed write rejects the call with storage_failed; the session stays in memory', async () => {
    const storage = recordingStorage();
    storage.setItem = () => {
      throw new Error('quota exceeded');
    };
    const warn = console.warn;
    console.warn = () => {};
    try {
      const backend = new Backend().on(ANON_SIGNIN, { body: tokens({ user: anonUser('u1') }) });
      const c = client(backend, storage);
      await assert.rejects(c.signInAnonymously(), { code: 'storage_failed' });
      assert.equal(c.getCachedUser().id, 'u1');
      c.destroy();
    } finally {
      console.warn = warn;
    }
  });

  it('pull: signed out here, getAccessToken re-reads the session key and adopts another context\'s sign-in', async () => {
    for (const async of [false, true]) {
      const timeline = [];
      const storage = recordingStorage({}, { timeline, async, delay: 2 }); // no watch
      const backend = new Backend();
      const c = client(backend, storage);
      listen(c, timeline);
      await c.ready();
      await settle();
      const reply = tokens({ sub: 'u7', refresh: 'r7' });
      storage.data.set(KEYS.session, storedSession(reply, anonUser('u7'))); // nobody told us
      assert.equal(await c.getAccessToken(), reply.access_token, `async ${async}`);
      // Adopted without a request. The session is not written back, but
      // the guest key is brought in step with it (the other context may
      // have died before writing it), then SIGNED_IN.
      assert.deepEqual(
        timeline,
        [['INITIAL_SESSION', null], ['set', KEYS.anon, 'r7'], ['SIGNED_IN', 'u7']],
        `async ${async}`,
      );
      assert.equal(backend.requests.length, 0);
      assert.equal(c.getCachedUser().id, 'u7');
    }
  });

  it('pull: a sign-in reads the guest record fresh and resumes the token another context rotated', async () => {
    const storage = recordingStorage({ [KEYS.anon]: 'r1' }); // no watch
    const backend = new Backend().on(REFRESH, { body: tokens({ sub: 'u1', refresh: 'r3', user: anonUser('u1') }) });
    const c = client(backend, storage);
    await c.ready();
    storage.data.set(KEYS.anon, 'r2'); // another tab rotated r1 -> r2 and did not tell us
    const session = await c.signInAnonymously();
    assert.equal(backend.requests[0].body, '{"refresh_token":"r2"}', 'the fresh token, not the spent r1');
    assert.equal(session.user.id, 'u1');
    assert.equal(storage.data.get(KEYS.anon), 'r3');
  });

  it('pull: a failed read is not an absent record (the guest is still resumed)', async () => {
    for (const async of [false, true]) {
      const storage = recordingStorage({ [KEYS.anon]: 'r1' }, { async });
      const backend = new Backend().on(REFRESH, { body: tokens({ sub: 'u1', refresh: 'r2', user: anonUser('u1') }) });
      const c = client(backend, storage);
      await c.ready();
      storage.getItem = () => {
        if (async) return Promise.reject(new Error('quota'));
        throw new Error('quota');
      };
      await c.signInAnonymously();
      assert.deepEqual(backend.routes(), [REFRESH], `async ${async}: resumed, no new guest`);
      assert.equal(backend.requests[0].body, '{"refresh_token":"r1"}');
    }
  });

  it('watch: another context signing in and out is reported', async () => {
    const storage = recordingStorage({}, { watch: true });
    const c = client(new Backend(), storage);
    const { timeline } = listen(c);
    await settle();
    const reply = tokens({ sub: 'u7', refresh: 'r7' });
    storage.external(KEYS.session, storedSession(reply, anonUser('u7')));
    await settle();
    assert.equal(c.getCachedUser().id, 'u7');
    storage.external(KEYS.session, null);
    await settle();
    assert.deepEqual(timeline, [['INITIAL_SESSION', null], ['SIGNED_IN', 'u7'], ['SIGNED_OUT', null]]);
    assert.equal(c.getCachedSession(), null);
  });

  it('watch: an echo of our own write changes nothing', async () => {
    const timeline = [];
    const storage = recordingStorage({}, { watch: true, timeline });
    const backend = new Backend().on(ANON_SIGNIN, { body: tokens({ user: anonUser('u1') }) });
    const c = client(backend, storage);
    listen(c, timeline);
    await c.signInAnonymously();
    const before = timeline.length;
    storage.external(KEYS.session, storage.data.get(KEYS.session));
    await settle();
    assert.equal(timeline.length, before);
  });
});

describe('construction and lifecycle', () => {
  it('invalid_config for a missing or unusable paywallId or apiOrigin', () => {
    const cases = [
      undefined,
      {},
      { apiOrigin: ORIGIN },
      { paywallId: PID },
      { paywallId: '', apiOrigin: ORIGIN },
      { paywallId: 'a/b', apiOrigin: ORIGIN },
      { paywallId: PID, apiOrigin: 'not a url' },
      { paywallId: PID, apiOrigin: 'ftp://example.test' },
      { paywallId: 7, apiOrigin: ORIGIN },
      { paywallId: PID, apiOrigin: { href: ORIGIN } },
      // A storage without the three methods.
      { paywallId: PID, apiOrigin: ORIGIN, storage: {} },
      { paywallId: PID, apiOrigin: ORIGIN, storage: 'localStorage' },
      { paywallId: PID, apiOrigin: ORIGIN, storage: { getItem() {}, setItem() {} } },
    ];
    for (const options of cases) {
      assert.throws(
        () => new AuthClient(options),
        (e) => e instanceof PaywallError && e.code === 'invalid_config' && e.name === 'PaywallError',
        JSON.stringify(options),
      );
    }
  });

  it('plain http:// is refused before any network use unless the host is loopback or the app opts in', async () => {
    const backend = new Backend();
    for (const apiOrigin of ['http://api.example.test', 'HTTP://10.0.0.7:8080', 'http://127.example.test']) {
      assert.throws(
        () => client(backend, recordingStorage(), { apiOrigin }),
        (e) =>
          e instanceof PaywallError &&
          e.code === 'invalid_config' &&
          /clear text/.test(e.message) &&
          /allowInsecureHttp: true/.test(e.message),
        apiOrigin,
      );
    }
    // Credentials in the origin are refused too.
    assert.throws(() => client(backend, recordingStorage(), { apiOrigin: 'https://u:p@api.example.test' }), {
      code: 'invalid_config',
    });
    assert.equal(backend.requests.length, 0);

    // Loopback needs no opt-in; the opt-in works for any host. Requests go
    // to the origin as a browser's URL.origin spells it.
    for (const [apiOrigin, extra, origin] of [
      ['http://127.0.0.1:8787/x', {}, 'http://127.0.0.1:8787'],
      ['http://LOCALHOST:80', {}, 'http://localhost'],
      ['http://[::1]:9000', {}, 'http://[::1]:9000'],
      ['http://api.example.test', { allowInsecureHttp: true }, 'http://api.example.test'],
      ['https://API.example.test:443/', {}, 'https://api.example.test'],
    ]) {
      // The stub routes by URL: outside ORIGIN, the route is the whole URL.
      const url = `${origin}/api/v1/paywall/${PID}/auth/anonymous/signin`;
      const route = origin === ORIGIN ? ANON_SIGNIN : url;
      const b = new Backend().on(route, { body: tokens({ user: anonUser('u1') }) });
      const c = client(b, recordingStorage(), { apiOrigin, ...extra });
      await c.signInAnonymously();
      assert.equal(b.requests[0].url, `${origin}/api/v1/paywall/${PID}/auth/anonymous/signin`, apiOrigin);
      c.destroy();
    }
  });

  it('a redirect is refused, not followed: network_error saying so, nothing stored, nothing re-sent', async () => {
    const backend = new Backend().on(
      ANON_SIGNIN,
      { status: 307, headers: { location: 'http://evil.example.test/steal' } },
      // What a browser hands back for redirect: 'manual'.
      { response: { type: 'opaqueredirect', status: 0, statusText: '', headers: new Headers() } },
    );
    const storage = recordingStorage();
    const c = client(backend, storage);
    await assert.rejects(c.signInAnonymously(), (e) => {
      assert.equal(e.code, 'network_error');
      assert.match(e.message, /refused a redirect \(HTTP 307 to http:\/\/evil\.example\.test\/steal\)/);
      assert.match(e.message, /follows no redirect/);
      return true;
    });
    await assert.rejects(c.signInAnonymously(), (e) => e.code === 'network_error' && /refused a redirect \(its target hidden/.test(e.message));
    assert.deepEqual(backend.routes(), [ANON_SIGNIN, ANON_SIGNIN]);
    assert.deepEqual(storage.timeline, []);
    assert.equal(c.getCachedSession(), null);
  });

  it('a redirect on refresh keeps the session and both records (it is not the server declaring the token dead)', async () => {
    const { c, backend, storage, session } = await signedIn();
    backend.on(REFRESH, { status: 308, headers: { location: 'https://elsewhere.example.test/' } });
    await assert.rejects(c.refresh(), (e) => e.code === 'network_error' && /refused a redirect \(HTTP 308/.test(e.message));
    // Only the proof write (the record's own value) before the request.
    assert.deepEqual(storage.timeline, [['set', KEYS.anon, session.refresh_token]]);
    assert.equal(c.getCachedSession().refresh_token, session.refresh_token);
    assert.equal(storage.data.get(KEYS.anon), session.refresh_token);
  });

  it('clients of different paywalls, made in turn, each keep to their own keys', async () => {
    const storage = recordingStorage();
    for (const [pid, user] of [['pw_a', 'ua'], ['pw_b', 'ub'], ['pw_a', 'ua'], ['pw_b', 'ub']]) {
      const body = JSON.stringify(tokens({ sub: user, refresh: `r-${pid}`, user: anonUser(user) }));
      const fetch = async () => new Response(body, { headers: { 'content-type': 'application/json' } });
      const c = new AuthClient({ paywallId: pid, apiOrigin: ORIGIN, fetch, storage });
      // The second client of each paywall resumes its own guest.
      assert.equal((await c.signInAnonymously()).user.id, user);
      c.free();
    }
    assert.deepEqual([...storage.data.keys()].sort(), ['pw-pw_a-anon-rt-v1', 'pw-pw_a-auth-v1', 'pw-pw_b-anon-rt-v1', 'pw-pw_b-auth-v1']);
    assert.equal(storage.data.get('pw-pw_b-anon-rt-v1'), 'r-pw_b');
  });

  it('defaults to a memory store when there is no localStorage', async () => {
    const backend = new Backend().on(ANON_SIGNIN, { body: tokens({ user: anonUser('u1') }) });
    const c = new AuthClient({ paywallId: PID, apiOrigin: ORIGIN, fetch: backend.fetch });
    assert.equal((await c.signInAnonymously()).user.id, 'u1');
  });

  it('ready() resolves once restored', async () => {
    const c = client(new Backend(), recordingStorage({}, { async: true, delay: 5 }));
    await c.ready();
    await c.ready();
  });

  it('destroy: pending calls reject with aborted and nothing is written afterwards', async () => {
    const gate = held({ body: tokens({ user: anonUser('u1') }) });
    const backend = new Backend().on(ANON_SIGNIN, gate.reply);
    const storage = recordingStorage();
    const c = client(backend, storage);
    const { timeline } = listen(c);
    const pending = c.signInAnonymously();
    await settle();
    c.destroy();
    await assert.rejects(pending, { code: 'aborted' });
    gate.release();
    await settle();
    assert.deepEqual(storage.timeline, []);
    assert.deepEqual(timeline, [['INITIAL_SESSION', null]]);
    await assert.rejects(c.getAccessToken(), { code: 'aborted' });
  });

  it('free: ends the client like destroy, later calls reject with aborted, a second free is harmless', async () => {
    const gate = held({ body: tokens({ user: anonUser('u1') }) });
    const storage = recordingStorage();
    const c = client(new Backend().on(ANON_SIGNIN, gate.reply), storage);
    // One sign-in in wasm, two joined to it on the JS side.
    const calls = Promise.allSettled([c.signInAnonymously(), c.signInAnonymously(), c.signInAnonymously()]);
    await settle();
    c.free();
    for (const r of await calls) assert.equal(r.reason?.code, 'aborted');
    await assert.rejects(c.signInAnonymously(), { code: 'aborted' });
    assert.throws(() => c.getCachedSession(), { code: 'aborted' });
    c.free();
    c.destroy();
    gate.release();
    await settle();
    assert.deepEqual(storage.timeline, []);
  });

  it('a client the app drops without destroy is collected and ended: watches released, waiting calls aborted', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc');
    const storage = recordingStorage({}, { watch: true });
    let watching = 0;
    const watch = storage.watch;
    storage.watch = (key, cb) => {
      watching += 1;
      const unwatch = watch(key, cb);
      return () => {
        watching -= 1;
        unwatch();
      };
    };
    const gate = held({ body: tokens({ user: anonUser('u1') }) });
    // A sign-in in flight (its timeout armed) and two calls joined to it on
    // the JS side; only their promises stay reachable.
    const { calls } = await (async () => {
      const c = client(new Backend().on(ANON_SIGNIN, gate.reply), storage);
      await c.ready();
      const all = Promise.allSettled([c.signInAnonymously(), c.signInAnonymously(), c.signInAnonymously()]);
      await settle();
      return { calls: all };
    })();
    assert.equal(watching, 2);
    for (let i = 0; i < 50 && watching > 0; i++) {
      gc();
      await settle(5);
    }
    assert.equal(watching, 0, 'the dropped client was not collected');
    for (const r of await calls) assert.equal(r.reason?.code, 'aborted');
    gate.release();
    await settle();
    assert.deepEqual(storage.timeline, [], 'nothing written after the end');
  });

  it('a listener that never ran is not called after destroy', async () => {
    const c = client(new Backend(), recordingStorage());
    const { timeline } = listen(c);
    c.destroy();
    await settle();
    assert.deepEqual(timeline, []);
  });
});
