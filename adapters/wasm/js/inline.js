// Entry point with the wasm inside the JavaScript (base64): nothing to
// fetch and nothing for a bundler to copy, so it works with any bundler
// (esbuild included) at the price of ~35 % more bytes for the wasm part.
// Same API as the default entry: `await init()` before `new AuthClient`.
import { initSync } from './paywall_auth_wasm.js';
import { loaded } from './client.js';
import base64 from './wasm-inline.js';

export { AuthClient, PaywallError, localStorageAdapter, memoryStorage } from './client.js';

let started;

/** Compiles the embedded wasm once; later calls return the same Promise. */
export function init() {
  started ??= (async () => {
    const bin = atob(base64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    initSync({ module: await WebAssembly.compile(bytes) });
    loaded.wasm = true;
  })();
  return started;
}
