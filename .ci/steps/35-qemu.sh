#!/usr/bin/env bash
# Embedded for real:
# 1. the embassy firmware runs end to end under QEMU (mps2-an386) against
#    the emulator, one boot per lifecycle step, flash kept in a file
#    (examples/embassy-firmware/qemu-test.sh);
# 2. the real-board example (NUCLEO-F429ZI, embassy-stm32 Ethernet, chip
#    flash) builds from its own lockfile, and its size is printed.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash examples/embassy-firmware/qemu-test.sh

echo "real board: examples/embassy-stm32-eth (NUCLEO-F429ZI)"
(cd examples/embassy-stm32-eth && cargo build --release --locked)
python3 examples/embassy-firmware/tools/elf_size.py \
  examples/embassy-stm32-eth/target/thumbv7em-none-eabihf/release/paywall-auth-embassy-stm32-eth | tail -n 2
