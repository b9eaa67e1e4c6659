#!/usr/bin/env bash
# The wasm adapter: build the npm package (installs the wasm32 target, the
# wasm-bindgen CLI and wasm-opt on a fresh machine), run the binding tests
# under Node, then the package's JS suites (stub backend + the emulator over
# loopback).
set -euo pipefail
cd "$(dirname "$0")/../.."

bash adapters/wasm/build.sh
cargo test -p paywall-auth-wasm --target wasm32-unknown-unknown --locked
cargo build -p paywall-auth-wasm-emulator-runner --locked
PAYWALL_EMULATOR_RUNNER="$PWD/target/debug/paywall-auth-wasm-emulator-runner" \
  node --test adapters/wasm/tests/*.test.mjs
bash adapters/wasm/size.sh
