#!/usr/bin/env bash
# C ABI (adapters/ffi) on Cortex-M: builds the crate as a no_std staticlib
# for thumbv7em-none-eabihf, links the C firmware driver
# (adapters/ffi/firmware/firmware.c) against it with Debian's
# arm-none-eabi-gcc, reports its flash and RAM (fails when they grow more
# than 10% over adapters/ffi/firmware/size-budget.txt), and runs the same
# driver under QEMU (mps2-an386, Cortex-M4) where it signs in a guest,
# restarts over its records and refreshes through a canned exchange.
# The header drift check and the C host tests (plain and ASan+UBSan) run in
# `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v arm-none-eabi-gcc >/dev/null || need+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null || need+=(qemu-system-arm)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || rustup target add thumbv7em-none-eabihf

# `cargo rustc --crate-type staticlib`: the cdylib of the manifest has no
# meaning on this target (rustc would drop it with a warning).
cargo rustc -p paywall-auth-ffi --lib --release --no-default-features --crate-type staticlib \
  --target thumbv7em-none-eabihf --locked

lib=target/thumbv7em-none-eabihf/release/libpaywall_auth_ffi.a
out=target/ffi-firmware
mkdir -p "$out"
cd adapters/ffi
flags=(-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -std=c11
  -Wall -Wextra -Werror -ffunction-sections -fdata-sections -Iinclude
  firmware/firmware.c "../../$lib" -nostartfiles --specs=nano.specs --specs=nosys.specs
  -Lfirmware -Wl,--gc-sections -Wl,--no-warn-execstack)
arm-none-eabi-gcc "${flags[@]}" -T firmware/link.ld -o "../../$out/paywall-auth-c-firmware.elf"
arm-none-eabi-gcc "${flags[@]}" -DPAYWALL_AUTH_FW_QEMU -T firmware/link-mps2.ld \
  -o "../../$out/paywall-auth-c-firmware-qemu.elf"
cd ../..

echo "C firmware (C driver + paywall-auth-ffi staticlib, newlib-nano):"
python3 examples/embassy-firmware/tools/elf_size.py "$out/paywall-auth-c-firmware.elf" \
  --check adapters/ffi/firmware/size-budget.txt --slack 10

echo "running it under QEMU mps2-an386 (semihosting exit code is the result):"
timeout 120 qemu-system-arm -M mps2-an386 -nographic \
  -semihosting-config enable=on,target=native \
  -kernel "$out/paywall-auth-c-firmware-qemu.elf"
echo "C firmware: lifecycle passed on Cortex-M4 (QEMU)"
