//! CSI Identity service.

use tonic::{Request, Response, Status};
use vglet_csi_proto::v1::identity_server::Identity;
use vglet_csi_proto::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse, plugin_capability,
};

use crate::config::Mode;
use crate::driver::Driver;
use crate::rules::capability::VgKind;
use crate::service::startup::StartupHandle;

/// Served from the first instant: everything but Probe's health checks comes from the
/// configuration, so none of it waits for start-up.
#[derive(Debug, Clone)]
pub struct IdentityService {
    pub driver_name: String,
    pub mode: Mode,
    pub startup: StartupHandle,
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _req: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.driver_name.clone(),
            vendor_version: vglet_common::VERSION.to_string(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _req: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        use plugin_capability::{Service, Type, VolumeExpansion, service, volume_expansion};
        let mut caps = Vec::new();
        if self.mode.controller() {
            caps.push(Type::Service(Service {
                r#type: service::Type::ControllerService as i32,
            }));
        }
        caps.push(Type::Service(Service {
            r#type: service::Type::VolumeAccessibilityConstraints as i32,
        }));
        caps.push(Type::VolumeExpansion(VolumeExpansion {
            r#type: volume_expansion::Type::Online as i32,
        }));
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: caps
                .into_iter()
                .map(|t| PluginCapability { r#type: Some(t) })
                .collect(),
        }))
    }

    /// Not ready while start-up runs (the sidecars poll until ready). Then ready only when
    /// the kernel has device-mapper, lvm answers, every served VG is present, and every shared VG's lockspace is started
    /// here: a node that cannot lock must not be handed volumes.
    async fn probe(&self, _req: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let Some(driver) = self.startup.driver() else {
            return Ok(Response::new(ProbeResponse { ready: Some(false) }));
        };
        if !driver.cfg.no_device_mapper_check
            && let Some(why) = crate::host_needs::device_mapper_missing()
        {
            tracing::warn!("probe: {why}");
            return Err(Status::failed_precondition(why));
        }
        let mut shared = Vec::new();
        for name in &driver.cfg.volume_groups {
            match driver.lvm.vg(name).await {
                Ok(vg) if Driver::vg_kind(&vg) == VgKind::Shared => shared.push(name.clone()),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(vg = %name, error = %e, "probe: volume group unavailable");
                    return Err(Status::failed_precondition(format!(
                        "volume group {name} is not available: {e}"
                    )));
                }
            }
        }
        if !shared.is_empty() {
            let started = driver.lvm.started_lockspaces().await.map_err(|e| {
                tracing::warn!(error = %e, "probe: lvmlockd unavailable");
                Status::failed_precondition(format!("shared volume groups need lvmlockd: {e}"))
            })?;
            if let Some(vg) = shared.iter().find(|vg| !started.contains(vg)) {
                tracing::warn!(vg = %vg, "probe: lockspace not started (vgchange --lockstart {vg})");
                return Err(Status::failed_precondition(format!(
                    "the lockspace of shared volume group {vg} is not started on this host; run vg-init or vgchange --lockstart {vg}"
                )));
            }
        }
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}
