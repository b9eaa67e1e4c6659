#!/usr/bin/env bash
# Builds the npm package of paywall-auth-wasm into adapters/wasm/pkg/:
#   wasm (release, opt-level z) → wasm-bindgen --target web
#   → + the hand-written entry points, types and README.
# Installs what it needs on a fresh machine: the wasm32 target and the
# wasm-bindgen CLI matching the pinned crate (into adapters/wasm/.tools).
#
# WASM_OPT=1 also runs binaryen's wasm-opt -Oz (installed from npm into
# .tools): it trims the raw wasm by ~11 % but the gzip size by only ~1 %
# (docs/wasm-measurements.md) for 100 MB of npm install and 20 s, so it is
# off by default.
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
if [ "${WASM_OPT:-0}" != 0 ]; then
  wasm_opt="$tools/node_modules/binaryen/bin/wasm-opt"
  if [ ! -x "$wasm_opt" ] || [ "$(node -p "require('$tools/node_modules/binaryen/package.json').version" 2>/dev/null)" != "$BINARYEN_VERSION" ]; then
    echo "build.sh: installing binaryen $BINARYEN_VERSION (wasm-opt) from npm into $tools"
    npm install --prefix "$tools" --no-save --no-audit --no-fund --silent "binaryen@$BINARYEN_VERSION" || wasm_opt=""
  fi
fi

# Size over speed: the whole client is a few kilobytes of logic that runs a
# few times an hour. The override applies to this build only, not to the
# workspace's release profile (which the firmware builds use).
CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
  cargo build -p paywall-auth-wasm --target wasm32-unknown-unknown --release --locked

rm -rf "$pkg"
mkdir -p "$pkg"
"$tools/bin/wasm-bindgen" --target web --no-typescript --out-dir "$pkg" --out-name paywall_auth_wasm \
  "$root/target/wasm32-unknown-unknown/release/paywall_auth_wasm.wasm" 2> >(grep -v "target_features" >&2)

if [ -n "$wasm_opt" ] && [ -x "$wasm_opt" ]; then
  # The features wasm32-unknown-unknown enables by default in rustc 1.95.
  node "$wasm_opt" -Oz --strip-debug --strip-producers \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$pkg/paywall_auth_wasm_bg.wasm" -o "$pkg/paywall_auth_wasm_bg.wasm"
elif [ "${WASM_OPT:-0}" != 0 ]; then
  echo "build.sh: wasm-opt unavailable; the package is larger but works the same"
fi

cp "$here"/js/client.js "$here"/js/node.js "$here"/js/browser.js "$here"/js/index.d.ts "$here"/js/package.json "$pkg/"
cp "$here/README.md" "$pkg/README.md" 2>/dev/null || true
echo "build.sh: package ready in ${pkg#"$root"/}"
