#!/usr/bin/env bash
# util/bench/run.sh - measure csi-driver against its floor (the bare lvm/mkfs/mount commands)
# inside the QEMU guest, and write docs/benchmarks.md and docs/benchmarks.json.
#
#   util/bench/run.sh            # the full run (200 cycles, burst of 100, 1,000 LVs, ...)
#   util/bench/run.sh --quick    # a smoke run with small numbers; docs/ are not touched
#   util/bench/run.sh -- --cycles 500 --burst 200   # vglet-bench flags (see its --help)
#
# Without a guest, spawn → first Probe answered needs neither a VG nor root:
#   cargo build --release -p csi-driver -p vglet-bench && target/release/vglet-bench --probe-only
#
# Builds csi-driver and vglet-bench in release mode, boots a guest with two blank (24 and 8 GiB, sparse)
# virtio disks (udev on, as on a real host), runs target/release/vglet-bench in it, and
# copies its results into docs/. Needs root (util/deps.sh installs QEMU and the kernel).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

quick=0
extra=()
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "usage: $0 [--quick] [-- vglet-bench flags]" >&2; exit 2 ;;
  esac
  shift
done

util/deps.sh
echo "==> building (release: the figures are for what ships)"
cargo build -q --release -p csi-driver -p vglet-bench
cargo build -q -p vglet-vmh --bin vmrun
# The guest sees the host's root, so a CARGO_TARGET_DIR outside the repository works too.
target=${CARGO_TARGET_DIR:-$ROOT/target}
target=$(cd "$target" && pwd)

out=$target/bench
rm -rf "$out" && mkdir -p "$out"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
env_desc="QEMU $(qemu-system-x86_64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p') TCG guest (software emulation) on ${cpu:-unknown CPU}, $(nproc) host cores"

args=(--device /dev/vda --device /dev/vdb --out "$out")
if [[ $quick == 1 ]]; then
  args+=(--cycles 5 --scale-cycles 3 --scale-lvs 100 --scale-devices 5 --burst 10 --stage-reps 1 --start-reps 2)
fi

echo "==> booting the guest and measuring (the full run takes about half an hour)"
"$target/debug/vmrun" --name vglet-bench --mem 2048 --cpus 2 \
  --fresh-disk b1:24G --fresh-disk b2:8G \
  --module dm_mod --module ext4 --module xfs --module loop --udev \
  --share "$out" --timeout 7200 --env "VGLET_BENCH_ENVIRONMENT=$env_desc" \
  -- "$target/release/vglet-bench" "${args[@]}" "${extra[@]}"

if [[ $quick == 1 ]]; then
  echo "==> quick run: results in $out (docs/ unchanged)"
  exit 0
fi
marker='<!-- results: everything below is written by util/bench/run.sh -->'
grep -qF "$marker" docs/benchmarks.md || { echo "docs/benchmarks.md lacks the results marker" >&2; exit 1; }
{
  sed "/$(printf '%s' "$marker" | sed 's/[][\/.*^$]/\\&/g')/q" docs/benchmarks.md
  echo
  cat "$out/bench.md"
} > "$out/benchmarks.md"
mv "$out/benchmarks.md" docs/benchmarks.md
cp "$out/bench.json" docs/benchmarks.json
# The picture, from the JSON just written (Debian's python3 and its matplotlib).
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || apt-get install -y -q python3-matplotlib >/dev/null
util/bench/plot.py docs/benchmarks.json docs/benchmarks.png
echo "==> docs/benchmarks.md, docs/benchmarks.json and docs/benchmarks.png updated"
