#!/usr/bin/env bash
# Builds the footprint firmware (and the empty baseline) for
# thumbv7em-none-eabihf and prints their section sizes; the core's cost is
# the difference. Sizes come from a stdlib-only ELF reader (elf_sizes.py), so
# a fresh machine needs no binutils; `llvm-size -A` is shown too when present.
set -euo pipefail
cd "$(dirname "$0")"

rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || rustup target add thumbv7em-none-eabihf
# Same dependency versions as the main workspace: start from its lockfile
# (cargo adds the firmware-only crates; the copy is git-ignored).
cp ../Cargo.lock Cargo.lock
cargo build --release --bins >&2

out=target/thumbv7em-none-eabihf/release
python3 elf_sizes.py "$out/footprint" "$out/baseline"
if command -v llvm-size >/dev/null 2>&1; then
  echo
  echo "llvm-size -A (cross-check):"
  llvm-size -A "$out/footprint" | grep -E '^(section|\.vector_table|\.text|\.rodata|\.data|\.bss|Total)'
fi
