//! The floor: the bare commands an administrator would type, run directly (no shell, no
//! runner, no checks), with the same lvm and mkfs options csi-driver uses, so the ratio shows
//! only what the driver adds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Runs `program args`, failing with its stderr; returns how long it took.
pub fn run(program: &str, args: &[&str]) -> Result<Duration> {
    let t = Instant::now();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn {program}"))?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// Output of a command that must succeed.
pub fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `lvcreate` as csi-driver issues it for a node-local linear volume: active, zeroed start,
/// old signatures wiped.
pub fn lvcreate(vg: &str, name: &str, bytes: u64) -> Result<Duration> {
    let size = format!("{bytes}b");
    run(
        "lvcreate",
        &[
            "-q",
            "-y",
            "--wipesignatures",
            "y",
            "-Z",
            "y",
            "-n",
            name,
            "-L",
            &size,
            vg,
        ],
    )
}

pub fn lvremove(vg: &str, name: &str) -> Result<Duration> {
    run("lvremove", &["-q", "-y", &format!("{vg}/{name}")])
}

/// mkfs with the options csi-driver's NodeStageVolume uses (no discard).
pub fn mkfs(fs: &str, dev: &Path) -> Result<Duration> {
    let dev = dev.to_str().context("device path")?;
    match fs {
        "ext4" => run(
            "mkfs.ext4",
            &["-F", "-q", "-E", vglet_mount::EXT4_DEFAULT_EXTENDED, dev],
        ),
        "xfs" => run("mkfs.xfs", &["-q", "-K", dev]),
        other => bail!("no floor for fs {other}"),
    }
}

pub fn mount(dev: &Path, target: &Path, fs: &str) -> Result<Duration> {
    run(
        "mount",
        &[
            "-t",
            fs,
            dev.to_str().context("device")?,
            target.to_str().context("target")?,
        ],
    )
}

pub fn bind(source: &Path, target: &Path) -> Result<Duration> {
    run(
        "mount",
        &[
            "--bind",
            source.to_str().context("source")?,
            target.to_str().context("target")?,
        ],
    )
}

pub fn umount(target: &Path) -> Result<Duration> {
    run("umount", &[target.to_str().context("target")?])
}
