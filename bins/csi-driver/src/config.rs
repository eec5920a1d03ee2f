//! csi-driver's flags; every one has an environment variable so a manifest can set it.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Identity + Controller: creates, deletes, expands LVs.
    Controller,
    /// Identity + Node: activates, formats, mounts on this node.
    Node,
    /// Both, in one process (one node, or node-local VGs with a per-node provisioner).
    All,
}

impl Mode {
    /// The flag's value: `controller`, `node`, `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Controller => "controller",
            Mode::Node => "node",
            Mode::All => "all",
        }
    }

    pub fn controller(self) -> bool {
        matches!(self, Mode::Controller | Mode::All)
    }
    pub fn node(self) -> bool {
        matches!(self, Mode::Node | Mode::All)
    }
}

/// Serves CSI v1 (Identity, Controller, Node) for LVM volume groups on a unix socket.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Which CSI services to serve.
    #[arg(long, env = "VGLET_MODE", value_enum, default_value_t = Mode::All)]
    pub mode: Mode,

    /// Where to listen: unix:///path/to/csi.sock (the only transport kubelet uses).
    #[arg(
        long,
        env = "CSI_ENDPOINT",
        default_value = "unix:///run/vglet/csi.sock"
    )]
    pub endpoint: String,

    /// This node's name (Kubernetes node name); the topology key of node-local volumes.
    #[arg(long, env = "NODE_ID")]
    pub node_id: String,

    /// Volume groups this driver serves (repeat, or comma-separate in the env var). LVs in
    /// other VGs are never touched.
    #[arg(
        long = "volume-group",
        env = "VGLET_VOLUME_GROUPS",
        value_delimiter = ',',
        required = true
    )]
    pub volume_groups: Vec<String>,

    /// CSI driver name reported to the CO and written into the ownership tag of each LV.
    #[arg(long, env = "VGLET_DRIVER_NAME", default_value = "lvm.vglet.io")]
    pub driver_name: String,

    /// Bound for one lvm/mkfs command; a hung device or lock manager surfaces as an error.
    #[arg(long, env = "VGLET_COMMAND_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub command_timeout: Duration,

    /// Restrict lvm's device scan to the served VGs' PVs (much faster on hosts with many
    /// block devices). Disable if lvm on the host is older than 2.03.12.
    #[arg(long, env = "VGLET_RESTRICT_SCAN", default_value_t = true, action = clap::ArgAction::Set)]
    pub restrict_scan: bool,

    /// Report ready without device-mapper in the kernel. Only for tests that exercise
    /// metadata on a host without it: nothing can be activated or mounted there.
    #[arg(long, env = "VGLET_NO_DEVICE_MAPPER_CHECK", hide = true)]
    pub no_device_mapper_check: bool,

    /// Path of the lvm binary (resolved in the usual sbin directories when not a path).
    #[arg(long, env = "VGLET_LVM", default_value = "lvm")]
    pub lvm: PathBuf,

    /// Serve Prometheus metrics over HTTP at this IP:PORT (`/metrics`), e.g.
    /// 127.0.0.1:9820. Unset: no listener at all.
    #[arg(long, env = "VGLET_METRICS_ADDRESS")]
    pub metrics_address: Option<std::net::SocketAddr>,

    /// Where the node service records each staged and published volume, for the reviver to
    /// rebuild the mounts after a reboot. Must survive reboots (a host path, not tmpfs).
    #[arg(long, env = "VGLET_STATE_DIR", default_value = "/var/lib/vglet/state")]
    pub state_dir: PathBuf,

    /// Who extends the LV of a node-local volume. `controller`: ControllerExpandVolume
    /// (EXPAND_VOLUME advertised). `node`: NodeExpandVolume on the volume's node, for a
    /// per-node deployment whose external-resizer then only marks the claim for the node.
    /// Shared VGs always grow through the controller.
    #[arg(long, env = "VGLET_EXPANSION", value_enum, default_value_t = Expansion::Controller)]
    pub expansion: Expansion,

    /// PBKDF target time (ms) of the LUKS2 key slots the driver writes (luksFormat, key
    /// rotation's luksAddKey): cryptsetup's `--iter-time`. Unset: cryptsetup's 2000.
    #[arg(long, env = "VGLET_LUKS_ITER_TIME", value_name = "MS")]
    pub luks_iter_time: Option<u32>,

    /// PBKDF memory cost limit (KiB) of the key slots the driver writes: cryptsetup's
    /// `--pbkdf-memory`. Unset: cryptsetup's 1048576 (at most half the node's memory).
    #[arg(long, env = "VGLET_LUKS_PBKDF_MEMORY", value_name = "KIB")]
    pub luks_pbkdf_memory: Option<u32>,

    /// Fixed PBKDF iterations of the key slots the driver writes, skipping cryptsetup's
    /// benchmark: `--pbkdf-force-iterations` (at least 4). Unset: benchmarked. Lowers the
    /// cost of guessing a key; meant for tests and slow emulated nodes.
    #[arg(long, env = "VGLET_LUKS_PBKDF_ITERATIONS", value_name = "N")]
    pub luks_pbkdf_iterations: Option<u32>,
}

/// The one duration grammar of every vglet binary (docs/units.md).
pub use vglet_common::duration::parse_duration;

impl Config {
    /// What this driver marks its children with ([`vglet_runner::orphans`]): its mode and
    /// state directory, which one driver of each mode on a host owns (a node and a
    /// controller of the shared model may share a host and never each other's children).
    pub fn runner_owner(&self) -> String {
        format!(
            "csi-driver:{}:{}",
            self.mode.as_str(),
            self.state_dir.display()
        )
    }

    /// Whether CreateVolume records its creates in the state directory rather than in an
    /// LV tag, for the node-local VGs ([`crate::node_state::create_intents`]): only where
    /// the controller cannot move away from that directory.
    pub fn keeps_create_intents(&self) -> bool {
        self.mode == Mode::All
    }

    /// The PBKDF cost of new LUKS2 key slots, from the `--luks-*` flags.
    pub fn pbkdf(&self) -> vglet_volume::crypt::Pbkdf {
        vglet_volume::crypt::Pbkdf {
            iter_time_ms: self.luks_iter_time,
            memory_kib: self.luks_pbkdf_memory,
            iterations: self.luks_pbkdf_iterations,
        }
    }

    /// Checks that cannot be expressed in clap attributes.
    pub fn validate(&self) -> Result<(), String> {
        self.pbkdf().validate()?;
        if self.node_id.trim().is_empty() {
            return Err("--node-id must not be empty".into());
        }
        for vg in &self.volume_groups {
            vglet_lvm::naming::validate_served_vg_name(vg)
                .map_err(|e| format!("--volume-group {vg:?}: {e}"))?;
            if vg.len() > 63 {
                return Err(format!(
                    "--volume-group {vg:?}: at most 63 characters (it becomes a topology label)"
                ));
            }
        }
        if self.driver_name.is_empty()
            || self.driver_name.len() > 63
            || !self
                .driver_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(format!(
                "--driver-name {:?} must be a DNS-style name of at most 63 characters",
                self.driver_name
            ));
        }
        socket_path(&self.endpoint)?;
        if !self.state_dir.is_absolute() {
            return Err(format!(
                "--state-dir {:?} must be an absolute path",
                self.state_dir
            ));
        }
        Ok(())
    }
}

/// `unix:///run/x.sock` (also `unix:/run/x.sock`) to its path. Here, beside the flag it
/// reads, so that validating the config needs nothing from the server above it.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let rest = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .ok_or_else(|| {
            format!("{endpoint:?}: only unix:///absolute/path endpoints are supported")
        })?;
    let path = PathBuf::from(rest);
    if !path.is_absolute() {
        return Err(format!("{endpoint:?}: the socket path must be absolute"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/a.sock").unwrap(),
            PathBuf::from("/run/a.sock")
        );
        assert_eq!(
            socket_path("unix:/run/a.sock").unwrap(),
            PathBuf::from("/run/a.sock")
        );
        assert!(socket_path("tcp://1.2.3.4:5").is_err());
        assert!(socket_path("unix://rel/a.sock").is_err());
    }
}

/// Which side of CSI extends the LV of a node-local volume (`--expansion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Expansion {
    /// ControllerExpandVolume extends the LV, NodeExpandVolume grows the filesystem: the
    /// controller advertises EXPAND_VOLUME. Needed where one controller serves a shared VG.
    Controller,
    /// The controller does not advertise EXPAND_VOLUME, so the external-resizer only marks
    /// the claim for the node (its "trivial resizer"), and NodeExpandVolume on the node that
    /// holds the VG extends the LV and then grows the filesystem. Shared VGs are never
    /// extended by the node: their volumes still need ControllerExpandVolume.
    Node,
}
