//! vg-init's outcomes that are not success, each with its exit status.

use vglet_lvm::{LvmError, vg_refusal};

#[derive(Debug, thiserror::Error)]
pub enum VgInitError {
    /// Bad flags or inventory for this VG (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Unsafe or impossible by policy: nothing was changed by this refusal (exit 3).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl VgInitError {
    pub fn exit_code(&self) -> i32 {
        match self {
            VgInitError::Failed(_) => 1,
            VgInitError::Usage(_) => 2,
            VgInitError::Refused(_) => 3,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            VgInitError::Failed(_) => "failed",
            VgInitError::Usage(_) => "usage",
            VgInitError::Refused(_) => "refused",
        }
    }

    /// An lvm failure while doing `what`: lvm's own refusals (a device it will not take,
    /// the lock manager gone) are refusals, the rest failures.
    pub fn lvm(what: &str, e: LvmError) -> VgInitError {
        let msg = format!("{what}: {e}");
        if vg_refusal(&e).is_some() || matches!(e, LvmError::LockManager(_)) {
            VgInitError::Refused(msg)
        } else {
            VgInitError::Failed(msg)
        }
    }
}
