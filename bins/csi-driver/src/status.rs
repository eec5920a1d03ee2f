//! One place that turns library errors into gRPC status codes, so every RPC answers the
//! same failure with the same code.

use tonic::Status;
use vglet_lvm::LvmError;
use vglet_mount::MountError;

use crate::rules::error::VolumeError;

pub fn lvm_status(context: &str, e: LvmError) -> Status {
    volume_status(VolumeError::lvm(context)(e))
}

/// The code of an lvm failure, by its class.
fn lvm_code(e: &LvmError) -> tonic::Code {
    use tonic::Code;
    match e {
        LvmError::VgNotFound(_) => Code::FailedPrecondition,
        LvmError::LvNotFound(_) => Code::NotFound,
        LvmError::AlreadyExists(_) => Code::AlreadyExists,
        LvmError::InsufficientSpace { .. } => Code::ResourceExhausted,
        // Out of room, only in the metadata area: the CO's retry may succeed once the
        // operator has grown it, as for free space.
        LvmError::MetadataFull { .. } => Code::ResourceExhausted,
        LvmError::Locked(_) => Code::FailedPrecondition,
        // CSI spec, DeleteVolume: "Volume in use | 9 FAILED_PRECONDITION".
        LvmError::InUse(_) => Code::FailedPrecondition,
        LvmError::LockManager(_) => Code::Unavailable,
        LvmError::Timeout(_) => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// The volume layer's errors, each to the code of its kind. (A function, not `From`: both
/// types are other crates', so `?` cannot convert; handlers call `.map_err(volume_status)`
/// or [`IntoStatus::status`].)
pub fn volume_status(e: VolumeError) -> Status {
    use tonic::Code;
    let e = match e {
        VolumeError::Mount { context, source } => return mount_status(&context, *source),
        VolumeError::State { context, source } => {
            return match *source {
                vglet_state::StateError::Locked(id) => Status::aborted(format!(
                    "volume {id} is being restored by the reviver; retry later"
                )),
                e => Status::internal(format!("{context}: {e}")),
            };
        }
        e => e,
    };
    let code = match &e {
        VolumeError::Invalid { .. } => Code::InvalidArgument,
        VolumeError::NotFound(_) => Code::NotFound,
        VolumeError::AlreadyExists(_) => Code::AlreadyExists,
        // CSI spec, CreateVolume: "Unsupported capacity" and "Unable to provision in
        // `accessible_topology`" are both 8 RESOURCE_EXHAUSTED.
        VolumeError::NoSpace(_) | VolumeError::Unreachable(_) => Code::ResourceExhausted,
        VolumeError::OutOfRange(_) => Code::OutOfRange,
        VolumeError::InUse(_) | VolumeError::Precondition(_) => Code::FailedPrecondition,
        // The node changed under the call: ABORTED, which the CO retries.
        VolumeError::Changed(_) => Code::Aborted,
        VolumeError::Internal(_) => Code::Internal,
        VolumeError::Lvm { source, .. } => lvm_code(source),
        VolumeError::Mount { .. } | VolumeError::State { .. } => unreachable!("answered above"),
    };
    Status::new(code, e.to_string())
}

/// `.status()` on a volume-layer result: the error as its gRPC status.
pub trait IntoStatus<T> {
    fn status(self) -> Result<T, Status>;
}

impl<T> IntoStatus<T> for Result<T, VolumeError> {
    fn status(self) -> Result<T, Status> {
        self.map_err(volume_status)
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

/// An INVALID_ARGUMENT naming the field and the rule, the form every validation error takes
/// (see [`VolumeError::invalid`]).
pub fn invalid(field: &str, rule: impl std::fmt::Display) -> Status {
    volume_status(VolumeError::invalid(field, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_code() {
        use tonic::Code;
        let cases = [
            (VolumeError::invalid("f", "r"), Code::InvalidArgument),
            (VolumeError::NotFound("x".into()), Code::NotFound),
            (VolumeError::AlreadyExists("x".into()), Code::AlreadyExists),
            (VolumeError::NoSpace("x".into()), Code::ResourceExhausted),
            (
                VolumeError::Unreachable("x".into()),
                Code::ResourceExhausted,
            ),
            (VolumeError::OutOfRange("x".into()), Code::OutOfRange),
            (VolumeError::InUse("x".into()), Code::FailedPrecondition),
            (
                VolumeError::Precondition("x".into()),
                Code::FailedPrecondition,
            ),
            (VolumeError::Internal("x".into()), Code::Internal),
            (
                VolumeError::lvm("c")(LvmError::LockManager("down".into())),
                Code::Unavailable,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(volume_status(e).code(), code);
        }
        let s = volume_status(VolumeError::invalid("parameters.type", "bad"));
        assert_eq!(s.message(), "parameters.type: bad");
        let s = lvm_status("removing vg0/a", LvmError::LvNotFound("vg0/a".into()));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(
            s.message(),
            "removing vg0/a: logical volume vg0/a not found"
        );
    }
}
