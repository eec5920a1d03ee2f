//! vg-init's flags. Manifests are written against these names; every one has an
//! environment variable so an init container can be configured without args.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct Cli {
    /// The volume group to create or extend.
    #[arg(long, env = "VGLET_VG")]
    pub vg: String,

    /// disk-discover's JSON inventory (a file, or `-` for stdin); its `devices[].path` are
    /// the devices to use.
    #[arg(long, env = "VGLET_INVENTORY")]
    pub inventory: Option<String>,

    /// A device to use, in addition to the inventory's (repeat).
    #[arg(long = "device", value_name = "PATH")]
    pub devices: Vec<String>,

    /// A device for the VG's fast tier (an NVMe disk, a PMEM fsdax or sector namespace):
    /// added to the VG like --device, and its PV tagged vglet.fast, the only PVs csi-driver
    /// puts volume caches on (the `cache` parameter; docs/storageclass-parameters.md).
    /// Repeat, or comma-separate in the env var. Re-running tags a PV that lacks the tag;
    /// a tag is never removed.
    #[arg(
        long = "fast-device",
        value_name = "PATH",
        env = "VGLET_FAST_DEVICES",
        value_delimiter = ','
    )]
    pub fast_devices: Vec<String>,

    /// A tag for the VG, in addition to vglet.managed=true and vglet.vg-init=<version>
    /// (repeat, or comma-separate in the env var). Tags are added, never removed.
    #[arg(
        long = "tag",
        value_name = "TAG",
        env = "VGLET_VG_TAGS",
        value_delimiter = ','
    )]
    pub tags: Vec<String>,

    /// Make a shared VG (lvmlockd); needs lvmlockd and the lock manager running.
    #[arg(long, env = "VGLET_SHARED")]
    pub shared: bool,

    /// Lock manager of a shared VG (default sanlock with --shared); `none` = local VG.
    #[arg(long, env = "VGLET_LOCK_TYPE", value_parser = ["sanlock", "dlm", "idm", "none"])]
    pub lock_type: Option<String>,

    /// This host's Kubernetes node name (in a pod: from `spec.nodeName`). With a sanlock VG,
    /// vg-init tags the VG `vglet.sanlock-host.<host_id>=<node>`, so that a volume refused
    /// because another host holds it names that node, not only its sanlock host_id.
    #[arg(long, env = "VGLET_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// System ID of a local VG on storage other hosts can see: `auto` = this host's lvm
    /// system ID (lvm.conf global/system_id_source must give one), `none` = the VG must
    /// have none, or an ID that must equal this host's. Unset: left to lvm.
    #[arg(long, env = "VGLET_SYSTEM_ID", value_name = "auto|none|ID")]
    pub system_id: Option<String>,

    /// Create a thin pool of this name in the VG (once; an existing pool is left alone).
    #[arg(long, env = "VGLET_THIN_POOL", value_name = "NAME")]
    pub thin_pool: Option<String>,

    /// Thin pool size: percent of the VG (`80%`, `80%VG`), of its free space (`50%FREE`)
    /// or a size (`10Gi`, `512Mi`, `10G` = 10^9 bytes; sizes: docs/units.md).
    #[arg(
        long,
        env = "VGLET_THIN_POOL_SIZE",
        value_name = "PCT%|SIZE",
        default_value = "80%"
    )]
    pub thin_pool_size: String,

    /// PV metadata area for new PVs (sizes: docs/units.md). lvm's default (~1 MiB) holds only
    /// a few hundred LVs.
    #[arg(
        long,
        env = "VGLET_METADATA_SIZE",
        value_name = "SIZE",
        default_value = "16MiB"
    )]
    pub metadata_size: String,

    /// Erase the signatures of requested devices that hold data (after printing them), so
    /// they can be used. Never applied to a PV of another VG that has LVs.
    #[arg(long, env = "VGLET_WIPE")]
    pub wipe: bool,

    /// Bound on waiting for a shared VG's lockspace to start (`90s`, `2m`, `1h`; durations:
    /// docs/units.md).
    #[arg(long, env = "VGLET_LOCKSTART_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub lockstart_timeout: Duration,

    /// Bound on one ordinary lvm command.
    #[arg(long, env = "VGLET_COMMAND_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub command_timeout: Duration,

    /// Print the plan and change nothing.
    #[arg(long, env = "VGLET_DRY_RUN")]
    pub dry_run: bool,

    /// Exit status when the VG already has the requested shape.
    #[arg(long, env = "VGLET_NOTHING_TO_DO_EXIT_CODE", default_value_t = 4,
          value_parser = clap::value_parser!(i32).range(0..=255))]
    pub nothing_to_do_exit_code: i32,

    /// Path of the lvm binary (resolved in the usual sbin directories when not a path).
    #[arg(long, env = "VGLET_LVM", default_value = "lvm")]
    pub lvm: PathBuf,
}

/// The one duration grammar of every vglet binary (docs/units.md).
pub use vglet_common::duration::parse_duration;
