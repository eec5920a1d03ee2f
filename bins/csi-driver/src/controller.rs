//! CSI Controller service: LV lifecycle. LVM tags are the source of truth; no state is kept
//! in the process, so any replica (or a restarted one) answers the same.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use vglet_csi_proto::v1::controller_server::Controller;
use vglet_csi_proto::v1::*;
use vglet_lvm::tags::VolumeTags;
use vglet_lvm::{LvCreate, Vg};

use crate::capability::{self, VgKind};
use crate::capacity::Range;
use crate::driver::{Driver, OwnedVolume};
use crate::params;
use crate::status::{invalid, lvm_status};
use crate::volume_id::VolumeId;

/// CSI names are free-form; this bound keeps the encoded tag far below LVM's 1024 bytes.
const MAX_NAME_LEN: usize = 256;

#[derive(Debug, Clone)]
pub struct ControllerService {
    pub driver: Arc<Driver>,
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not supported by this driver"))
}

fn validate_name(name: &str) -> Result<(), Status> {
    if name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(
            "name",
            format!("must be at most {MAX_NAME_LEN} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name", "must not contain control characters"));
    }
    Ok(())
}

fn parse_id(id: &str) -> Result<VolumeId, Status> {
    VolumeId::parse(id).map_err(|e| invalid("volume_id", e))
}

impl ControllerService {
    fn volume_message(&self, v: &OwnedVolume, kind: VgKind) -> Volume {
        Volume {
            capacity_bytes: v.lv.size as i64,
            volume_id: v.id.to_string(),
            volume_context: HashMap::new(),
            content_source: None,
            accessible_topology: vec![Topology {
                segments: self.driver.volume_topology(&v.id.vg, kind),
            }],
        }
    }

    /// Whether a volume in `vg` satisfies the request's requisite topology (preferred is
    /// only advice).
    fn topology_allows(&self, req: Option<&TopologyRequirement>, vg: &Vg) -> bool {
        let Some(req) = req else { return true };
        req.requisite.is_empty()
            || req.requisite.iter().any(|t| {
                self.driver
                    .segment_admits(&t.segments, &vg.name, Driver::vg_kind(vg))
            })
    }

    /// Finds an existing LV for this CSI name in any served VG (a retry may land after a
    /// different VG was chosen the first time).
    async fn find_by_name(&self, lv_name: &str) -> Result<Option<OwnedVolume>, Status> {
        for vg in &self.driver.cfg.volume_groups {
            let id = VolumeId::new(vg.clone(), lv_name);
            match self.driver.lvm.lv(vg, lv_name).await {
                Ok(Some(lv)) => {
                    let tags = self.driver.ownership(&id, &lv).map_err(|_| {
                        Status::already_exists(format!(
                            "logical volume {id} exists and is not a volume of {}",
                            self.driver.cfg.driver_name
                        ))
                    })?;
                    return Ok(Some(OwnedVolume { id, lv, tags }));
                }
                Ok(None) => {}
                // A served VG that is missing right now must not hide a volume elsewhere.
                Err(vglet_lvm::LvmError::VgNotFound(_)) => {}
                Err(e) => return Err(lvm_status(&format!("looking up {id}"), e)),
            }
        }
        Ok(None)
    }

    /// The VG a new volume goes to: the one named by the parameters, else, among the served
    /// VGs that the topology requirement admits, the one with the most free space.
    async fn choose_vg(
        &self,
        wanted: Option<&str>,
        req: Option<&TopologyRequirement>,
    ) -> Result<Vg, Status> {
        let unreachable = |vg: &str| {
            Status::resource_exhausted(format!(
                "accessibility_requirements: no requisite topology can reach volume group {vg}"
            ))
        };
        if let Some(name) = wanted {
            if !self.driver.serves_vg(name) {
                return Err(invalid(
                    "parameters.volumeGroup",
                    format!(
                        "{name:?} is not served by this driver (served: {})",
                        self.driver.cfg.volume_groups.join(", ")
                    ),
                ));
            }
            let vg = self.driver.vg(name).await?;
            if !self.topology_allows(req, &vg) {
                return Err(unreachable(name));
            }
            return Ok(vg);
        }
        let mut best: Option<Vg> = None;
        let mut last_err = None;
        for name in &self.driver.cfg.volume_groups {
            match self.driver.vg(name).await {
                Ok(vg) if !self.topology_allows(req, &vg) => last_err = Some(unreachable(name)),
                Ok(vg) => {
                    if best.as_ref().is_none_or(|b| vg.free > b.free) {
                        best = Some(vg);
                    }
                }
                Err(e) => last_err = Some(e),
            }
        }
        best.ok_or_else(|| {
            last_err.unwrap_or_else(|| Status::failed_precondition("no volume group is served"))
        })
    }

    /// Creates the LV. On a shared VG the LV is created active (exclusively, so lvm zeroes
    /// its start and wipes old signatures) and then released, so that any node can take it;
    /// if the release fails the LV is removed again, so a retry starts clean.
    async fn create_lv(&self, vg: &Vg, create: LvCreate) -> Result<(), Status> {
        let id = VolumeId::new(vg.name.clone(), create.name.clone());
        let _w = self.driver.vg_locks.lock(&vg.name).await;
        self.driver
            .lvm
            .create_lv(&create)
            .await
            .map_err(|e| lvm_status(&format!("creating {id}"), e))?;
        if Driver::vg_kind(vg) == VgKind::Shared
            && let Err(e) = self.driver.lvm.deactivate_lv(&id.vg, &id.lv).await
        {
            tracing::error!(volume = %id, error = %e, "cannot release the new LV; removing it");
            if let Err(e2) = self.driver.lvm.remove_lv(&id.vg, &id.lv).await {
                tracing::error!(volume = %id, error = %e2, "removing the unreleased LV failed");
            }
            return Err(lvm_status(&format!("releasing the new LV {id}"), e));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        req: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let req = req.into_inner();
        validate_name(&req.name)?;
        let span = tracing::info_span!("CreateVolume", name = %req.name);
        let _e = span.enter();
        let params = params::parse("parameters", &req.parameters)?;
        let range = Range::parse("capacity_range", req.capacity_range.as_ref())?;
        if req.volume_content_source.is_some() {
            return Err(invalid(
                "volume_content_source",
                "snapshots and clones are not supported yet (CLONE_VOLUME and CREATE_DELETE_SNAPSHOT are not advertised)",
            ));
        }
        if !req.mutable_parameters.is_empty() {
            return Err(invalid(
                "mutable_parameters",
                "MODIFY_VOLUME is not supported",
            ));
        }
        let lv_name = vglet_lvm::naming::lv_name_for(&req.name);
        let _guard = self
            .driver
            .inflight
            .acquire(&format!("name:{}", req.name))?;

        // Validate against the kind of the VG the volume would land in before anything else.
        let existing = self.find_by_name(&lv_name).await?;
        let vg = match &existing {
            Some(v) => self.driver.vg(&v.id.vg).await?,
            None => {
                self.choose_vg(
                    params.volume_group.as_deref(),
                    req.accessibility_requirements.as_ref(),
                )
                .await?
            }
        };
        let caps = capability::validate_all(
            "volume_capabilities",
            &req.volume_capabilities,
            Driver::vg_kind(&vg),
        )?;
        let fs = caps
            .first()
            .and_then(|c| c.fs_type().map(str::to_string))
            .unwrap_or_else(|| "block".to_string());

        if let Some(v) = existing {
            return if v.tags.name != req.name {
                Err(Status::already_exists(format!(
                    "logical volume {} belongs to another CSI name",
                    v.id
                )))
            } else if !range.accepts(v.lv.size) {
                Err(Status::already_exists(format!(
                    "volume {} exists with {} bytes, incompatible with the requested capacity range",
                    v.id, v.lv.size
                )))
            } else if params.volume_group.as_deref().is_some_and(|g| g != v.id.vg) {
                Err(Status::already_exists(format!(
                    "volume {} exists in another volume group than parameters.volumeGroup",
                    v.id
                )))
            } else if v.tags.fs != fs {
                Err(Status::already_exists(format!(
                    "volume {} exists as {:?}, the request asks for {fs:?}",
                    v.id, v.tags.fs
                )))
            } else {
                tracing::info!(volume = %v.id, "volume already exists");
                Ok(Response::new(CreateVolumeResponse {
                    volume: Some(self.volume_message(&v, Driver::vg_kind(&vg))),
                }))
            };
        }

        let size = range.lv_size(vg.extent_size)?;
        if size > vg.size {
            return Err(Status::out_of_range(format!(
                "{size} bytes is larger than volume group {} ({} bytes)",
                vg.name, vg.size
            )));
        }
        if size > vg.free {
            return Err(Status::resource_exhausted(format!(
                "volume group {} has {} bytes free, {size} bytes requested",
                vg.name, vg.free
            )));
        }
        let tags = VolumeTags {
            owner: self.driver.cfg.driver_name.clone(),
            name: req.name.clone(),
            size: range.required.max(size),
            fs: fs.clone(),
        };
        let id = VolumeId::new(vg.name.clone(), lv_name.clone());
        // Created active, so lvcreate zeroes its start and wipes old signatures: no earlier
        // tenant's filesystem is ever found by NodeStage. Local LVs stay active.
        self.create_lv(
            &vg,
            LvCreate {
                vg: vg.name.clone(),
                name: lv_name.clone(),
                size,
                tags: tags.to_tags(),
                activate: true,
            },
        )
        .await?;
        let lv = self
            .driver
            .lvm
            .lv(&vg.name, &lv_name)
            .await
            .map_err(|e| lvm_status(&format!("reading back {id}"), e))?
            .ok_or_else(|| Status::internal(format!("{id} vanished right after creation")))?;
        tracing::info!(volume = %id, bytes = lv.size, "volume created");
        let v = OwnedVolume { id, lv, tags };
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(self.volume_message(&v, Driver::vg_kind(&vg))),
        }))
    }

    async fn delete_volume(
        &self,
        req: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = parse_id(&req.volume_id)?;
        let span = tracing::info_span!("DeleteVolume", volume_id = %id);
        let _e = span.enter();
        if !self.driver.serves_vg(&id.vg) {
            return Err(Status::failed_precondition(format!(
                "volume {id}: volume group {} is not served by this driver; refusing",
                id.vg
            )));
        }
        let _guard = self.driver.inflight.acquire(&id.to_string())?;
        match self.driver.owned_volume(&id).await {
            Err(s) if s.code() == tonic::Code::NotFound => {
                tracing::info!("volume already gone");
                return Ok(Response::new(DeleteVolumeResponse {}));
            }
            Err(s) => return Err(s),
            Ok(_) => {}
        }
        let _w = self.driver.vg_locks.lock(&id.vg).await;
        match self.driver.lvm.remove_lv(&id.vg, &id.lv).await {
            Ok(()) | Err(vglet_lvm::LvmError::LvNotFound(_)) => {}
            Err(e) => return Err(lvm_status(&format!("removing {id}"), e)),
        }
        tracing::info!("volume deleted");
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        _req: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        Err(unimplemented("ControllerPublishVolume"))
    }

    async fn controller_unpublish_volume(
        &self,
        _req: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        Err(unimplemented("ControllerUnpublishVolume"))
    }

    async fn validate_volume_capabilities(
        &self,
        req: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let req = req.into_inner();
        let id = parse_id(&req.volume_id)?;
        if req.volume_capabilities.is_empty() {
            return Err(invalid("volume_capabilities", "at least one is required"));
        }
        let v = self.driver.owned_volume(&id).await?;
        let vg = self.driver.vg(&id.vg).await?;
        let checked = capability::validate_all(
            "volume_capabilities",
            &req.volume_capabilities,
            Driver::vg_kind(&vg),
        )
        .and_then(|caps| {
            let want = caps
                .first()
                .and_then(|c| c.fs_type().map(str::to_string))
                .unwrap_or_else(|| "block".into());
            if want == v.tags.fs {
                Ok(())
            } else {
                Err(Status::invalid_argument(format!(
                    "volume is {:?}, capabilities ask for {want:?}",
                    v.tags.fs
                )))
            }
        })
        .and_then(|()| params::parse("parameters", &req.parameters).map(|_| ()));
        let resp = match checked {
            Ok(()) => ValidateVolumeCapabilitiesResponse {
                confirmed: Some(validate_volume_capabilities_response::Confirmed {
                    volume_context: req.volume_context,
                    volume_capabilities: req.volume_capabilities,
                    parameters: req.parameters,
                    mutable_parameters: req.mutable_parameters,
                }),
                message: String::new(),
            },
            Err(s) => ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: s.message().to_string(),
            },
        };
        Ok(Response::new(resp))
    }

    /// Pages are ordered by volume id and the token is the last id returned, so deleting
    /// volumes between pages neither skips nor repeats any.
    async fn list_volumes(
        &self,
        req: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let req = req.into_inner();
        if req.max_entries < 0 {
            return Err(invalid("max_entries", "must not be negative"));
        }
        let after = if req.starting_token.is_empty() {
            None
        } else {
            Some(VolumeId::parse(&req.starting_token).map_err(|e| {
                Status::aborted(format!(
                    "starting_token {:?} is not valid: {e}",
                    req.starting_token
                ))
            })?)
        };
        let mut vols = Vec::new();
        for vg in &self.driver.cfg.volume_groups {
            // One fullreport gives the VG's kind and its LVs.
            let report = match self.driver.lvm.report(Some(vg)).await {
                Ok(r) => r,
                Err(vglet_lvm::LvmError::VgNotFound(_)) => continue,
                Err(e) => return Err(lvm_status(&format!("listing {vg}"), e)),
            };
            let Some(kind) = report.vg(vg).map(Driver::vg_kind) else {
                continue;
            };
            for lv in report.lvs_in(vg) {
                let id = VolumeId::new(vg.clone(), lv.name.clone());
                if let Ok(tags) = self.driver.ownership(&id, lv) {
                    let v = OwnedVolume {
                        id,
                        lv: lv.clone(),
                        tags,
                    };
                    vols.push((v, kind));
                }
            }
        }
        vols.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let start = after
            .as_ref()
            .map(|a| vols.partition_point(|v| &v.0.id <= a))
            .unwrap_or(0);
        let max = if req.max_entries == 0 {
            usize::MAX
        } else {
            req.max_entries as usize
        };
        let page: Vec<&(OwnedVolume, VgKind)> = vols[start..].iter().take(max).collect();
        let next_token = if start + page.len() < vols.len() {
            page.last().map(|v| v.0.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListVolumesResponse {
            entries: page
                .into_iter()
                .map(|(v, kind)| list_volumes_response::Entry {
                    volume: Some(self.volume_message(v, *kind)),
                    status: Some(list_volumes_response::VolumeStatus {
                        published_node_ids: vec![],
                        volume_condition: Some(condition(v)),
                    }),
                })
                .collect(),
            next_token,
        }))
    }

    async fn get_capacity(
        &self,
        req: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        let req = req.into_inner();
        let params = params::parse("parameters", &req.parameters)?;
        let names: Vec<String> = match &params.volume_group {
            Some(name) if !self.driver.serves_vg(name) => {
                return Err(invalid(
                    "parameters.volumeGroup",
                    format!("{name:?} is not served by this driver"),
                ));
            }
            Some(name) => vec![name.clone()],
            None => self.driver.cfg.volume_groups.clone(),
        };
        let mut vgs = Vec::new();
        for name in &names {
            // A missing VG has no capacity; Probe reports it.
            let Ok(vg) = self.driver.vg(name).await else {
                continue;
            };
            let reachable = req.accessible_topology.as_ref().is_none_or(|t| {
                self.driver
                    .segment_admits(&t.segments, &vg.name, Driver::vg_kind(&vg))
            });
            if reachable {
                vgs.push(vg);
            }
        }
        // A linear LV may span PVs, so one VG's free space is also its largest volume;
        // volumes never span VGs, so across VGs the largest is the largest single VG.
        let available: u64 = vgs.iter().map(|v| v.free).sum();
        let max_volume = vgs.iter().map(|v| v.free).max().unwrap_or(0);
        let min_volume = vgs.iter().map(|v| v.extent_size).min().unwrap_or(0);
        Ok(Response::new(GetCapacityResponse {
            available_capacity: available as i64,
            maximum_volume_size: Some(max_volume as i64),
            minimum_volume_size: Some(min_volume as i64),
        }))
    }

    async fn controller_get_capabilities(
        &self,
        _req: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        use controller_service_capability::{Rpc, Type, rpc::Type as R};
        let caps = [
            R::CreateDeleteVolume,
            R::ListVolumes,
            R::GetCapacity,
            R::ExpandVolume,
            R::GetVolume,
            R::VolumeCondition,
            R::SingleNodeMultiWriter,
        ];
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: caps
                .into_iter()
                .map(|r| ControllerServiceCapability {
                    r#type: Some(Type::Rpc(Rpc { r#type: r as i32 })),
                })
                .collect(),
        }))
    }

    async fn create_snapshot(
        &self,
        _req: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        Err(unimplemented("CreateSnapshot"))
    }

    async fn delete_snapshot(
        &self,
        _req: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        Err(unimplemented("DeleteSnapshot"))
    }

    async fn list_snapshots(
        &self,
        _req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        Err(unimplemented("ListSnapshots"))
    }

    async fn get_snapshot(
        &self,
        _req: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        Err(unimplemented("GetSnapshot"))
    }

    async fn controller_expand_volume(
        &self,
        req: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = parse_id(&req.volume_id)?;
        let span = tracing::info_span!("ControllerExpandVolume", volume_id = %id);
        let _e = span.enter();
        let range = Range::parse("capacity_range", req.capacity_range.as_ref())?;
        if range.required == 0 && range.limit == 0 {
            return Err(invalid("capacity_range", "is required"));
        }
        let _guard = self.driver.inflight.acquire(&id.to_string())?;
        let v = self.driver.owned_volume(&id).await?;
        let vg = self.driver.vg(&id.vg).await?;
        if let Some(cap) = &req.volume_capability {
            capability::validate("volume_capability", Some(cap), Driver::vg_kind(&vg))?;
        }
        let node_expansion_required = v.tags.fs != "block";
        let size = range.lv_size(vg.extent_size)?;
        if size <= v.lv.size {
            return Ok(Response::new(ControllerExpandVolumeResponse {
                capacity_bytes: v.lv.size as i64,
                node_expansion_required,
            }));
        }
        if size - v.lv.size > vg.free {
            return Err(Status::resource_exhausted(format!(
                "volume group {} has {} bytes free, growing {id} by {} bytes",
                vg.name,
                vg.free,
                size - v.lv.size
            )));
        }
        {
            let _w = self.driver.vg_locks.lock(&id.vg).await;
            match self.driver.lvm.extend_lv(&id.vg, &id.lv, size).await {
                Ok(()) => {}
                // The node using the volume holds its LV lock. The VG lock still guards the
                // metadata, so extend without the LV lock; that node's NodeExpandVolume
                // refreshes its table before growing the filesystem.
                Err(vglet_lvm::LvmError::Locked(_)) if Driver::vg_kind(&vg) == VgKind::Shared => {
                    tracing::info!(
                        "LV is active on another host; extending under the VG lock only"
                    );
                    self.driver
                        .lvm
                        .extend_lv_skip_lv_lock(&id.vg, &id.lv, size)
                        .await
                        .map_err(|e| lvm_status(&format!("extending {id}"), e))?;
                }
                Err(e) => return Err(lvm_status(&format!("extending {id}"), e)),
            }
            let new = VolumeTags {
                size: range.required.max(size),
                ..v.tags.clone()
            };
            // The size tag is informational (CreateVolume compares the LV's real size), so
            // a failure to update it is only logged.
            if let Err(e) = self.driver.retag(&id, &v.tags, &new).await {
                tracing::warn!(error = %e, "could not update the size tag");
            }
        }
        tracing::info!(bytes = size, "volume expanded");
        Ok(Response::new(ControllerExpandVolumeResponse {
            capacity_bytes: size as i64,
            node_expansion_required,
        }))
    }

    async fn controller_get_volume(
        &self,
        req: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let id = parse_id(&req.into_inner().volume_id)?;
        let v = self.driver.owned_volume(&id).await?;
        let vg = self.driver.vg(&id.vg).await?;
        Ok(Response::new(ControllerGetVolumeResponse {
            volume: Some(self.volume_message(&v, Driver::vg_kind(&vg))),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: vec![],
                volume_condition: Some(condition(&v)),
            }),
        }))
    }

    async fn controller_modify_volume(
        &self,
        _req: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(unimplemented("ControllerModifyVolume"))
    }
}

/// Controller-side health from the LV's attributes (lv_attr character 9: volume health).
pub fn condition(v: &OwnedVolume) -> VolumeCondition {
    let health = v.lv.attr.chars().nth(8).unwrap_or('-');
    let message = match health {
        'p' => Some("a physical volume under this LV is missing (partial)"),
        'r' => Some("a RAID image needs refresh (device failure)"),
        'm' => Some("RAID scrubbing found mismatches"),
        'X' => Some("LV health is unknown to LVM"),
        _ => None,
    };
    VolumeCondition {
        abnormal: message.is_some(),
        message: message.unwrap_or("healthy").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_validated() {
        assert!(validate_name("pvc-1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(300)).is_err());
    }
}
