//! The read side of the node, beside [`Mounter`] (the write side): the mount table, what a
//! resolved path is, device numbers, device-mapper uuids from sysfs, and reads of a
//! device's first bytes. [`SystemHost`] asks the kernel; [`FakeHost`] is a recording
//! double of both traits with an in-memory mount table, so staging and publishing run as
//! host unit tests (the pattern of youki's syscall trait and its test double).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vglet_mount::{
    Identity, Kind, MkfsProgress, MountCall, MountEntry, MountError, MountOptions, Mounter,
    RecordingMounter, Resolved,
};

pub trait NodeHost: Send + Sync + Debug {
    /// The top-most mount at `path` (by name in the mount table).
    fn mount_at(&self, path: &Path) -> Result<Option<MountEntry>, MountError>;
    /// Every mount of the block device with these numbers.
    fn mounts_of_device(&self, device: (u64, u64)) -> Result<Vec<MountEntry>, MountError>;
    /// What the kernel says of a resolved file (is a mount root, of which device).
    fn identity(&self, at: &Resolved) -> Result<Identity, MountError>;
    /// (major, minor) of the block device node `dev`; `None` when it is not one.
    fn device_numbers(&self, dev: &Path) -> Option<(u64, u64)>;
    /// The device-mapper uuid of the device with these numbers (sysfs); `None` when it
    /// is not a device-mapper device.
    fn dm_uuid(&self, device: (u64, u64)) -> Option<String>;
    /// The devices a device-mapper device sits on (sysfs `slaves/`), sorted; empty when
    /// it is none.
    fn dm_slaves(&self, device: (u64, u64)) -> Vec<(u64, u64)>;
    /// Whether the start of `dev` still holds lvcreate's zeroes.
    fn head_is_zeroed(&self, dev: &Path) -> Result<bool, MountError>;
    /// The filesystem's own evidence of a finished or interrupted mkfs.
    fn mkfs_progress(&self, dev: &Path, fs_type: &str) -> Result<MkfsProgress, MountError>;
}

/// The device numbers of `dev` and its device-mapper uuid; `None` when there is no such
/// block device node or it is not a device-mapper device.
pub fn dm_device(host: &dyn NodeHost, dev: &Path) -> Option<((u64, u64), String)> {
    let numbers = host.device_numbers(dev)?;
    Some((numbers, host.dm_uuid(numbers)?))
}

/// The kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemHost;

impl NodeHost for SystemHost {
    fn mount_at(&self, path: &Path) -> Result<Option<MountEntry>, MountError> {
        vglet_mount::mount_at(path)
    }

    fn mounts_of_device(&self, (major, minor): (u64, u64)) -> Result<Vec<MountEntry>, MountError> {
        vglet_mount::mounts_of_device(major as u32, minor as u32)
    }

    fn identity(&self, at: &Resolved) -> Result<Identity, MountError> {
        at.identity()
    }

    fn device_numbers(&self, dev: &Path) -> Option<(u64, u64)> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let md = std::fs::metadata(dev).ok()?;
        md.file_type().is_block_device().then(|| {
            (
                nix::sys::stat::major(md.rdev()),
                nix::sys::stat::minor(md.rdev()),
            )
        })
    }

    fn dm_uuid(&self, (major, minor): (u64, u64)) -> Option<String> {
        std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/dm/uuid")).ok()
    }

    fn dm_slaves(&self, (major, minor): (u64, u64)) -> Vec<(u64, u64)> {
        let dir = format!("/sys/dev/block/{major}:{minor}/slaves");
        let mut found: Vec<(u64, u64)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
            .filter_map(|d| {
                let (a, b) = d.trim().split_once(':')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect();
        found.sort_unstable();
        found
    }

    fn head_is_zeroed(&self, dev: &Path) -> Result<bool, MountError> {
        vglet_mount::head_is_zeroed(dev)
    }

    fn mkfs_progress(&self, dev: &Path, fs_type: &str) -> Result<MkfsProgress, MountError> {
        vglet_mount::mkfs_progress(dev, fs_type)
    }
}

/// A device the fake knows.
#[derive(Debug, Clone)]
pub struct FakeDevice {
    pub numbers: (u64, u64),
    pub dm_uuid: Option<String>,
    pub head_zeroed: bool,
    pub progress: Option<MkfsProgress>,
    /// What a device-mapper device sits on.
    pub slaves: Vec<(u64, u64)>,
}

/// One mount in the fake's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMount {
    /// The real path it was made at (what the `/proc/self/fd/N` name led to).
    pub path: PathBuf,
    pub device: (u64, u64),
    /// A bind of a device node onto a file (raw block).
    pub block: bool,
    pub read_only: bool,
    pub options: Vec<String>,
    pub fs_type: String,
}

#[derive(Debug, Default)]
struct FakeState {
    devices: BTreeMap<PathBuf, FakeDevice>,
    mounts: Vec<FakeMount>,
    /// The kernel drops `dax=always` (xfs on a device without DAX does that silently).
    drops_dax: bool,
}

/// [`NodeHost`] and [`Mounter`] over an in-memory mount table: mounts and binds made
/// through it at a resolved path's `/proc/self/fd/N` name show in its mount table and in
/// [`NodeHost::identity`] of that path; every mounter call is recorded. Paths are real
/// (a temporary directory), so resolution and the checks on it run for real.
#[derive(Debug, Clone, Default)]
pub struct FakeHost {
    state: Arc<Mutex<FakeState>>,
    /// Records the calls (never fails them: the fake's table decides).
    calls: RecordingMounter,
}

fn real_path(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl FakeHost {
    pub fn new() -> FakeHost {
        FakeHost::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An active LV: its device node with these numbers and dm uuid, zeroed by lvcreate.
    pub fn add_device(&self, dev: &Path, numbers: (u64, u64), dm_uuid: Option<String>) {
        self.state().devices.insert(
            dev.to_path_buf(),
            FakeDevice {
                numbers,
                dm_uuid,
                head_zeroed: true,
                progress: None,
                slaves: Vec::new(),
            },
        );
    }

    /// An open dm-crypt mapping at `dev` on the device with numbers `on`. Its content is
    /// what decrypting lvcreate's zeroes gives: not zeroes.
    pub fn add_mapping(&self, dev: &Path, numbers: (u64, u64), dm_uuid: &str, on: (u64, u64)) {
        self.state().devices.insert(
            dev.to_path_buf(),
            FakeDevice {
                numbers,
                dm_uuid: Some(dm_uuid.to_string()),
                head_zeroed: false,
                progress: None,
                slaves: vec![on],
            },
        );
    }

    /// The device's start reads as zeroes again: in a fake, "nothing blkid would know",
    /// without running blkid (a fake mapping on a newly formatted LUKS header).
    pub fn blank_head(&self, dev: &Path) {
        if let Some(d) = self.state().devices.get_mut(dev) {
            d.head_zeroed = true;
            d.progress = None;
        }
    }

    /// The device at `dev` is gone (a closed mapping).
    pub fn remove_device(&self, dev: &Path) {
        self.state().devices.remove(dev);
    }

    /// Something was written to the device's start; mkfs_progress answers `progress`.
    pub fn write_head(&self, dev: &Path, progress: Option<MkfsProgress>) {
        if let Some(d) = self.state().devices.get_mut(dev) {
            d.head_zeroed = false;
            d.progress = progress;
        }
    }

    /// A mount made behind the driver's back (another volume, a tmpfs, a crash's leftover).
    pub fn add_mount(&self, m: FakeMount) {
        self.state().mounts.push(m);
    }

    pub fn set_drops_dax(&self, drops: bool) {
        self.state().drops_dax = drops;
    }

    pub fn calls(&self) -> Vec<MountCall> {
        self.calls.calls()
    }

    pub fn clear_calls(&self) {
        self.calls.clear_calls();
    }

    pub fn mounts(&self) -> Vec<FakeMount> {
        self.state().mounts.clone()
    }

    fn entry(m: &FakeMount, n: usize) -> MountEntry {
        MountEntry {
            mount_id: 100 + n as i32,
            parent_id: 1,
            major: m.device.0 as u32,
            minor: m.device.1 as u32,
            root: "/".into(),
            mount_point: m.path.clone(),
            fs_type: m.fs_type.clone(),
            source: None,
            options: m.options.clone(),
        }
    }
}

impl NodeHost for FakeHost {
    fn mount_at(&self, path: &Path) -> Result<Option<MountEntry>, MountError> {
        let s = self.state();
        let path = real_path(path);
        Ok(s.mounts
            .iter()
            .enumerate()
            .rev()
            .find(|(_, m)| m.path == path)
            .map(|(n, m)| Self::entry(m, n)))
    }

    fn mounts_of_device(&self, device: (u64, u64)) -> Result<Vec<MountEntry>, MountError> {
        let s = self.state();
        Ok(s.mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| m.device == device && !m.block)
            .map(|(n, m)| Self::entry(m, n))
            .collect())
    }

    fn identity(&self, at: &Resolved) -> Result<Identity, MountError> {
        let real = at.identity()?;
        let path = real_path(&at.proc_path());
        let s = self.state();
        Ok(match s.mounts.iter().rev().find(|m| m.path == path) {
            Some(m) => Identity {
                kind: if m.block {
                    Kind::BlockDevice
                } else {
                    Kind::Dir
                },
                mount_root: true,
                dev: if m.block { (0, 6) } else { m.device },
                rdev: if m.block { m.device } else { (0, 0) },
                size: 0,
                read_only: m.read_only,
            },
            None => real,
        })
    }

    fn device_numbers(&self, dev: &Path) -> Option<(u64, u64)> {
        self.state().devices.get(dev).map(|d| d.numbers)
    }

    fn dm_uuid(&self, numbers: (u64, u64)) -> Option<String> {
        let s = self.state();
        s.devices
            .values()
            .find(|d| d.numbers == numbers)
            .and_then(|d| d.dm_uuid.clone())
    }

    fn dm_slaves(&self, numbers: (u64, u64)) -> Vec<(u64, u64)> {
        let s = self.state();
        s.devices
            .values()
            .find(|d| d.numbers == numbers)
            .map(|d| d.slaves.clone())
            .unwrap_or_default()
    }

    fn head_is_zeroed(&self, dev: &Path) -> Result<bool, MountError> {
        Ok(self.state().devices.get(dev).is_some_and(|d| d.head_zeroed))
    }

    fn mkfs_progress(&self, dev: &Path, _fs_type: &str) -> Result<MkfsProgress, MountError> {
        Ok(self
            .state()
            .devices
            .get(dev)
            .and_then(|d| d.progress.clone())
            .unwrap_or(MkfsProgress::Complete))
    }
}

impl Mounter for FakeHost {
    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fstype: &str,
        opts: &MountOptions,
    ) -> Result<(), MountError> {
        self.calls.mount(source, target, fstype, opts)?;
        let mut s = self.state();
        let device =
            s.devices
                .get(source)
                .map(|d| d.numbers)
                .ok_or_else(|| MountError::NotFound {
                    path: source.to_path_buf(),
                })?;
        let mut options = opts.to_strings();
        if s.drops_dax {
            options.retain(|o| o != vglet_mount::DAX_ALWAYS);
        }
        let m = FakeMount {
            path: real_path(target),
            device,
            block: false,
            read_only: opts.readonly(),
            options,
            fs_type: fstype.to_string(),
        };
        s.mounts.push(m);
        Ok(())
    }

    fn bind(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), MountError> {
        self.calls.bind(source, target, readonly)?;
        let mut s = self.state();
        let from = real_path(source);
        let (device, block, fs_type) = match s.devices.get(source) {
            Some(d) => (d.numbers, true, String::new()),
            None => match s.mounts.iter().rev().find(|m| m.path == from) {
                Some(m) => (m.device, false, m.fs_type.clone()),
                None => {
                    return Err(MountError::NotFound {
                        path: source.to_path_buf(),
                    });
                }
            },
        };
        let m = FakeMount {
            path: real_path(target),
            device,
            block,
            read_only: readonly,
            options: vec![if readonly { "ro" } else { "rw" }.to_string()],
            fs_type,
        };
        s.mounts.push(m);
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), MountError> {
        self.calls.unmount(target)?;
        let mut s = self.state();
        let path = real_path(target);
        match s.mounts.iter().rposition(|m| m.path == path) {
            Some(i) => {
                s.mounts.remove(i);
                Ok(())
            }
            None => Err(MountError::NotMounted {
                path: target.to_path_buf(),
            }),
        }
    }
}
