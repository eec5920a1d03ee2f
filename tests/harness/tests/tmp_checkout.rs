//! A checkout under /tmp (a path with a space, too) boots: the guest mounts its own tmpfs on
//! /tmp, and the harness exposes the host's checkout there again (guest/initramfs-init.sh).
//! The proof is the README's first command, `util/demo.sh`, run from a fresh `git clone` of
//! this tree under /tmp, with the clone's own guest/init.sh as PID 1 and the clone as the
//! guest's working directory. It reuses this tree's built binaries (VGLET_BIN_DIR): building
//! the clone from scratch would take many minutes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vglet_vmh::{Vm, skip_vm_tests};

/// Removes the clone when the test ends, however it ends.
struct TmpDir(PathBuf);
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn demo_runs_from_a_fresh_clone_under_tmp() {
    if skip_vm_tests("demo_runs_from_a_fresh_clone_under_tmp") {
        return;
    }
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = Path::new(env!("CARGO_BIN_EXE_vmrun"))
        .parent()
        .unwrap()
        .to_path_buf();
    for b in [
        "disk-discover",
        "vg-init",
        "csi-driver",
        "csictl",
        "reviver",
    ] {
        assert!(
            bin.join(b).is_file(),
            "{} is missing: cargo build --workspace first",
            bin.join(b).display()
        );
    }
    let tmp = TmpDir(PathBuf::from(format!(
        "/tmp/vglet clone.{}",
        std::process::id()
    )));
    let clone = tmp.0.join("vglet");
    std::fs::create_dir_all(&tmp.0).unwrap();
    let st = Command::new("git")
        .args(["clone", "-q"])
        .arg(&tree)
        .arg(&clone)
        .status()
        .expect("git clone");
    assert!(st.success(), "git clone failed");
    // The guest starts in the host's cwd at spawn time: the clone.
    std::env::set_current_dir(&clone).unwrap();
    let out = Vm::new("tmpclone")
        .mem_mib(1536)
        .modules(["dm_mod", "loop", "ext4"])
        .init_script(clone.join("tests/harness/guest/init.sh"))
        .env("VGLET_DEMO_IN_GUEST", "1")
        .env("VGLET_BIN_DIR", bin.to_string_lossy())
        .timeout(Duration::from_secs(600))
        .run(&format!(
            "set -euo pipefail; [ \"$PWD\" = '{}' ]; [ -f .git/HEAD ]; echo CWD-IS-THE-CLONE; ./util/demo.sh",
            clone.display()
        ))
        .expect("guest run");
    eprintln!("guest: exit={} total={:?}", out.exit_code, out.duration);
    assert_eq!(out.exit_code, 0, "the demo failed from {}", clone.display());
    assert!(out.console.contains("CWD-IS-THE-CLONE"));
    assert!(out.console.contains("demo complete: every step succeeded"));
    // The stage chain, as the demo prints it: the disk with a filesystem is skipped with the
    // reason, vg-init shows its lvm commands first, the reviver brings the data back.
    for want in [
        "skipped: /dev/loop",
        "ext4",
        "vg-init: would run: ",
        "vgcreate",
        "vglet.managed=true",
        "1 restored",
        "hello from vglet",
    ] {
        assert!(out.console.contains(want), "demo output lacks {want:?}");
    }
}
