// The JS half of a client: see the class comment. Kept free of imports so
// the binding tests (src/wasm_tests.rs) load the very same file.

const utf8 = new TextEncoder();

/**
 * One `setTimeout` for every client in the realm: each host keeps the
 * core's deadline (`Host.at`) and sits in `hosts` while it has one; the
 * timer is set for no later than the earliest. Setting a Node or browser
 * timer costs more than a client's whole restore from storage, and
 * deadlines move on every request and answer (its timeout, then the next
 * refresh an hour out), so most of them now cost an assignment.
 */
const clock = { hosts: new Set(), timer: undefined, at: 0 };

/** Makes the shared timer fire no later than `at` (ms since the epoch). */
function wakeBy(at) {
  if (clock.timer !== undefined) {
    if (clock.at <= at) return;
    clearTimeout(clock.timer);
  }
  clock.at = at;
  // Never negative, never above the 2^31-1 ms timers accept (longer fires at once).
  clock.timer = setTimeout(tick, Math.min(Math.max(at - Date.now(), 0), 0x7fffffff));
  // Under Node, a refresh an hour away must not keep the process alive.
  if (typeof clock.timer === 'object' && typeof clock.timer.unref === 'function') clock.timer.unref();
}

/**
 * The shared timer fired: every host whose deadline has passed is handed
 * to its core (which tells its next deadline, if any, through `_timer`);
 * the timer is set again for the earliest one left. Early wakes (the
 * deadline that set it moved later) only re-arm.
 */
function tick() {
  clock.timer = undefined;
  const now = Date.now();
  const due = [];
  let next = Infinity;
  for (const h of clock.hosts) {
    if (h.at < 0) clock.hosts.delete(h);
    else if (h.at <= now) {
      h.at = -1;
      clock.hosts.delete(h);
      due.push(h);
    } else if (h.at < next) next = h.at;
  }
  if (next !== Infinity) wakeBy(next);
  for (const h of due) h._call((c) => c.__timeout());
}

function callListener(callback, event, session) {
  try {
    callback(event, session);
  } catch (e) {
    console.error('paywall-auth: an onAuthChange listener threw', e);
  }
}

/**
 * The JS half of a client (src/js.rs `Host`): the listener list, the caches
 * the synchronous getters read, `fetch` and the timer. The Rust core decides
 * everything; this only moves values, so that an event costs one call into
 * JS whatever the number of listeners, and a cached token none at all.
 * None of the `_` methods throws (they are called from wasm).
 */
export class Host {
  constructor() {
    this.fetch = null;
    /** The wasm-bindgen object it calls back (never the app's object: see client.js). */
    this.client = null;
    this.listeners = [];
    this.waiting = new Map(); // listener id → listener, until its INITIAL_SESSION
    this.nextId = 1;
    /** The session object; `undefined`: not rendered yet, ask `syncSession`. */
    this.session = undefined;
    /** Until when (ms) the core answers `getAccessToken` from `session`; 0: ask. */
    this.freshUntil = 0;
    /** A Promise of `session.access_token`, made on first use (one per session). */
    this.token = undefined;
    /**
     * A plain `signInAnonymously()` would join the sign-in in flight (the
     * core's `Machine::sign_in_joins`, published while nothing else waits):
     * such calls get `joined`, one Promise for all of them (as the
     * reference client hands its in-flight promise to every caller), made
     * by the first, instead of entering wasm; `settle` settles it.
     */
    this.join = false;
    this.joined = undefined;
    this.settle = undefined;
    this.ready = false;
    this.dead = false;
    /** The core's deadline (ms since the epoch), or -1: none (see `clock`). */
    this.at = -1;
  }

  _state(session, freshUntil, ready, join) {
    if (session !== this.session) this.token = undefined;
    this.session = session;
    this.freshUntil = freshUntil;
    this.ready = ready;
    this.join = join;
  }

  /** What a plain sign-in that joins the one in flight returns (see `join`). */
  joining() {
    return (this.joined ??= new Promise((resolve, reject) => {
      this.settle = [resolve, reject];
    }));
  }

  /**
   * Settles the calls attached to the sign-in in flight (`join`). That
   * sign-in is over, so nothing may join it any more; the state the wasm
   * tells before it delivers events says so too, but this does not depend
   * on it.
   */
  _joined(ok, value) {
    this.join = false;
    const settle = this.settle;
    this.joined = undefined;
    this.settle = undefined;
    if (settle !== undefined) settle[ok ? 0 : 1](value);
  }

  /** Every live listener registered when the emit began, in order. */
  _emit(event, session) {
    const ls = this.listeners;
    for (let i = 0, n = ls.length; i < n && !this.dead; i++) {
      const l = ls[i];
      if (l.live) callListener(l.cb, event, session);
    }
  }

  _initial(id, session) {
    const l = this.waiting.get(id);
    if (l === undefined || this.dead) return;
    this.waiting.delete(id);
    l.live = true;
    callListener(l.cb, 'INITIAL_SESSION', session);
  }

  _call(f) {
    const c = this.client;
    if (c === null || this.dead) return;
    try {
      f(c);
    } catch {
      // freed meanwhile
    }
  }

  /**
   * Calls `done(true, value)` or `done(false, error)` from a microtask once
   * `value` (a Promise, a thenable or a plain value) settles; exactly once,
   * so the wasm side's one-shot callback is freed by the call.
   */
  _settle(value, done) {
    Promise.resolve(value).then(
      (v) => done(true, v),
      (e) => done(false, e),
    );
  }

  /** The core's next deadline, `at` ms since the epoch (-1: none); see `clock`. */
  _timer(at) {
    this.at = at;
    if (at < 0) {
      // Also when the client ends: the set must not keep its host.
      clock.hosts.delete(this);
      return;
    }
    clock.hosts.add(this);
    wakeBy(at);
  }

  /** UTF-8 of the string `text` into `into` (a view of wasm memory); bytes written. */
  _utf8(text, into) {
    return utf8.encodeInto(text, into).written;
  }

  /** `request`: `method\nurl\n`, `pairs` times `name\nvalue\n`, then the body. */
  _send(id, request, pairs) {
    let at = request.indexOf('\n');
    const method = request.slice(0, at);
    let end = request.indexOf('\n', at + 1);
    const url = request.slice(at + 1, end);
    const headers = {};
    for (let i = 0; i < pairs; i++) {
      at = request.indexOf('\n', end + 1);
      const next = request.indexOf('\n', at + 1);
      headers[request.slice(end + 1, at)] = request.slice(at + 1, next);
      end = next;
    }
    const body = request.slice(end + 1);
    // No cookies (docs/protocol.md §1.2), and no redirects: following one would
    // re-send refresh tokens and passwords to wherever it points.
    const init = { method, headers, credentials: 'omit', redirect: 'manual' };
    if (body !== '') init.body = body;
    let pending;
    try {
      // Called unbound, as `fetch(url, init)` is (window.fetch refuses another `this`).
      const fetch = this.fetch;
      pending = fetch(url, init);
    } catch (e) {
      pending = Promise.reject(e);
    }
    Promise.resolve(pending).then(
      (r) => this._read(id, r),
      () => this._call((c) => c.__transport(id, 0)),
    );
  }

  _read(id, r) {
    const status = r.status;
    if (r.type === 'opaqueredirect' || (status >= 300 && status < 400)) {
      let where = '';
      try {
        const location = r.headers.get('location');
        if (typeof location === 'string' && location !== '') where = ` to ${location}`;
      } catch {
        // no headers to read
      }
      const what = status >= 300 ? `HTTP ${status}${where}` : 'its target hidden by the browser';
      const note =
        `refused a redirect (${what}): this client follows no redirect, since that would re-send ` +
        'tokens and passwords to wherever it points; set apiOrigin to the final https:// origin';
      this._call((c) => c.__transport(id, 1, note));
      return;
    }
    if (typeof status !== 'number' || !(status >= 100 && status <= 599)) {
      this._call((c) => c.__transport(id, 2));
      return;
    }
    let contentType;
    try {
      const ct = r.headers.get('content-type');
      if (typeof ct === 'string') contentType = ct;
    } catch {
      // treated as absent
    }
    const statusText = typeof r.statusText === 'string' ? r.statusText : '';
    let body;
    try {
      body = r.arrayBuffer();
    } catch (e) {
      body = Promise.reject(e);
    }
    // Headers arrived, the body did not (docs/protocol.md §1.4): connection lost.
    Promise.resolve(body).then(
      (bytes) => this._call((c) => c.__response(id, status, statusText, contentType, new Uint8Array(bytes))),
      () => this._call((c) => c.__transport(id, 1)),
    );
  }
}
