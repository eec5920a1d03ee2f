//! Helpers for the end-to-end tests. A host-side test boots a guest (vglet-vmh) that re-runs
//! the same test binary with a guest-only test selected; that guest test starts the real
//! csi-driver against real LVM and asserts outcomes from the kernel's point of view (lvs,
//! the mount table, file contents), not from the driver's answers alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use vglet_csi_proto::v1::controller_client::ControllerClient;
use vglet_csi_proto::v1::identity_client::IdentityClient;
use vglet_csi_proto::v1::node_client::NodeClient;

pub use vglet_vmh::in_guest;

pub mod examples;
pub mod pod;
pub mod records;
pub mod two_hosts;

/// target/debug (or release), where the workspace's binaries are.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

/// Boots a guest that runs `test_name` of the current test binary; panics unless it passes.
pub fn run_guest_test(test_name: &str, vm: vglet_vmh::Vm) {
    if std::env::var_os("VGLET_SKIP_VM").is_some() {
        eprintln!("skipped {test_name}: VGLET_SKIP_VM is set");
        return;
    }
    // The guest sees the host root, so the binaries must be built before it boots.
    bin("csi-driver");
    let out = vm.run_test(test_name).expect("guest run");
    assert_eq!(
        out.exit_code, 0,
        "guest test {test_name} failed (exit {})",
        out.exit_code
    );
}

/// Runs a command in the guest and returns stdout; panics with stderr on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash")
        .args(["-c", cmd])
        .output()
        .expect("spawn bash");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The LVs of a VG as (name, size, tags) from `lvs` JSON, the kernel-independent truth.
pub fn lvs(vg: &str) -> Vec<(String, u64, String)> {
    let json = sh(&format!(
        "lvs --reportformat json --units b --nosuffix -o lv_name,lv_size,lv_tags {vg}"
    ));
    let v: serde_json::Value = serde_json::from_str(&json).expect("lvs json");
    v["report"][0]["lv"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|lv| {
                    (
                        lv["lv_name"].as_str().unwrap().to_string(),
                        lv["lv_size"].as_str().unwrap().parse().unwrap(),
                        lv["lv_tags"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The mount at `path` from /proc/self/mountinfo: (fs type, source, options).
pub fn mount_at(path: &Path) -> Option<(String, String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let g: Vec<&str> = post.split(' ').collect();
            (Path::new(f[4]) == path)
                .then(|| (g[0].to_string(), g[1].to_string(), f[5].to_string()))
        })
        .next_back()
}

/// A running csi-driver, killed when dropped.
pub struct DriverProcess {
    child: Child,
    pub socket: PathBuf,
    /// Where its log goes, when not to the console (see [`DriverProcess::start_logged`]).
    log: Option<PathBuf>,
}

impl DriverProcess {
    /// Starts the driver and waits for its socket. The socket serves Identity at once;
    /// Controller and Node calls wait until the driver's start-up is complete.
    pub fn start(args: &[&str], socket: &Path) -> DriverProcess {
        Self::spawn(args, socket, None, &[])
    }

    /// [`Self::start`] with the log written to `log` in text, every external command
    /// included (the runner's debug lines), so that a test can tell which commands an RPC
    /// ran. The log is echoed to the console if the test fails.
    pub fn start_logged(args: &[&str], socket: &Path, log: &Path) -> DriverProcess {
        Self::spawn(args, socket, Some(log), &[])
    }

    /// [`Self::start_logged`] with these environment variables set for the driver (a
    /// program path such as `VGLET_CRYPTSETUP`).
    pub fn start_logged_env(
        args: &[&str],
        socket: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> DriverProcess {
        Self::spawn(args, socket, Some(log), env)
    }

    fn spawn(
        args: &[&str],
        socket: &Path,
        log: Option<&Path>,
        env: &[(&str, &str)],
    ) -> DriverProcess {
        let _ = std::fs::remove_file(socket);
        let mut cmd = Command::new(bin("csi-driver"));
        cmd.envs(env.iter().copied());
        cmd.args(args)
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .env("VGLET_LOG", "info")
            .env("VGLET_LOG_FORMAT", "text")
            .stdin(Stdio::null());
        if let Some(log) = log {
            let file = std::fs::File::create(log).expect("driver log file");
            cmd.env("VGLET_LOG", "info,vglet_runner=debug").stderr(file);
        }
        let child = cmd.spawn().expect("spawn csi-driver");
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "csi-driver did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        DriverProcess {
            child,
            socket: socket.to_path_buf(),
            log: log.map(Path::to_path_buf),
        }
    }

    /// How far the log has been written: a mark for [`Self::commands_since`].
    pub fn log_mark(&self) -> u64 {
        let log = self.log.as_ref().expect("started with start_logged");
        std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
    }

    /// The external commands the driver ran (their log lines) since `mark`. A command is
    /// logged before the RPC that ran it answers, so after an answer its lines are there.
    pub fn commands_since(&self, mark: u64) -> Vec<String> {
        let log = self.log.as_ref().expect("started with start_logged");
        let bytes = std::fs::read(log).expect("driver log");
        let start = (mark as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..])
            .lines()
            .filter(|l| {
                l.contains("command ok")
                    || l.contains("command failed")
                    || l.contains("command timed out")
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Some(log) = &self.log
        {
            eprintln!(
                "--- csi-driver log ({}):\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// Polls Probe until it answers ready. Start-up (lvm's version, one report, the
/// reconcile) runs after the socket is served, so the first answers may be "not ready";
/// returns whether the very first answer already was ready.
pub async fn wait_probe_ready(c: &mut Clients) -> bool {
    use vglet_csi_proto::v1::ProbeRequest;
    let start = Instant::now();
    let mut first = None;
    loop {
        let ready = c
            .identity
            .probe(ProbeRequest {})
            .await
            .expect("Probe answers from the start")
            .into_inner()
            .ready;
        let ready = ready != Some(false);
        first.get_or_insert(ready);
        if ready {
            return first == Some(true);
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "Probe never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn channel(socket: &Path) -> Channel {
    vglet_csi_proto::connect_unix(socket, Duration::from_secs(30))
        .await
        .expect("connect to csi-driver")
}

pub struct Clients {
    pub identity: IdentityClient<Channel>,
    pub controller: ControllerClient<Channel>,
    pub node: NodeClient<Channel>,
}

pub async fn clients(socket: &Path) -> Clients {
    let ch = channel(socket).await;
    Clients {
        identity: IdentityClient::new(ch.clone()),
        controller: ControllerClient::new(ch.clone()),
        node: NodeClient::new(ch),
    }
}

/// A finished command run from a guest test.
#[derive(Debug)]
pub struct CmdOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args` (no shell), logs in text so messages can be asserted on, echoes
/// stderr for the console log, and returns the exit code and output whatever it is.
pub fn run_program(program: &Path, args: &[&str]) -> CmdOut {
    let out = Command::new(program)
        .args(args)
        .env("VGLET_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let r = CmdOut {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ {} {} -> exit {}\n{}{}",
        program.display(),
        args.join(" "),
        r.code,
        r.stderr,
        r.stdout
    );
    r
}

/// Waits until `path` exists (a file another engineer's build step creates), up to `limit`.
pub fn wait_for_file(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    true
}

/// Request builders every scenario uses, so that a field added to the CSI messages is
/// filled in one place.
pub mod req {
    use std::collections::HashMap;

    use vglet_csi_proto::v1::volume_capability::{
        AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode,
    };
    use vglet_csi_proto::v1::{
        NodeGetVolumeStatsRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest,
        VolumeCapability,
    };

    /// A filesystem capability: `fs` with mount `flags`, access `mode`.
    pub fn mount_cap(fs: &str, flags: &[&str], mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: fs.into(),
                mount_flags: flags.iter().map(|f| f.to_string()).collect(),
                volume_mount_group: String::new(),
            })),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    /// A raw block capability with access `mode`.
    pub fn block_cap(mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    /// CreateVolume of `bytes` with one capability, in VG `vg` (the `volumeGroup` parameter).
    pub fn create_volume(
        name: &str,
        bytes: i64,
        cap: VolumeCapability,
        vg: &str,
    ) -> vglet_csi_proto::v1::CreateVolumeRequest {
        vglet_csi_proto::v1::CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(vglet_csi_proto::v1::CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![cap],
            parameters: params(&[("volumeGroup", vg)]),
            ..Default::default()
        }
    }

    /// StorageClass-style parameters from pairs.
    /// NodeUnpublishVolume of `id` at `target`.
    pub fn unpublish(id: &str, target: &str) -> NodeUnpublishVolumeRequest {
        NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target.into(),
        }
    }

    /// NodeUnstageVolume of `id` at `staging`.
    pub fn unstage(id: &str, staging: &str) -> NodeUnstageVolumeRequest {
        NodeUnstageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.into(),
        }
    }

    /// NodeGetVolumeStats of `id` at `path`.
    pub fn stats(id: &str, path: &str) -> NodeGetVolumeStatsRequest {
        NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: path.into(),
            staging_target_path: String::new(),
        }
    }

    pub fn params(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// CSI calls that every scenario makes the same way.
pub mod rpc {
    use std::path::Path;

    use vglet_csi_proto::v1::{DeleteVolumeRequest, NodeUnstageVolumeRequest};

    use crate::Clients;

    /// NodeUnstageVolume; panics (naming the volume) if it fails.
    pub async fn unstage(c: &mut Clients, id: &str, path: &Path) {
        c.node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: path.display().to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("unstage {id}: {e:?}"));
    }

    /// DeleteVolume; the status is the caller's to assert on.
    pub async fn delete(c: &mut Clients, id: &str) -> Result<(), tonic::Status> {
        c.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .map(drop)
    }
}
