#!/usr/bin/env bash
# Embedded for real:
# 1. the embassy firmware runs end to end under QEMU (mps2-an386) against
#    the emulator, one boot per lifecycle step, flash kept in a file, twice:
#    over plain HTTP (bin `qemu`) and over TLS 1.3 with certificate
#    verification on (bin `qemu-tls`, profile `release-tls`, whose
#    dependencies 31-embassy-features.sh built already)
#    (examples/embassy-firmware/qemu-test.sh; fails if any step fails);
# 2. the real-board example (NUCLEO-F429ZI, embassy-stm32 Ethernet, chip
#    flash) builds from its own lockfile, and its size is printed.
# Wall time on this machine: 1 min 22 s with the dependencies built (the
# QEMU run itself is about 6 s). From cold, the embassy-stm32 build
# dominates: 23 min 22 s measured with the 2 cores shared by ~6 builds
# (load ~15); not measured on an idle machine (estimated: a few minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."

bash examples/embassy-firmware/qemu-test.sh

echo "real board: examples/embassy-stm32-eth (NUCLEO-F429ZI)"
(cd examples/embassy-stm32-eth && cargo build --release --locked)
python3 examples/embassy-firmware/tools/elf_size.py \
  examples/embassy-stm32-eth/target/thumbv7em-none-eabihf/release/paywall-auth-embassy-stm32-eth | tail -n 2
