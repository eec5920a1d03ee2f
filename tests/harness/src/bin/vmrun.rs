//! vmrun: boot a vglet harness guest and run one command in it (see tests/harness/README.md).
//!
//! Exit status: the guest command's; 124 timeout; 125 guest died without a status; 126 guest
//! setup failed (module, share); 2 host not ready or bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use vglet_vmh::{HarnessError, Vm};

#[derive(Parser, Debug)]
#[command(
    name = "vmrun",
    about = "Boot Debian's kernel in QEMU over the host root (read-only, tmpfs overlay) and run \
             COMMAND with bash -c as root in the guest; exit with its status.",
    after_help = "Exit: the command's status; 124 timeout; 125 guest died without status; \
                  126 guest setup failed; 2 host not ready / bad usage.\n\
                  Env: VGLET_VM_ACCEL=auto|tcg|kvm VGLET_VM_TCG_CPU=qemu64 VGLET_VM_CACHE VGLET_VM_WORK VGLET_VM_KEEP=1 \
                  VGLET_VM_DEBUG=1"
)]
struct Args {
    /// Guest name (hostname), also the prefix of its console lines.
    #[arg(long, default_value = "vglet")]
    name: String,
    /// Guest memory: MiB, or with a K/M/G suffix.
    #[arg(long, default_value = "1G", value_parser = parse_mib)]
    mem: u64,
    /// vCPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Existing raw image as the next virtio disk (/dev/vda, vdb, ... in argument order).
    #[arg(long, value_name = "PATH")]
    disk: Vec<PathBuf>,
    /// New sparse image NAME (virtio serial) of SIZE (e.g. 1G), deleted after the run.
    #[arg(long, value_name = "NAME:SIZE", value_parser = parse_named_size)]
    fresh_disk: Vec<(String, u64)>,
    /// Existing raw image that another guest may use concurrently (share-rw, cache=none).
    #[arg(long, value_name = "PATH")]
    shared_disk: Vec<PathBuf>,
    /// Existing file as an emulated NVDIMM (size = file size, multiple of 2 MiB).
    #[arg(long, value_name = "PATH")]
    pmem: Vec<PathBuf>,
    /// New NVDIMM backing file NAME of SIZE in the scratch dir.
    #[arg(long, value_name = "NAME:SIZE", value_parser = parse_named_size)]
    fresh_pmem: Vec<(String, u64)>,
    /// Host dir mounted read-write at the same path in the guest.
    #[arg(long, value_name = "DIR")]
    share: Vec<PathBuf>,
    /// Kernel module to modprobe before the command (repeatable, or comma-separated).
    #[arg(long, value_name = "MODULE", value_delimiter = ',')]
    module: Vec<String>,
    /// Start systemd-udevd in the guest (else lvm.conf gets udev_sync=0, udev_rules=0).
    #[arg(long)]
    udev: bool,
    /// Kill the guest after SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    timeout: u64,
    /// Export K=V for the command (repeatable).
    #[arg(long, value_name = "K=V", value_parser = parse_kv)]
    env: Vec<(String, String)>,
    /// Also write the console to this file.
    #[arg(long, value_name = "PATH")]
    log: Option<PathBuf>,
    /// Do not stream the console to stderr.
    #[arg(long)]
    quiet: bool,
    /// The command: one word is a script for bash -c (`-- 'pvcreate /dev/vda && pvs'`);
    /// several are a program and its arguments, each quoted (a path may hold spaces).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn parse_size(s: &str, default_unit: u64) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => default_unit,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("bad size unit in {s:?} (use K, M, G, T)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

fn parse_mib(s: &str) -> Result<u64, String> {
    Ok(parse_size(s, 1 << 20)? >> 20)
}

fn parse_named_size(s: &str) -> Result<(String, u64), String> {
    let (name, size) = s.split_once(':').ok_or("expected NAME:SIZE")?;
    Ok((name.to_string(), parse_size(size, 1)?))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected K=V")?;
    Ok((k.to_string(), v.to_string()))
}

enum Disk {
    Plain(PathBuf),
    Fresh(String, u64),
    Shared(PathBuf),
}

fn main() -> ExitCode {
    let m = Args::command().get_matches();
    let a = match Args::from_arg_matches(&m) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let mut vm = Vm::new(&a.name)
        .mem_mib(a.mem)
        .cpus(a.cpus)
        .modules(a.module.iter().filter(|m| !m.is_empty()).cloned())
        .udev(a.udev)
        .quiet(a.quiet)
        .timeout(Duration::from_secs(a.timeout));
    // Disks become /dev/vda, vdb, ... in command-line order across --disk, --fresh-disk and
    // --shared-disk.
    let mut disks: Vec<(usize, Disk)> = Vec::new();
    let idx =
        |id: &str| -> Vec<usize> { m.indices_of(id).map(|i| i.collect()).unwrap_or_default() };
    disks.extend(
        idx("disk")
            .into_iter()
            .zip(a.disk.iter().map(|d| Disk::Plain(d.clone()))),
    );
    disks.extend(
        idx("fresh_disk")
            .into_iter()
            .zip(a.fresh_disk.iter().map(|(n, s)| Disk::Fresh(n.clone(), *s))),
    );
    disks.extend(
        idx("shared_disk")
            .into_iter()
            .zip(a.shared_disk.iter().map(|d| Disk::Shared(d.clone()))),
    );
    disks.sort_by_key(|(i, _)| *i);
    for (_, d) in disks {
        vm = match d {
            Disk::Plain(p) => vm.disk(p),
            Disk::Fresh(n, s) => vm.fresh_disk(n, s),
            Disk::Shared(p) => vm.shared_disk(p),
        };
    }
    for p in &a.pmem {
        vm = vm.pmem(p);
    }
    for (n, s) in &a.fresh_pmem {
        vm = vm.fresh_pmem(n, *s);
    }
    for d in &a.share {
        vm = vm.share_dir(d);
    }
    for (k, v) in &a.env {
        vm = vm.env(k, v);
    }
    if let Some(l) = &a.log {
        vm = vm.log_to(l);
    }
    let command = match a.command.as_slice() {
        [script] => script.clone(),
        argv => argv
            .iter()
            .map(|w| vglet_vmh::shell_quote(w))
            .collect::<Vec<_>>()
            .join(" "),
    };
    match vm.run(&command) {
        Ok(out) => {
            eprintln!(
                "vmrun: {} exit={} boot={} total={:.1}s",
                a.name,
                out.exit_code,
                out.boot
                    .map(|b| format!("{:.1}s", b.as_secs_f64()))
                    .unwrap_or_else(|| "?".into()),
                out.duration.as_secs_f64()
            );
            ExitCode::from(u8::try_from(out.exit_code).unwrap_or(255))
        }
        Err(e) => {
            eprintln!("vmrun: {e}");
            ExitCode::from(match e {
                HarnessError::Timeout { .. } => 124,
                HarnessError::NoStatus { .. } => 125,
                HarnessError::GuestSetup { .. } => 126,
                _ => 2,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G", 1), Ok(1 << 30));
        assert_eq!(parse_size("512MiB", 1), Ok(512 << 20));
        assert_eq!(parse_mib("1536"), Ok(1536));
        assert_eq!(parse_mib("2G"), Ok(2048));
        assert!(parse_size("1X", 1).is_err());
        assert_eq!(parse_named_size("d1:1G"), Ok(("d1".into(), 1 << 30)));
    }
}
