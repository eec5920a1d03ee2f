//! What callers (vg-init) ask lvm to do to volume groups.

use crate::lockd::LockType;

/// LVM2's default PV metadata area (about 1 MiB) holds the text metadata of only a few
/// hundred LVs; a CSI VG can carry thousands of small volumes, each with four tags.
pub const DEFAULT_PV_METADATA_SIZE: u64 = 16 << 20;

/// A new VG.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VgCreate {
    pub vg: String,
    /// Device paths; those that are not PVs yet are initialised by vgcreate itself.
    pub devices: Vec<String>,
    pub tags: Vec<String>,
    /// `Some`: a shared VG (`--shared --locktype`).
    pub lock_type: Option<LockType>,
    /// PV metadata area for devices vgcreate initialises (`--metadatasize`), bytes.
    pub metadata_size: Option<u64>,
}

/// How large a new thin pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolSize {
    /// Percent of the VG's size (`-l N%VG`); lvm caps it at the free space.
    PercentOfVg(u8),
    /// Percent of the VG's free space (`-l N%FREE`).
    PercentOfFree(u8),
    Bytes(u64),
}

/// As lvm's `-l`/`-L` would take it (`90%VG`, `50%FREE`, `1073741824B`): for logs.
impl std::fmt::Display for PoolSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolSize::PercentOfVg(p) => write!(f, "{p}%VG"),
            PoolSize::PercentOfFree(p) => write!(f, "{p}%FREE"),
            PoolSize::Bytes(b) => write!(f, "{b}B"),
        }
    }
}

/// A new thin pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinPoolCreate {
    pub vg: String,
    pub name: String,
    pub size: PoolSize,
    /// `false` in shared VGs: an active pool would hold its LV lock on this host only.
    pub activate: bool,
}
