//! What every vglet binary shares: logging set-up, the version string, sizes and durations as
//! operators write them (one grammar each: docs/units.md).

pub mod atomic_file;
pub mod duration;
pub mod logging;
pub mod schema_file;
pub mod size;

/// The version every binary reports (`--version`, GetPluginInfo, VG/LV tags).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
