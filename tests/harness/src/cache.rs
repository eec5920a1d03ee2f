//! The kernel and initramfs cache (`$VGLET_VM_CACHE`, default `~/.cache/vglet-vm`).
//!
//! * `vmlinux-<release>`: the uncompressed ELF kernel extracted from `/boot/vmlinuz-<release>`
//!   (xz + x86 BCJ inside the bzImage). QEMU boots it through the PVH entry point: no firmware,
//!   no decompression (2.6 s to userspace instead of 10.9 s under TCG).
//! * `initramfs-<release>-<hash>.cpio`: busybox-static + the modules needed to reach the host
//!   root (virtio_pci, virtio_blk, 9p, overlay) + `/init`. The hash covers every input, so any
//!   change (init script, busybox, modules, this builder) makes a new one. Uncompressed: the
//!   kernel reads it directly and it is only ~3 MB.
//!
//! Both are written to a temporary name and renamed, so a reader never sees half a file.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::host::HostSupport;
use crate::{HarnessError, io_err};

/// The initramfs `/init`: embedded, so the initramfs does not depend on the source tree.
const INITRAMFS_INIT: &str = include_str!("../guest/initramfs-init.sh");
/// Modules the initramfs loads itself (with their dependencies) to mount the host root.
const INITRAMFS_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "9pnet_virtio", "9p", "overlay"];
/// Bump when the initramfs layout changes in a way the hash would not see.
const LAYOUT_VERSION: &str = "vglet-initramfs-1";

/// Returns the cached vmlinux for the host's kernel, extracting it first when needed.
pub(crate) fn vmlinux(host: &HostSupport) -> Result<PathBuf, HarnessError> {
    let out = host
        .cache_dir
        .join(format!("vmlinux-{}", host.kernel_release));
    if is_fresh(&out, &[&host.vmlinuz]) {
        return Ok(out);
    }
    fs::create_dir_all(&host.cache_dir)
        .map_err(io_err(format!("create {}", host.cache_dir.display())))?;
    let bz = fs::read(&host.vmlinuz).map_err(io_err(format!("read {}", host.vmlinuz.display())))?;
    let elf = extract_vmlinux(&bz).map_err(|e| {
        HarnessError::Kernel(format!(
            "extracting vmlinux from {}: {e}",
            host.vmlinuz.display()
        ))
    })?;
    write_atomic(&out, &elf)?;
    Ok(out)
}

/// Finds the xz stream in a bzImage and decompresses it; checks the result is an ELF.
pub(crate) fn extract_vmlinux(bz: &[u8]) -> Result<Vec<u8>, String> {
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
    let start = bz
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .ok_or("no xz stream in the bzImage (only xz-compressed kernels are supported)")?;
    let mut out = Vec::with_capacity(bz.len() * 5);
    liblzma::read::XzDecoder::new(&bz[start..])
        .read_to_end(&mut out)
        .map_err(|e| format!("xz: {e}"))?;
    if !out.starts_with(b"\x7fELF") {
        return Err("the decompressed kernel is not an ELF vmlinux".into());
    }
    Ok(out)
}

/// Returns the cached initramfs for the host's kernel, building it first when needed.
pub(crate) fn initramfs(host: &HostSupport) -> Result<PathBuf, HarnessError> {
    let modules = module_closure(&host.modules_dir, INITRAMFS_MODULES)?;
    let mut h = Fnv::new();
    h.add(LAYOUT_VERSION.as_bytes());
    h.add(INITRAMFS_INIT.as_bytes());
    h.add(host.kernel_release.as_bytes());
    for p in std::iter::once(&host.busybox).chain(modules.iter()) {
        h.add(p.as_os_str().as_encoded_bytes());
        if let Ok(m) = fs::metadata(p) {
            h.add(&m.len().to_le_bytes());
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
            h.add(&t.map(|d| d.as_nanos()).unwrap_or(0).to_le_bytes());
        }
    }
    let prefix = format!("initramfs-{}-", host.kernel_release);
    let out = host
        .cache_dir
        .join(format!("{prefix}{:016x}.cpio", h.finish()));
    if out.is_file() {
        return Ok(out);
    }
    fs::create_dir_all(&host.cache_dir)
        .map_err(io_err(format!("create {}", host.cache_dir.display())))?;

    let mut c = Cpio::default();
    for d in [
        "bin", "dev", "proc", "sys", "mods", "lower", "rw", "newroot",
    ] {
        c.dir(d);
    }
    c.char_dev("dev/console", 0o600, 5, 1);
    c.file("init", 0o755, INITRAMFS_INIT.as_bytes());
    let busybox =
        fs::read(&host.busybox).map_err(io_err(format!("read {}", host.busybox.display())))?;
    c.file("bin/busybox", 0o755, &busybox);
    let mut order = String::new();
    for ko in &modules {
        let (name, data) = read_module(ko)?;
        c.file(&format!("mods/{name}"), 0o644, &data);
        order.push_str(&name);
        order.push('\n');
    }
    c.file("mods/order", 0o644, order.as_bytes());
    write_atomic(&out, &c.finish())?;

    // Older initramfs images of this kernel are stale now.
    if let Ok(rd) = fs::read_dir(&host.cache_dir) {
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with(&prefix) && n.ends_with(".cpio") && e.path() != out {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(out)
}

/// The `.ko` files for `wanted` and their dependencies, dependencies first. Built-in modules
/// (listed in modules.builtin) need nothing.
fn module_closure(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>, HarnessError> {
    let dep_file = modules_dir.join("modules.dep");
    let deps_text =
        fs::read_to_string(&dep_file).map_err(io_err(format!("read {}", dep_file.display())))?;
    let builtin = fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
    let builtin: HashSet<String> = builtin.lines().map(module_name).collect();

    let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in deps_text.lines() {
        let Some((m, rest)) = line.split_once(':') else {
            continue;
        };
        let list = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(module_name(m), (m.to_string(), list));
    }

    fn visit(
        name: &str,
        deps: &HashMap<String, (String, Vec<String>)>,
        builtin: &HashSet<String>,
        dir: &Path,
        seen: &mut HashSet<String>,
        out: &mut Vec<PathBuf>,
    ) -> Result<(), HarnessError> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let Some((path, list)) = deps.get(name) else {
            if builtin.contains(name) {
                return Ok(());
            }
            return Err(HarnessError::Kernel(format!(
                "module {name} is neither in {}/modules.dep nor built in",
                dir.display()
            )));
        };
        for d in list {
            visit(&module_name(d), deps, builtin, dir, seen, out)?;
        }
        out.push(dir.join(path));
        Ok(())
    }

    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for m in wanted {
        visit(
            &m.replace('-', "_"),
            &deps,
            &builtin,
            modules_dir,
            &mut seen,
            &mut out,
        )?;
    }
    Ok(out)
}

/// `kernel/fs/9p/9p.ko.xz` -> `9p`; `-` and `_` are the same in module names.
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// Reads a module file, decompressing `.ko.xz` (busybox insmod wants a plain `.ko`).
fn read_module(path: &Path) -> Result<(String, Vec<u8>), HarnessError> {
    let raw = fs::read(path).map_err(io_err(format!("read {}", path.display())))?;
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    let stem = file.split(".ko").next().unwrap_or(&file).to_string();
    if file.ends_with(".ko") {
        Ok((format!("{stem}.ko"), raw))
    } else if file.ends_with(".ko.xz") {
        let mut out = Vec::new();
        liblzma::read::XzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(io_err(format!("decompress {}", path.display())))?;
        Ok((format!("{stem}.ko"), out))
    } else {
        Err(HarnessError::Kernel(format!(
            "{}: unsupported module compression (only .ko and .ko.xz)",
            path.display()
        )))
    }
}

/// True when `out` exists, is not empty and is newer than every input.
fn is_fresh(out: &Path, inputs: &[&Path]) -> bool {
    let Ok(m) = fs::metadata(out) else {
        return false;
    };
    let Ok(t) = m.modified() else {
        return false;
    };
    m.len() > 0
        && inputs.iter().all(|i| {
            fs::metadata(i)
                .and_then(|m| m.modified())
                .map(|ti| ti <= t)
                .unwrap_or(true)
        })
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), HarnessError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(io_err(format!("write {}", path.display())))
}

/// Minimal writer of the cpio "newc" format the kernel unpacks as initramfs.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so the image is reproducible
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, 2, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, 1, (0, 0), data);
    }

    fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, 0o020_000 | perm, 1, (major, minor), &[]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        // The kernel reads the archive in 512-byte blocks; pad like cpio(1) does.
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        self.buf
    }
}

/// FNV-1a 64: a stable content hash for cache keys (std's hasher is not stable across runs).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, bytes: &[u8]) {
        for b in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_normalise() {
        assert_eq!(module_name("kernel/fs/9p/9p.ko"), "9p");
        assert_eq!(
            module_name("kernel/net/9p/9pnet_virtio.ko.xz"),
            "9pnet_virtio"
        );
        assert_eq!(module_name("kernel/drivers/md/dm-mod.ko"), "dm_mod");
    }

    #[test]
    fn cpio_layout_is_newc() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"#!/bin/sh\n");
        let buf = c.finish();
        assert!(buf.starts_with(b"070701"));
        assert_eq!(buf.len() % 512, 0);
        // header (110) + "init\0" (5) padded to 116, then 10 bytes of data padded to 12
        assert_eq!(&buf[116..126], b"#!/bin/sh\n");
        assert_eq!(&buf[128..134], b"070701");
        assert_eq!(&buf[128 + 110..128 + 120], b"TRAILER!!!");
    }

    #[test]
    fn dependencies_come_first() {
        let dir = std::env::temp_dir().join(format!("vglet-vmh-moddep-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("modules.dep"),
            "kernel/a.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko: kernel/c.ko\nkernel/c.ko:\n",
        )
        .unwrap();
        fs::write(dir.join("modules.builtin"), "kernel/d.ko\n").unwrap();
        let got = module_closure(&dir, &["a", "d"]).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["c.ko", "b.ko", "a.ko"]);
        assert!(module_closure(&dir, &["nope"]).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
