#!/bin/bash
# PID 1 of a vglet harness guest. The initramfs switch_root'ed into overlay(host root read-only
# over 9p, tmpfs) and exec'd this file from the HOST filesystem (it is read live: edits apply on
# the next boot without rebuilding anything).
#
# Everything about the job comes from the read-write 9p share `vglet_rc`, mounted at
# /run/vglet-rc (written by the host harness before boot):
#   job.sh  sourced here: VGLET_NAME VGLET_CWD VGLET_UDEV VGLET_MODULES VGLET_DEBUG
#           VGLET_SHARE_TAGS[] VGLET_SHARE_PATHS[]
#   env.sh  `export K='V'` lines, sourced right before the command
#   cmd     the command line, run as `bash -c "$cmd"`
# and the results go back there:
#   rc           the command's exit status (written last, atomically)
#   setup-error  why the guest could not even start the command
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8
RC=/run/vglet-rc
uptime_s() { local u _; read -r u _ </proc/uptime; echo "$u"; }
halt_now() { sync; exec /bin/busybox poweroff -f; }
setup_failed() {
  echo "vglet-vm: setup failed: $*" >&2
  [ -d "$RC" ] && echo "$*" >"$RC/setup-error"
  halt_now
}

# The initramfs mounted /proc /sys /dev /dev/pts /dev/shm /run /tmp and $RC already.
[ -e /proc/self ] || mount -t proc proc /proc
[[ $(</proc/cmdline) == *vglet_debug=1* ]] && echo "vglet-vm: init.sh started at $(uptime_s)s"
[[ $(</proc/mounts) == *" $RC 9p "* ]] || { echo "vglet-vm: the vglet_rc share is not mounted" >&2; halt_now; }
[ -r "$RC/job.sh" ] || setup_failed "no job.sh in the rc share"
# shellcheck source=/dev/null
. "$RC/job.sh"
if [ "${VGLET_DEBUG:-0}" = 1 ]; then
  PS4='+ [$(uptime_s)] '
  set -x
fi

name=${VGLET_NAME:-vglet}
echo "$name" >/proc/sys/kernel/hostname
echo "$name" >/etc/hostname

for i in "${!VGLET_SHARE_TAGS[@]}"; do
  tag=${VGLET_SHARE_TAGS[$i]} dir=${VGLET_SHARE_PATHS[$i]}
  mkdir -p "$dir" || setup_failed "mkdir $dir"
  mount -t 9p -o trans=virtio,version=9p2000.L,access=any,msize=524288 "$tag" "$dir" \
    || setup_failed "mounting share $dir failed"
done

if [ -n "${VGLET_MODULES:-}" ]; then
  # shellcheck disable=SC2086
  modprobe -a $VGLET_MODULES || setup_failed "modprobe -a $VGLET_MODULES failed"
fi

# The edits below land in the tmpfs overlay: the host's /etc stays untouched.
if [ "${VGLET_UDEV:-0}" = 1 ]; then
  udevd=/lib/systemd/systemd-udevd
  [ -x "$udevd" ] || udevd=/usr/lib/systemd/systemd-udevd
  [ -x "$udevd" ] || setup_failed "udev requested but systemd-udevd is missing (apt-get install udev)"
  "$udevd" --daemon 2>/dev/null || setup_failed "systemd-udevd failed to start"
  udevadm trigger --action=add --subsystem-match=block --subsystem-match=nd --subsystem-match=dax
  udevadm settle -t 30 || echo "vglet-vm: warning: udevadm settle timed out" >&2
elif [ -f /etc/lvm/lvm.conf ]; then
  # No udevd: libdm/lvm must create /dev/mapper nodes and /dev/VG/LV links themselves,
  # otherwise lvcreate fails with "device not cleared".
  # (Debian's and upstream's lvm.conf have the section line uncommented.)
  sed -i 's/^activation {/activation {\n\tudev_sync = 0\n\tudev_rules = 0/' /etc/lvm/lvm.conf
fi

export VGLET_IN_GUEST=1 VGLET_VM_NAME="$name" LVM_SUPPRESS_FD_WARNINGS=1
cwd=${VGLET_CWD:-/root}
if ! cd "$cwd" 2>/dev/null; then
  echo "vglet-vm: warning: $cwd does not exist in the guest (host /tmp and /run are hidden); using /" >&2
  cd /
fi
echo "vglet-vm: ready at $(uptime_s)s"
set +x
(
  # shellcheck source=/dev/null
  . "$RC/env.sh"
  exec bash -c "$(<"$RC/cmd")"
) </dev/null
rc=$?
echo "vglet-vm: exit=$rc at $(uptime_s)s"
echo "$rc" >"$RC/rc.tmp" && mv -f "$RC/rc.tmp" "$RC/rc"
halt_now
