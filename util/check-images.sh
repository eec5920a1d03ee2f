#!/usr/bin/env bash
# util/check-images.sh - check the OCI archives util/build-images.sh wrote: each image's
# entrypoint (read from the image's own config, as a runtime would) answers --version with
# this workspace's version, every other vglet binary in it does too, every command its stage
# runs is on the image's PATH (init-containers/stages.txt, the one list), and the images with
# lvm carry init-containers/lvm.conf with udev sync and monitoring off, as lvm itself reads it.
#
#   util/check-images.sh [IMAGE...]     # default: every image in stages.txt
#
# Runs the images' files with chroot, not with a container runtime: --version needs no
# namespaces, and a runtime needs cgroups that a CI container may not have. Root only.
# Env: VGLET_IMAGE_TAG, VGLET_IMAGE_OUT as for build-images.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${VGLET_IMAGE_TAG:-v0.1.0}
OUT=${VGLET_IMAGE_OUT:-target/images}
STAGES=${VGLET_IMAGE_STAGES:-init-containers/stages.txt}
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)

log() { printf 'check-images: %s\n' "$*" >&2; }
[[ $(id -u) == 0 ]] || {
  log "run as root (umoci unpack and chroot)"
  exit 1
}
[[ -n $VERSION ]] || {
  log "cannot read the workspace version from Cargo.toml"
  exit 1
}

declare -A BINS TOOLS PKGS
ALL=()
while IFS='|' read -r name bins pkgs tools; do
  read -r name _ <<<"$name"
  [[ -z $name || $name == \#* ]] && continue
  ALL+=("$name")
  BINS[$name]=$(xargs <<<"$bins")
  PKGS[$name]=" $(xargs <<<"$pkgs") "
  TOOLS[$name]=$(xargs <<<"$tools")
done <"$STAGES"

images=("$@")
((${#images[@]})) || images=("${ALL[@]}")

work=$(mktemp -d "${TMPDIR:-/tmp}/vglet-check-images.XXXXXX")
trap 'umount -q "$work"/*/bundle/rootfs/proc 2>/dev/null || true; rm -rf --one-file-system "$work"' EXIT

fail=0
bad() {
  printf 'FAIL %s: %s\n' "$1" "$2"
  fail=$((fail + 1))
}

for i in "${images[@]}"; do
  archive=$OUT/$i.oci.tar
  fail_before=$fail
  [[ -n ${BINS[$i]:-} ]] || { bad "$i" "not an image in $STAGES"; continue; }
  [[ -f $archive ]] || { bad "$i" "no $archive (run util/build-images.sh)"; continue; }
  mkdir -p "$work/$i/layout"
  tar -C "$work/$i/layout" -xf "$archive"
  if ! umoci unpack --image "$work/$i/layout:$TAG" "$work/$i/bundle" >/dev/null 2>&1; then
    bad "$i" "umoci cannot unpack tag $TAG of $archive"
    continue
  fi
  root=$work/$i/bundle/rootfs
  # What a runtime would execute: process.args and process.env of the generated runtime spec.
  mapfile -t args < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["process"]["args"]))' "$work/$i/bundle/config.json")
  mapfile -t envs < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["process"]["env"]))' "$work/$i/bundle/config.json")
  entry=${BINS[$i]%% *}
  [[ ${args[*]} == "/usr/local/bin/$entry" ]] ||
    bad "$i" "entrypoint is '${args[*]}', expected /usr/local/bin/$entry"

  out=$(chroot "$root" /usr/bin/env -i "${envs[@]}" "${args[@]}" --version 2>&1) ||
    bad "$i" "'${args[*]} --version' failed: $out"
  [[ $out == "$entry $VERSION" ]] || bad "$i" "'$entry --version' said '$out', expected '$entry $VERSION'"
  for b in ${BINS[$i]#"$entry"}; do
    out=$(chroot "$root" /usr/bin/env -i "${envs[@]}" "/usr/local/bin/$b" --version 2>&1) || true
    [[ $out == "$b $VERSION" ]] || bad "$i" "'$b --version' said '$out', expected '$b $VERSION'"
  done

  missing=()
  for t in ${TOOLS[$i]}; do
    chroot "$root" /usr/bin/env -i "${envs[@]}" /bin/sh -c 'command -v "$1"' sh "$t" >/dev/null ||
      missing+=("$t")
  done
  ((${#missing[@]} == 0)) || bad "$i" "not on the image's PATH: ${missing[*]}"

  if [[ ${PKGS[$i]} == *" lvm2 "* ]]; then
    cmp -s init-containers/lvm.conf "$root/etc/lvm/lvm.conf" ||
      bad "$i" "/etc/lvm/lvm.conf is not init-containers/lvm.conf"
    [[ " ${envs[*]} " == *" DM_DISABLE_UDEV=1 "* ]] || bad "$i" "DM_DISABLE_UDEV=1 not in the image's env"
    # lvm's own reading of the file, not a grep of it.
    # lvm reads /proc before it says anything, so the chroot gets one (unmounted at once).
    mount -t proc proc "$root/proc"
    got=$(chroot "$root" /usr/bin/env -i "${envs[@]}" LVM_SUPPRESS_FD_WARNINGS=1 \
      lvm config --typeconfig current activation/udev_sync activation/udev_rules \
      activation/monitoring devices/obtain_device_list_from_udev 2>/dev/null | paste -sd' ') || true
    umount "$root/proc"
    want="udev_sync=0 udev_rules=0 monitoring=0 obtain_device_list_from_udev=0"
    [[ $got == "$want" ]] || bad "$i" "lvm config says '$got', expected '$want'"
  fi
  ((fail > fail_before)) && continue
  printf 'PASS %s: %s --version, %d tools on PATH%s\n' \
    "$i" "${BINS[$i]}" "$(wc -w <<<"${TOOLS[$i]}")" \
    "$([[ ${PKGS[$i]} == *" lvm2 "* ]] && echo ', lvm.conf as lvm reads it')"
done

((fail == 0)) || {
  log "$fail failure(s)"
  exit 1
}
log "${#images[@]} image(s) checked"
