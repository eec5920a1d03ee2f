//! The real binary with a program it needs pointed at nothing: exit 1 before anything runs,
//! the failure document naming the program and where it was looked for.

use std::process::Command;

fn vg_init() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vg-init"));
    c.args(["--vg", "vg0", "--device", "/dev/vglet-none"])
        .env_remove("VGLET_LVM")
        .env_remove("VGLET_WIPEFS");
    c
}

fn fails_naming(mut cmd: Command, expected: &str) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(doc["action"], "failed");
    assert!(
        doc["error"].as_str().unwrap().contains(expected),
        "{stdout}"
    );
}

#[test]
fn a_bad_lvm_flag_stops_the_start() {
    let mut cmd = vg_init();
    cmd.args(["--lvm", "/nonexistent/lvm"]);
    fails_naming(
        cmd,
        "required program lvm (Debian package lvm2, for every LVM operation) not found: \
         --lvm /nonexistent/lvm is not an executable file",
    );
}

#[test]
fn a_missing_wipefs_stops_the_start() {
    let mut cmd = vg_init();
    cmd.env("VGLET_WIPEFS", "/nonexistent/wipefs");
    fails_naming(
        cmd,
        "required program wipefs (Debian package util-linux, for listing and erasing \
         signatures on devices) not found: VGLET_WIPEFS /nonexistent/wipefs is not an \
         executable file",
    );
}
