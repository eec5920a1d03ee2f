#!/usr/bin/env bash
# util/fuzz.sh [SECONDS | -runs=N] [TARGET...] - run each libFuzzer target of fuzz/ for a bounded
# time (default 20 s each) or number of inputs; exit non-zero if any target crashes (the
# crashing input is kept under fuzz/artifacts/<target>/). See fuzz/README.md.
#
# Only stable Rust is installed on our machines and no nightly toolchain can be fetched.
# cargo-fuzz passes nightly-only rustc flags (-Zsanitizer=address, sancov passes); the stable
# compiler accepts them when RUSTC_BOOTSTRAP=1. It is set here, for these builds only: the
# main workspace never sees it, so it can never start to depend on unstable features.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
limit="-max_total_time=20"
if [[ $# -gt 0 ]]; then
  case $1 in
    -runs=*) limit=$1; shift ;;
    ''|*[!0-9]*) ;;
    *) limit="-max_total_time=$1"; shift ;;
  esac
fi
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
cd "$root/fuzz"
target_dir=${VGLET_FUZZ_TARGET_DIR:-$root/fuzz/target}
if [[ $# -gt 0 ]]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
# One build of every target (release with debug assertions, ASan), then the runs.
cargo fuzz build --target-dir "$target_dir"
failed=()
for t in "${targets[@]}"; do
  # The working corpus grows during runs; it lives outside the source tree, seeded from
  # the committed seeds.
  corpus="$target_dir/corpus/$t"
  mkdir -p "$corpus" "$root/fuzz/artifacts/$t"
  [[ -d seeds/$t ]] && cp -n seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $t ($limit)" >&2
  if ! cargo fuzz run --target-dir "$target_dir" "$t" "$corpus" -- \
      "$limit" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$root/fuzz/artifacts/$t/" 2> >(grep -v -e '^"' -e '^######' | tail -n 60 >&2); then
    failed+=("$t")
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash" >&2
