//! Per-volume advisory locks (flock) shared by every process using one state directory.
//!
//! A lock file exists only while something refers to its volume: when a lock is released
//! and the volume has no record, the file is removed (with any stale temp file of the
//! record) while the flock is still held. Another process may have opened the file just
//! before and then win the flock on an inode that is no longer at the path; so an acquirer
//! checks, once it holds the flock, that the path still names the locked inode (fstat vs
//! stat), and starts over otherwise. Two processes therefore never hold locks on two
//! different files of one name.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::StateError;

/// Held until dropped.
#[derive(Debug)]
pub struct VolumeLock {
    lock: Option<Flock<File>>,
    path: PathBuf,
    /// The volume's record and its temp file: when the record is gone at release, nothing
    /// refers to the volume any more.
    record: PathBuf,
    record_tmp: PathBuf,
}

impl VolumeLock {
    pub(crate) fn try_acquire(
        dir: &Path,
        name: &str,
        id: &str,
        record: PathBuf,
        record_tmp: PathBuf,
    ) -> Result<VolumeLock, StateError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateError::Io {
                op: "creating",
                path: dir.to_path_buf(),
                source,
            })?;
        let path = dir.join(format!("{name}.lock"));
        let io = |op, source| StateError::Io {
            op,
            path: path.clone(),
            source,
        };
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io("opening", e))?;
            let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((_, Errno::EWOULDBLOCK)) => return Err(StateError::Locked(id.to_string())),
                Err((_, errno)) => return Err(io("locking", errno.into())),
            };
            let held = lock.metadata().map_err(|e| io("fstat of", e))?;
            match std::fs::symlink_metadata(&path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(VolumeLock {
                        lock: Some(lock),
                        path,
                        record,
                        record_tmp,
                    });
                }
                // Removed (or removed and created anew) by the holder we waited for.
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("stat of", e)),
            }
        }
    }
}

impl Drop for VolumeLock {
    fn drop(&mut self) {
        // Decided under the lock: every writer of the record holds it too.
        if matches!(std::fs::symlink_metadata(&self.record), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        {
            for path in [&self.record_tmp, &self.path] {
                if let Err(e) = std::fs::remove_file(path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a state file");
                }
            }
        }
        // Unlocked only now, after the removal.
        drop(self.lock.take());
    }
}
