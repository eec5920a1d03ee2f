//! What the host must provide: qemu, a Debian kernel with its modules, a static busybox.

use std::fs;
use std::path::{Path, PathBuf};

use crate::HarnessError;

/// How QEMU executes the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation (`-accel tcg,thread=multi -cpu qemu64`, or `VGLET_VM_TCG_CPU`): the default.
    Tcg,
    /// Hardware virtualisation (`-accel kvm -cpu host`).
    Kvm,
}

/// What [`check_host`] found: everything needed to boot a guest.
#[derive(Clone, Debug)]
pub struct HostSupport {
    /// The `qemu-system-x86_64` binary.
    pub qemu: PathBuf,
    /// Release of the kernel the guest boots (`uname -r` in the guest), e.g. `6.1.0-56-amd64`.
    pub kernel_release: String,
    /// `/boot/vmlinuz-<release>` (the vmlinux extracted from it is cached).
    pub vmlinuz: PathBuf,
    /// `/lib/modules/<release>`, used by the initramfs builder and by `modprobe` in the guest.
    pub modules_dir: PathBuf,
    /// A statically linked busybox for the initramfs.
    pub busybox: PathBuf,
    /// The guest-side PID-1 script (`tests/harness/guest/init.sh`).
    pub guest_init: PathBuf,
    /// Where the vmlinux, the initramfs and `vm.lock` live.
    pub cache_dir: PathBuf,
    /// The accelerator chosen (`VGLET_VM_ACCEL`, default auto).
    pub accel: Accel,
}

/// Checks that this machine can boot harness guests; lists everything that is missing.
///
/// The error names `util/deps.sh`, which installs the Debian packages.
pub fn check_host() -> Result<HostSupport, HarnessError> {
    let mut problems = Vec::new();

    let qemu = match std::env::var_os("VGLET_VM_QEMU") {
        Some(q) => Some(PathBuf::from(q)).filter(|q| q.is_file()),
        None => find_in_path("qemu-system-x86_64"),
    };
    if qemu.is_none() {
        problems.push("qemu-system-x86_64 not found (package qemu-system-x86)".to_string());
    }

    let kernel = match std::env::var("VGLET_VM_KVER") {
        Ok(k) if !k.is_empty() => Some(k),
        _ => newest_kernel(),
    };
    let kernel = match kernel {
        Some(k) => {
            let vmlinuz = PathBuf::from(format!("/boot/vmlinuz-{k}"));
            let modules = PathBuf::from(format!("/lib/modules/{k}"));
            if !vmlinuz.is_file() {
                problems.push(format!("{} is missing", vmlinuz.display()));
            }
            if !modules.join("modules.dep").is_file() {
                problems.push(format!(
                    "{} is missing",
                    modules.join("modules.dep").display()
                ));
            }
            Some((k, vmlinuz, modules))
        }
        None => {
            problems.push(
                "no /boot/vmlinuz-* with a matching /lib/modules/ (package linux-image-amd64)"
                    .to_string(),
            );
            None
        }
    };

    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    match &busybox {
        None => problems.push("busybox not found (package busybox-static)".to_string()),
        Some(b) => match is_static_elf(b) {
            Ok(true) => {}
            Ok(false) => problems.push(format!(
                "{} is dynamically linked: the initramfs needs busybox-static",
                b.display()
            )),
            Err(e) => problems.push(format!("cannot read {}: {e}", b.display())),
        },
    }
    if find_in_path("modprobe").is_none() && !Path::new("/sbin/modprobe").exists() {
        problems.push("modprobe not found (package kmod; the guest loads modules with it)".into());
    }

    let guest_init = guest_dir().join("init.sh");
    if !guest_init.is_file() {
        problems.push(format!(
            "guest init script {} is missing",
            guest_init.display()
        ));
    }

    let accel = match choose_accel() {
        Ok(a) => a,
        Err(e) => {
            problems.push(e);
            Accel::Tcg
        }
    };

    if !problems.is_empty() {
        return Err(HarnessError::HostMissing { problems });
    }
    let (kernel_release, vmlinuz, modules_dir) = kernel.expect("checked above");
    Ok(HostSupport {
        qemu: qemu.expect("checked above"),
        kernel_release,
        vmlinuz,
        modules_dir,
        busybox: busybox.expect("checked above"),
        guest_init,
        cache_dir: cache_dir(),
        accel,
    })
}

/// `tests/harness/guest` in the source tree this harness was built from.
pub(crate) fn guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest")
}

/// `$VGLET_VM_CACHE`, else `$HOME/.cache/vglet-vm`.
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VGLET_VM_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache/vglet-vm"),
        None => PathBuf::from("/var/tmp/vglet-vm"),
    }
}

/// `VGLET_VM_ACCEL=auto|tcg|kvm`. Auto picks KVM only when a real KVM module (kvm_intel or
/// kvm_amd) is loaded: this workplace's `/dev/kvm` is a paravirtual flavour (kvm_pvm) that runs
/// stock kernels ~30x slower than TCG.
fn choose_accel() -> Result<Accel, String> {
    let want = std::env::var("VGLET_VM_ACCEL").unwrap_or_default();
    let kvm_usable = || {
        (Path::new("/sys/module/kvm_intel").exists() || Path::new("/sys/module/kvm_amd").exists())
            && fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok()
    };
    match want.as_str() {
        "" | "auto" => Ok(if kvm_usable() { Accel::Kvm } else { Accel::Tcg }),
        "tcg" => Ok(Accel::Tcg),
        "kvm" => Ok(Accel::Kvm),
        other => Err(format!("VGLET_VM_ACCEL={other}: expected auto, tcg or kvm")),
    }
}

fn find_in_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// Newest `/boot/vmlinuz-<v>` that has `/lib/modules/<v>`.
fn newest_kernel() -> Option<String> {
    let mut found: Vec<String> = fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .filter(|v| Path::new("/lib/modules").join(v).is_dir())
        .collect();
    found.sort_by(|a, b| version_cmp(a, b));
    found.pop()
}

/// `ls -v`-like comparison: digit runs compare numerically.
pub(crate) fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match out.last_mut() {
                Some((ld, cur)) if *ld == d => cur.push(c),
                _ => out.push((d, c.to_string())),
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// True when the ELF file has no PT_INTERP program header.
fn is_static_elf(path: &Path) -> std::io::Result<bool> {
    let data = fs::read(path)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a 64-bit ELF");
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > data.len() {
            return Err(bad());
        }
        let p_type = u32::from_le_bytes(data[o..o + 4].try_into().expect("4 bytes"));
        if p_type == 3 {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn versions_sort_numerically() {
        assert_eq!(
            version_cmp("6.1.0-9-amd64", "6.1.0-56-amd64"),
            Ordering::Less
        );
        assert_eq!(
            version_cmp("6.10.0-1-amd64", "6.9.0-1-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            version_cmp("6.1.0-56-amd64", "6.1.0-56-amd64"),
            Ordering::Equal
        );
    }

    #[test]
    fn static_busybox_detection() {
        if Path::new("/bin/bash").exists() {
            assert!(!is_static_elf(Path::new("/bin/bash")).unwrap());
        }
    }
}
