//! The volume layer's one error type. Rule modules (parameters, capabilities, capacity
//! ranges, layouts, persistent memory, VG choice, ownership) say *what* went wrong in these
//! terms; [`crate::status`] alone turns them into gRPC codes, so a rule never decides a
//! code and every RPC answers one failure with one code.

use vglet_lvm::LvmError;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The request itself is wrong in `field`; no change of the system makes it right.
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something of the name exists and is not what the request asks for.
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
    /// The system is not in the state the operation needs (not ours, shared VG, ...).
    #[error("{0}")]
    Precondition(String),
    /// Our own state cannot be read or does not add up.
    #[error("{0}")]
    Internal(String),
    /// An lvm operation failed; its code follows the lvm error's class.
    #[error("{context}: {error}")]
    Lvm {
        context: String,
        #[source]
        error: LvmError,
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

    pub fn lvm(context: impl Into<String>, error: LvmError) -> VolumeError {
        VolumeError::Lvm {
            context: context.into(),
            error,
        }
    }

    /// Whether the thing asked for does not exist (for the RPCs that answer that with OK).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            VolumeError::NotFound(_)
                | VolumeError::Lvm {
                    error: LvmError::LvNotFound(_),
                    ..
                }
        )
    }
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;
