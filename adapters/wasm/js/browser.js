// Entry point for browsers and bundlers. No top-level await (bundlers and
// older Safari choke on it): `await init()` once before `new AuthClient`.
// The wasm is fetched next to this module (`new URL(…, import.meta.url)`,
// which Vite, webpack 5, Parcel and plain browsers resolve and bundle);
// bundlers that do not (esbuild) use the `@paywall-auth/wasm/inline` entry.
import initWasm from './paywall_auth_wasm.js';
import { loaded } from './client.js';

export { AuthClient, PaywallError, localStorageAdapter, memoryStorage } from './client.js';

let started;

/**
 * Loads the wasm once; later calls return the same Promise. `input`
 * (optional) is where to load it from instead: a URL, a Response, bytes or
 * a compiled `WebAssembly.Module`.
 */
export function init(input) {
  started ??= initWasm({ module_or_path: input ?? new URL('./paywall_auth_wasm_bg.wasm', import.meta.url) }).then(
    () => {
      loaded.wasm = true;
    },
  );
  return started;
}
