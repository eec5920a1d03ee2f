#!/usr/bin/env bash
# Every vglet test: formatting and lints, unit tests, host integration tests, and the
# end-to-end tests that boot a QEMU guest with a full kernel (device-mapper, real mounts).
#
#   util/test.sh            # everything
#   util/test.sh --quick    # fmt, clippy, unit + host tests; no VM (VGLET_SKIP_VM=1)
#
# Installs what it needs on a fresh Debian machine first (util/deps.sh, fast when present).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ ${1:-} == --quick ]] && quick=1

step() { printf '\n==> %s\n' "$*"; }
t0=$SECONDS

step "system packages"
util/deps.sh

step "Kubernetes manifests (offline validation)"
util/validate-manifests.sh

step "cargo fmt --check"
cargo fmt --all -- --check
# The fuzz targets are a workspace of their own (nightly cargo-fuzz builds them); keep them
# formatted like the rest.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

step "cargo clippy --all-targets -D warnings (the workspace, then fuzz/)"
cargo clippy --workspace --all-targets -q -- -D warnings
# The fuzz targets too: plain clippy on stable checks them (only building them for fuzzing
# needs cargo-fuzz's nightly flags, util/fuzz.sh). Own target dir, fuzz/target, as there.
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -q -- -D warnings

step "build (binaries are run inside the guest, so they must exist before it boots)"
cargo build --workspace --all-targets -q

step "container images: build (Debian bases cached in ~/.cache/vglet) and check each one"
VGLET_IMAGE_PROFILE=debug util/build-images.sh
util/check-images.sh

if [[ $quick == 1 ]]; then
  export VGLET_SKIP_VM=1
fi
if [[ $quick == 0 ]]; then
  step "fuzz: a bounded run of every target (longer runs: fuzz/README.md)"
  util/fuzz.sh 10
fi

step "cargo test (unit, host integration$([[ $quick == 1 ]] || echo ', in-VM end-to-end'))"
# Guests take both cores; the harness serialises them with a lock, and one test thread per
# binary keeps the console output readable.
# --no-fail-fast: one failing binary must not hide how the others fare.
cargo test --workspace --no-fail-fast -- --test-threads=1 2>&1 | tee target/test.log
printf '\nall tests passed in %ds\n' $((SECONDS - t0))
# The closing line CI reads: totals over every test binary of the run.
grep -E '^test result:' target/test.log | awk '{p+=$4; f+=$6} END {printf "%d passed, %d failed\n", p, f}'
