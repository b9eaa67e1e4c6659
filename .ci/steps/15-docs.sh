#!/usr/bin/env bash
# Docs and packaging, as a crates.io / docs.rs user meets them:
# - rustdoc of every crate with warnings as errors (broken or private links,
#   bad HTML), with default features and with the docs.rs feature sets of the
#   crates whose features gate items (also renders their feature lists);
# - every publishable crate packaged and verified against the others
#   (`cargo publish --dry-run` builds each .crate in isolation, so a path
#   dependency without a version or a file outside the crate fails here).
# README snippets are doctests and run with the workspace tests.
set -euo pipefail
cd "$(dirname "$0")/../.."

export RUSTDOCFLAGS="-D warnings"
cargo doc --workspace --no-deps --locked
cargo doc --no-deps --locked -p paywall-auth --features defmt,document-features,trace
cargo doc --no-deps --locked -p paywall-auth-embassy \
  --features embassy-net,dns,defmt,document-features,embassy-net/medium-ip
unset RUSTDOCFLAGS

# The dry run verifies each crate against the others through a local
# overlay registry, and cargo unpacks each packaged crate under
# ~/.cargo/registry/src/<overlay>/ only once per name and version: on a
# machine that ran an earlier dry run of the same version, the old sources
# would be compiled instead of today's. Drop those unpacked copies (only
# this workspace's crates, only in overlay registries, whose directory
# names start with "-").
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
for dir in "$cargo_home"/registry/src/-*/paywall-auth*-[0-9]*; do
  if [ -d "$dir" ]; then rm -rf "$dir"; fi
done
# The verification builds go to their own target directory, without
# debuginfo, and it is removed afterwards: each packaged crate is built alone
# with its own feature set, so nothing is shared with the workspace's
# builds, and with full debuginfo (the packaged manifests carry no profile)
# they left ~2 GB behind for the rest of the run.
verify_dir=target/publish-verify
CARGO_PROFILE_DEV_DEBUG=false cargo publish --workspace --dry-run --locked --allow-dirty \
  --target-dir "$verify_dir"
rm -rf "$verify_dir"
