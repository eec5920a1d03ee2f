use std::path::PathBuf;

use crate::inventory::InventoryError;

#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// A bad pattern, size or mode from the operator: a usage error, not a host problem.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: String,
    },

    #[error("reading {path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Without the mount table no device can be called safe.
    #[error("cannot read the mount table: {0}")]
    Mounts(#[source] vglet_mount::MountError),

    #[error("{path:?}: {source}")]
    Document {
        path: PathBuf,
        #[source]
        source: InventoryError,
    },
}

impl DevicesError {
    pub fn is_usage(&self) -> bool {
        matches!(self, DevicesError::InvalidArgument { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DevicesError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        DevicesError::InvalidArgument {
            what,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
