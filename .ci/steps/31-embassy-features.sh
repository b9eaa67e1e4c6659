#!/usr/bin/env bash
# paywall-auth-embassy: every feature combination that makes sense compiles
# and is clippy-clean on its own (cargo's feature unification hides a
# combination that only builds because another crate in the workspace turned
# a feature on), on the host and for thumbv7em-none-eabihf.
set -euo pipefail
cd "$(dirname "$0")/../.."

rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || rustup target add thumbv7em-none-eabihf

# `defmt` and `log` are mutually exclusive logging back ends; `dns` and
# `medium-ethernet` imply `embassy-net`; `insecure-skip-verify` implies `tls`.
combos=(
  ""
  "embassy-net"
  "embassy-net,dns"
  "embassy-net,medium-ethernet"
  "log"
  "defmt"
  "tls"
  "tls,embassy-net,dns,log"
  "tls,insecure-skip-verify"
)
for features in "${combos[@]}"; do
  echo "-- clippy --features '${features}'"
  cargo clippy -p paywall-auth-embassy --no-default-features --features "${features}" --lib --locked -- -D warnings
done

# The firmware configurations, for the microcontroller target (no std).
for features in "embassy-net,defmt" "embassy-net,dns,defmt,tls"; do
  echo "-- check thumbv7em --features '${features}'"
  cargo check -p paywall-auth-embassy --no-default-features --features "${features}" \
    --target thumbv7em-none-eabihf --locked
done
