//! What a validated CSI volume capability asks for (csi-driver's `capability::validate`
//! makes these from a request; the reviver from a state record).

use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_lvm::tags::Content;

/// What a validated capability asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Block,
    Mount {
        fs_type: String,
        mount_flags: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub access: Access,
    pub mode: Mode,
}

impl Capability {
    pub fn is_block(&self) -> bool {
        matches!(self.access, Access::Block)
    }

    /// Modes under which no writer exists anywhere: the mount must be read-only.
    pub fn is_read_only_mode(&self) -> bool {
        matches!(
            self.mode,
            Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly
        )
    }

    pub fn fs_type(&self) -> Option<&str> {
        match &self.access {
            Access::Mount { fs_type, .. } => Some(fs_type),
            Access::Block => None,
        }
    }

    /// What a volume must have been created to hold to serve this capability.
    pub fn content(&self) -> Content {
        match &self.access {
            Access::Mount { fs_type, .. } => Content::Filesystem(fs_type.clone()),
            Access::Block => Content::Block,
        }
    }

    /// The access as a state record keeps it.
    pub fn record_access(&self) -> vglet_state::Access {
        match &self.access {
            Access::Block => vglet_state::Access::Block,
            Access::Mount {
                fs_type,
                mount_flags,
            } => vglet_state::Access::Mount {
                fs_type: fs_type.clone(),
                mount_flags: mount_flags.clone(),
            },
        }
    }
}

/// Whether the VG backing the volume is visible to one node or to many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VgKind {
    Local,
    Shared,
}
