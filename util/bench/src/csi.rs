//! csi-driver as a child process and a gRPC client on its unix socket.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tonic::transport::Channel;
use vglet_csi_proto::v1::controller_client::ControllerClient;
use vglet_csi_proto::v1::identity_client::IdentityClient;
use vglet_csi_proto::v1::node_client::NodeClient;
use vglet_csi_proto::v1::volume_capability::{AccessMode, AccessType, MountVolume, access_mode};
use vglet_csi_proto::v1::*;

pub struct DriverProcess {
    child: Child,
    pub socket: PathBuf,
    /// From spawn to the first Probe answered, ready or not: how soon the socket serves.
    pub served_after: Duration,
    /// From spawn to the first Probe answered ready: start-up's reads done.
    pub ready_after: Duration,
}

/// Whether a Probe got an answer from the driver: OK, or an error the driver itself chose
/// (a VG missing, a lockspace not started). UNAVAILABLE and UNKNOWN are what the client
/// makes of a socket nobody serves yet.
fn answered(r: &std::result::Result<tonic::Response<ProbeResponse>, tonic::Status>) -> bool {
    match r {
        Ok(_) => true,
        Err(s) => !matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown),
    }
}

impl DriverProcess {
    /// Starts `csi-driver --mode all` serving `vg` and waits until it answers Probe with
    /// ready, polling every 2 ms; the first answer of any kind and the ready one are the
    /// start-up figures.
    pub async fn start(binary: &Path, vg: &str, work: &Path, log: &str) -> Result<DriverProcess> {
        Self::start_until(binary, vg, work, log, true).await
    }

    /// [`Self::start`], returning at the first Probe answered when `until_ready` is false
    /// (`ready_after` is then zero): what can be measured where `vg` does not exist, such
    /// as a host without device-mapper.
    pub async fn start_until(
        binary: &Path,
        vg: &str,
        work: &Path,
        log: &str,
        until_ready: bool,
    ) -> Result<DriverProcess> {
        let socket = work.join("csi.sock");
        let _ = std::fs::remove_file(&socket);
        let state = work.join("state");
        let t = Instant::now();
        let child = Command::new(binary)
            .args(["--mode", "all", "--node-id", "bench", "--volume-group", vg])
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .arg("--state-dir")
            .arg(&state)
            .env("VGLET_LOG", log)
            .env("VGLET_LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(work.join("driver.log"))?,
            )
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        let mut d = DriverProcess {
            child,
            socket,
            served_after: Duration::ZERO,
            ready_after: Duration::ZERO,
        };
        let mut served = None;
        let mut identity = None;
        loop {
            if t.elapsed() > Duration::from_secs(60) {
                bail!("csi-driver did not answer Probe within 60 s");
            }
            if let Some(status) = d.child.try_wait()? {
                bail!("csi-driver exited during start-up: {status}");
            }
            if identity.is_none() && d.socket.exists() {
                identity = channel(&d.socket).await.ok().map(IdentityClient::new);
            }
            if let Some(client) = identity.as_mut() {
                let r = client.probe(ProbeRequest {}).await;
                if answered(&r) {
                    let served = *served.get_or_insert_with(|| t.elapsed());
                    if !until_ready {
                        d.served_after = served;
                        return Ok(d);
                    }
                    if r.is_ok_and(|r| r.into_inner().ready != Some(false)) {
                        d.served_after = served;
                        d.ready_after = t.elapsed();
                        return Ok(d);
                    }
                } else {
                    // The connection may predate the server; make a new one.
                    identity = None;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident and peak resident memory in KiB, from /proc.
    pub fn memory_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{name} in /proc/<pid>/status"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn channel(socket: &Path) -> Result<Channel> {
    Ok(vglet_csi_proto::connect_unix(socket, Duration::from_secs(10)).await?)
}

#[derive(Clone)]
pub struct Clients {
    pub controller: ControllerClient<Channel>,
    pub node: NodeClient<Channel>,
}

impl Clients {
    pub async fn connect(socket: &Path) -> Result<Clients> {
        let ch = channel(socket).await?;
        Ok(Clients {
            controller: ControllerClient::new(ch.clone()),
            node: NodeClient::new(ch),
        })
    }

    /// CreateVolume as the external-provisioner sends it for a filesystem PVC; the volume id.
    pub async fn create(&mut self, name: &str, vg: &str, bytes: i64, fs: &str) -> Result<String> {
        Ok(self.create_volume(name, vg, bytes, fs).await?.volume_id)
    }

    /// CreateVolume, answering the whole volume: its context is what a CO hands to
    /// NodeStageVolume.
    pub async fn create_volume(
        &mut self,
        name: &str,
        vg: &str,
        bytes: i64,
        fs: &str,
    ) -> Result<Volume> {
        let r = self
            .controller
            .create_volume(CreateVolumeRequest {
                name: name.into(),
                capacity_range: Some(CapacityRange {
                    required_bytes: bytes,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![mount_cap(fs)],
                parameters: HashMap::from([("volumeGroup".to_string(), vg.to_string())]),
                ..Default::default()
            })
            .await
            .with_context(|| format!("CreateVolume {name}"))?;
        r.into_inner().volume.context("no volume")
    }

    pub async fn delete(&mut self, id: &str) -> Result<()> {
        self.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("DeleteVolume {id}"))?;
        Ok(())
    }

    /// NodeStageVolume with the volume context CreateVolume answered, as kubelet passes it.
    pub async fn stage(
        &mut self,
        id: &str,
        staging: &Path,
        fs: &str,
        context: &HashMap<String, String>,
    ) -> Result<()> {
        self.node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
                volume_capability: Some(mount_cap(fs)),
                volume_context: context.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("NodeStageVolume {id}"))?;
        Ok(())
    }

    pub async fn publish(
        &mut self,
        id: &str,
        staging: &Path,
        target: &Path,
        fs: &str,
    ) -> Result<()> {
        self.node
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
                target_path: target.display().to_string(),
                volume_capability: Some(mount_cap(fs)),
                ..Default::default()
            })
            .await
            .with_context(|| format!("NodePublishVolume {id}"))?;
        Ok(())
    }

    pub async fn unpublish(&mut self, id: &str, target: &Path) -> Result<()> {
        self.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id.into(),
                target_path: target.display().to_string(),
            })
            .await
            .with_context(|| format!("NodeUnpublishVolume {id}"))?;
        Ok(())
    }

    pub async fn unstage(&mut self, id: &str, staging: &Path) -> Result<()> {
        self.node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
            })
            .await
            .with_context(|| format!("NodeUnstageVolume {id}"))?;
        Ok(())
    }
}

fn mount_cap(fs: &str) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode {
            mode: access_mode::Mode::SingleNodeWriter as i32,
        }),
    }
}
