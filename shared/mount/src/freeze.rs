//! Freezing a mounted filesystem (`FIFREEZE` / `FITHAW`, what `fsfreeze` does), in process.
//!
//! For a snapshot of a volume whose filesystem is not on the device lvm suspends: an
//! encrypted volume's filesystem is on its dm-crypt mapping, above the LV, so lvm's
//! `lockfs` suspend of the LV freezes nothing (there is no filesystem on the LV itself) and
//! the filesystem must be frozen on the mapping around the snapshot. Freezing the
//! filesystem that is on the suspended device itself must not be done (lvm's suspend then
//! fails with EBUSY, see the csi-driver's `ops/snapshot.rs`).
//!
//! A freeze applies to the filesystem (the superblock), so any mount of it will do. It is
//! held by [`Frozen`], which thaws on drop; a process killed while holding one leaves the
//! filesystem frozen until someone thaws it: [`thaw`] is what a restarted driver does.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::MountError;
use crate::resolve::{Create, Kind, resolve};

// linux/fs.h: #define FIFREEZE _IOWR('X', 119, int), FITHAW _IOWR('X', 120, int); the
// argument is ignored.
nix::ioctl_readwrite!(fifreeze, b'X', 119, nix::libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, nix::libc::c_int);

/// The root of the mount at `path` of the filesystem on `device`, opened for the ioctl:
/// `path` resolved without following a symlink in any component ([`resolve`]) and proven
/// to be a mount root of that device before anything is done to it.
fn open_mount_of(path: &Path, device: (u64, u64)) -> Result<File, MountError> {
    use std::os::unix::fs::OpenOptionsExt;
    let at = resolve(path, Create::Nothing)?;
    let id = at.identity()?;
    if id.kind != Kind::Dir || !id.mount_root || id.dev != device {
        return Err(MountError::InvalidPath {
            path: path.to_path_buf(),
            reason: format!(
                "not the root of a mount of device {}:{} (found {:?}, mount root: {}, device {}:{})",
                device.0, device.1, id.kind, id.mount_root, id.dev.0, id.dev.1
            ),
        });
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC)
        .open(at.proc_path())
        .map_err(|e| MountError::io("open", path, e))
}

/// A frozen filesystem: thawed by [`Frozen::thaw`] or on drop.
#[derive(Debug)]
pub struct Frozen {
    dir: Option<File>,
    path: PathBuf,
}

impl Frozen {
    /// Freezes the filesystem on `device` mounted at `path` (a mount point of it): its
    /// dirty data is written, and writes block until the thaw.
    pub fn freeze(path: &Path, device: (u64, u64)) -> Result<Frozen, MountError> {
        let dir = open_mount_of(path, device)?;
        let mut arg: nix::libc::c_int = 0;
        // SAFETY: the fd is open for the duration of the call; the kernel ignores `arg`.
        unsafe { fifreeze(dir.as_raw_fd(), &mut arg) }.map_err(|errno| MountError::Freeze {
            path: path.to_path_buf(),
            what: "freeze",
            errno,
        })?;
        Ok(Frozen {
            dir: Some(dir),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Thaws it now.
    pub fn thaw(mut self) -> Result<(), MountError> {
        self.thaw_inner()
    }

    fn thaw_inner(&mut self) -> Result<(), MountError> {
        let Some(dir) = self.dir.take() else {
            return Ok(());
        };
        let mut arg: nix::libc::c_int = 0;
        // SAFETY: as in freeze.
        unsafe { fithaw(dir.as_raw_fd(), &mut arg) }
            .map(drop)
            .map_err(|errno| MountError::Freeze {
                path: self.path.clone(),
                what: "thaw",
                errno,
            })
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(e) = self.thaw_inner() {
            tracing::error!(error = %e, "thawing a frozen filesystem failed");
        }
    }
}

/// Thaws the filesystem on `device` mounted at `path` if it is frozen: `Ok(true)` when it
/// was, `Ok(false)` when it was not (the kernel's EINVAL for a filesystem that is not frozen).
pub fn thaw(path: &Path, device: (u64, u64)) -> Result<bool, MountError> {
    let dir = open_mount_of(path, device)?;
    let mut arg: nix::libc::c_int = 0;
    // SAFETY: as in Frozen::freeze.
    match unsafe { fithaw(dir.as_raw_fd(), &mut arg) } {
        Ok(_) => Ok(true),
        Err(Errno::EINVAL) => Ok(false),
        Err(errno) => Err(MountError::Freeze {
            path: path.to_path_buf(),
            what: "thaw",
            errno,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_codes_are_the_kernels() {
        // linux/fs.h on x86_64 and aarch64: FIFREEZE 0xc0045877, FITHAW 0xc0045878.
        assert_eq!(
            nix::request_code_readwrite!(b'X', 119, std::mem::size_of::<nix::libc::c_int>()),
            0xc004_5877
        );
        assert_eq!(
            nix::request_code_readwrite!(b'X', 120, std::mem::size_of::<nix::libc::c_int>()),
            0xc004_5878
        );
    }

    #[test]
    fn only_a_mount_root_of_the_device_reached_without_symlinks_is_frozen() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        let dev = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(p).unwrap().dev();
            (nix::libc::major(m) as u64, nix::libc::minor(m) as u64)
        };
        let here = dev(d.path());
        assert!(Frozen::freeze(&f, here).is_err(), "a regular file");
        assert!(
            thaw(&d.path().join("missing"), here).is_err(),
            "a missing path"
        );
        // A directory of the right filesystem that is not where it is mounted: refused
        // before any ioctl (a freeze of the host's filesystem would hang this test).
        let e = Frozen::freeze(d.path(), here).unwrap_err();
        assert!(
            matches!(&e, MountError::InvalidPath { reason, .. } if reason.contains("not the root of a mount")),
            "{e:?}"
        );
        // A symlink to a directory, in the last component or before it: refused by the
        // resolution, never followed.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(d.path(), &link).unwrap();
        assert!(Frozen::freeze(&link, here).is_err());
        assert!(thaw(&link.join("file"), here).is_err());
    }
}
