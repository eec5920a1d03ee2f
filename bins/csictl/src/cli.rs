//! Command-line definitions. Parsing helpers for sizes, `k=v` pairs and durations live here too,
//! so that clap rejects bad input before anything is sent to the plugin.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0       success
  1       client-side error (bad input, I/O)
  2       usage error (unknown flag, missing argument)
  3       could not connect to the endpoint
  4       `identity probe`: the plugin answered but is not ready yet
  5       `controller validate`: the plugin did not confirm the capabilities
  10+N    the plugin answered with gRPC status code N:
          11 CANCELLED           12 UNKNOWN             13 INVALID_ARGUMENT
          14 DEADLINE_EXCEEDED   15 NOT_FOUND           16 ALREADY_EXISTS
          17 PERMISSION_DENIED   18 RESOURCE_EXHAUSTED  19 FAILED_PRECONDITION
          20 ABORTED             21 OUT_OF_RANGE        22 UNIMPLEMENTED
          23 INTERNAL            24 UNAVAILABLE         25 DATA_LOSS
          26 UNAUTHENTICATED
  An RPC that gets no answer within --timeout ends with 14 (DEADLINE_EXCEEDED).

On a gRPC error csictl prints `error: <CODE>: <message>` to stderr; with --json it prints
{\"error\":{\"code\":\"<CODE>\",\"message\":\"...\"}} to stdout instead.

Examples:
  csictl identity info
  csictl --endpoint /var/lib/kubelet/plugins/lvm.vglet.io/csi.sock node info --json
  csictl controller create pvc-1 --size 1Gi --fs-type ext4 --param volumeGroup=vg0
  csictl controller get vg0/csi-nosuch; echo \"exit $?\"   # 15 (NOT_FOUND) for an unknown volume";

/// Talk to a CSI plugin (Identity, Controller and Node services) over its unix socket.
///
/// Each subcommand is one CSI RPC (or a short, documented sequence of them). Results print as
/// text, or as a single JSON object per command with --json. Sizes are always bytes in JSON.
#[derive(Debug, Parser)]
#[command(name = "csictl", version = vglet_common::VERSION, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts, before or after the subcommand name.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Plugin socket: `unix:///path/csi.sock`, a bare path, or `tcp://host:port`.
    #[arg(
        long,
        short = 'e',
        env = "CSI_ENDPOINT",
        default_value = "unix:///run/vglet/csi.sock",
        global = true
    )]
    pub endpoint: String,

    /// Print one JSON object per command instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Give up on connecting or on one RPC after this long: `60s`, `2m`, `500ms`, or seconds
    /// (durations: docs/units.md).
    #[arg(long, default_value = "60s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Identity service: who the plugin is and whether it is ready.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Controller service: create, delete, list, expand and inspect volumes.
    #[command(subcommand)]
    Controller(ControllerCommand),
    /// Node service: stage, publish, expand and inspect volumes on this node.
    #[command(subcommand)]
    Node(NodeCommand),
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Plugin name, version, manifest and plugin capabilities (GetPluginInfo +
    /// GetPluginCapabilities).
    #[command(
        after_help = "Examples:\n  csictl identity info\n  csictl identity info --json | jq -r .name"
    )]
    Info,
    /// Ask whether the plugin is ready (Probe). Exits 4 when it answers "not ready".
    #[command(
        after_help = "A plugin that is still initialising answers ready=false (exit 4); one that is\n\
                      broken answers with a gRPC error (exit 10+code).\n\n\
                      Examples:\n  until csictl identity probe; do sleep 1; done"
    )]
    Probe,
}

#[derive(Debug, Subcommand)]
pub enum ControllerCommand {
    /// Create (or find, if NAME already exists) a volume (CreateVolume).
    #[command(after_help = "\
NAME is the idempotency key: creating the same NAME twice returns the same volume, while the
same NAME with a different size fails with ALREADY_EXISTS (exit 16).

Examples:
  csictl controller create pvc-1 --size 1Gi
  csictl controller create pvc-2 --size 10G --limit 12G --fs-type xfs --mount-flag noatime
  csictl controller create raw-1 --size 512Mi --block --mode single-node-single-writer
  csictl controller create pvc-3 --size 1Gi --param volumeGroup=vg0 \\
      --requisite-topology topology.vglet.io/node=n1")]
    Create(CreateArgs),
    /// Delete a volume (DeleteVolume). Deleting an unknown volume succeeds, as CSI requires.
    #[command(after_help = "Examples:\n  csictl controller delete vg0/csi-pvc-1")]
    Delete {
        /// Volume id, as printed by `controller create` or `controller list`.
        volume_id: String,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// List volumes (ListVolumes), one page or all pages.
    #[command(
        after_help = "Examples:\n  csictl controller list\n  csictl controller list --max-entries 10\n  \
                      csictl controller list --max-entries 10 --all --json"
    )]
    List {
        /// At most this many entries per page (0: the plugin decides).
        #[arg(long, default_value_t = 0)]
        max_entries: i32,
        /// Continue from the `next_token` of an earlier page.
        #[arg(long)]
        starting_token: Option<String>,
        /// Keep following `next_token` until the last page and print everything.
        #[arg(long)]
        all: bool,
    },
    /// Volumes of this plugin that no known volume refers to (ListVolumes minus a list).
    #[command(after_help = "\
Lists every volume ListVolumes returns whose id is not in FILE (one volume id per line; blank
lines and lines starting with # are ignored; - reads stdin). Nothing is deleted: review the
list, then `csictl controller delete` what is really abandoned.

Examples:
  kubectl get pv -o jsonpath='{range .items[*]}{.spec.csi.volumeHandle}{\"\\n\"}{end}' \\
    | csictl controller orphans --known-volumes -
  csictl --json controller orphans --known-volumes known.txt")]
    Orphans {
        /// File with the volume ids in use, one per line; - for stdin.
        #[arg(long, value_name = "FILE|-")]
        known_volumes: String,
    },
    /// Free capacity for new volumes (GetCapacity).
    #[command(after_help = "\
--topology narrows the question to one place; pass k=v or k=v,k2=v2 (repeatable, merged).
Capability flags, when given, ask for capacity usable with that capability.

Examples:
  csictl controller capacity
  csictl controller capacity --param volumeGroup=vg0 --topology topology.vglet.io/node=n1")]
    Capacity {
        /// Plugin parameter, as in a StorageClass (repeatable).
        #[arg(long = "param", value_name = "K=V", value_parser = parse_kv)]
        params: Vec<(String, String)>,
        /// Topology segment(s) of the place to ask about.
        #[arg(long = "topology", value_name = "K=V[,K=V]", value_parser = parse_segments)]
        topology: Vec<Vec<(String, String)>>,
        #[command(flatten)]
        capability: CapabilityArgs,
    },
    /// Grow a volume (ControllerExpandVolume).
    #[command(after_help = "\
The capability flags are optional here; pass them when the plugin needs to know whether the
volume is a block device or a filesystem.

Examples:
  csictl controller expand vg0/csi-pvc-1 --size 2Gi
  csictl controller expand vg0/csi-raw-1 --size 1Gi --block")]
    Expand {
        /// Volume id, as printed by `controller create` or `controller list`.
        volume_id: String,
        /// New minimum size: bytes or 1Gi, 512Mi, 100M, ...
        #[arg(long, value_parser = parse_size)]
        size: i64,
        /// Upper bound for the new size.
        #[arg(long, value_parser = parse_size)]
        limit: Option<i64>,
        #[command(flatten)]
        capability: CapabilityArgs,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Show one volume and its condition (ControllerGetVolume, alpha in CSI).
    #[command(after_help = "Examples:\n  csictl controller get vg0/csi-pvc-1 --json")]
    Get {
        /// Volume id, as printed by `controller create` or `controller list`.
        volume_id: String,
    },
    /// Ask whether a volume supports a capability (ValidateVolumeCapabilities). Exits 5 when not
    /// confirmed.
    #[command(after_help = "\
Examples:
  csictl controller validate vg0/csi-pvc-1 --fs-type ext4
  csictl controller validate vg0/csi-raw-1 --block --mode multi-node-multi-writer")]
    Validate {
        /// Volume id, as printed by `controller create` or `controller list`.
        volume_id: String,
        #[command(flatten)]
        capability: CapabilityArgs,
        /// Volume context as returned by `create` (repeatable).
        #[arg(long = "volume-context", value_name = "K=V", value_parser = parse_kv)]
        volume_context: Vec<(String, String)>,
        /// Plugin parameter the volume was created with (repeatable).
        #[arg(long = "param", value_name = "K=V", value_parser = parse_kv)]
        params: Vec<(String, String)>,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Controller capabilities (ControllerGetCapabilities).
    Caps,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Volume name; the plugin derives the volume id from it.
    pub name: String,
    /// Minimum size: plain bytes or with a unit, e.g. 1Gi, 512Mi, 100M, 1.5G.
    #[arg(long, value_parser = parse_size)]
    pub size: i64,
    /// Maximum size the plugin may round up to.
    #[arg(long, value_parser = parse_size)]
    pub limit: Option<i64>,
    /// Plugin parameter, as in a StorageClass (repeatable).
    #[arg(long = "param", value_name = "K=V", value_parser = parse_kv)]
    pub params: Vec<(String, String)>,
    /// The volume must be reachable from this topology; k=v or k=v,k2=v2. Repeat the flag to
    /// offer several alternatives.
    #[arg(long = "requisite-topology", value_name = "K=V[,K=V]", value_parser = parse_segments)]
    pub requisite_topology: Vec<Vec<(String, String)>>,
    /// Preferred topology, same format; should be among the requisite ones.
    #[arg(long = "preferred-topology", value_name = "K=V[,K=V]", value_parser = parse_segments)]
    pub preferred_topology: Vec<Vec<(String, String)>>,
    /// Create the volume as a copy of this snapshot id.
    #[arg(long, conflicts_with = "from_volume")]
    pub from_snapshot: Option<String>,
    /// Create the volume as a clone of this volume id.
    #[arg(long)]
    pub from_volume: Option<String>,
    #[command(flatten)]
    pub capability: CapabilityArgs,
    #[command(flatten)]
    pub secrets: SecretArgs,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Prepare a volume on this node at a staging path (NodeStageVolume).
    #[command(after_help = "\
Pass the same capability flags as at create time; --publish-context and --volume-context take
the maps that ControllerPublishVolume and CreateVolume returned.

Examples:
  csictl node stage vg0/csi-pvc-1 --staging-path /var/lib/kubelet/staging/pvc-1 --fs-type ext4
  csictl node stage vg0/csi-raw-1 --staging-path /tmp/stage-raw --block")]
    Stage {
        /// Volume id, as printed by `controller create` or `controller list`.
        volume_id: String,
        /// Directory the plugin stages the volume at.
        #[arg(long, value_name = "PATH")]
        staging_path: String,
        #[command(flatten)]
        capability: CapabilityArgs,
        #[command(flatten)]
        contexts: ContextArgs,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Undo `node stage` (NodeUnstageVolume).
    #[command(
        after_help = "Examples:\n  csictl node unstage vg0/csi-pvc-1 --staging-path /var/lib/kubelet/staging/pvc-1"
    )]
    Unstage {
        /// Volume id, as printed by `controller create` or `controller list`.
        volume_id: String,
        /// The staging path given to `node stage`.
        #[arg(long, value_name = "PATH")]
        staging_path: String,
    },
    /// Make a staged volume available at a target path (NodePublishVolume).
    #[command(after_help = "\
Examples:
  csictl node publish vg0/csi-pvc-1 --staging-path /var/lib/kubelet/staging/pvc-1 \\
      --target-path /var/lib/kubelet/pods/p1/volumes/pvc-1 --fs-type ext4
  csictl node publish vg0/csi-pvc-1 --staging-path /var/lib/kubelet/staging/pvc-1 \\
      --target-path /var/lib/kubelet/pods/p2/volumes/pvc-1 --fs-type ext4 --readonly")]
    Publish {
        /// Volume id, as printed by `controller create` or `controller list`.
        volume_id: String,
        /// Where `node stage` put the volume (empty when the plugin does not stage).
        #[arg(long, value_name = "PATH", default_value = "")]
        staging_path: String,
        /// Where the workload will see the volume.
        #[arg(long, value_name = "PATH")]
        target_path: String,
        /// Publish read-only.
        #[arg(long)]
        readonly: bool,
        #[command(flatten)]
        capability: CapabilityArgs,
        #[command(flatten)]
        contexts: ContextArgs,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Undo `node publish` (NodeUnpublishVolume).
    #[command(
        after_help = "Examples:\n  csictl node unpublish vg0/csi-pvc-1 --target-path /var/lib/kubelet/pods/p1/volumes/pvc-1"
    )]
    Unpublish {
        /// Volume id, as printed by `controller create` or `controller list`.
        volume_id: String,
        /// The target path given to `node publish`.
        #[arg(long, value_name = "PATH")]
        target_path: String,
    },
    /// Grow the filesystem (or refresh the device) on this node (NodeExpandVolume).
    #[command(
        after_help = "Examples:\n  csictl node expand vg0/csi-pvc-1 --volume-path /var/lib/kubelet/pods/p1/volumes/pvc-1 --size 2Gi \\
      --staging-path /var/lib/kubelet/staging/pvc-1"
    )]
    Expand {
        /// Volume id, as printed by `controller create` or `controller list`.
        volume_id: String,
        /// A path where the volume is published or staged.
        #[arg(long, value_name = "PATH")]
        volume_path: String,
        /// The size the controller expanded the volume to.
        #[arg(long, value_parser = parse_size)]
        size: i64,
        /// Upper bound for the new size.
        #[arg(long, value_parser = parse_size)]
        limit: Option<i64>,
        /// The staging path, for plugins that stage.
        #[arg(long, value_name = "PATH")]
        staging_path: Option<String>,
        #[command(flatten)]
        capability: CapabilityArgs,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Usage (bytes and inodes) and condition of a published volume (NodeGetVolumeStats).
    #[command(
        after_help = "Examples:\n  csictl node stats vg0/csi-pvc-1 --volume-path /var/lib/kubelet/pods/p1/volumes/pvc-1"
    )]
    Stats {
        /// Volume id, as printed by `controller create` or `controller list`.
        volume_id: String,
        /// A path where the volume is published.
        #[arg(long, value_name = "PATH")]
        volume_path: String,
        /// The staging path, for plugins that stage.
        #[arg(long, value_name = "PATH")]
        staging_path: Option<String>,
    },
    /// Node id, volume limit and topology (NodeGetInfo).
    Info,
    /// Node capabilities (NodeGetCapabilities).
    Caps,
}

/// How the volume will be used; becomes one CSI `VolumeCapability`.
#[derive(Debug, Clone, Default, Args)]
pub struct CapabilityArgs {
    /// Filesystem for a mounted volume, e.g. ext4 or xfs (empty: the plugin's default).
    #[arg(long, value_name = "FS", conflicts_with = "block")]
    pub fs_type: Option<String>,
    /// Use the volume as a raw block device instead of a filesystem.
    #[arg(long)]
    pub block: bool,
    /// Who may use the volume at once [default: single-node-writer].
    #[arg(long, value_enum)]
    pub mode: Option<AccessMode>,
    /// Mount option for a mounted volume (repeatable).
    #[arg(long = "mount-flag", value_name = "FLAG", conflicts_with = "block")]
    pub mount_flags: Vec<String>,
}

impl CapabilityArgs {
    /// True when any capability flag was given; optional capabilities are sent only then.
    pub fn is_set(&self) -> bool {
        self.fs_type.is_some() || self.block || self.mode.is_some() || !self.mount_flags.is_empty()
    }
}

/// CSI access modes, spelled in kebab case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccessMode {
    SingleNodeWriter,
    SingleNodeReaderOnly,
    SingleNodeSingleWriter,
    SingleNodeMultiWriter,
    MultiNodeReaderOnly,
    MultiNodeSingleWriter,
    MultiNodeMultiWriter,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ContextArgs {
    /// Entry of the publish context from ControllerPublishVolume (repeatable).
    #[arg(long = "publish-context", value_name = "K=V", value_parser = parse_kv)]
    pub publish_context: Vec<(String, String)>,
    /// Entry of the volume context from CreateVolume (repeatable).
    #[arg(long = "volume-context", value_name = "K=V", value_parser = parse_kv)]
    pub volume_context: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct SecretArgs {
    /// Secret passed to the plugin (repeatable). Visible in `ps`; prefer test secrets only.
    #[arg(long = "secret", value_name = "K=V", value_parser = parse_kv)]
    pub secrets: Vec<(String, String)>,
}

/// A byte count as Kubernetes writes it (`1Gi`, `100M`, `1.5Gi`; see
/// `vglet_common::size`), bounded by CSI's int64.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let bytes = vglet_common::size::parse_size(s)?;
    i64::try_from(bytes)
        .map_err(|_| format!("{s:?} is larger than CSI allows ({} bytes)", i64::MAX))
}

/// Parses `key=value`. The key must not be empty; the value may be empty or contain `=`.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Parses `k=v[,k=v...]`, the segments of one topology.
pub fn parse_segments(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',').map(parse_kv).collect()
}

/// The one duration grammar of every vglet binary (docs/units.md); a zero timeout is refused.
pub use vglet_common::duration::parse_positive_duration as parse_duration;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512Mi"), Ok(512 << 20));
        assert_eq!(parse_size("100M"), Ok(100_000_000));
        assert_eq!(parse_size("4k"), Ok(4000));
        assert_eq!(parse_size("4Ki"), Ok(4096));
        assert_eq!(parse_size("2T"), Ok(2_000_000_000_000));
        assert_eq!(parse_size("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_size("0.5k"), Ok(500));
        assert_eq!(parse_size(" 7 "), Ok(7));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("8191Pi"), Ok(8191 << 50));
    }

    #[test]
    fn bad_sizes() {
        for bad in [
            "",
            "Gi",
            "1Gb",
            "1 GB x",
            "-1",
            "1.2.3M",
            "1e9",
            "0.1",
            "1.0001k",
            "8192Pi",
            "99999999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_size("1x").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_kv("vg=vg0"), Ok(("vg".into(), "vg0".into())));
        assert_eq!(parse_kv("empty="), Ok(("empty".into(), String::new())));
        assert_eq!(parse_kv("opts=a=b"), Ok(("opts".into(), "a=b".into())));
        assert!(parse_kv("novalue").is_err());
        assert!(parse_kv("=v").is_err());
        assert_eq!(
            parse_segments("zone=a,node=n1"),
            Ok(vec![
                ("zone".into(), "a".into()),
                ("node".into(), "n1".into())
            ])
        );
        assert!(parse_segments("zone=a,").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_after_subcommand_and_capability_conflicts() {
        let cli = Cli::try_parse_from([
            "csictl",
            "controller",
            "create",
            "pvc-1",
            "--size",
            "1Gi",
            "--json",
            "--param",
            "a=b",
            "--param",
            "c=d",
            "--requisite-topology",
            "zone=z,node=n",
            "--mode",
            "single-node-multi-writer",
        ])
        .unwrap();
        assert!(cli.global.json);
        let Command::Controller(ControllerCommand::Create(c)) = cli.command else {
            panic!()
        };
        assert_eq!(c.size, 1 << 30);
        assert_eq!(c.params.len(), 2);
        assert_eq!(c.requisite_topology[0].len(), 2);
        assert_eq!(c.capability.mode, Some(AccessMode::SingleNodeMultiWriter));

        let err = Cli::try_parse_from([
            "csictl",
            "node",
            "stage",
            "v",
            "--staging-path",
            "/s",
            "--block",
            "--fs-type",
            "xfs",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(
            Cli::try_parse_from(["csictl", "controller", "create", "x", "--size", "1Qi"]).is_err()
        );
    }
}
