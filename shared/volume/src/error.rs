//! The volume layer's one error enum; csi-driver maps it to gRPC codes once (`status.rs`),
//! the reviver puts its text into the report.

use vglet_lvm::LvmError;
use vglet_mount::MountError;
use vglet_state::StateError;

/// The sources are boxed: a `Result` of this type stays small on the hot path.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A request field breaks a rule (INVALID_ARGUMENT).
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The volume is not in the state the call needs (FAILED_PRECONDITION).
    #[error("{0}")]
    Precondition(String),
    /// Something else, or the volume with other settings, is already there (ALREADY_EXISTS).
    #[error("{0}")]
    Exists(String),
    /// The node changed under the call; a retry may succeed (ABORTED).
    #[error("{0}")]
    Changed(String),
    #[error("{0}")]
    Internal(String),
    #[error("{context}: {source}")]
    Mount {
        context: String,
        #[source]
        source: Box<MountError>,
    },
    #[error("{context}: {source}")]
    Lvm {
        context: String,
        #[source]
        source: Box<LvmError>,
    },
    #[error("{context}: {source}")]
    State {
        context: String,
        #[source]
        source: Box<StateError>,
    },
}

impl VolumeError {
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> VolumeError {
        VolumeError::Invalid {
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }

    pub fn mount(context: impl Into<String>) -> impl FnOnce(MountError) -> VolumeError {
        let context = context.into();
        move |source| VolumeError::Mount {
            context,
            source: Box::new(source),
        }
    }

    pub fn lvm(context: impl Into<String>) -> impl FnOnce(LvmError) -> VolumeError {
        let context = context.into();
        move |source| VolumeError::Lvm {
            context,
            source: Box::new(source),
        }
    }

    pub fn state(context: impl Into<String>) -> impl FnOnce(StateError) -> VolumeError {
        let context = context.into();
        move |source| VolumeError::State {
            context,
            source: Box::new(source),
        }
    }
}
