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
        // This node lacks the tool (an xfs volume on a node without xfsprogs).
        MountError::ProgramMissing(_) => Status::failed_precondition(msg),
        _ => Status::internal(msg),
    }
}

/// An INVALID_ARGUMENT naming the field and the rule, the form every validation error takes.
pub fn invalid(field: &str, rule: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {rule}"))
}
