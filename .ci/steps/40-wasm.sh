#!/usr/bin/env bash
# The wasm adapter: build the npm package (installs the wasm32 target, the
# wasm-bindgen CLI and wasm-opt on a fresh machine), run the binding tests
# under Node, the package's JS suites (stub backend + the emulator over
# loopback), then the package in headless Chromium (Debian's chromium via
# apt, playwright-core/esbuild/vite from browser-test's lockfile) and the
# bundler builds; finally its size and a smoke run of the benchmark.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The host capacities build.sh uses, for the binding tests too (so they
# test what ships and reuse its core build); only for the wasm32 builds, so
# the host builds of other steps keep the default core.
caps=(PAYWALL_AUTH_ACCESS_TOKEN_MAX=16384 PAYWALL_AUTH_REFRESH_TOKEN_MAX=1024 PAYWALL_AUTH_USER_JSON_MAX=2048)
env "${caps[@]}" bash adapters/wasm/build.sh
env "${caps[@]}" cargo test -p paywall-auth-wasm --target wasm32-unknown-unknown --locked
# The core's tests of the kept user object compile only when it has room
# (cfg paywall_auth_user_json); the workspace run uses the MCU defaults.
# Only that knob: the other tests assume the default capacities. A target
# dir of its own, so the host builds of the other steps keep theirs.
PAYWALL_AUTH_USER_JSON_MAX=2048 cargo test -p paywall-auth --lib --locked --target-dir target/host-caps
cargo build -p paywall-auth-wasm-emulator-runner --locked
export PAYWALL_EMULATOR_RUNNER="$PWD/target/debug/paywall-auth-wasm-emulator-runner"
node --test adapters/wasm/tests/*.test.mjs

if [ ! -x /usr/bin/chromium ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
npm ci --prefix adapters/wasm/browser-test --no-audit --no-fund
node --test adapters/wasm/browser-test/browser.test.mjs

bash adapters/wasm/size.sh
node adapters/wasm/bench/bench.mjs --smoke
