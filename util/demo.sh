#!/usr/bin/env bash
# vglet demo: the main job end to end on an embedded default.
#
# The product's stage chain on two sparse files as loop-device disks: disk-discover picks the
# blank one (and says why it skips the one with a filesystem), vg-init makes and tags the VG,
# csi-driver (--mode all) serves it, and csictl walks one volume through its life:
# create -> stage (mkfs+mount) -> publish (bind) -> write -> expand online -> stats ->
# the node "reboots" (driver gone, mounts gone, LV inactive) -> reviver brings the mounts back
# with the data -> unpublish -> unstage -> delete.
#
# Run as root. On a host whose kernel has no device-mapper (nothing could be activated or
# mounted), the same script re-runs itself inside a QEMU guest booting Debian's kernel.
#
#   util/demo.sh            # VGLET_DEMO_SIZE=2G, VGLET_DEMO_VG=vglet-demo to change defaults
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${VGLET_BIN_DIR:-$ROOT/target/debug}

has_device_mapper() {
  modprobe -q dm_mod 2>/dev/null || true
  dmsetup version >/dev/null 2>&1
}

if [[ ${VGLET_DEMO_IN_GUEST:-0} != 1 ]]; then
  [[ $(id -u) == 0 ]] || { echo "demo: run as root (it creates a loop device and a VG)" >&2; exit 1; }
  util/deps.sh
  echo "==> building vglet"
  cargo build -q -p disk-discover -p vg-init -p csi-driver -p csictl -p reviver -p vglet-vmh --bins
  if ! has_device_mapper; then
    echo "==> this kernel has no device-mapper: running the demo inside a QEMU guest (Debian kernel, software emulation)"
    exec "$BIN/vmrun" --name vglet-demo --mem 1536 --module dm_mod --module loop --module ext4 \
      --timeout 600 --env VGLET_DEMO_IN_GUEST=1 -- bash "$ROOT/util/demo.sh"
  fi
fi

VG=${VGLET_DEMO_VG:-vglet-demo}
SIZE=${VGLET_DEMO_SIZE:-2G}
WORK=$(mktemp -d /tmp/vglet-demo.XXXXXX)
SOCK=$WORK/csi.sock
STAGING=$WORK/staging
TARGET=$WORK/pods/demo-pod/volume
LOOP=
LOOP2=
DRIVER=
export LVM_SUPPRESS_FD_WARNINGS=1

cleanup() {
  set +e
  [[ -n $DRIVER ]] && kill "$DRIVER" 2>/dev/null && wait "$DRIVER" 2>/dev/null
  for m in "$TARGET" "$STAGING"; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
  vgs "$VG" >/dev/null 2>&1 && vgremove -q -ff -y "$VG" >/dev/null
  [[ -n $LOOP ]] && { pvremove -q "$LOOP" >/dev/null 2>&1; losetup -d "$LOOP"; }
  [[ -n $LOOP2 ]] && losetup -d "$LOOP2"
  rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
say() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
show() { printf '$ %s\n' "$*"; "$@"; }
csictl() { printf '$ csictl %s\n' "$*"; "$BIN/csictl" --endpoint "unix://$SOCK" "$@"; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

start_driver() {
  "$BIN/csi-driver" --mode all --node-id demo-node --volume-group "$VG" --state-dir "$WORK/state" \
    --endpoint "unix://$SOCK" --log-format text >>"$WORK/driver.log" 2>&1 &
  DRIVER=$!
  for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
  [[ -S $SOCK ]] || { cat "$WORK/driver.log"; echo "demo: csi-driver did not start" >&2; exit 1; }
}
stop_driver() { kill "$DRIVER"; wait "$DRIVER" || true; DRIVER=; }

say "two ${SIZE} sparse files as disks: one blank, one holding an ext4 filesystem"
truncate -s "$SIZE" "$WORK/disk.img" "$WORK/data.img"
LOOP=$(losetup -f --show "$WORK/disk.img")
LOOP2=$(losetup -f --show "$WORK/data.img")
show mkfs.ext4 -q "$LOOP2"

say "disk-discover: which disks may vglet take? It never takes one that holds data"
show "$BIN/disk-discover" --glob "$LOOP" --glob "$LOOP2" --output "$WORK/inventory.json" --log warn
python3 - "$WORK/inventory.json" <<'EOF'
import json, sys
inv = json.load(open(sys.argv[1]))
for d in inv["devices"]:
    print(f"  chosen:  {d['path']} ({d['reason']})")
for s in inv["skipped"]:
    print(f"  skipped: {s['path']}: {'; '.join(s['reasons'])}")
EOF

say "vg-init: first the exact lvm commands it would run, then the VG, tagged as vglet's"
show "$BIN/vg-init" --vg "$VG" --inventory "$WORK/inventory.json" --dry-run --log warn
show "$BIN/vg-init" --vg "$VG" --inventory "$WORK/inventory.json" --log warn
show vgs -o vg_name,pv_name,vg_size,vg_tags "$VG"

say "csi-driver --mode all (log: $WORK/driver.log)"
start_driver
ls -l "$SOCK"
csictl identity info
# The socket answers before start-up's lvm reads end; Probe says "not ready" (exit 4)
# until they do.
for _ in $(seq 300); do
  "$BIN/csictl" --endpoint "unix://$SOCK" identity probe >/dev/null 2>&1 && break
  kill -0 "$DRIVER" 2>/dev/null || break
  sleep 0.1
done
csictl identity probe

say "CreateVolume: 256 MiB, ext4"
csictl controller create demo-data --size 256Mi --fs-type ext4 --param volumeGroup="$VG"
VOL=$("$BIN/csictl" --endpoint "unix://$SOCK" --json controller create demo-data --size 256Mi \
  --fs-type ext4 --param volumeGroup="$VG" | json_field volume_id)
echo "volume id: $VOL (created once: the second create returned the same volume)"
show lvs -o lv_name,lv_size,lv_tags "$VG"

say "NodeStageVolume (mkfs.ext4 + mount) and NodePublishVolume (bind mount)"
csictl node stage "$VOL" --staging-path "$STAGING" --fs-type ext4 --mount-flag noatime
csictl node publish "$VOL" --staging-path "$STAGING" --target-path "$TARGET" --fs-type ext4
show findmnt -o TARGET,SOURCE,FSTYPE,OPTIONS "$STAGING"
show findmnt -o TARGET,SOURCE,FSTYPE,OPTIONS "$TARGET"

say "the pod writes data"
echo "hello from vglet, $(date -u +%FT%TZ)" > "$TARGET/hello.txt"
sync
show cat "$TARGET/hello.txt"

say "expand online to 512 MiB: ControllerExpandVolume (lvextend) + NodeExpandVolume (resize2fs)"
show df -h "$TARGET"
csictl controller expand "$VOL" --size 512Mi --fs-type ext4
csictl node expand "$VOL" --volume-path "$TARGET" --staging-path "$STAGING" --size 512Mi
show df -h "$TARGET"

say "NodeGetVolumeStats, ListVolumes, GetCapacity"
csictl node stats "$VOL" --volume-path "$TARGET"
csictl controller list
csictl controller capacity --param volumeGroup="$VG"

say "the node \"reboots\": csi-driver stops, the mounts and the LV's activation are gone"
stop_driver
show umount "$TARGET"
show umount "$STAGING"
show vgchange -q -an "$VG"
show lvs -o lv_name,lv_active "$VG"

say "reviver (it runs before csi-driver on a boot): the LV, the staging mount and the bind are back"
show "$BIN/reviver" --state-dir "$WORK/state" --volume-group "$VG" --wait-timeout 30s --log warn
show findmnt -o TARGET,SOURCE,FSTYPE "$TARGET"
show cat "$TARGET/hello.txt"
start_driver

say "bad input changes nothing: an id vglet never issued is deleted as 'already gone' (the CSI spec's OK), an empty name is refused"
csictl controller delete "../etc" || echo "(refused, exit $?)"
show lvs -o lv_name "$VG"
csictl controller create "" --size 1Mi || echo "(refused, exit $?)"

say "tear down and DeleteVolume"
csictl node unpublish "$VOL" --target-path "$TARGET"
csictl node unstage "$VOL" --staging-path "$STAGING"
csictl controller delete "$VOL"
show lvs "$VG"
[[ -z $(lvs --noheadings -o lv_name "$VG") ]] || { echo "demo: LV still present" >&2; exit 1; }

say "demo complete: every step succeeded"
