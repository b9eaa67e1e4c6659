#!/usr/bin/env bash
# Runs bench.mjs on today's package and on the baseline (the package as it
# was before issue 12, commit b19f70a) in one Node process, so the ratios
# compare like with like on the same machine load.
#
#   adapters/wasm/bench/run.sh [--quick]
#
# The baseline is built from an export of that commit under target/ with its
# own build.sh (sharing this checkout's target dir and wasm-bindgen
# install); it is built once and reused. SKIP_BUILD=1 skips rebuilding
# today's package.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
base_commit="${BASELINE_COMMIT:-b19f70a}"
base="$root/target/wasm-bench-baseline/$base_commit"

if [ ! -f "$base/adapters/wasm/pkg/node.js" ]; then
  if [ ! -f "$base/Cargo.toml" ]; then
    # An export of the commit, not a worktree: nothing is registered in the
    # repository.
    rm -rf "$base"
    mkdir -p "$base"
    git -C "$root" archive "$base_commit" | tar -x -C "$base"
  fi
  # This checkout's target dir (dependencies are shared; the baseline's own
  # crates have another path, so other artifacts) and wasm-bindgen install.
  ln -sfn "$root/target" "$base/target"
  [ -e "$base/adapters/wasm/.tools" ] || ln -sfn "$here/.tools" "$base/adapters/wasm/.tools"
  (cd "$base" && env -u PAYWALL_AUTH_ACCESS_TOKEN_MAX -u PAYWALL_AUTH_REFRESH_TOKEN_MAX bash adapters/wasm/build.sh)
  # Both trees link to the same uplifted .wasm path: make this tree's build
  # relink its own.
  touch "$here/src/lib.rs"
  SKIP_BUILD=0
fi
if [ "${SKIP_BUILD:-0}" = 0 ]; then
  bash "$here/build.sh"
fi
node "$here/bench/bench.mjs" --pkg "$base/adapters/wasm/pkg" --label "$base_commit" --pkg "$here/pkg" --label "this tree" "$@"
