#!/usr/bin/env bash
# The firmware for real, under QEMU: builds the `qemu` binary of this
# firmware (thumbv7em, release) and the host runner, then boots the
# firmware on QEMU's mps2-an386 (Cortex-M4) once per lifecycle step:
# fresh guest; reboot with the flash file kept (same guest); soft sign-out
# and resume; hard sign-out and a new guest; reboot again. Its UART is
# bridged to an in-process emulator; each step is checked on the emulator's
# records. Prints one line per step and `qemu: N/N steps ok`.
#
#   bash examples/embassy-firmware/qemu-test.sh
#
# Installs what it needs: qemu-system-arm (Debian package) and the rustup
# target. Plain HTTP over the bridge: see examples/embassy-firmware/README.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="${QEMU_WORK_DIR:-$root/target/qemu}"

if ! command -v qemu-system-arm >/dev/null 2>&1; then
  echo "qemu: installing qemu-system-arm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends qemu-system-arm >/dev/null
fi
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || rustup target add thumbv7em-none-eabihf

(cd "$root/examples/embassy-firmware" && cargo build --release --locked --features qemu --bin qemu)
# Debug profile: CI has built these dependencies for `cargo test` already.
(cd "$root" && cargo build --locked -p paywall-auth-qemu-runner)

firmware="$root/examples/embassy-firmware/target/thumbv7em-none-eabihf/release/qemu"
mkdir -p "$work"
"$root/target/debug/paywall-auth-qemu-runner" \
  --firmware "$firmware" --machine mps2-an386 --timeout-secs "${QEMU_STEP_TIMEOUT:-60}" --work-dir "$work"
