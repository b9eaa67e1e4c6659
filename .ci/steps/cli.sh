#!/usr/bin/env bash
# The project README's first command, exactly as a newcomer runs it: the
# release profile (LTO, panic=abort, stripped) of the `paywall-auth` CLI
# walking through the whole anonymous lifecycle against its in-process
# emulator. `cargo test` covers the debug build; this catches what only the
# release profile can break. The demo exits non-zero at the first broken step.
set -euo pipefail
NO_COLOR=1 cargo run --release --locked -p paywall-auth-cli -- demo
