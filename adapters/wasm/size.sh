#!/usr/bin/env bash
# Prints the size of the built package (run build.sh first): each shipped
# file raw, gzip -9 and brotli (the two encodings CDNs serve), and totals.
#
# `size.sh --breakdown` instead shows what the wasm is made of: it rebuilds
# the wasm as build.sh does but keeps its symbol names (a name section), and
# groups `twiggy top` (https://github.com/rustwasm/twiggy; `cargo install
# twiggy`, or TWIGGY=/path/to/twiggy) by crate and module: bytes of code and
# data, before compression. The names cost nothing in the package; this
# build is only measured, never shipped.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pkg="$here/pkg"

if [ "${1:-}" = --breakdown ]; then
  twiggy="${TWIGGY:-$(command -v twiggy || true)}"
  [ -x "$twiggy" ] || { echo "size.sh: --breakdown needs twiggy (cargo install twiggy, or TWIGGY=…)" >&2; exit 1; }
  [ -x "$here/.tools/bin/wasm-bindgen" ] || { echo "size.sh: run build.sh first (it installs wasm-bindgen)" >&2; exit 1; }
  root="$(cd "$here/../.." && pwd)"
  target="${CARGO_TARGET_DIR:-$root/target}"
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
  (cd "$root" && PAYWALL_AUTH_ACCESS_TOKEN_MAX="${PAYWALL_AUTH_ACCESS_TOKEN_MAX:-16384}" \
    PAYWALL_AUTH_REFRESH_TOKEN_MAX="${PAYWALL_AUTH_REFRESH_TOKEN_MAX:-1024}" \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_STRIP=false \
    cargo build -p paywall-auth-wasm --target wasm32-unknown-unknown --release --locked --features panic-trap --quiet)
  "$here/.tools/bin/wasm-bindgen" --target web --keep-debug --no-typescript --out-dir "$out" \
    "$target/wasm32-unknown-unknown/release/paywall_auth_wasm.wasm" 2>/dev/null
  # Before wasm-opt by default: its inlining folds Rust functions into the
  # wasm-bindgen export shims, which then look like glue. WASM_OPT=1 runs it
  # as build.sh does (-g keeps the names), for the shipped total.
  wasm_opt="$here/.tools/node_modules/binaryen/bin/wasm-opt"
  if [ "${WASM_OPT:-0}" != 0 ] && [ -x "$wasm_opt" ]; then
    node "$wasm_opt" -Oz -g --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-reference-types --enable-multivalue \
      "$out/paywall_auth_wasm_bg.wasm" -o "$out/paywall_auth_wasm_bg.wasm"
    echo "(wasm-opt -Oz applied, as build.sh does)"
  fi
  "$twiggy" top -n 1000000 -f csv "$out/paywall_auth_wasm_bg.wasm" > "$out/top.csv"
  node --input-type=module - "$out/top.csv" "${2:-30}" <<'JS'
import { readFileSync } from 'node:fs';
// A symbol's group: its crate, plus the module for the crates that matter
// (`paywall_auth::codec`, `core::fmt` …). `<T as Trait>::f` counts for T's
// crate, or for Trait's when T is a primitive (`<u32 as Display>::fmt`).
const [csv, limit] = [process.argv[2], +process.argv[3]];
const deep = { paywall_auth: 2, core: 2, alloc: 2, wasm_bindgen: 2, js_sys: 2 };
const prim = /^(u8|u16|u32|u64|u128|usize|i8|i16|i32|i64|i128|isize|char|str|bool|f32|f64|\[.*\]|\(.*\)|&.*|\*.*)$/;
const path = (p) => { const s = p.replace(/<.*$/, '').split('::'); return s.slice(0, deep[s[0]] ?? 1).join('::'); };
function group(name) {
  if (name.startsWith('data segment')) return 'data segment (strings, tables)';
  if (/^(import|export|type\[|table\[|elem\[|global\[|memory\[|code section|data section|section|wasm magic)/.test(name)) {
    return 'wasm structure (imports, exports, types, headers)';
  }
  const n = name.replace(/\[[0-9a-f]{16}\]/g, '').replace(/::h[0-9a-f]{16}$/, '').replace(/\[\d+\]$/, '');
  const m = n.match(/^<(.+?)(?: as (.+?))?>::/);
  if (m) {
    const self = m[1].replace(/^(dyn |&mut |&)/, '');
    if (!prim.test(self) && /^[a-z_]/.test(self)) return path(self);
    if (m[2]) return path(m[2]);
    return /fmt|escape|pad/.test(n) ? 'core::fmt' : `core (${self})`;
  }
  if (/^[a-z_][a-z0-9_]*::/.test(n)) return path(n);
  return /wbindgen|wbg|externref/.test(n) ? 'wasm-bindgen generated' : 'unnamed';
}
const groups = new Map();
let total = 0;
for (const line of readFileSync(csv, 'utf8').split('\n').slice(1)) {
  const m = line.match(/^("(?:[^"]|"")*"|[^,]*),(\d+),/);
  if (!m) continue;
  const name = m[1].replace(/^"|"$/g, '').replace(/""/g, '"');
  if (/^custom section|function names|^producers/.test(name)) continue;
  const g = group(name);
  groups.set(g, (groups.get(g) ?? 0) + +m[2]);
  total += +m[2];
}
const rows = [...groups].sort((a, b) => b[1] - a[1]);
const line = (bytes, label) => console.log(`${String(bytes).padStart(8)} B ${(100 * bytes / total).toFixed(1).padStart(5)} %  ${label}`);
for (const [g, bytes] of rows.slice(0, limit)) line(bytes, g);
const rest = rows.slice(limit);
if (rest.length) line(rest.reduce((a, r) => a + r[1], 0), `(${rest.length} smaller groups)`);
line(total, 'code + data, uncompressed (custom sections excluded)');
JS
  exit 0
fi
[ -f "$pkg/paywall_auth_wasm_bg.wasm" ] || { echo "size.sh: no package; run adapters/wasm/build.sh first" >&2; exit 1; }
# The package ships readable JS; an app's bundler minifies it. The second
# table measures that: the default browser entry bundled and minified by
# esbuild (browser-test's copy, or ESBUILD=/path/to/esbuild's package dir),
# next to the wasm it loads.
esbuild="${ESBUILD:-$here/browser-test/node_modules/esbuild}"
node --input-type=module - "$pkg" "$esbuild" <<'JS'
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';
const pkg = process.argv[2];
const files = JSON.parse(readFileSync(`${pkg}/package.json`, 'utf8')).files.filter((f) => /\.(js|cjs|wasm|d\.ts)$/.test(f));
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const measure = (file, b) => ({
  file,
  raw: b.length,
  gzip: gzipSync(b, { level: 9 }).length,
  brotli: brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length,
});
const rows = files.map((f) => measure(f, readFileSync(`${pkg}/${f}`)));
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
const esbuildDir = process.argv[3];
if (!existsSync(`${esbuildDir}/package.json`)) {
  console.log(`\n(no esbuild at ${esbuildDir}: npm ci --prefix adapters/wasm/browser-test for the minified figures)`);
} else {
  const esbuild = createRequire(`${esbuildDir}/`)(esbuildDir);
  const out = await esbuild.build({
    entryPoints: [`${pkg}/browser.js`],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    write: false,
    logLevel: 'silent',
  });
  const bundle = measure('browser.js bundle, minified', out.outputFiles[0].contents);
  const w = rows.find(wasm);
  const total = { file: 'browser payload, minified', raw: bundle.raw + w.raw, gzip: bundle.gzip + w.gzip, brotli: bundle.brotli + w.brotli };
  console.log(`\nAs an app ships it (esbuild ${esbuild.version} --bundle --minify of the browser entry, JS only):`);
  for (const r of [bundle, total]) console.log(`${r.file.padEnd(28)}${pad(kib(r.raw), 12)}${pad(kib(r.gzip), 12)}${pad(kib(r.brotli), 12)}`);
}
JS
