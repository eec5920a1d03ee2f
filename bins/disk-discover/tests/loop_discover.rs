//! The real `disk-discover` binary against real loop devices: two blank, one with ext4, one
//! a PV of a foreign VG. Checks the inventory it writes and its exit codes.
//!
//! Needs root, losetup, mkfs.ext4 and lvm; skips (with the reason on stderr) otherwise. lvm
//! runs with `activation = 0`, so only metadata is written: it works on hosts without
//! device-mapper and leaves no dm devices behind on hosts that have it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vglet_devices::inventory::Inventory;

const NO_ACTIVATION: &str = "global { activation = 0 }";
const MIB: u64 = 1024 * 1024;

/// Setup and teardown use std::process directly: Drop cannot await, and this scaffolding
/// is not the code under test.
fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn tool(name: &str) -> Option<String> {
    vglet_runner::resolve_program(name).map(|p| p.to_string_lossy().into_owned())
}

/// Owns the images, loop devices, PV and VG the test makes, and removes them even when an
/// assertion fails half-way.
struct LoopDisks {
    lvm: String,
    dir: tempfile::TempDir,
    devices: Vec<String>,
    pv: Option<String>,
    vg: String,
    vg_created: bool,
}

impl LoopDisks {
    /// Four 200 MiB sparse disks: [blank, ext4, PV of a foreign VG, blank].
    fn setup(lvm: String) -> Result<LoopDisks, String> {
        let mut guard = LoopDisks {
            lvm,
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            devices: Vec::new(),
            pv: None,
            vg: format!("vglet-dd-foreign-{}", std::process::id()),
            vg_created: false,
        };
        for i in 0..4 {
            let image = guard.dir.path().join(format!("disk{i}.img"));
            let f = std::fs::File::create(&image).map_err(|e| e.to_string())?;
            f.set_len(200 * MIB).map_err(|e| e.to_string())?;
            drop(f);
            let dev = sh("losetup", &["-f", "--show", &image.to_string_lossy()])?;
            guard.devices.push(dev);
        }
        let mkfs = tool("mkfs.ext4").ok_or("no mkfs.ext4")?;
        sh(&mkfs, &["-q", "-F", &guard.devices[1]])?;
        let pv = guard.devices[2].clone();
        sh(
            &guard.lvm,
            &["pvcreate", "-y", "--config", NO_ACTIVATION, &pv],
        )?;
        guard.pv = Some(pv.clone());
        sh(
            &guard.lvm,
            &["vgcreate", "-y", "--config", NO_ACTIVATION, &guard.vg, &pv],
        )?;
        guard.vg_created = true;
        Ok(guard)
    }
}

impl Drop for LoopDisks {
    fn drop(&mut self) {
        // Best effort: report what could not be undone and carry on with the rest.
        let report = |r: Result<String, String>| {
            if let Err(e) = r {
                eprintln!("cleanup: {e}");
            }
        };
        if self.vg_created {
            report(sh(
                &self.lvm,
                &["vgremove", "-ff", "-y", "--config", NO_ACTIVATION, &self.vg],
            ));
        }
        if let Some(pv) = &self.pv {
            report(sh(
                &self.lvm,
                &["pvremove", "-ff", "-y", "--config", NO_ACTIVATION, pv],
            ));
        }
        for dev in &self.devices {
            report(sh("losetup", &["-d", dev]));
        }
    }
}

fn skip(why: &str) {
    eprintln!("SKIP loop_discover: {why}");
}

/// Runs the built binary with a clean environment (no VGLET_* leaking in from the caller).
fn discover(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_disk-discover"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("VGLET_") {
            cmd.env_remove(&k);
        }
    }
    cmd.args(args)
        .env("VGLET_LOG_FORMAT", "text")
        .output()
        .expect("disk-discover runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read_inventory(path: &Path) -> Inventory {
    let text = std::fs::read_to_string(path).expect("inventory written");
    Inventory::from_json(&text).expect("valid inventory")
}

fn kernel_paths(inv: &Inventory) -> Vec<String> {
    let mut v: Vec<String> = inv.devices.iter().map(|d| d.kernel_path.clone()).collect();
    v.sort();
    v
}

#[test]
fn loop_discover_chooses_blank_skips_ext4_and_foreign_pv() {
    if !is_root() {
        return skip("needs root");
    }
    if tool("losetup").is_none() {
        return skip("no losetup");
    }
    let Some(lvm) = tool("lvm") else {
        return skip("no lvm binary");
    };
    if tool("mkfs.ext4").is_none() {
        return skip("no mkfs.ext4");
    }
    let disks = match LoopDisks::setup(lvm) {
        Ok(d) => d,
        Err(e) if e.contains("losetup") && e.contains("-f") => {
            return skip(&format!("cannot attach loop devices here: {e}"));
        }
        Err(e) => panic!("setup: {e}"),
    };
    let d = &disks.devices;
    let out_file: PathBuf = disks.dir.path().join("out/inventory.json");
    std::fs::create_dir_all(out_file.parent().unwrap()).unwrap();
    let out_arg = out_file.to_string_lossy().into_owned();

    let mut args: Vec<&str> = Vec::new();
    for dev in d {
        args.extend(["--glob", dev]);
    }
    args.extend(["--min-size", "100Mi", "--output", &out_arg]);
    let out = discover(&args);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        stderr(&out)
    );
    assert!(
        out.stdout.is_empty(),
        "inventory went to --output, not stdout"
    );
    let inv = read_inventory(&out_file);
    let mut blank = vec![d[0].clone(), d[3].clone()];
    blank.sort();
    assert_eq!(kernel_paths(&inv), blank, "{inv:#?}");
    for dev in &inv.devices {
        assert!(Path::new(&dev.path).exists(), "{} does not exist", dev.path);
        assert_eq!(dev.size_bytes, 200 * MIB);
        assert_eq!(dev.existing_pv_of, None);
    }
    let reasons = |dev: &str| {
        inv.skipped
            .iter()
            .find(|s| s.kernel_path == dev)
            .unwrap_or_else(|| panic!("{dev} not skipped: {inv:#?}"))
            .reasons
            .join("; ")
    };
    assert!(reasons(&d[1]).contains("ext4"), "{}", reasons(&d[1]));
    assert!(reasons(&d[2]).contains(&disks.vg), "{}", reasons(&d[2]));
    assert_eq!(inv.skipped.len(), 2, "{inv:#?}");
    // No temporary file left next to the inventory.
    assert_eq!(
        std::fs::read_dir(out_file.parent().unwrap())
            .unwrap()
            .count(),
        1
    );

    // With the foreign VG as the target, its PV counts as usable.
    let out = discover(&[
        "--glob",
        &d[2],
        "--glob",
        &d[3],
        "--min-size",
        "100Mi",
        "--target-vg",
        &disks.vg,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inv = Inventory::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(kernel_paths(&inv), [d[2].clone(), d[3].clone()]);
    let pv = inv.devices.iter().find(|x| x.kernel_path == d[2]).unwrap();
    assert_eq!(pv.existing_pv_of.as_deref(), Some(disks.vg.as_str()));
    assert_eq!(inv.target_vg.as_deref(), Some(disks.vg.as_str()));

    // Too few devices: exit 3, inventory still written.
    std::fs::remove_file(&out_file).unwrap();
    let out = discover(&[
        "--glob",
        &d[0],
        "--glob",
        &d[1],
        "--min-size",
        "100Mi",
        "--min-devices",
        "2",
        "--output",
        &out_arg,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(read_inventory(&out_file).devices.len(), 1);

    // --explain writes nothing and lists unmatched devices with the reason.
    std::fs::remove_file(&out_file).unwrap();
    let out = discover(&[
        "--explain",
        "--glob",
        &d[0],
        "--min-size",
        "100Mi",
        "--output",
        &out_arg,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!out_file.exists(), "--explain wrote --output");
    let inv = Inventory::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(kernel_paths(&inv), [d[0].clone()]);
    let unmatched = inv.skipped.iter().find(|s| s.kernel_path == d[3]).unwrap();
    assert!(
        unmatched.reasons[0].starts_with("not matched by any include pattern"),
        "{unmatched:?}"
    );
    assert!(
        stderr(&out).contains("Chosen: 1 device(s)"),
        "{}",
        stderr(&out)
    );

    // Usage errors exit 2.
    assert_eq!(discover(&[]).status.code(), Some(2));
    assert_eq!(discover(&["--glob", "/dev/["]).status.code(), Some(2));
    assert_eq!(discover(&["--min-size", "big"]).status.code(), Some(2));
}
