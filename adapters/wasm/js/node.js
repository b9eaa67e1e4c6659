// Entry point under Node: instantiates the wasm synchronously from the file
// next to this one, then re-exports the client.
import { readFileSync } from 'node:fs';
import { initSync } from './paywall_auth_wasm.js';

initSync({ module: readFileSync(new URL('./paywall_auth_wasm_bg.wasm', import.meta.url)) });

export { AuthClient, PaywallError, localStorageAdapter, memoryStorage } from './client.js';
