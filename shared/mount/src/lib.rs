//! Everything vglet's node side needs to put a volume on a path: the mount table
//! (`/proc/self/mountinfo`), mount/bind/unmount behind the [`Mounter`] trait, CSI
//! `mount_flags` checked against an allow-list, filesystem detection/mkfs/grow/check through
//! the [`vglet_runner::Runner`], statvfs, block device sizes and target-path checks.

mod dax;
mod error;
mod freeze;
mod fs;
mod head;
mod mounter;
mod mountinfo;
mod options;
mod paths;
mod resolve;
mod stats;

pub use dax::{
    DAX_ALWAYS, check_dax_flags, fsdax_mkfs_options, mount_has_dax, page_size, volume_mount_options,
};
pub use error::MountError;
pub use freeze::{Frozen, thaw};
pub use fs::{
    CheckOutcome, EXT4_DEFAULT_EXTENDED, Filesystems, MKFS_TIMEOUT, MkfsProgress,
    SUPPORTED_FILESYSTEMS, Signature, mkfs_progress, mkfs_progress_in, validate_fs_type,
};
pub use head::head_is_zeroed;
pub use mounter::{FailWhen, MountCall, Mounter, RecordingMounter, SystemMounter};
pub use mountinfo::{
    MountEntry, is_mount_point, mount_at, mounts, mounts_of_device, parse_mountinfo,
    unescape_mountinfo,
};
pub use options::{MountOptions, implied_mount_flags, parse_mount_flags};
pub use paths::{MAX_PATH_BYTES, ensure_dir, ensure_file, validate_target_path};
pub use resolve::{
    Create, Identity, Kind, MountName, MountProof, Resolved, mount_proof, normalize_path, resolve,
};
pub use stats::{FsStats, block_device_size, fs_stats};

/// Re-exported so callers can build [`MountOptions`] by hand without depending on nix.
pub use nix::mount::MsFlags;
