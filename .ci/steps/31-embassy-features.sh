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

# TLS end to end on the host: the lifecycle over TLS 1.3 against the
# emulator's HTTPS listener, the typed certificate refusals, and the record
# buffer sizes (docs/embassy-measurements.md).
cargo test -p paywall-auth-embassy --features tls --test tls --test tls_records --locked
# The README's TLS snippet is compiled as a doctest with the feature on.
cargo test -p paywall-auth-embassy --features tls --doc --locked

# The firmware over HTTPS (examples/embassy-firmware, bin `tls`), built
# like a TLS firmware ships: profile `release-tls` (release at opt-level
# "z", where issue 13's 160 KiB flash target is met; "s" misses it, see
# docs/embassy-measurements.md). Budgeted like the plain build, from the
# `tls_` lines of size-budget.txt. 35-qemu.sh builds the `qemu-tls` binary
# in the same profile and reuses these dependencies.
cd examples/embassy-firmware
cargo build --profile release-tls --features tls --bin tls --locked
python3 tools/elf_size.py target/thumbv7em-none-eabihf/release-tls/tls \
  --check size-budget.txt --slack 10 --budget-prefix tls_
