// The package's public classes: a thin layer over the wasm-bindgen class
// that supplies the defaults (storage, fetch) and the PaywallError class.
// Every decision is made by the Rust core; nothing here looks at a session.

import { AuthClient as WasmAuthClient } from './paywall_auth_wasm.js';
import { Host } from './host.js';

/** Set by the entry point once the wasm is instantiated. */
export const loaded = { wasm: false };

/** The error every failed call rejects (or, for the constructor, throws) with. */
export class PaywallError extends Error {
  /**
   * @param {string} code stable slug (`network_error`, `anonymous_disabled`, `http_503`, …)
   * @param {string} message human-readable text
   * @param {number | undefined} status HTTP status, for errors that came with one
   */
  constructor(code, message, status) {
    super(message);
    this.name = 'PaywallError';
    this.code = code;
    this.status = status;
  }
}

/** A Map-backed adapter: used when there is no localStorage (Node, workers). */
export function memoryStorage() {
  const map = new Map();
  return {
    getItem: (key) => (map.has(key) ? map.get(key) : null),
    setItem: (key, value) => {
      map.set(key, String(value));
    },
    removeItem: (key) => {
      map.delete(key);
    },
  };
}

/**
 * `localStorage`, watched through the `storage` event (which fires for
 * changes made by other tabs). Failures are not swallowed: the core keeps
 * the state in memory and retries the write.
 */
export function localStorageAdapter(ls = globalThis.localStorage) {
  return {
    getItem: (key) => ls.getItem(key),
    setItem: (key, value) => ls.setItem(key, value),
    removeItem: (key) => ls.removeItem(key),
    watch(key, callback) {
      if (typeof globalThis.addEventListener !== 'function') return () => {};
      const onStorage = (event) => {
        if (event.storageArea !== ls) return;
        if (event.key === key) callback(event.newValue);
        else if (event.key === null) callback(null); // storage.clear()
      };
      globalThis.addEventListener('storage', onStorage);
      return () => globalThis.removeEventListener('storage', onStorage);
    },
  };
}

function defaultStorage() {
  try {
    const ls = globalThis.localStorage;
    // Touching it throws where it is blocked (sandboxed frames, some privacy modes).
    if (ls && typeof ls.getItem === 'function') {
      ls.getItem('pw-visitor-id');
      return localStorageAdapter(ls);
    }
  } catch {
    // fall through to memory
  }
  return memoryStorage();
}

function isStorage(s) {
  return (
    s !== null &&
    typeof s === 'object' &&
    typeof s.getItem === 'function' &&
    typeof s.setItem === 'function' &&
    typeof s.removeItem === 'function'
  );
}

function defaultFetch(url, init) {
  return globalThis.fetch(url, init);
}

/**
 * Frees the wasm side of a client its app dropped (see the class comment),
 * which ends it like `free()`: pending and joined calls reject with
 * `aborted`. The held value is the wasm object, which refers to nothing
 * in JS. Holding the `Host` instead kept the hosts of freed clients alive
 * until a full collection (minor ones went from ~5 to ~30 MB live in the
 * construction bench, at ~10 ms each).
 */
const reaper = typeof FinalizationRegistry === 'function' ? new FinalizationRegistry((w) => w.free()) : undefined;

/**
 * Settles what waits in JS and ends the wasm side (`free`: also releases
 * its memory). Idempotent.
 */
function end(h, free) {
  if (!h.dead) {
    h.dead = true;
    h.listeners = [];
    h.waiting.clear();
    h.freshUntil = 0;
    h.join = false;
    if (h.settle !== undefined) h._joined(false, new PaywallError('aborted', 'the client was destroyed', undefined));
  }
  const w = h.client;
  if (w === null) return;
  if (free) {
    // The getters ask the wasm object, which is gone: they throw `aborted`.
    h.session = undefined;
    h.client = null;
    w.free();
  } else {
    w.destroy();
  }
}

/**
 * Per paywall id, its storage keys as the wasm side made them for the
 * first client (see `storage_keys` in src/driver.rs).
 */
const storageKeys = new Map();

/** The wasm object of a client, or an `aborted` error once it is freed. */
function wasmOf(h) {
  const w = h.client;
  if (w === null) throw new PaywallError('aborted', 'the client was freed', undefined);
  return w;
}

/**
 * The anonymous sign-in client. Drop-in for the reference client's
 * anonymous subset: same constructor options, method names, storage keys
 * and values, events and error shape.
 *
 * It wraps the wasm-bindgen class instead of extending it. The wasm side
 * holds the `Host` (for `fetch` answers and the timer), and the host holds
 * the wasm object it calls back; the app's object stays outside that cycle,
 * so when the app drops it, `reaper` ends the client. (A `WeakRef` from
 * the host to the app's object did that job for ~1.5 µs per construction,
 * a tenth of the whole; docs/wasm-measurements.md.)
 */
export class AuthClient {
  /**
   * @param {{paywallId: string, apiOrigin: string, storage?: object, fetch?: Function,
   *          allowInsecureHttp?: boolean}} options
   */
  constructor(options) {
    if (!loaded.wasm) {
      throw new PaywallError(
        'not_initialized',
        'the wasm is not loaded yet: `await init()` (exported by @paywall-auth/wasm) before `new AuthClient(...)`',
        undefined,
      );
    }
    const o = options ?? {};
    const storage = o.storage ?? defaultStorage();
    if (!isStorage(storage)) {
      throw new PaywallError('invalid_config', 'storage must implement getItem, setItem and removeItem', undefined);
    }
    const host = new Host();
    const paywallId = typeof o.paywallId === 'string' ? o.paywallId : undefined;
    const keys = storageKeys.get(paywallId) ?? [];
    // Plain arguments, not the options object: every property wasm reads
    // costs a string conversion.
    const w = new WasmAuthClient(
      paywallId,
      typeof o.apiOrigin === 'string' ? o.apiOrigin : undefined,
      o.allowInsecureHttp === true,
      storage,
      typeof storage.watch === 'function' ? storage.watch : undefined,
      PaywallError,
      host,
      keys,
    );
    if (keys.length === 3) storageKeys.set(paywallId, keys);
    const fetch = o.fetch ?? defaultFetch;
    if (typeof fetch !== 'function') {
      w.free();
      throw new PaywallError('invalid_config', 'fetch must be a function', undefined);
    }
    host.fetch = fetch;
    host.client = w;
    this._h = host;
    reaper?.register(this, w, this);
  }

  signInAnonymously(options) {
    const h = this._h;
    if (h.join && options === undefined) {
      // The core joins a plain call to the sign-in in flight; its
      // completion settles this one too (`Host._joined`).
      return h.joining();
    }
    h.freshUntil = 0;
    h.join = false;
    return new Promise((resolve, reject) => wasmOf(h).signInAnonymously(options, resolve, reject));
  }

  upgradeAnonymousToEmail(options) {
    const h = this._h;
    h.freshUntil = 0;
    h.join = false;
    return new Promise((resolve, reject) => wasmOf(h).upgradeAnonymousToEmail(options, resolve, reject));
  }

  signOut(options) {
    const h = this._h;
    h.freshUntil = 0;
    h.join = false;
    return new Promise((resolve, reject) => wasmOf(h).signOut(options, resolve, reject));
  }

  refresh() {
    const h = this._h;
    h.freshUntil = 0;
    h.join = false;
    return new Promise((resolve, reject) => wasmOf(h).refresh(resolve, reject));
  }

  /**
   * The access token. While the core's own freshness instant for the
   * current session has not passed (and no call is queued), the cached
   * token is handed out without entering wasm; otherwise the core decides.
   */
  getAccessToken() {
    const h = this._h;
    if (h.session === undefined && h.ready) wasmOf(h).syncSession();
    if (h.freshUntil !== 0 && Date.now() < h.freshUntil) {
      return h.token ?? (h.token = Promise.resolve(h.session.access_token));
    }
    h.freshUntil = 0;
    h.join = false;
    return new Promise((resolve, reject) => wasmOf(h).getAccessToken(resolve, reject));
  }

  /** The current session or `null`; the same object until the session changes. */
  getCachedSession() {
    const h = this._h;
    if (h.session === undefined) wasmOf(h).syncSession();
    return h.session ?? null;
  }

  /** The current session's user or `null`. */
  getCachedUser() {
    const s = this.getCachedSession();
    return s === null ? null : s.user;
  }

  ready() {
    const h = this._h;
    if (h.ready) return Promise.resolve();
    return new Promise((resolve) => wasmOf(h).ready(resolve));
  }

  onAuthChange(callback) {
    const h = this._h;
    if (h.dead) return () => {};
    const l = { id: h.nextId++, cb: callback, live: false, removed: false };
    h.listeners.push(l);
    h.waiting.set(l.id, l);
    wasmOf(h).addListener(l.id);
    return () => {
      if (l.removed) return;
      l.removed = true;
      l.live = false;
      h.waiting.delete(l.id);
      // A new array: an emit in progress keeps iterating the old one.
      h.listeners = h.listeners.filter((x) => x !== l);
    };
  }

  destroy() {
    end(this._h, false);
  }

  /** Ends the client like `destroy()` and releases its wasm memory now. */
  free() {
    reaper?.unregister(this);
    end(this._h, true);
  }
}
