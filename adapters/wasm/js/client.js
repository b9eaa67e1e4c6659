// The package's public classes: a thin layer over the wasm-bindgen class
// that supplies the defaults (storage, fetch) and the PaywallError class.
// Every decision is made by the Rust core; nothing here looks at a session.

import { AuthClient as WasmAuthClient } from './paywall_auth_wasm.js';

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

function defaultFetch(url, init) {
  return globalThis.fetch(url, init);
}

/**
 * The anonymous sign-in client. Drop-in for the reference client's
 * anonymous subset: same constructor options, method names, storage keys
 * and values, events and error shape.
 */
export class AuthClient extends WasmAuthClient {
  /** @param {{paywallId: string, apiOrigin: string, storage?: object, fetch?: Function}} options */
  constructor(options) {
    const o = options ?? {};
    super(
      {
        paywallId: o.paywallId,
        apiOrigin: o.apiOrigin,
        storage: o.storage ?? defaultStorage(),
        fetch: o.fetch ?? defaultFetch,
      },
      PaywallError,
    );
  }
}
