#!/usr/bin/env bash
# Prints the size of the built package (run build.sh first): each shipped
# file raw, gzip -9 and brotli (the two encodings CDNs serve), and totals.
set -euo pipefail
pkg="$(cd "$(dirname "$0")" && pwd)/pkg"
[ -f "$pkg/paywall_auth_wasm_bg.wasm" ] || { echo "size.sh: no package; run adapters/wasm/build.sh first" >&2; exit 1; }
node --input-type=module - "$pkg" <<'JS'
import { readFileSync } from 'node:fs';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';
const pkg = process.argv[2];
const files = JSON.parse(readFileSync(`${pkg}/package.json`, 'utf8')).files.filter((f) => /\.(js|cjs|wasm|d\.ts)$/.test(f));
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const rows = files.map((f) => {
  const b = readFileSync(`${pkg}/${f}`);
  return {
    file: f,
    raw: b.length,
    gzip: gzipSync(b, { level: 9 }).length,
    brotli: brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length,
  };
});
const sum = (pick, k) => rows.filter(pick).reduce((a, r) => a + r[k], 0);
const wasm = (r) => r.file.endsWith('.wasm');
const js = (r) => r.file.endsWith('.js');
const pad = (s, n) => String(s).padStart(n);
console.log(`${'file'.padEnd(28)}${pad('raw', 12)}${pad('gzip -9', 12)}${pad('brotli', 12)}`);
for (const r of rows) console.log(`${r.file.padEnd(28)}${pad(kib(r.raw), 12)}${pad(kib(r.gzip), 12)}${pad(kib(r.brotli), 12)}`);
// What a browser downloads: the default entry and what it imports.
const browser = (r) => ['browser.js', 'client.js', 'host.js', 'paywall_auth_wasm.js', 'paywall_auth_wasm_bg.wasm'].includes(r.file);
for (const [name, pick] of [['wasm', wasm], ['JS (glue + wrapper)', js], ['browser payload', browser], ['total code (without .d.ts)', (r) => !r.file.endsWith('.d.ts')]]) {
  console.log(`${name.padEnd(28)}${pad(kib(sum(pick, 'raw')), 12)}${pad(kib(sum(pick, 'gzip')), 12)}${pad(kib(sum(pick, 'brotli')), 12)}`);
}
JS
