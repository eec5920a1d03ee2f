#!/bin/busybox sh
# /init of the vglet VM harness initramfs (embedded into the cpio by the harness; changing this
# file changes the cache key, so the initramfs is rebuilt on the next run).
# Contents of the initramfs: /bin/busybox (static), /mods/*.ko + /mods/order (virtio, 9p,
# overlay), /dev/console. It mounts the HOST root over 9p read-only, puts a tmpfs-backed
# overlay on top (the guest may write anywhere, the host stays untouched) and switch_roots into
# it with /proc /sys /dev /dev/pts /dev/shm /run /tmp and the vglet_rc share (/run/vglet-rc)
# already mounted, exec'ing the PID-1 script named by the rc share's `init` file (a host path;
# a vglet_init= on the kernel command line overrides it). Paths may contain spaces: they travel
# in files of the rc share, never on the command line.
#
# Those fresh tmpfs mounts hide the host's /tmp, /run and /dev/shm. Host directories the guest
# still needs from there (a checkout or target dir under /tmp) are listed in the rc share's
# `expose` file, one per line; each gets its own overlay (host dir read-only below, tmpfs above)
# at the same path, so the guest sees and may write it like the rest of the host root.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
die() { echo "vglet-vm(initramfs): $*"; poweroff -f; }
P=
debug=0
grep -q vglet_debug=1 /proc/cmdline && debug=1
# Read now: /proc is moved into the new root before the init script is chosen.
cmdline_init=
for kv in $(cat /proc/cmdline); do
  case $kv in vglet_init=*) cmdline_init=${kv#vglet_init=} ;; esac
done
t() { [ $debug = 1 ] && echo "vglet-vm(initramfs): $(cut -d' ' -f1 $P/proc/uptime)s $*"; }
t start
for m in $(cat /mods/order); do insmod "/mods/$m" || echo "vglet-vm(initramfs): insmod $m failed"; done
t modules loaded
mount -t 9p -o ro,trans=virtio,version=9p2000.L,access=any,msize=524288,cache=loose hostroot /lower \
  || die "mounting the host root over 9p failed"
mount -t tmpfs -o mode=755 tmpfs /rw && mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
  || die "overlay mount failed"
t root mounted
# Mount what init.sh needs here: busybox in RAM is much cheaper than exec'ing mount over 9p.
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount --move /dev /newroot/dev && mount --move /sys /newroot/sys && mount --move /proc /newroot/proc \
  || die "moving /dev /sys /proc into the new root failed"
P=/newroot R=/newroot
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o nosuid,nodev tmpfs $R/dev/shm
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs $R/run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $R/tmp
mkdir -p $R/run/vglet-rc $R/run/lock/lvm $R/run/lvm
mount -t 9p -o trans=virtio,version=9p2000.L,access=any,msize=524288 vglet_rc $R/run/vglet-rc \
  || die "mounting the vglet_rc share failed"
RC=$R/run/vglet-rc
n=0
if [ -f "$RC/expose" ]; then
  while IFS= read -r dir; do
    [ -n "$dir" ] || continue
    n=$((n + 1))
    mkdir -p "/rw/x$n/upper" "/rw/x$n/work" "$R$dir" || die "mkdir $dir failed"
    mount -t overlay overlay -o "lowerdir=/lower$dir,upperdir=/rw/x$n/upper,workdir=/rw/x$n/work" "$R$dir" \
      || die "exposing the host's $dir in the guest failed"
  done <"$RC/expose"
fi
t exposed $n host dirs
init=
[ -f "$RC/init" ] && IFS= read -r init <"$RC/init"
[ -n "$cmdline_init" ] && init=$cmdline_init
[ -n "$init" ] || die "no init script named (rc share file 'init' or vglet_init=)"
[ -x "$R$init" ] || die "$init is not executable in the host root"
t switch_root
exec switch_root /newroot "$init"
