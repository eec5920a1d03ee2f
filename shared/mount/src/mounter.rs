use std::fmt::Debug;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};
use rustix::mount::{MoveMountFlags, OpenTreeFlags};

use crate::MountError;
use crate::options::{MountOptions, VFS_FLAGS};

/// The mount syscalls the node service needs, behind a trait so the driver's logic can be
/// unit-tested with [`RecordingMounter`].
pub trait Mounter: Send + Sync + Debug {
    /// Mounts the filesystem on `source` (a block device) at `target` (a directory).
    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fstype: &str,
        opts: &MountOptions,
    ) -> Result<(), MountError>;

    /// Bind-mounts `source` on `target`: a directory on a directory, or a device node (raw
    /// block volume) on a regular file.
    fn bind(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), MountError>;

    /// Unmounts the top-most mount at `target`. Fails with [`MountError::NotMounted`] when
    /// nothing is mounted there, so callers can be idempotent.
    fn unmount(&self, target: &Path) -> Result<(), MountError>;
}

/// The real thing: mount(2) and umount2(2) via nix.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemMounter;

impl SystemMounter {
    pub fn new() -> Self {
        SystemMounter
    }
}

impl Mounter for SystemMounter {
    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fstype: &str,
        opts: &MountOptions,
    ) -> Result<(), MountError> {
        // Options are public fields; masking here keeps a hand-built MountOptions from
        // turning this into a bind, move or remount.
        let flags = opts.flags & VFS_FLAGS;
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        tracing::info!(source = %source.display(), target = %target.display(), fstype,
            options = %opts.to_strings().join(","), "mount");
        nix::mount::mount(Some(source), target, Some(fstype), flags, data).map_err(|errno| {
            MountError::Mount {
                device: source.to_path_buf(),
                target: target.to_path_buf(),
                fstype: fstype.to_string(),
                errno,
            }
        })
    }

    fn bind(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), MountError> {
        tracing::info!(source = %source.display(), target = %target.display(), readonly, "bind mount");
        // The new mount API instead of mount(MS_BIND): open_tree(OPEN_TREE_CLONE) gives a
        // descriptor of the new bind mount itself, so the read-only remount below acts on
        // exactly that mount. With mount(2) the remount has to find the mount again by
        // the target's name, and a target given as /proc/self/fd/N (a path resolved
        // without symlinks, see `resolve`) names the directory *under* the new mount.
        // MOVE_MOUNT_T_SYMLINKS lets the kernel follow that /proc/self/fd/N link.
        let bind_err = |errno: rustix::io::Errno| MountError::Bind {
            from: source.to_path_buf(),
            target: target.to_path_buf(),
            errno: Errno::from_raw(errno.raw_os_error()),
        };
        let tree = rustix::mount::open_tree(
            rustix::fs::CWD,
            source,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .map_err(bind_err)?;
        rustix::mount::move_mount(
            &tree,
            "",
            rustix::fs::CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_SYMLINKS,
        )
        .map_err(bind_err)?;
        if !readonly {
            return Ok(());
        }
        let mounted = PathBuf::from(format!("/proc/self/fd/{}", tree.as_raw_fd()));
        // The kernel ignores MS_RDONLY on the bind call itself, so read-only takes a remount.
        // A bind remount replaces all per-mount flags: carry over nosuid/nodev/noexec/atime
        // from the new mount, or a remount would quietly drop them (and in a user namespace
        // the kernel refuses to drop locked ones).
        let keep = statvfs(&mounted)
            .map(|s| msflags_of(s.flags()))
            .unwrap_or(MsFlags::empty());
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | keep;
        if let Err(errno) =
            nix::mount::mount(None::<&str>, &mounted, None::<&str>, flags, None::<&str>)
        {
            // A writable mount where a read-only one was asked for must not stay behind.
            if let Err(e) = umount2(&mounted, MntFlags::empty()) {
                tracing::error!(target = %target.display(), error = %e,
                    "read-only remount failed and the writable bind could not be undone");
            }
            return Err(MountError::Remount {
                target: target.to_path_buf(),
                errno,
            });
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), MountError> {
        tracing::info!(target = %target.display(), "unmount");
        // No MNT_DETACH: a lazy detach "succeeds" on a busy mount and leaves the filesystem
        // alive behind the caller's back, so the LV could never be deactivated.
        // UMOUNT_NOFOLLOW: a symlink planted at the target is never followed to another
        // mount (the caller proved what is mounted at the name, not at a link's target).
        umount2(target, MntFlags::UMOUNT_NOFOLLOW).map_err(|errno| match errno {
            Errno::EINVAL | Errno::ENOENT => MountError::NotMounted {
                path: target.to_path_buf(),
            },
            Errno::EBUSY => MountError::Busy {
                path: target.to_path_buf(),
            },
            errno => MountError::Unmount {
                target: target.to_path_buf(),
                errno,
            },
        })
    }
}

fn msflags_of(st: FsFlags) -> MsFlags {
    let pairs = [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    pairs
        .iter()
        .filter(|(s, _)| st.contains(*s))
        .fold(MsFlags::empty(), |acc, (_, m)| acc | *m)
}

/// One call made on a [`RecordingMounter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountCall {
    Mount {
        source: PathBuf,
        target: PathBuf,
        fstype: String,
        options: MountOptions,
    },
    Bind {
        source: PathBuf,
        target: PathBuf,
        readonly: bool,
    },
    Unmount {
        target: PathBuf,
    },
}

impl MountCall {
    pub fn target(&self) -> &Path {
        match self {
            MountCall::Mount { target, .. }
            | MountCall::Bind { target, .. }
            | MountCall::Unmount { target } => target,
        }
    }
}

/// Decides whether a call on a [`RecordingMounter`] fails, and with what.
pub type FailWhen = Box<dyn Fn(&MountCall) -> Option<MountError> + Send + Sync>;

#[derive(Default)]
struct State {
    calls: Vec<MountCall>,
    /// Targets in mount order; a target mounted twice appears twice, like stacked mounts.
    mounted: Vec<PathBuf>,
    strict: bool,
    fail: Option<FailWhen>,
}

/// A test double that records every call, keeps a simulated list of mounted targets, and
/// fails on demand. Clones share state, so a test can keep one while the driver owns
/// another as `Arc<dyn Mounter>`.
#[derive(Clone, Default)]
pub struct RecordingMounter {
    state: Arc<Mutex<State>>,
}

impl Debug for RecordingMounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock().unwrap();
        f.debug_struct("RecordingMounter")
            .field("calls", &s.calls.len())
            .field("mounted", &s.mounted)
            .field("strict", &s.strict)
            .finish()
    }
}

impl RecordingMounter {
    /// Every call succeeds, including unmounting something that was never mounted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Like the kernel: unmounting a target that is not mounted fails with
    /// [`MountError::NotMounted`].
    pub fn strict() -> Self {
        let m = Self::default();
        m.state.lock().unwrap().strict = true;
        m
    }

    /// Makes calls fail when `f` returns an error (the call is still recorded).
    pub fn fail_when(&self, f: impl Fn(&MountCall) -> Option<MountError> + Send + Sync + 'static) {
        self.state.lock().unwrap().fail = Some(Box::new(f));
    }

    pub fn clear_failures(&self) {
        self.state.lock().unwrap().fail = None;
    }

    pub fn calls(&self) -> Vec<MountCall> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    pub fn is_mounted(&self, target: &Path) -> bool {
        self.state
            .lock()
            .unwrap()
            .mounted
            .iter()
            .any(|m| m == target)
    }

    pub fn mounted(&self) -> Vec<PathBuf> {
        self.state.lock().unwrap().mounted.clone()
    }

    /// Pretends `target` was already mounted (e.g. before a driver restart).
    pub fn mark_mounted(&self, target: &Path) {
        self.state
            .lock()
            .unwrap()
            .mounted
            .push(target.to_path_buf());
    }

    fn record(&self, call: MountCall) -> Result<(), MountError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(call.clone());
        if let Some(err) = s.fail.as_ref().and_then(|f| f(&call)) {
            return Err(err);
        }
        match &call {
            MountCall::Mount { target, .. } | MountCall::Bind { target, .. } => {
                s.mounted.push(target.clone());
            }
            MountCall::Unmount { target } => match s.mounted.iter().rposition(|m| m == target) {
                Some(i) => {
                    s.mounted.remove(i);
                }
                None if s.strict => {
                    return Err(MountError::NotMounted {
                        path: target.clone(),
                    });
                }
                None => {}
            },
        }
        Ok(())
    }
}

impl Mounter for RecordingMounter {
    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fstype: &str,
        opts: &MountOptions,
    ) -> Result<(), MountError> {
        self.record(MountCall::Mount {
            source: source.to_path_buf(),
            target: target.to_path_buf(),
            fstype: fstype.to_string(),
            options: opts.clone(),
        })
    }

    fn bind(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), MountError> {
        self.record(MountCall::Bind {
            source: source.to_path_buf(),
            target: target.to_path_buf(),
            readonly,
        })
    }

    fn unmount(&self, target: &Path) -> Result<(), MountError> {
        self.record(MountCall::Unmount {
            target: target.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_mount_flags;

    #[test]
    fn records_calls_and_tracks_mounts() {
        let m = RecordingMounter::new();
        let driver: Arc<dyn Mounter> = Arc::new(m.clone());
        let opts = parse_mount_flags(&["noatime".to_string()]).unwrap();
        driver
            .mount(Path::new("/dev/vg/lv"), Path::new("/staging"), "xfs", &opts)
            .unwrap();
        driver
            .bind(Path::new("/staging"), Path::new("/pod/vol"), true)
            .unwrap();
        assert!(m.is_mounted(Path::new("/staging")));
        assert!(m.is_mounted(Path::new("/pod/vol")));
        driver.unmount(Path::new("/pod/vol")).unwrap();
        assert!(!m.is_mounted(Path::new("/pod/vol")));
        // Lenient by default: unmounting twice is fine.
        driver.unmount(Path::new("/pod/vol")).unwrap();
        assert_eq!(
            m.calls(),
            vec![
                MountCall::Mount {
                    source: "/dev/vg/lv".into(),
                    target: "/staging".into(),
                    fstype: "xfs".into(),
                    options: opts,
                },
                MountCall::Bind {
                    source: "/staging".into(),
                    target: "/pod/vol".into(),
                    readonly: true,
                },
                MountCall::Unmount {
                    target: "/pod/vol".into()
                },
                MountCall::Unmount {
                    target: "/pod/vol".into()
                },
            ]
        );
        assert_eq!(m.calls()[1].target(), Path::new("/pod/vol"));
        assert_eq!(m.mounted(), vec![PathBuf::from("/staging")]);
    }

    #[test]
    fn strict_unmount_reports_not_mounted() {
        let m = RecordingMounter::strict();
        let err = m.unmount(Path::new("/x")).unwrap_err();
        assert!(err.is_not_mounted(), "{err}");
        m.mark_mounted(Path::new("/x"));
        m.unmount(Path::new("/x")).unwrap();
        assert!(m.unmount(Path::new("/x")).unwrap_err().is_not_mounted());
    }

    #[test]
    fn injected_failures() {
        let m = RecordingMounter::new();
        m.fail_when(|c| match c {
            MountCall::Bind { target, .. } => Some(MountError::Bind {
                from: "/s".into(),
                target: target.clone(),
                errno: Errno::EPERM,
            }),
            _ => None,
        });
        let err = m.bind(Path::new("/s"), Path::new("/t"), false).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::EPERM));
        assert!(!m.is_mounted(Path::new("/t")));
        assert_eq!(m.calls().len(), 1, "failed calls are recorded too");
        m.mount(
            Path::new("/d"),
            Path::new("/t"),
            "ext4",
            &MountOptions::default(),
        )
        .unwrap();
        m.clear_failures();
        m.bind(Path::new("/s"), Path::new("/t2"), false).unwrap();
        m.clear_calls();
        assert!(m.calls().is_empty());
    }

    #[test]
    fn stat_flags_carry_over() {
        assert_eq!(
            msflags_of(FsFlags::ST_NOSUID | FsFlags::ST_NODEV | FsFlags::ST_RDONLY),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
    }
}
