//! The real binary with a program it needs pointed at nothing: exit 1 before ndctl is asked
//! anything, naming the program and where it was looked for.

use std::process::Command;

fn fails_naming(args: &[&str], env: Option<(&str, &str)>, expected: &str) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pmem-ns-init"));
    cmd.args(args)
        .env_remove("VGLET_NDCTL")
        .env_remove("VGLET_BLKID");
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
}

#[test]
fn a_bad_ndctl_flag_stops_the_start() {
    fails_naming(
        &["--ndctl", "/nonexistent/ndctl"],
        None,
        "required program ndctl (Debian package ndctl, for reading and creating PMEM \
         namespaces) not found: --ndctl /nonexistent/ndctl is not an executable file",
    );
}

#[test]
fn a_missing_blkid_stops_the_start() {
    fails_naming(
        &[],
        Some(("VGLET_BLKID", "/nonexistent/blkid")),
        "required program blkid (Debian package util-linux, for probing devices for data \
         before they are formatted or taken) not found: VGLET_BLKID /nonexistent/blkid is \
         not an executable file",
    );
}
