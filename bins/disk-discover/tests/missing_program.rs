//! The real binary with a program it needs pointed at nothing: exit 1 before any device is
//! looked at, naming the program and where it was looked for.

use std::process::Command;

fn fails_naming(var: &str, path: &str, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_disk-discover"))
        .args(["--glob", "/dev/vglet-none*"])
        .arg("--sys-block-dir")
        .arg(dir.path())
        .arg("--dev-dir")
        .arg(dir.path())
        .env_remove("VGLET_LVM")
        .env_remove("VGLET_BLKID")
        .env(var, path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(out.stdout.is_empty(), "no inventory");
}

#[test]
fn a_missing_blkid_stops_the_start() {
    fails_naming(
        "VGLET_BLKID",
        "/nonexistent/blkid",
        "required program blkid (Debian package util-linux, for probing devices for data \
         before they are formatted or taken) not found: VGLET_BLKID /nonexistent/blkid is \
         not an executable file",
    );
}

#[test]
fn a_missing_lvm_stops_the_start() {
    fails_naming(
        "VGLET_LVM",
        "/nonexistent/lvm",
        "required program lvm (Debian package lvm2, for every LVM operation) not found: \
         VGLET_LVM /nonexistent/lvm is not an executable file",
    );
}
