#!/usr/bin/env bash
# The embassy firmware running end to end under QEMU (mps2-an386) against
# the emulator: see examples/embassy-firmware/qemu-test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash examples/embassy-firmware/qemu-test.sh
