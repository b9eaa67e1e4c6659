// Entry point under Node: instantiates the wasm synchronously from the file
// next to this one, then re-exports the client. `init()` exists for code
// shared with browsers and resolves at once.
import { readFileSync } from 'node:fs';
import { initSync } from './paywall_auth_wasm.js';
import { loaded } from './client.js';

initSync({ module: readFileSync(new URL('./paywall_auth_wasm_bg.wasm', import.meta.url)) });
loaded.wasm = true;

export { AuthClient, PaywallError, localStorageAdapter, memoryStorage } from './client.js';

/** The wasm is already loaded under Node. */
export function init() {
  return Promise.resolve();
}
