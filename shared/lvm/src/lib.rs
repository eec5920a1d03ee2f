//! vglet's typed wrapper around lvm2.
//!
//! Every lvm call is an argv built by [`args`] and run through an injected
//! [`vglet_runner::Runner`]; state is read with one `lvm fullreport` in JSON and parsed by
//! [`report`]; failures are classified from lvm's stderr into [`LvmError`]. [`naming`] and
//! [`tags`] hold the rules that let a CSI volume live in an LV and its tags.

pub mod args;
mod batch;
pub mod cache;
mod coalesce;
mod errors;
pub mod images;
pub mod layout;
pub mod lockd;
pub mod lockspace;
pub mod naming;
mod ops;
mod recent;
pub mod report;
mod requests;
mod size;
pub mod tags;
mod version;
mod vg_errors;
mod vg_requests;
pub mod wipe;

pub use cache::{CacheMode, CacheStats};
pub use errors::{LvmError, classify, classify_stderr};
pub use images::{Image, LvImages};
pub use layout::{Footprint, Layout, LayoutCreate, LvType, SnapshotCreate, SnapshotKind};
pub use lockd::LockType;
pub use ops::Lvm;
pub use ops::vg::{LOCK_START_BOUND, LVMLOCKD_SOCKET, lvmlockd_socket_exists};
pub use report::{Lv, Pv, Report, Vg, parse_fullreport};
pub use requests::{Activation, LvCreate};
pub use size::{SECTOR, checked_round_up, round_up};
pub use version::LvmVersion;
pub use vg_errors::{VgRefusal, classify_vg_stderr, vg_refusal};
pub use vg_requests::{DEFAULT_PV_METADATA_SIZE, PoolSize, ThinPoolCreate, VgCreate};
