#!/usr/bin/env bash
# Fuzz smoke run: every cargo-fuzz target in fuzz/ for FUZZ_SECONDS (10) each,
# starting from the seeds in fuzz/seeds. A crash fails CI; the reproducer is
# left in fuzz/artifacts/<target>/.
#
# Needs a nightly toolchain and cargo-fuzz. Without nightly, or when
# cargo-fuzz cannot be installed within FUZZ_INSTALL_BUDGET seconds (a fresh
# install takes ~40 s), it prints a skip line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${FUZZ_SECONDS:-10}"
budget="${FUZZ_INSTALL_BUDGET:-300}"
version="0.13.2"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz smoke: SKIPPED (no nightly toolchain: rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version 2>/dev/null | grep -q "$version"; then
  echo "fuzz smoke: installing cargo-fuzz $version"
  if ! timeout "$budget" cargo install cargo-fuzz --locked --version "$version"; then
    echo "fuzz smoke: SKIPPED (cargo-fuzz $version could not be installed within ${budget}s)"
    exit 0
  fi
fi

cd fuzz
# Same dependency versions as the main workspace (the copy is git-ignored).
cp ../Cargo.lock Cargo.lock
targets=$(cargo +nightly fuzz list)
mkdir -p artifacts
for target in $targets; do
  mkdir -p "corpus/$target"
  log="artifacts/$target-smoke.log"
  echo "fuzz smoke: $target for ${seconds}s"
  if cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$log" | sed "s/^/  $target: /" || true
  else
    tail -n 60 "$log"
    echo "fuzz smoke: $target FAILED (reproducer in fuzz/artifacts/$target/)"
    exit 1
  fi
done
echo "fuzz smoke: $(echo $targets | wc -w) targets ran ${seconds}s each, no crash"
