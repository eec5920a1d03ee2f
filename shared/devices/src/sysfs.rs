//! The kernel's view of block devices, read from `/sys/class/block` (or a fake tree under
//! another root in tests). Only plain files are read; nothing under /dev is opened.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::DevicesError;

pub const SYS_CLASS_BLOCK: &str = "/sys/class/block";

/// What a block device is, as far as choosing it for a PV goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKind {
    /// A whole disk: SCSI/SATA/NVMe/virtio/pmem, a SAN LUN.
    Disk,
    Partition,
    Loop,
    /// device-mapper: LVM LVs, multipath, crypt.
    DeviceMapper,
    /// Software RAID.
    Md,
    Zram,
    Ram,
    /// CD/DVD drives.
    Optical,
}

impl DeviceKind {
    /// Kinds that are normally not raw storage (or are storage already built from other
    /// devices): they are taken only when a glob names them explicitly.
    pub fn is_special(self) -> bool {
        self != DeviceKind::Disk
    }

    pub fn label(self) -> &'static str {
        match self {
            DeviceKind::Disk => "disk",
            DeviceKind::Partition => "partition",
            DeviceKind::Loop => "loop",
            DeviceKind::DeviceMapper => "device-mapper",
            DeviceKind::Md => "md RAID",
            DeviceKind::Zram => "zram",
            DeviceKind::Ram => "ramdisk",
            DeviceKind::Optical => "optical",
        }
    }
}

/// A partition of a disk, as far as the disk's safety depends on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub name: String,
    pub major: u32,
    pub minor: u32,
    pub holders: Vec<String>,
}

/// One entry of /sys/class/block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name: "sda", "nvme0n1", "vdb", "loop3", "dm-0".
    pub name: String,
    pub major: u32,
    pub minor: u32,
    pub kind: DeviceKind,
    pub size_bytes: u64,
    pub read_only: bool,
    pub removable: bool,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    /// Devices built on top of this one (dm, md): a non-empty list means it is in use.
    pub holders: Vec<String>,
    pub partitions: Vec<PartitionInfo>,
    /// The disk a partition belongs to.
    pub parent: Option<String>,
    /// device-mapper name and uuid ("LVM-<vg uuid><lv uuid>", "mpath-<wwid>", "CRYPT-...").
    pub dm_name: Option<String>,
    pub dm_uuid: Option<String>,
}

/// Reader of a /sys/class/block tree.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs::new(SYS_CLASS_BLOCK)
    }
}

impl Sysfs {
    /// `root` is the directory that lists the devices (normally /sys/class/block).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every block device, sorted by name. A device that vanishes while being read (hot
    /// unplug, a loop device detached) is left out rather than failing the scan.
    pub fn devices(&self) -> Result<Vec<BlockDevice>, DevicesError> {
        let entries = fs::read_dir(&self.root).map_err(|e| DevicesError::io(&self.root, e))?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names.iter().filter_map(|n| self.device(n)).collect())
    }

    /// One device by kernel name; `None` when it does not exist or cannot be read.
    pub fn device(&self, name: &str) -> Option<BlockDevice> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return None;
        }
        let dir = self.root.join(name);
        let (major, minor) = match read_dev(&dir) {
            Some(d) => d,
            None => {
                tracing::debug!(device = name, "no readable dev file; not a block device");
                return None;
            }
        };
        let size_bytes = read_trimmed(&dir.join("size"))
            .and_then(|s| s.parse::<u64>().ok())
            .map(|sectors| sectors.saturating_mul(512))?;
        let is_partition = dir.join("partition").exists();
        let parent = if is_partition {
            // /sys/class/block/sda1 -> .../block/sda/sda1: the parent directory is the disk.
            fs::canonicalize(&dir)
                .ok()
                .and_then(|p| p.parent()?.file_name()?.to_str().map(str::to_string))
        } else {
            None
        };
        let kind = kind_of(name, &dir, is_partition);
        // Partitions carry no `removable` (and their model is the disk's): use the parent's.
        let parent_dir = parent.as_ref().map(|p| self.root.join(p));
        let attr_dir = parent_dir.as_deref().unwrap_or(&dir);
        let removable = read_flag(&attr_dir.join("removable"));
        let read_only = read_flag(&dir.join("ro"));
        let partitions = if is_partition {
            Vec::new()
        } else {
            partitions_of(&dir)
        };
        Some(BlockDevice {
            name: name.to_string(),
            major,
            minor,
            kind,
            size_bytes,
            read_only,
            removable,
            model: read_trimmed(&attr_dir.join("device/model")),
            serial: serial_of(attr_dir),
            wwn: read_trimmed(&attr_dir.join("wwid"))
                .or_else(|| read_trimmed(&attr_dir.join("device/wwid"))),
            holders: list_dir(&dir.join("holders")),
            partitions,
            parent,
            dm_name: read_trimmed(&dir.join("dm/name")),
            dm_uuid: read_trimmed(&dir.join("dm/uuid")),
        })
    }
}

fn kind_of(name: &str, dir: &Path, is_partition: bool) -> DeviceKind {
    if is_partition {
        DeviceKind::Partition
    } else if name.starts_with("loop") || dir.join("loop").is_dir() {
        DeviceKind::Loop
    } else if name.starts_with("dm-") || dir.join("dm").is_dir() {
        DeviceKind::DeviceMapper
    } else if name.starts_with("md") || dir.join("md").is_dir() {
        DeviceKind::Md
    } else if name.starts_with("zram") {
        DeviceKind::Zram
    } else if name.starts_with("ram") {
        DeviceKind::Ram
    } else if name.starts_with("sr") {
        DeviceKind::Optical
    } else {
        DeviceKind::Disk
    }
}

/// NVMe and SCSI put the serial under device/ (SCSI only in the VPD page 0x80), virtio-blk
/// next to the disk.
fn serial_of(dir: &Path) -> Option<String> {
    read_trimmed(&dir.join("device/serial"))
        .or_else(|| read_trimmed(&dir.join("serial")))
        .or_else(|| {
            // VPD page 0x80: a 4-byte header, then the serial number in ASCII.
            let page = fs::read(dir.join("device/vpd_pg80")).ok()?;
            let text = String::from_utf8_lossy(page.get(4..)?).trim().to_string();
            (!text.is_empty()).then_some(text)
        })
}

fn partitions_of(dir: &Path) -> Vec<PartitionInfo> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut parts: Vec<PartitionInfo> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("partition").is_file())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (major, minor) = read_dev(&e.path())?;
            Some(PartitionInfo {
                holders: list_dir(&e.path().join("holders")),
                name,
                major,
                minor,
            })
        })
        .collect();
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    parts
}

fn read_dev(dir: &Path) -> Option<(u32, u32)> {
    let text = read_trimmed(&dir.join("dev"))?;
    let (a, b) = text.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A sysfs attribute without its padding; `None` when absent, unreadable or blank (SCSI
/// pads model names with spaces, and a missing attribute just means "unknown").
fn read_trimmed(path: &Path) -> Option<String> {
    match fs::read(path) {
        Ok(bytes) => {
            let s = String::from_utf8_lossy(&bytes).trim().to_string();
            (!s.is_empty()).then_some(s)
        }
        Err(e) => {
            if e.kind() != ErrorKind::NotFound {
                tracing::debug!(path = %path.display(), error = %e, "sysfs attribute unreadable");
            }
            None
        }
    }
}

fn read_flag(path: &Path) -> bool {
    read_trimmed(path).is_some_and(|v| v != "0")
}

fn list_dir(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Builds fake /sys/class/block trees for unit tests (here and in dependent crates).
#[doc(hidden)]
pub mod fake {
    use std::fs;
    use std::path::{Path, PathBuf};

    use super::{BlockDevice, DeviceKind};

    /// A plain 10 GiB disk as sysfs would describe it: no holders, partitions or dm.
    pub fn block_device(name: &str, major: u32, minor: u32) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            major,
            minor,
            kind: DeviceKind::Disk,
            size_bytes: 10 << 30,
            read_only: false,
            removable: false,
            model: None,
            serial: None,
            wwn: None,
            holders: vec![],
            partitions: vec![],
            parent: None,
            dm_name: None,
            dm_uuid: None,
        }
    }

    /// A disk in a fake tree. Files are only written for the attributes that are set.
    #[derive(Debug, Clone, Default)]
    pub struct FakeDisk {
        pub name: String,
        pub dev: (u32, u32),
        pub size_bytes: u64,
        pub ro: bool,
        pub removable: bool,
        pub model: Option<String>,
        /// Written to device/serial (NVMe style).
        pub serial: Option<String>,
        /// Written to `serial` next to the disk (virtio style).
        pub virtio_serial: Option<String>,
        /// Written to device/wwid (SCSI style).
        pub wwid: Option<String>,
        pub holders: Vec<String>,
        /// (name, dev, holders)
        pub partitions: Vec<(String, (u32, u32), Vec<String>)>,
        pub dm: Option<(String, String)>,
    }

    impl FakeDisk {
        pub fn new(name: &str, dev: (u32, u32), size_bytes: u64) -> Self {
            FakeDisk {
                name: name.to_string(),
                dev,
                size_bytes,
                ..Default::default()
            }
        }
    }

    /// Writes the disk the way the kernel lays it out: the real directory elsewhere, a
    /// symlink in `class_block` (so partitions can find their parent).
    pub fn add_disk(class_block: &Path, disk: &FakeDisk) -> PathBuf {
        let devices = class_block.join("../../devices/virtual/block");
        let dir = devices.join(&disk.name);
        fs::create_dir_all(dir.join("holders")).unwrap();
        fs::create_dir_all(class_block).unwrap();
        let write = |rel: &str, value: &str| {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, format!("{value}\n")).unwrap();
        };
        write("dev", &format!("{}:{}", disk.dev.0, disk.dev.1));
        write("size", &(disk.size_bytes / 512).to_string());
        write("ro", if disk.ro { "1" } else { "0" });
        write("removable", if disk.removable { "1" } else { "0" });
        if let Some(m) = &disk.model {
            write("device/model", &format!("{m:<16}"));
        }
        if let Some(s) = &disk.serial {
            write("device/serial", s);
        }
        if let Some(s) = &disk.virtio_serial {
            write("serial", s);
        }
        if let Some(w) = &disk.wwid {
            write("device/wwid", w);
        }
        if let Some((name, uuid)) = &disk.dm {
            write("dm/name", name);
            write("dm/uuid", uuid);
        }
        for h in &disk.holders {
            fs::create_dir_all(dir.join("holders").join(h)).unwrap();
        }
        for (pname, pdev, pholders) in &disk.partitions {
            let pdir = dir.join(pname);
            fs::create_dir_all(pdir.join("holders")).unwrap();
            fs::write(pdir.join("dev"), format!("{}:{}\n", pdev.0, pdev.1)).unwrap();
            fs::write(pdir.join("size"), "2048\n").unwrap();
            fs::write(pdir.join("ro"), "0\n").unwrap();
            fs::write(pdir.join("partition"), "1\n").unwrap();
            for h in pholders {
                fs::create_dir_all(pdir.join("holders").join(h)).unwrap();
            }
            std::os::unix::fs::symlink(&pdir, class_block.join(pname)).unwrap();
        }
        std::os::unix::fs::symlink(&dir, class_block.join(&disk.name)).unwrap();
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeDisk, add_disk};
    use super::*;

    #[test]
    fn reads_disks_partitions_and_kinds() {
        let tmp = tempfile::tempdir().unwrap();
        let cb = tmp.path().join("sys/class/block");
        add_disk(
            &cb,
            &FakeDisk {
                model: Some("Samsung SSD".into()),
                serial: Some("S1".into()),
                wwid: Some("naa.5000c5".into()),
                partitions: vec![("sda1".into(), (8, 1), vec!["dm-0".into()])],
                ..FakeDisk::new("sda", (8, 0), 10 << 30)
            },
        );
        add_disk(
            &cb,
            &FakeDisk {
                virtio_serial: Some("vs1".into()),
                ro: true,
                ..FakeDisk::new("vdb", (254, 16), 1 << 30)
            },
        );
        add_disk(&cb, &FakeDisk::new("loop0", (7, 0), 0));
        add_disk(
            &cb,
            &FakeDisk {
                dm: Some(("vg-lv".into(), "LVM-abc".into())),
                ..FakeDisk::new("dm-0", (253, 0), 1 << 30)
            },
        );
        let devs = Sysfs::new(&cb).devices().unwrap();
        let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["dm-0", "loop0", "sda", "sda1", "vdb"]);
        let sda = &devs[2];
        assert_eq!(sda.kind, DeviceKind::Disk);
        assert_eq!((sda.major, sda.minor), (8, 0));
        assert_eq!(sda.size_bytes, 10 << 30);
        assert_eq!(sda.model.as_deref(), Some("Samsung SSD"));
        assert_eq!(sda.serial.as_deref(), Some("S1"));
        assert_eq!(sda.wwn.as_deref(), Some("naa.5000c5"));
        assert_eq!(sda.partitions.len(), 1);
        assert_eq!(sda.partitions[0].holders, ["dm-0"]);
        let sda1 = &devs[3];
        assert_eq!(sda1.kind, DeviceKind::Partition);
        assert_eq!(sda1.parent.as_deref(), Some("sda"));
        assert_eq!(sda1.model.as_deref(), Some("Samsung SSD"));
        let vdb = &devs[4];
        assert!(vdb.read_only);
        assert_eq!(vdb.serial.as_deref(), Some("vs1"));
        assert_eq!(devs[1].kind, DeviceKind::Loop);
        assert_eq!(devs[0].kind, DeviceKind::DeviceMapper);
        assert_eq!(devs[0].dm_uuid.as_deref(), Some("LVM-abc"));
    }

    #[test]
    fn missing_root_is_an_error() {
        assert!(Sysfs::new("/nonexistent/vglet/sys").devices().is_err());
    }
}
