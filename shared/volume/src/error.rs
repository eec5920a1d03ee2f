//! The volume layer's one error enum, for the controller's rule modules (parameters,
//! capabilities, capacity ranges, layouts, persistent memory, VG choice, ownership) and the
//! node-volume library alike. It says *what* went wrong; csi-driver's `status.rs` alone turns
//! it into gRPC codes, so no rule decides a code and every RPC answers one failure with one
//! code. The reviver puts its text into its report.

use vglet_lvm::LvmError;
use vglet_mount::MountError;
use vglet_state::StateError;

/// The sources are boxed: a `Result` of this type stays small on the hot path.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The request itself is wrong in `field`; no change of the system makes it right.
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something of the name exists and is not what the request asks for (another volume,
    /// the volume with other settings, another mount at the path).
    #[error("{0}")]
    AlreadyExists(String),
    /// Not enough free space, PVs with room, or promisable thin-pool capacity (now).
    #[error("{0}")]
    NoSpace(String),
    /// No served VG the request's topology can reach takes it.
    #[error("{0}")]
    Unreachable(String),
    /// The size the request needs passes its own limit or the VG's size.
    #[error("{0}")]
    OutOfRange(String),
    /// The volume is used (mounted, open, locked by another host).
    #[error("{0}")]
    InUse(String),
    /// The system is not in the state the operation needs (not ours, shared VG, a device
    /// holding something else, ...).
    #[error("{0}")]
    Precondition(String),
    /// The node changed under the call; a retry may succeed.
    #[error("{0}")]
    Changed(String),
    /// Our own state cannot be read or does not add up.
    #[error("{0}")]
    Internal(String),
    /// An lvm operation failed; its code follows the lvm error's class.
    #[error("{context}: {source}")]
    Lvm {
        context: String,
        #[source]
        source: Box<LvmError>,
    },
    /// A mount, mkfs or filesystem operation failed; its code follows the mount error's class.
    #[error("{context}: {source}")]
    Mount {
        context: String,
        #[source]
        source: Box<MountError>,
    },
    /// A state record could not be read, written or locked.
    #[error("{context}: {source}")]
    State {
        context: String,
        #[source]
        source: Box<StateError>,
    },
}

impl VolumeError {
    /// An invalid `field`, with the rule it breaks: the form every validation error takes.
    pub fn invalid(field: impl Into<String>, rule: impl std::fmt::Display) -> VolumeError {
        VolumeError::Invalid {
            field: field.into(),
            rule: rule.to_string(),
        }
    }

    /// For `map_err`: an lvm failure while doing `context`.
    pub fn lvm(context: impl Into<String>) -> impl FnOnce(LvmError) -> VolumeError {
        let context = context.into();
        move |source| VolumeError::Lvm {
            context,
            source: Box::new(source),
        }
    }

    /// For `map_err`: a mount failure while doing `context`.
    pub fn mount(context: impl Into<String>) -> impl FnOnce(MountError) -> VolumeError {
        let context = context.into();
        move |source| VolumeError::Mount {
            context,
            source: Box::new(source),
        }
    }

    /// For `map_err`: a state-record failure while doing `context`.
    pub fn state(context: impl Into<String>) -> impl FnOnce(StateError) -> VolumeError {
        let context = context.into();
        move |source| VolumeError::State {
            context,
            source: Box::new(source),
        }
    }

    /// Whether the thing asked for does not exist (for the RPCs that answer that with OK).
    pub fn is_not_found(&self) -> bool {
        match self {
            VolumeError::NotFound(_) => true,
            VolumeError::Lvm { source, .. } => matches!(**source, LvmError::LvNotFound(_)),
            _ => false,
        }
    }
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;
