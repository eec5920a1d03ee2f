//! CSI Identity service.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vglet_csi_proto::v1::identity_server::Identity;
use vglet_csi_proto::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse, plugin_capability,
};

use crate::driver::Driver;

#[derive(Debug, Clone)]
pub struct IdentityService {
    pub driver: Arc<Driver>,
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _req: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.driver.cfg.driver_name.clone(),
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
        if self.driver.cfg.mode.controller() {
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

    /// Ready only when lvm answers and every served VG is present: a node whose disks are
    /// gone must not be handed new volumes.
    async fn probe(&self, _req: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        for vg in &self.driver.cfg.volume_groups {
            if let Err(e) = self.driver.lvm.vg(vg).await {
                tracing::warn!(vg = %vg, error = %e, "probe: volume group unavailable");
                return Err(Status::failed_precondition(format!(
                    "volume group {vg} is not available: {e}"
                )));
            }
        }
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}
