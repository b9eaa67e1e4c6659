// Entry point for browsers and bundlers: fetches and instantiates the wasm
// next to this module (top-level await), then re-exports the client.
import init from './paywall_auth_wasm.js';

await init({ module_or_path: new URL('./paywall_auth_wasm_bg.wasm', import.meta.url) });

export { AuthClient, PaywallError, localStorageAdapter, memoryStorage } from './client.js';
