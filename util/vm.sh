#!/usr/bin/env bash
# util/vm.sh - build the VM harness's `vmrun` and run it: boot Debian's kernel in QEMU over the
# host root and run one command in the guest (as root, by bash -c: one word is a script,
# several are a program and its arguments, each quoted); exit with its status.
#
#   util/vm.sh [--name N] [--mem 1G] [--cpus 2] [--disk IMG] [--fresh-disk NAME:SIZE]
#              [--shared-disk IMG] [--pmem FILE] [--fresh-pmem NAME:SIZE] [--share DIR]
#              [--module M] [--udev] [--timeout SECS] [--env K=V] [--log FILE] [--quiet]
#              -- COMMAND...
#   e.g. util/vm.sh --fresh-disk d1:1G --module dm_mod -- 'pvcreate /dev/vda && pvs'
#
# The guest starts in the current directory; build what it should run before booting it.
# Exit: the command's status; 124 timeout; 125 guest died without status; 126 guest setup
# failed; 2 host not ready (run util/deps.sh) or bad usage. See tests/harness/README.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# No cd: the guest's working directory is the caller's.
cargo build -q --manifest-path "$root/Cargo.toml" -p vglet-vmh --bin vmrun
target=$(cargo metadata -q --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
exec "${target:-$root/target}/debug/vmrun" "$@"
