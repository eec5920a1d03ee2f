//! The reviver binary's exit status, as a DaemonSet's init container or an operator's shell
//! sees it: 2 when it cannot run (a state directory that does not exist), 1 when a pass
//! failed (an awaited VG that never appeared), each with one line on stderr saying why.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn reviver() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_reviver"));
    // Nothing of the environment's own settings leaks into the run.
    for (k, _) in std::env::vars() {
        if k.starts_with("VGLET_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn a_missing_state_dir_exits_2_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("stat");
    let out = reviver()
        .args(["--state-dir", typo.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not exist") && stderr.contains("--create-state-dir"),
        "{stderr}"
    );
    assert!(!typo.exists(), "nothing created");
}

#[test]
fn an_awaited_vg_that_never_appears_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // lvm as it answers for a VG that is not there.
    let lvm = dir.path().join("lvm");
    std::fs::write(
        &lvm,
        "#!/bin/sh\necho '  Volume group \"vg9\" not found' >&2\nexit 5\n",
    )
    .unwrap();
    std::fs::set_permissions(&lvm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let out = reviver()
        .env("VGLET_LVM", &lvm)
        // fsck.ext4 is required at start; any executable stands in for it here.
        .env("VGLET_FSCK_EXT4", &lvm)
        .args([
            "--state-dir",
            state.to_str().unwrap(),
            "--volume-group",
            "vg9",
            "--wait-timeout",
            "1s",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("reviver: ") && l.contains("vg9")),
        "one line naming the VG:\n{stderr}"
    );
}
