#!/usr/bin/env bash
# Embassy adapter and firmware: tests the embassy-net connector, then builds
# examples/embassy-firmware (thumbv7em-none-eabihf,
# release, LTO) and fails when the firmware grows more than 10% over the
# flash or RAM recorded in examples/embassy-firmware/size-budget.txt.
# Sizes come from the ELF section headers (tools/elf_size.py, python3 stdlib
# only), so a fresh machine needs no binutils.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The adapter's optional embassy-net connector, over an in-process loopback
# stack against the emulator (`cargo test --workspace` runs the rest), and
# clippy on the feature combinations the workspace run does not cover.
cargo test -p paywall-auth-embassy --features embassy-net --test embassy_net --locked
cargo clippy -p paywall-auth-embassy --features embassy-net,dns,log --all-targets --locked -- -D warnings

cd examples/embassy-firmware

rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || rustup target add thumbv7em-none-eabihf
cargo build --release --locked

elf=target/thumbv7em-none-eabihf/release
echo "baseline (board, executor, embassy-net, defmt; no auth client):"
python3 tools/elf_size.py "$elf/baseline" | tail -n 2
echo "firmware (the same plus paywall-auth-embassy and the core):"
python3 tools/elf_size.py "$elf/paywall-auth-embassy-firmware" --check size-budget.txt --slack 10
