#!/usr/bin/env bash
# Builds the npm package of paywall-auth-wasm into adapters/wasm/pkg/:
#   wasm (release, opt-level z) → wasm-bindgen --target web
#   → + the hand-written entry points, types and README.
# Installs what it needs on a fresh machine: the wasm32 target and the
# wasm-bindgen CLI matching the pinned crate (into adapters/wasm/.tools).
#
# Then binaryen's wasm-opt -Oz (installed from npm into .tools). Once the
# adapter had no std, no formatting and no future executor left, it pays:
# 144.5 → 123.5 KB raw, 60.9 → 57.6 KB gzip (docs/wasm-measurements.md,
# "Package size"), for one npm install and a few seconds. WASM_OPT=0 skips
# it; without npm the package is built unoptimised, works the same, and
# says so.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

BINDGEN_VERSION=0.2.130   # must equal the `wasm-bindgen = "=…"` pin in Cargo.toml
BINARYEN_VERSION=132.0.0
tools="$here/.tools"
pkg="$here/pkg"

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown

if ! "$tools/bin/wasm-bindgen" --version 2>/dev/null | grep -qx "wasm-bindgen $BINDGEN_VERSION" \
  || [ ! -x "$tools/bin/wasm-bindgen-test-runner" ]; then
  echo "build.sh: installing wasm-bindgen-cli $BINDGEN_VERSION into $tools (2-5 min)"
  # No --locked: the CLI's own lockfile names a webpki-roots release the
  # registry does not have (see STACK.md). No default features: TLS is only
  # for remote WebDriver servers, and skipping it (and opt-level 1, and the
  # unused wasm2es6js) cuts the compile by a sixth; the output is identical.
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION" \
    --root "$tools" --no-default-features --bin wasm-bindgen --bin wasm-bindgen-test-runner --quiet
fi

wasm_opt=""
if [ "${WASM_OPT:-1}" != 0 ]; then
  wasm_opt="$tools/node_modules/binaryen/bin/wasm-opt"
  if [ ! -x "$wasm_opt" ] || [ "$(node -p "require('$tools/node_modules/binaryen/package.json').version" 2>/dev/null)" != "$BINARYEN_VERSION" ]; then
    echo "build.sh: installing binaryen $BINARYEN_VERSION (wasm-opt) from npm into $tools"
    npm install --prefix "$tools" --no-save --no-audit --no-fund --silent "binaryen@$BINARYEN_VERSION" || wasm_opt=""
  fi
fi

# Size over speed: the whole client is a few kilobytes of logic that runs a
# few times an hour. The override applies to this build only, not to the
# workspace's release profile (which the firmware builds use).
#
# Capacities (core/build.rs) for a host, not an MCU: identity providers
# that pack groups or permissions into the JWT make 8-16 KiB access tokens,
# and a browser has the memory. The defaults stay for firmware builds.
export PAYWALL_AUTH_ACCESS_TOKEN_MAX="${PAYWALL_AUTH_ACCESS_TOKEN_MAX:-16384}"
export PAYWALL_AUTH_REFRESH_TOKEN_MAX="${PAYWALL_AUTH_REFRESH_TOKEN_MAX:-1024}"
# The user object as the backend sent it (unknown keys, nulls) is what a JS
# caller sees and localStorage holds, as with the reference client.
export PAYWALL_AUTH_USER_JSON_MAX="${PAYWALL_AUTH_USER_JSON_MAX:-2048}"
CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
  cargo build -p paywall-auth-wasm --target wasm32-unknown-unknown --release --locked --features panic-trap

rm -rf "$pkg"
mkdir -p "$pkg"
"$tools/bin/wasm-bindgen" --target web --no-typescript --out-dir "$pkg" --out-name paywall_auth_wasm \
  "$root/target/wasm32-unknown-unknown/release/paywall_auth_wasm.wasm" 2> >(grep -v "target_features" >&2)

# Custom sections are for tools, not for browsers: wasm-bindgen leaves a
# name section (its import shims' names, ~2 KB) and the producers and
# target-features notes. Dropped; the module's code is untouched.
node -e '
const fs = require("fs");
const f = process.argv[1], b = fs.readFileSync(f), keep = [b.subarray(0, 8)];
for (let i = 8; i < b.length;) {
  const start = i++;
  let size = 0, shift = 0, x;
  do { x = b[i++]; size += (x & 0x7f) * 2 ** shift; shift += 7; } while (x & 0x80);
  if (b[start] !== 0) keep.push(b.subarray(start, i + size));
  i += size;
}
fs.writeFileSync(f, Buffer.concat(keep));
' "$pkg/paywall_auth_wasm_bg.wasm"

if [ -n "$wasm_opt" ] && [ -x "$wasm_opt" ]; then
  # The features wasm32-unknown-unknown enables by default in rustc 1.95.
  node "$wasm_opt" -Oz --strip-debug --strip-producers \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$pkg/paywall_auth_wasm_bg.wasm" -o "$pkg/paywall_auth_wasm_bg.wasm"
elif [ "${WASM_OPT:-1}" != 0 ]; then
  echo "build.sh: wasm-opt unavailable; the package is larger but works the same"
fi

cp "$here"/js/client.js "$here"/js/host.js "$here"/js/require.cjs "$here"/LICENSE-MIT "$here"/LICENSE-APACHE \
  "$here"/js/node.js "$here"/js/browser.js "$here"/js/inline.js "$here"/js/index.d.ts "$here"/js/package.json "$pkg/"
# The inline entry's copy of the wasm, base64 in a module.
node -e 'const fs=require("fs");const b=fs.readFileSync(process.argv[1]).toString("base64");fs.writeFileSync(process.argv[2],"// @generated by build.sh: paywall_auth_wasm_bg.wasm, base64.\nexport default \""+b+"\";\n")' \
  "$pkg/paywall_auth_wasm_bg.wasm" "$pkg/wasm-inline.js"
cp "$here/README.md" "$pkg/README.md" 2>/dev/null || true
echo "build.sh: package ready in ${pkg#"$root"/}"
