//! Per-volume advisory locks (flock) shared by every process using one state directory.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::StateError;

/// Held until dropped. The lock files stay (empty): removing one while another process
/// waits on it would let two processes lock two different files of the same name.
#[derive(Debug)]
pub struct VolumeLock {
    _lock: Flock<File>,
}

impl VolumeLock {
    pub(crate) fn try_acquire(dir: &Path, name: &str, id: &str) -> Result<VolumeLock, StateError> {
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StateError::Io {
                op: "opening",
                path: path.clone(),
                source,
            })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(VolumeLock { _lock: lock }),
            Err((_, Errno::EWOULDBLOCK)) => Err(StateError::Locked(id.to_string())),
            Err((_, errno)) => Err(StateError::Io {
                op: "locking",
                path,
                source: errno.into(),
            }),
        }
    }
}
