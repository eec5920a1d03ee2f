//! udev's stable names for block devices (/dev/disk/by-id, /dev/disk/by-path) and the choice
//! of the one path vg-init hands to lvm. Kernel names (sdb, nvme1n1) can change at the next
//! boot; a by-id name follows the disk.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::sysfs::BlockDevice;

pub const DEV_DIR: &str = "/dev";

/// The links found under `<dev>/disk/by-id` and `<dev>/disk/by-path`, by kernel name. Read
/// once per run: a host with hundreds of LUNs has thousands of links.
#[derive(Debug, Clone, Default)]
pub struct DevLinks {
    dev_dir: PathBuf,
    by_id: BTreeMap<String, Vec<PathBuf>>,
    by_path: BTreeMap<String, Vec<PathBuf>>,
}

impl DevLinks {
    /// Scans `dev_dir` (normally /dev). Missing directories (no udev, as in minimal
    /// containers) just mean no links.
    pub fn scan(dev_dir: &Path) -> DevLinks {
        DevLinks {
            dev_dir: dev_dir.to_path_buf(),
            by_id: scan_dir(&dev_dir.join("disk/by-id")),
            by_path: scan_dir(&dev_dir.join("disk/by-path")),
        }
    }

    pub fn dev_dir(&self) -> &Path {
        &self.dev_dir
    }

    /// The kernel's node, e.g. /dev/sdb.
    pub fn kernel_path(&self, name: &str) -> PathBuf {
        self.dev_dir.join(name)
    }

    /// Every path naming the device: kernel node, /dev/mapper name, by-id and by-path
    /// links. Globs are matched against all of them.
    pub fn paths(&self, dev: &BlockDevice) -> Vec<PathBuf> {
        let mut paths = vec![self.kernel_path(&dev.name)];
        if let Some(dm) = &dev.dm_name {
            paths.push(self.dev_dir.join("mapper").join(dm));
        }
        for map in [&self.by_id, &self.by_path] {
            paths.extend(map.get(&dev.name).into_iter().flatten().cloned());
        }
        paths
    }

    /// The path to record for the device: the best by-id link, else a by-path link, else
    /// the /dev/mapper name, else the kernel node.
    pub fn stable_path(&self, dev: &BlockDevice) -> PathBuf {
        let best_id = self
            .by_id
            .get(&dev.name)
            .into_iter()
            .flatten()
            .filter_map(|p| by_id_rank(p).map(|r| (r, p)))
            .min();
        if let Some((_, p)) = best_id {
            return p.clone();
        }
        if let Some(p) = self.by_path.get(&dev.name).and_then(|v| v.first()) {
            return p.clone();
        }
        if let Some(dm) = &dev.dm_name {
            return self.dev_dir.join("mapper").join(dm);
        }
        self.kernel_path(&dev.name)
    }
}

/// Lower is better; `None` for links that must never be recorded. Ties are broken by the
/// path itself, so the choice is the same on every run.
fn by_id_rank(link: &Path) -> Option<u8> {
    let name = link.file_name()?.to_str()?;
    let rank = if name.starts_with("wwn-") {
        // The world-wide name is the same on every host that sees a shared LUN.
        0
    } else if name.starts_with("nvme-eui.") {
        1
    } else if ["nvme-", "ata-", "scsi-", "virtio-"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        2
    } else if name.starts_with("dm-uuid-") {
        // dm names (/dev/mapper/mpatha) can differ between hosts; the uuid does not.
        3
    } else if name.starts_with("lvm-pv-uuid-") || name.starts_with("dm-name-") {
        // Derived from content (the PV label) or a host-local name: gone or different
        // after the device is re-initialised or seen from another host.
        return None;
    } else {
        4
    };
    Some(rank)
}

fn scan_dir(dir: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut map: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return map;
    };
    for entry in entries.filter_map(Result::ok) {
        let link = entry.path();
        // udev's links are always "../../<kernel name>"; the last component is the device.
        let Some(target) = fs::read_link(&link)
            .ok()
            .and_then(|t| t.file_name()?.to_str().map(str::to_string))
        else {
            continue;
        };
        map.entry(target).or_default().push(link);
    }
    for links in map.values_mut() {
        links.sort();
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str) -> BlockDevice {
        crate::sysfs::fake::block_device(name, 8, 0)
    }

    fn link(dev_dir: &Path, sub: &str, name: &str, target: &str) {
        let d = dev_dir.join("disk").join(sub);
        fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink(format!("../../{target}"), d.join(name)).unwrap();
    }

    #[test]
    fn prefers_wwn_then_eui_then_bus_ids_then_by_path() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        link(d, "by-id", "scsi-SATA_disk_S1", "sda");
        link(d, "by-id", "wwn-0x5000c5", "sda");
        link(d, "by-id", "lvm-pv-uuid-abc", "sda");
        link(d, "by-path", "pci-0000:00:1f.2-ata-1", "sda");
        link(d, "by-id", "nvme-Samsung_S2", "nvme0n1");
        link(d, "by-id", "nvme-eui.0025", "nvme0n1");
        link(d, "by-id", "lvm-pv-uuid-def", "sdc");
        link(d, "by-path", "pci-0000:00:1f.2-ata-3", "sdc");
        link(d, "by-id", "virtio-d1", "vdb");
        link(d, "by-id", "wwn-0x5000c5-part1", "sda1");
        let links = DevLinks::scan(d);
        assert_eq!(
            links.stable_path(&dev("sda")),
            d.join("disk/by-id/wwn-0x5000c5")
        );
        assert_eq!(
            links.stable_path(&dev("nvme0n1")),
            d.join("disk/by-id/nvme-eui.0025")
        );
        assert_eq!(
            links.stable_path(&dev("vdb")),
            d.join("disk/by-id/virtio-d1")
        );
        // Only a content-derived by-id link: by-path wins.
        assert_eq!(
            links.stable_path(&dev("sdc")),
            d.join("disk/by-path/pci-0000:00:1f.2-ata-3")
        );
        assert_eq!(links.stable_path(&dev("loop3")), d.join("loop3"));
        let mut dm = dev("dm-3");
        dm.dm_name = Some("mpatha".into());
        assert_eq!(links.stable_path(&dm), d.join("mapper/mpatha"));
        let paths = links.paths(&dev("sda"));
        assert_eq!(paths[0], d.join("sda"));
        assert!(paths.contains(&d.join("disk/by-path/pci-0000:00:1f.2-ata-1")));
        assert!(!paths.contains(&d.join("disk/by-id/wwn-0x5000c5-part1")));
    }

    #[test]
    fn no_udev_means_kernel_paths() {
        let links = DevLinks::scan(Path::new("/nonexistent/vglet/dev"));
        assert_eq!(
            links.stable_path(&dev("vdb")),
            Path::new("/nonexistent/vglet/dev/vdb")
        );
    }
}
