use std::path::PathBuf;

use nix::errno::Errno;
use vglet_runner::RunError;

/// Everything this crate can fail with. Each variant names the path it failed on, because
/// the CSI driver passes these messages straight back to kubelet events.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount option {option:?} rejected: {reason}")]
    InvalidOption { option: String, reason: String },

    #[error("filesystem type {0:?} is not supported (supported: {supported})", supported = crate::SUPPORTED_FILESYSTEMS.join(", "))]
    InvalidFsType(String),

    /// A tool the binary did not find at start (mkfs.xfs on a node without xfsprogs).
    #[error(transparent)]
    ProgramMissing(#[from] vglet_runner::ProgramMissing),

    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: String,
    },

    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: PathBuf, reason: String },

    /// Unmounting something that is not a mount point (EINVAL) or does not exist (ENOENT);
    /// callers doing idempotent unpublish treat this as success.
    #[error("{path:?} is not mounted")]
    NotMounted { path: PathBuf },

    /// A path (or one of its parents) that does not exist.
    #[error("{path:?} does not exist")]
    NotFound { path: PathBuf },

    #[error("{path:?} is busy (still in use)")]
    Busy { path: PathBuf },

    #[error("mount {device:?} on {target:?} (type {fstype:?}) failed: {errno}")]
    Mount {
        device: PathBuf,
        target: PathBuf,
        fstype: String,
        #[source]
        errno: Errno,
    },

    #[error("bind mount {from:?} on {target:?} failed: {errno}")]
    Bind {
        from: PathBuf,
        target: PathBuf,
        #[source]
        errno: Errno,
    },

    #[error("remount of {target:?} read-only failed: {errno}")]
    Remount {
        target: PathBuf,
        #[source]
        errno: Errno,
    },

    #[error("unmount of {target:?} failed: {errno}")]
    Unmount {
        target: PathBuf,
        #[source]
        errno: Errno,
    },

    /// FIFREEZE / FITHAW of a mounted filesystem (see [`crate::Frozen`]).
    #[error("{what} of the filesystem at {path:?} failed: {errno}")]
    Freeze {
        path: PathBuf,
        what: &'static str,
        #[source]
        errno: Errno,
    },

    #[error("reading the mount table: {0}")]
    MountTable(String),

    #[error("statvfs of {path:?} failed: {errno}")]
    Stat {
        path: PathBuf,
        #[source]
        errno: Errno,
    },

    #[error("{op} {path:?} failed: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// blkid found more than one signature: nothing may be formatted or mounted there
    /// until a human looks.
    #[error("{path:?} carries conflicting signatures: {detail}")]
    AmbivalentSignature { path: PathBuf, detail: String },

    #[error("{tool} on {path:?} failed: {source}")]
    Command {
        tool: &'static str,
        path: PathBuf,
        #[source]
        source: RunError,
    },
}

impl MountError {
    pub fn is_not_mounted(&self) -> bool {
        matches!(self, MountError::NotMounted { .. })
    }

    /// The kernel's errno behind a syscall failure, for mapping to gRPC codes.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            MountError::Mount { errno, .. }
            | MountError::Bind { errno, .. }
            | MountError::Remount { errno, .. }
            | MountError::Unmount { errno, .. }
            | MountError::Stat { errno, .. } => Some(*errno),
            MountError::Busy { .. } => Some(Errno::EBUSY),
            MountError::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MountError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
