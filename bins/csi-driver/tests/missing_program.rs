//! The real binary with a program it needs pointed at nothing: it stops at start, before
//! binding the socket, with one error naming the program and where it was looked for.

use std::process::Command;

fn driver(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_csi-driver"));
    c.args([
        "--node-id=n1",
        "--volume-group=vg0",
        &format!("--endpoint=unix://{}", dir.join("csi.sock").display()),
        &format!("--state-dir={}", dir.join("state").display()),
    ])
    .env("RUST_BACKTRACE", "0")
    .env_remove("VGLET_LVM");
    c
}

fn fails_naming(mut cmd: Command, dir: &std::path::Path, expected: &str) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!dir.join("csi.sock").exists(), "nothing was served");
}

#[test]
fn a_bad_lvm_flag_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = driver(dir.path());
    cmd.arg("--lvm=/nonexistent/lvm");
    fails_naming(
        cmd,
        dir.path(),
        "required program lvm (Debian package lvm2, for every LVM operation) not found: \
         --lvm /nonexistent/lvm is not an executable file",
    );
}

/// A node needs e2fsprogs (ext4 is the default filesystem); a controller does not.
#[test]
fn a_node_without_mkfs_ext4_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = driver(dir.path());
    cmd.arg("--mode=node")
        .env("VGLET_MKFS_EXT4", "/nonexistent/mkfs.ext4");
    fails_naming(
        cmd,
        dir.path(),
        "required program mkfs.ext4 (Debian package e2fsprogs, for formatting ext4 volumes) \
         not found: VGLET_MKFS_EXT4 /nonexistent/mkfs.ext4 is not an executable file",
    );
}
