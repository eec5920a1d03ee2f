//! One place that turns library errors into gRPC status codes, so every RPC answers the
//! same failure with the same code.

use tonic::Status;
use vglet_lvm::LvmError;
use vglet_mount::MountError;

pub fn lvm_status(context: &str, e: LvmError) -> Status {
    let msg = format!("{context}: {e}");
    match e {
        LvmError::VgNotFound(_) => Status::failed_precondition(msg),
        LvmError::LvNotFound(_) => Status::not_found(msg),
        LvmError::AlreadyExists(_) => Status::already_exists(msg),
        LvmError::InsufficientSpace { .. } => Status::resource_exhausted(msg),
        LvmError::Locked(_) => Status::failed_precondition(msg),
        // CSI spec, DeleteVolume: "Volume in use | 9 FAILED_PRECONDITION".
        LvmError::InUse(_) => Status::failed_precondition(msg),
        LvmError::LockManager(_) => Status::unavailable(msg),
        LvmError::Timeout(_) => Status::deadline_exceeded(msg),
        _ => Status::internal(msg),
    }
}

pub fn mount_status(context: &str, e: MountError) -> Status {
    let msg = format!("{context}: {e}");
    match e {
        MountError::InvalidOption { .. }
        | MountError::InvalidPath { .. }
        | MountError::InvalidFsType(_)
        | MountError::InvalidArgument { .. } => Status::invalid_argument(msg),
        MountError::Busy { .. } => Status::failed_precondition(msg),
        MountError::NotFound { .. } => Status::not_found(msg),
        _ => Status::internal(msg),
    }
}

/// An INVALID_ARGUMENT naming the field and the rule, the form every validation error takes.
pub fn invalid(field: &str, rule: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {rule}"))
}

/// The node-volume library's errors, each to the code of its kind.
pub fn volume_status(e: vglet_volume::VolumeError) -> Status {
    use vglet_volume::VolumeError as E;
    match e {
        E::Invalid { field, reason } => invalid(&field, reason),
        E::Precondition(m) => Status::failed_precondition(m),
        E::Exists(m) => Status::already_exists(m),
        E::Changed(m) => Status::aborted(m),
        E::Internal(m) => Status::internal(m),
        E::Mount { context, source } => mount_status(&context, *source),
        E::Lvm { context, source } => lvm_status(&context, *source),
        E::State { context, source } => match *source {
            vglet_state::StateError::Locked(id) => Status::aborted(format!(
                "volume {id} is being restored by the reviver; retry later"
            )),
            e => Status::internal(format!("{context}: {e}")),
        },
    }
}
