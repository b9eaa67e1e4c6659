#!/usr/bin/env bash
# Core flash budget: builds footprint/ (a thumbv7em-none-eabihf firmware that
# drives the core through its whole lifecycle) and fails when the flash the
# core adds exceeds footprint/budget.txt by more than 10%.
set -euo pipefail
cd "$(dirname "$0")/../.."

rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || rustup target add thumbv7em-none-eabihf
report=$(bash footprint/measure.sh)
echo "$report"

measured=$(sed -n 's/^core_flash_bytes=//p' <<<"$report")
budget=$(sed -n 's/^core_flash_bytes=//p' footprint/budget.txt)
if [ -z "$measured" ] || [ -z "$budget" ]; then
  echo "core footprint: could not read the measurement or the budget" >&2
  exit 1
fi
limit=$(( budget + budget / 10 ))
if [ "$measured" -gt "$limit" ]; then
  echo "core footprint: FAIL — core flash ${measured} B exceeds budget ${budget} B by more than 10% (limit ${limit} B)" >&2
  exit 1
fi
echo "core footprint: ok — core flash ${measured} B (budget ${budget} B, limit ${limit} B)"
