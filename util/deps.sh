#!/usr/bin/env bash
# util/deps.sh - install the Debian 12 packages that vglet's VM test harness and the storage
# tests inside the guest need. Idempotent and fast when everything is present (no apt-get
# update then). Run as root, or as a user with sudo.
#
#   harness: qemu-system-x86 linux-image-amd64 busybox-static kmod cpio python3
#   guest tools under test: lvm2 lvm2-lockd sanlock thin-provisioning-tools xfsprogs e2fsprogs
#                           ndctl udev util-linux cryptsetup-bin (encrypted volumes)
#   two-host dlm test: corosync dlm-controld iproute2 (guests joined by a QEMU UDP link)
#   container images: mmdebstrap umoci (util/build-images.sh, util/check-images.sh),
#                     crun (tests/e2e/tests/node_pod.rs runs the node pod's containers)
set -euo pipefail

PKGS=(
  qemu-system-x86 linux-image-amd64 busybox-static kmod cpio python3
  lvm2 lvm2-lockd sanlock thin-provisioning-tools xfsprogs e2fsprogs ndctl udev util-linux
  cryptsetup-bin
  corosync dlm-controld iproute2
  mmdebstrap umoci crun
)

missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "deps: all ${#PKGS[@]} packages present"
else
  echo "deps: installing ${missing[*]}"
  as_root=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install packages" >&2; exit 1; }
    as_root=(sudo)
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  # busybox-static replaces a dynamic busybox if one is installed (the initramfs needs static).
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  echo "deps: installed ${missing[*]}"
fi

# The harness boots the newest /boot/vmlinuz-* that has /lib/modules/<version>.
found=
for k in /boot/vmlinuz-*; do
  [[ -e $k && -d /lib/modules/${k#/boot/vmlinuz-} ]] && found=$k
done
if [[ -z $found ]]; then
  echo "deps: no /boot/vmlinuz-* with /lib/modules/<version>: is linux-image-amd64 really installed?" >&2
  exit 1
fi
