// Shared fixtures of the JS suites: the built package, a scripted stub
// backend behind `fetch`, a recording storage adapter and an event log.

import { AuthClient, PaywallError } from '../pkg/node.js';

export { AuthClient, PaywallError };

export const PID = 'pw_test';
export const ORIGIN = 'https://api.example.test';
export const KEYS = {
  session: `pw-${PID}-auth-v1`,
  anon: `pw-${PID}-anon-rt-v1`,
  visitor: 'pw-visitor-id',
};
/** The core's X-SDK-Version (its crate version). */
export const SDK_VERSION = '0.1.0';

/**
 * The suites run on a frozen wall clock (the core reads `Date.now()` through
 * the adapter for every input), so stored expiries are exact.
 */
export const NOW = Date.now();
Date.now = () => NOW;

/** Unix seconds an hour from now: a fresh token's expiry. */
export const FRESH_S = Math.floor(NOW / 1000) + 3600;

const b64url = (s) => Buffer.from(s).toString('base64url');

/** An unsigned JWT with these claims (the core reads claims, never verifies). */
export function jwt(claims) {
  return `${b64url('{"alg":"HS256","typ":"JWT"}')}.${b64url(JSON.stringify(claims))}.c2ln`;
}

/** A RawTokens reply (docs/protocol.md §2.1). */
export function tokens({ sub = 'u1', refresh = 'r1', expiresIn = 3600, user, anonymous = true } = {}) {
  const reply = {
    access_token: jwt({ sub, is_anonymous: anonymous, email: '' }),
    refresh_token: refresh,
    expires_in: expiresIn,
    expires_at: Math.floor(NOW / 1000) + expiresIn,
    token_type: 'bearer',
  };
  if (user !== undefined) reply.user = user;
  return reply;
}

export const anonUser = (id = 'u1') => ({ id, email: null, is_anonymous: true });

/**
 * The stored session for a token reply, in the reference client's layout.
 * The core takes the expiry from `expires_in` on the local clock (robust
 * to a device clock that is off); the reference from `expires_at`.
 */
export function storedSession(reply, user) {
  return JSON.stringify({
    access_token: reply.access_token,
    refresh_token: reply.refresh_token,
    expires_at: NOW + reply.expires_in * 1000,
    user,
  });
}

/**
 * A scripted backend. `on(route, ...replies)` queues replies for a route
 * below `/api/v1/paywall/{pid}/`; a reply is `{status, body, contentType}`,
 * an Error (fetch rejects), or a function of the request returning either
 * (possibly as a Promise, to hold the response back).
 */
export class Backend {
  constructor() {
    this.requests = [];
    this.queues = new Map();
    this.fetch = this.fetch.bind(this);
  }

  on(route, ...replies) {
    if (!this.queues.has(route)) this.queues.set(route, []);
    this.queues.get(route).push(...replies);
    return this;
  }

  async fetch(url, init) {
    const prefix = `${ORIGIN}/api/v1/paywall/${PID}/`;
    const req = {
      url,
      route: url.startsWith(prefix) ? url.slice(prefix.length) : url,
      method: init.method,
      headers: { ...init.headers },
      body: init.body,
      credentials: init.credentials,
      redirect: init.redirect,
      keys: Object.keys(init).sort(),
    };
    this.requests.push(req);
    let reply = this.queues.get(req.route)?.shift();
    if (typeof reply === 'function') reply = await reply(req);
    if (reply === undefined) throw new TypeError(`stub backend: no reply queued for ${req.route}`);
    if (reply instanceof Error) throw reply;
    if (reply.response) return reply.response; // a ready-made Response-like object
    const { status = 200, body = null, contentType = 'application/json', statusText, headers = {} } = reply;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const noBody = status === 204 || (status >= 300 && status < 400);
    return new Response(noBody ? null : text, {
      status,
      statusText,
      headers: contentType ? { 'content-type': contentType, ...headers } : headers,
    });
  }

  routes() {
    return this.requests.map((r) => r.route);
  }
}

/** Headers the core sends on every request (docs/protocol.md §1.2). */
export function baseHeaders({ body = true, bearer, idempotencyKey } = {}) {
  const h = { Accept: 'application/json', 'X-SDK-Version': SDK_VERSION, 'X-Paywall-Id': PID };
  if (body) h['Content-Type'] = 'application/json';
  if (bearer) h.Authorization = `Bearer ${bearer}`;
  if (idempotencyKey) h['Idempotency-Key'] = idempotencyKey;
  return h;
}

/**
 * A storage adapter over a Map that logs every write into `timeline`
 * (shared with `listen`, so tests can assert storage-before-event order).
 * `async: true` answers every call with a Promise settled after `delay` ms.
 */
export function recordingStorage(initial = {}, { timeline = [], async = false, delay = 0, watch = false } = {}) {
  const data = new Map(Object.entries(initial));
  const watchers = new Map();
  const answer = (value) => (async ? new Promise((r) => setTimeout(() => r(value), delay)) : value);
  const storage = {
    data,
    timeline,
    getItem(key) {
      return answer(data.has(key) ? data.get(key) : null);
    },
    setItem(key, value) {
      timeline.push(['set', key, value]);
      data.set(key, value);
      return answer(undefined);
    },
    removeItem(key) {
      timeline.push(['remove', key]);
      data.delete(key);
      return answer(undefined);
    },
    /** Another context changes a record: store it and notify watchers. */
    external(key, value) {
      if (value === null) data.delete(key);
      else data.set(key, value);
      for (const cb of watchers.get(key) ?? []) cb(value);
    },
  };
  if (watch) {
    storage.watch = (key, cb) => {
      if (!watchers.has(key)) watchers.set(key, new Set());
      watchers.get(key).add(cb);
      return () => watchers.get(key).delete(cb);
    };
  }
  return storage;
}

/** Logs `[event, user id | null]` into `timeline`. */
export function listen(client, timeline = []) {
  const unsubscribe = client.onAuthChange((event, session) => timeline.push([event, session ? session.user.id : null]));
  return { timeline, unsubscribe };
}

/** Lets queued macrotasks (fetch stubs, timers at 0) and microtasks run. */
export const settle = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/** A reply held back until `release()` is called. */
export function held(reply) {
  let release;
  const gate = new Promise((r) => {
    release = () => r(reply);
  });
  return { reply: () => gate, release: () => release() };
}

export function client(backend, storage, extra = {}) {
  return new AuthClient({ paywallId: PID, apiOrigin: ORIGIN, fetch: backend.fetch, storage, ...extra });
}
