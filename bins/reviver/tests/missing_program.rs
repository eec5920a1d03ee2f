//! The real binary with a program it needs pointed at nothing: it stops at start, before any
//! volume is looked at, naming the program and where it was looked for.

use std::process::Command;

#[test]
fn a_missing_fsck_ext4_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_reviver"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--volume-group", "vg0"])
        .env("VGLET_FSCK_EXT4", "/nonexistent/fsck.ext4")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // EXIT_ERROR: the reviver cannot run.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "required program fsck.ext4 (Debian package e2fsprogs, for checking ext4 \
             filesystems) not found: VGLET_FSCK_EXT4 /nonexistent/fsck.ext4 is not an \
             executable file"
        ),
        "{stderr}"
    );
}
