//! CSI Controller service: LV lifecycle. LVM tags are the source of truth; no state is kept
//! in the process, so any replica (or a restarted one) answers the same.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use tracing::Instrument;
use vglet_csi_proto::v1::controller_server::Controller;
use vglet_csi_proto::v1::*;
use vglet_lvm::{LvType, Report};

use crate::driver::{Driver, OwnedVolume};
use crate::ops::reconcile::is_unfinished;
use crate::ops::snapshot;
use crate::provision::{self, Ask, Plan, Served, choice};
use crate::rules::capability::{self, VgKind};
use crate::rules::capacity::Range;
use crate::rules::error::VolumeError;
use crate::rules::mutable;
use crate::rules::params;
use crate::rules::volume_id::{self, VolumeId};
use crate::status::{IntoStatus, invalid, lvm_status, volume_status};

#[derive(Debug, Clone)]
pub struct ControllerService {
    pub driver: Arc<Driver>,
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not supported by this driver"))
}

/// How old the last read of the VG may be for CreateVolume to skip its own (see
/// `ControllerService::optimistic_report`). The read's free space may be out of date (lvm
/// re-checks it); the VG's kind and extent size change only by an operator's hand, and not
/// within this bound unnoticed for long.
const OPTIMISTIC_VG_AGE: Duration = Duration::from_secs(30);

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

    fn served(&self) -> Served<'_> {
        Served::of(&self.driver.cfg, &self.driver.creating)
    }

    /// One `lvm fullreport` of every served VG: what CreateVolume decides on (an existing LV
    /// of the name, the content source, the VG, its free space, the layout's fit) and what
    /// GetCapacity counts. A served VG that is missing is simply absent from it.
    async fn served_report(&self) -> Result<Report, VolumeError> {
        let served = &self.driver.cfg.volume_groups;
        let one = match served.as_slice() {
            [vg] => Some(vg.as_str()),
            _ => None,
        };
        match self.driver.lvm.report(one).await {
            Err(vglet_lvm::LvmError::VgNotFound(_)) => Ok(Report::default()),
            r => r.map_err(VolumeError::lvm("reading the served volume groups")),
        }
    }

    /// FAILED_PRECONDITION while the volume is in use on this node (see [`crate::ops::in_use`]):
    /// nothing is changed, and the message says what holds it.
    fn refuse_in_use(&self, v: &OwnedVolume) -> Result<(), Status> {
        let record = match &self.driver.state {
            Some(state) => state.get(&v.id.to_string()).map_err(|e| {
                Status::internal(format!(
                    "volume {}: cannot read this node's record of it, so cannot tell whether it is in use; not removed: {e}",
                    v.id
                ))
            })?,
            None => None,
        };
        match crate::ops::in_use::holder(&v.lv, record.as_ref(), &self.driver.cfg.node_id) {
            Some(why) => Err(Status::failed_precondition(format!(
                "volume {} is in use: {why}; not removed",
                v.id
            ))),
            None => Ok(()),
        }
    }

    /// A report to create on without reading lvm, where lvm itself re-checks everything it
    /// could get wrong: one served VG (lvm keeps LV names unique per VG, so an LV of this
    /// name from an earlier attempt makes lvcreate fail), node-local, a linear volume
    /// without content source, and the VG as a read at most [`OPTIMISTIC_VG_AGE`] old showed
    /// it. The report holds no LVs: an existing LV of the name or a lack of space shows up
    /// as lvcreate's refusal, after which the fresh read decides (see `create_volume`).
    fn optimistic_report(&self, ask: &Ask) -> Option<Report> {
        let [vg] = self.driver.cfg.volume_groups.as_slice() else {
            return None;
        };
        if ask.source.is_some() || ask.params.layout.lv_type != LvType::Linear {
            return None;
        }
        // A volume this process made under the name: a retry, which the read answers
        // without a refused lvcreate.
        if self
            .driver
            .vouched
            .get(&VolumeId::new(vg.clone(), &ask.lv_name))
            .is_some()
        {
            return None;
        }
        let (vg, pvs) = self.driver.lvm.recent_vg(vg, OPTIMISTIC_VG_AGE)?;
        (!vg.is_shared()).then(|| Report {
            vgs: vec![vg],
            pvs,
            lvs: Vec::new(),
        })
    }

    /// CreateVolume of `ask`: planned on the optimistic report when there is one, else (or
    /// when that attempt did not succeed) on one fresh read of the served VGs.
    async fn provision(&self, ask: &Ask) -> Result<provision::execute::Done, Status> {
        let served = self.served();
        if let Some(report) = self.optimistic_report(ask) {
            match provision::plan(&served, ask, &report) {
                Ok(Plan::Create(c)) => match provision::execute::create(&self.driver, c).await {
                    Ok(done) => return Ok(done),
                    // The attempt created nothing, or removed what it created: the read
                    // decides as if it had not been made (the name exists, the space is
                    // gone, ...).
                    Err(s) => {
                        tracing::debug!(code = ?s.code(), error = %s.message(), "optimistic create did not succeed; reading lvm")
                    }
                },
                // Space may have been freed since that read: lvm's state decides.
                Err(VolumeError::NoSpace(_) | VolumeError::OutOfRange(_)) => {}
                // Decided by the request and the VG's kind, tags and extent size, which
                // the optimistic read may be trusted for: refused without reading lvm.
                Err(e) => return Err(volume_status(e)),
                // A report without LVs finds no volume of the name.
                Ok(Plan::Existing(_) | Plan::RemoveUnfinished(..)) => {}
            }
        }
        let mut report = self.served_report().await.status()?;
        let mut removed = None;
        loop {
            match provision::plan(&served, ask, &report).status()? {
                Plan::Existing(e) => return Ok(provision::execute::existing(&self.driver, e)),
                Plan::Create(c) => return provision::execute::create(&self.driver, c).await,
                Plan::RemoveUnfinished(id, mark) if removed.as_ref() != Some(&id) => {
                    crate::ops::reconcile::remove_unfinished(&self.driver, &id, &mark).await?;
                    report = self.served_report().await.status()?;
                    removed = Some(id);
                }
                Plan::RemoveUnfinished(id, _) => {
                    return Err(Status::internal(format!(
                        "the unfinished LV {id} is still there after its removal"
                    )));
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        req: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let req = req.into_inner();
        crate::rules::limits::check(&req).status()?;
        let ask = Ask::check(&req).status()?;
        let span = tracing::info_span!("CreateVolume", name = %req.name);
        // Each handler's span travels with its future (`.instrument`): an entered guard
        // held across awaits is exited on another thread and corrupts the subscriber.
        async move {
            let _guard = self
                .driver
                .inflight
                .acquire(&format!("name:{}", req.name))?;
            let done = self.provision(&ask).await?;
            // A cache from birth: the modify plan attaches it, and finds it attached on a
            // retry (a CreateVolume interrupted after its lvcreate converges the same way).
            if let Some(wish @ crate::rules::cache::CacheWish::Mode { .. }) = ask.cache {
                let want = mutable::Mutable {
                    redundancy: None,
                    cache: Some(wish),
                };
                crate::ops::modify::modify(&self.driver, &done.volume.id, &want)
                    .await
                    .status()?;
            }
            let mut m = self.volume_message(&done.volume, done.kind);
            m.volume_context = done.answer.volume_context;
            m.content_source = done.answer.content_source;
            Ok(Response::new(CreateVolumeResponse { volume: Some(m) }))
        }
        .instrument(span)
        .await
    }

    async fn delete_volume(
        &self,
        req: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let req = req.into_inner();
        crate::rules::limits::check(&req).status()?;
        let Some(id) = volume_id::to_delete("volume_id", &req.volume_id).status()? else {
            return Ok(Response::new(DeleteVolumeResponse {}));
        };
        let span = tracing::info_span!("DeleteVolume", volume_id = %id);
        async move {
            // Not the spec's OK for a missing volume: an id of our form in a VG this instance
            // does not serve may be a live volume of another instance (another node's VG, or a
            // VG dropped from --volume-group), and OK would let the CO forget it.
            if !self.driver.serves_vg(&id.vg) {
                return Err(Status::failed_precondition(format!(
                    "volume {id}: volume group {} is not served by this driver; refusing",
                    id.vg
                )));
            }
            let _guard = self.driver.inflight.acquire(&id.to_string())?;
            // Whatever happens next, the LV is no longer one to stage without reading lvm.
            self.driver.vouched.forget(&id);
            // The LV and its snapshots only, not the whole VG: with 1,000 LVs a full report
            // cost more than the lvremove.
            let (v, vg, report) = match self.driver.volume_and_snapshots(&id).await {
                Err(e) if e.is_not_found() => {
                    tracing::info!("volume already gone");
                    return Ok(Response::new(DeleteVolumeResponse {}));
                }
                Err(e) => return Err(volume_status(e)),
                Ok(found) => found,
            };
            // Not OK without removing: the CO would take the volume for gone while the LV and
            // its data stay, and the spec's OK means the volume no longer exists. The error
            // keeps the PV (Released/Failed, with this message) until the operator decides.
            if v.adopted.is_some_and(|a| !a.may_delete) {
                return Err(Status::failed_precondition(format!(
                    "volume {id} is a static volume the driver did not create; it is not removed \
                     without the operator's opt-in. Keep it: set the PersistentVolume's reclaim \
                     policy to Retain and delete the PersistentVolume. Remove it: lvchange --addtag {} {id}",
                    vglet_lvm::tags::adopt_delete_tag(&self.driver.cfg.driver_name)
                )));
            }
            snapshot::refuse_with_thick_snapshots(&report, &id, "deleted").status()?;
            self.refuse_in_use(&v)?;
            let _w = self.driver.vg_locks.lock(&id.vg).await;
            // An adopted LV goes only while it still carries the delete opt-in, checked by lvm
            // under the VG lock: an operator withdrawing it a moment ago wins.
            let removed = match v.adopted {
                Some(_) => {
                    let tag = vglet_lvm::tags::adopt_delete_tag(&self.driver.cfg.driver_name);
                    self.driver
                        .lvm
                        .remove_lv_if_tagged(&id.vg, &id.lv, &tag)
                        .await
                }
                None => self.driver.lvm.remove_lv(&id.vg, &id.lv).await,
            };
            match removed {
                Ok(()) | Err(vglet_lvm::LvmError::LvNotFound(_)) => {}
                // Another host uses the LV of a shared VG: it holds the LV's lock.
                Err(vglet_lvm::LvmError::Locked(msg)) => {
                    let holder = match self.driver.lvm.lock_holder(&v.lv).await {
                        Some(host_id) => crate::ops::in_use::lock_holder(host_id, &vg.tags),
                        None => "another node".to_string(),
                    };
                    return Err(Status::failed_precondition(format!(
                        "volume {id} is in use: {holder} holds its lock in shared volume group {} ({msg}); not removed",
                        id.vg
                    )));
                }
                Err(e @ vglet_lvm::LvmError::InUse(_)) => {
                    return Err(lvm_status(
                        &format!("volume {id} is in use; not removed"),
                        e,
                    ));
                }
                Err(e) => return Err(lvm_status(&format!("removing {id}"), e)),
            }
            // So does the intent of a create that was refused or failed before it finished
            // (the CO may delete what it never got an answer for); none costs no fsync.
            if self.driver.creating.unfinished_tag(&id).is_some()
                && let Err(e) = self.driver.creating.end(&id)
            {
                tracing::warn!(error = %e, "cannot drop the volume's create intent");
            }
            // An interrupted first format's mark goes with the LV (a shared VG's tag already
            // has); one left behind is dropped by the node's start-up pass.
            if let Some(store) = &self.driver.state
                && let Err(e) = store.remove_format_mark(&id.to_string())
            {
                tracing::warn!(error = %e, "cannot remove the volume's first-format mark");
            }
            // A conditional lvremove that selects nothing succeeds: say so rather than OK.
            if v.adopted.is_some()
                && let Ok(Some(_)) = self.driver.lvm.lv(&id.vg, &id.lv).await
            {
                return Err(Status::failed_precondition(format!(
                    "volume {id} was not removed: its delete opt-in tag was withdrawn"
                )));
            }
            tracing::info!("volume deleted");
            Ok(Response::new(DeleteVolumeResponse {}))
        }
        .instrument(span)
        .await
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
        crate::rules::limits::check(&req).status()?;
        let id = volume_id::lookup("volume_id", "volume", &req.volume_id).status()?;
        if req.volume_capabilities.is_empty() {
            return Err(invalid("volume_capabilities", "at least one is required"));
        }
        let (v, vg, _) = self.driver.volume_in_vg(&id).await.status()?;
        let checked = capability::validate_all(
            "volume_capabilities",
            &req.volume_capabilities,
            Driver::vg_kind(&vg),
        )
        .and_then(|caps| {
            let want = capability::content_of(&caps);
            // A static volume's content is checked where the device is: NodeStageVolume.
            match v.content() {
                None => Ok(()),
                Some(c) if c == want => Ok(()),
                Some(c) => Err(VolumeError::Precondition(format!(
                    "volume is {:?}, capabilities ask for {:?}",
                    c.as_tag(),
                    want.as_tag()
                ))),
            }
        })
        .and_then(|()| params::parse("parameters", &req.parameters).map(|_| ()))
        .and_then(|()| mutable::parse("mutable_parameters", &req.mutable_parameters).map(|_| ()));
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
            Err(e) => ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.to_string(),
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
        let after = volume_id::page_after(req.max_entries, &req.starting_token).status()?;
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
            // An unfinished LV is not a volume: no CO was told of it.
            for lv in report.lvs_in(vg) {
                // Adopted LVs are listed too: the CO has a PV for each, and their health is
                // reported like any other volume's.
                let id = VolumeId::new(vg.clone(), lv.name.clone());
                if is_unfinished(Some(&self.driver.creating), &id, lv) {
                    continue;
                }
                if let Ok(v) = self.driver.claim(&id, lv.clone()) {
                    let cond = condition(&v, &report);
                    vols.push((v, kind, cond));
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
        let page: Vec<&(OwnedVolume, VgKind, VolumeCondition)> =
            vols[start..].iter().take(max).collect();
        let next_token = if start + page.len() < vols.len() {
            page.last().map(|v| v.0.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListVolumesResponse {
            entries: page
                .into_iter()
                .map(|(v, kind, cond)| list_volumes_response::Entry {
                    volume: Some(self.volume_message(v, *kind)),
                    status: Some(list_volumes_response::VolumeStatus {
                        published_node_ids: vec![],
                        volume_condition: Some(cond.clone()),
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
        crate::rules::limits::check(&req).status()?;
        let params = params::parse("parameters", &req.parameters).status()?;
        let segments = req.accessible_topology.as_slice();
        let served = self.served();
        choice::check_served(&served, &params).status()?;
        // As for a missing VG, a VG that cannot be read has no capacity; Probe reports it.
        let report = self.served_report().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the served volume groups; no capacity");
            Report::default()
        });
        // (largest volume, extent size) per VG CreateVolume could choose for this class.
        let fits: Vec<(u64, u64)> = choice::capacity_vgs(&served, &report, &params, segments)
            .into_iter()
            .filter_map(|vg| {
                choice::largest_volume(&report, vg, &params).map(|max| (max, vg.extent_size))
            })
            .collect();
        // Volumes never span VGs: across VGs the largest is the largest single VG's.
        let available: u64 = fits.iter().map(|f| f.0).sum();
        let max_volume = fits.iter().map(|f| f.0).max().unwrap_or(0);
        let min_volume = fits.iter().map(|f| f.1).min().unwrap_or(0);
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
            R::CreateDeleteSnapshot,
            R::ListSnapshots,
            R::CloneVolume,
            R::ModifyVolume,
        ];
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: caps
                .into_iter()
                // Without it the external-resizer leaves the whole expansion to
                // NodeExpandVolume on the volume's node (crate::ops::expand::Expansion::Node).
                .filter(|r| {
                    *r != R::ExpandVolume
                        || self.driver.cfg.expansion == crate::config::Expansion::Controller
                })
                .map(|r| ControllerServiceCapability {
                    r#type: Some(Type::Rpc(Rpc { r#type: r as i32 })),
                })
                .collect(),
        }))
    }

    async fn create_snapshot(
        &self,
        req: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        let req = req.into_inner();
        crate::rules::limits::check(&req).status()?;
        let span =
            tracing::info_span!("CreateSnapshot", name = %req.name, source = %req.source_volume_id);
        async move { snapshot::create(&self.driver, req).await.map(Response::new) }
            .instrument(span)
            .await
    }

    async fn delete_snapshot(
        &self,
        req: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let req = req.into_inner();
        crate::rules::limits::check(&req).status()?;
        let span = tracing::info_span!("DeleteSnapshot", snapshot_id = %req.snapshot_id);
        async move {
            snapshot::delete(&self.driver, req).await?;
            Ok(Response::new(DeleteSnapshotResponse {}))
        }
        .instrument(span)
        .await
    }

    async fn list_snapshots(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let req = req.into_inner();
        crate::rules::limits::check(&req).status()?;
        snapshot::list(&self.driver, req).await.map(Response::new)
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
        crate::rules::limits::check(&req).status()?;
        let id = volume_id::lookup("volume_id", "volume", &req.volume_id).status()?;
        let span = tracing::info_span!("ControllerExpandVolume", volume_id = %id);
        async move {
            let range = Range::parse("capacity_range", req.capacity_range.as_ref()).status()?;
            if range.required == 0 && range.limit == 0 {
                return Err(invalid("capacity_range", "is required"));
            }
            let _guard = self.driver.inflight.acquire(&id.to_string())?;
            let (v, vg, report) = self.driver.volume_in_vg(&id).await.status()?;
            let cap = match &req.volume_capability {
                Some(cap) => Some(
                    capability::validate("volume_capability", Some(cap), Driver::vg_kind(&vg))
                        .status()?,
                ),
                None => None,
            };
            // A static volume has no fs tag: the capability tells, and without one the node is
            // asked (NodeExpandVolume of a raw block volume does nothing).
            // An encrypted volume's mapping grows only on the node (`cryptsetup resize`),
            // raw block too.
            let encrypted = vglet_lvm::tags::Encryption::from_tags(&v.lv.tags) != Ok(None);
            let node_expansion_required = encrypted
                || match v.content() {
                    Some(c) => !c.is_block(),
                    None => !cap.as_ref().is_some_and(|c| c.is_block()),
                };
            let size = crate::ops::expand::grow_lv(&self.driver, &v, &vg, &report, range)
                .await
                .status()?;
            Ok(Response::new(ControllerExpandVolumeResponse {
                capacity_bytes: size as i64,
                node_expansion_required,
            }))
        }
        .instrument(span)
        .await
    }

    async fn controller_get_volume(
        &self,
        req: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let id = volume_id::lookup("volume_id", "volume", &req.into_inner().volume_id).status()?;
        let (v, vg, report) = self.driver.volume_in_vg(&id).await.status()?;
        Ok(Response::new(ControllerGetVolumeResponse {
            volume: Some(self.volume_message(&v, Driver::vg_kind(&vg))),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: vec![],
                volume_condition: Some(condition(&v, &report)),
            }),
        }))
    }

    /// The volume changed to what the VolumeAttributesClass's mutable parameters ask,
    /// online. OK once lvm shows the new layout; new copies may still be synchronising, which
    /// the volume's condition (ControllerGetVolume, ListVolumes) and the
    /// `vglet_raid_sync_percent` metric show until they are in sync.
    async fn controller_modify_volume(
        &self,
        req: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        let req = req.into_inner();
        crate::rules::limits::check(&req).status()?;
        let id = volume_id::lookup("volume_id", "volume", &req.volume_id).status()?;
        let want = mutable::parse("mutable_parameters", &req.mutable_parameters).status()?;
        let span = tracing::info_span!("ControllerModifyVolume", volume_id = %id);
        async move {
            if !self.driver.serves_vg(&id.vg) {
                return Err(volume_status(VolumeError::NotFound(format!(
                    "volume {id}: volume group {} is not served by this driver",
                    id.vg
                ))));
            }
            let _guard = self.driver.inflight.acquire(&id.to_string())?;
            crate::ops::modify::modify(&self.driver, &id, &want)
                .await
                .status()?;
            Ok(Response::new(ControllerModifyVolumeResponse {}))
        }
        .instrument(span)
        .await
    }
}

/// Controller-side health from the LV and its thin pool in `report` (the controller sees
/// no mount, and a shared VG's LVs are inactive here by design). See [`crate::rules::health`].
pub fn condition(v: &OwnedVolume, report: &Report) -> VolumeCondition {
    let pool = thin_pool_of(&v.lv, report.lvs_in(&v.lv.vg));
    crate::rules::health::volume_condition(Some(&v.lv), pool, None, Default::default())
}

/// The thin pool of `lv` among `lvs` (its VG's), when it is a thin volume.
pub fn thin_pool_of<'a>(
    lv: &vglet_lvm::Lv,
    mut lvs: impl Iterator<Item = &'a vglet_lvm::Lv>,
) -> Option<&'a vglet_lvm::Lv> {
    if lv.pool_lv.is_empty() {
        return None;
    }
    lvs.find(|l| l.name == lv.pool_lv && l.segtype == "thin-pool")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_validated() {
        use crate::provision::ask::validate_name;
        assert!(validate_name("pvc-1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(300)).is_err());
    }

    /// Static volumes against a fake lvm: which RPCs act on which LVs, and which lvm
    /// commands they run (none that changes an LV without the matching opt-in).
    mod adoption {
        use std::sync::Mutex;

        use vglet_runner::{FakeRunner, Reply};

        use super::*;

        const ADOPT: &str = "vglet.adopt=lvm.vglet.io";
        const DELETE: &str = "vglet.adopt.delete=lvm.vglet.io";

        fn lv_json(name: &str, attr: &str, role: &str, tags: &[&str]) -> String {
            format!(
                r#"{{"vg_name":"vg0","lv_name":"{name}","lv_uuid":"U-{name}","lv_attr":"{attr}","lv_size":"67108864","lv_active":"active","lv_tags":"{}","lv_path":"/dev/vg0/{name}","lv_dm_path":"/dev/mapper/vg0-{name}","lv_layout":"linear","lv_role":"{role}","pool_lv":"","origin":"","data_percent":""}}"#,
                tags.join(",")
            )
        }

        /// The LVs lvm reports; lvremove takes the named LV out of it.
        struct Fake {
            lvs: Arc<Mutex<Vec<(String, String)>>>,
            runner: FakeRunner,
        }

        fn fake() -> Fake {
            let lvs = Arc::new(Mutex::new(vec![
                (
                    "plain".to_string(),
                    lv_json("plain", "-wi-a-----", "public", &["team=a"]),
                ),
                (
                    "adopted".to_string(),
                    lv_json("adopted", "-wi-a-----", "public", &[ADOPT]),
                ),
                (
                    "deletable".to_string(),
                    lv_json("deletable", "-wi-a-----", "public", &[ADOPT, DELETE]),
                ),
                (
                    "pool".to_string(),
                    lv_json("pool", "twi-a-tz--", "private,thin,pool", &[ADOPT, DELETE]),
                ),
                (
                    "cow".to_string(),
                    lv_json(
                        "cow",
                        "swi-a-s---",
                        "public,snapshot,thicksnapshot",
                        &[ADOPT],
                    ),
                ),
                (
                    "csi-ours".to_string(),
                    lv_json(
                        "csi-ours",
                        "-wi-a-----",
                        "public",
                        &[
                            "vglet.owner=lvm.vglet.io",
                            "vglet.name=pvc-1",
                            "vglet.size=67108864",
                            "vglet.fs=ext4",
                        ],
                    ),
                ),
            ]));
            let state = lvs.clone();
            let runner = FakeRunner::with(move |c| {
                let args = c.arg_strings();
                match args.first().map(String::as_str) {
                    Some("version") => Reply::ok("  LVM version:     2.03.16(2) (2022-05-18)\n"),
                    Some("fullreport") => {
                        let lvs: Vec<String> =
                            state.lock().unwrap().iter().map(|l| l.1.clone()).collect();
                        Reply::ok(format!(
                            r#"{{"report":[{{"vg":[{{"vg_name":"vg0","vg_size":"1073741824","vg_free":"536870912","vg_extent_size":"4194304","vg_lock_type":""}}],"pv":[],"lv":[{}]}}]}}"#,
                            lvs.join(",")
                        ))
                    }
                    Some("lvremove") => {
                        let target = args
                            .last()
                            .unwrap()
                            .strip_prefix("vg0/")
                            .unwrap()
                            .to_string();
                        // lvm's refusal of an LV open where the report did not show it.
                        if target == "csi-busy" {
                            return Reply::fail(5, "  Logical volume vg0/csi-busy in use.\n");
                        }
                        state.lock().unwrap().retain(|l| l.0 != target);
                        Reply::ok("")
                    }
                    Some("lvextend") => Reply::ok(""),
                    _ => Reply::fail(5, "unexpected"),
                }
            });
            Fake { lvs, runner }
        }

        async fn service(f: &Fake) -> ControllerService {
            #[derive(clap::Parser)]
            struct Args {
                #[command(flatten)]
                config: crate::Config,
            }
            let args = <Args as clap::Parser>::parse_from([
                "csi-driver",
                "--node-id=n1",
                "--volume-group=vg0",
                "--lvm=/bin/sh",
                "--restrict-scan=false",
                "--mode=controller",
            ]);
            let driver = crate::build_driver_with(args.config, Arc::new(f.runner.clone()))
                .await
                .unwrap();
            ControllerService {
                driver: Arc::new(driver),
            }
        }

        fn changes(f: &Fake) -> Vec<String> {
            f.runner
                .call_lines()
                .into_iter()
                .filter(|l| !l.contains(" fullreport") && !l.contains(" version"))
                .collect()
        }

        fn present(f: &Fake, name: &str) -> bool {
            f.lvs.lock().unwrap().iter().any(|l| l.0 == name)
        }

        async fn delete(c: &ControllerService, lv: &str) -> Result<(), Status> {
            c.delete_volume(Request::new(DeleteVolumeRequest {
                volume_id: format!("vg0/{lv}"),
                ..Default::default()
            }))
            .await
            .map(drop)
        }

        #[tokio::test]
        async fn delete_removes_only_with_the_opt_in() {
            let f = fake();
            let c = service(&f).await;
            for lv in ["plain", "adopted", "pool", "cow"] {
                let e = delete(&c, lv).await.unwrap_err();
                assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{lv}: {e:?}");
                assert!(present(&f, lv), "{lv}");
            }
            assert_eq!(changes(&f), Vec::<String>::new());
            let e = delete(&c, "plain").await.unwrap_err();
            assert!(
                e.message()
                    .contains("lvchange --addtag vglet.adopt=lvm.vglet.io vg0/plain"),
                "{e:?}"
            );
            let e = delete(&c, "adopted").await.unwrap_err();
            assert!(e.message().contains("Retain"), "{e:?}");
            assert!(e.message().contains(DELETE), "{e:?}");
            let e = delete(&c, "pool").await.unwrap_err();
            assert!(e.message().contains("cannot be a volume"), "{e:?}");

            delete(&c, "deletable").await.unwrap();
            assert!(!present(&f, "deletable"));
            assert_eq!(
                changes(&f),
                vec![format!(
                    r#"sh lvremove -y --select lv_tags="{DELETE}" vg0/deletable"#
                )]
            );
            // Idempotent: gone is gone.
            delete(&c, "deletable").await.unwrap();
        }

        #[tokio::test]
        async fn adopted_volumes_are_reported_listed_and_expanded_without_retagging() {
            let f = fake();
            let c = service(&f).await;
            let got = c
                .controller_get_volume(Request::new(ControllerGetVolumeRequest {
                    volume_id: "vg0/adopted".into(),
                }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(got.volume.unwrap().capacity_bytes, 64 << 20);
            let e = c
                .controller_get_volume(Request::new(ControllerGetVolumeRequest {
                    volume_id: "vg0/plain".into(),
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::FailedPrecondition);

            let listed: Vec<String> = c
                .list_volumes(Request::new(ListVolumesRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .entries
                .into_iter()
                .map(|e| e.volume.unwrap().volume_id)
                .collect();
            assert_eq!(listed, ["vg0/adopted", "vg0/csi-ours", "vg0/deletable"]);

            let r = c
                .controller_expand_volume(Request::new(ControllerExpandVolumeRequest {
                    volume_id: "vg0/adopted".into(),
                    capacity_range: Some(CapacityRange {
                        required_bytes: 128 << 20,
                        limit_bytes: 0,
                    }),
                    ..Default::default()
                }))
                .await
                .unwrap()
                .into_inner();
            assert!(r.node_expansion_required);
            // Grown, and no vglet tag written: it must not start to look created by us.
            assert_eq!(changes(&f), vec!["sh lvextend -L 134217728b vg0/adopted"]);
        }

        fn add_ours(f: &Fake, name: &str, attr: &str) {
            let tags = [
                "vglet.owner=lvm.vglet.io",
                "vglet.name=pvc-x",
                "vglet.size=67108864",
                "vglet.fs=block",
            ];
            f.lvs
                .lock()
                .unwrap()
                .push((name.to_string(), lv_json(name, attr, "public", &tags)));
        }

        #[tokio::test]
        async fn volumes_in_use_are_not_deleted() {
            let f = fake();
            add_ours(&f, "csi-open", "-wi-ao----");
            add_ours(&f, "csi-busy", "-wi-a-----");
            let c = service(&f).await;
            let e = delete(&c, "csi-open").await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
            assert!(
                e.message()
                    .contains("is in use: its device is open on node n1"),
                "{e:?}"
            );
            // Refused before lvm was asked to remove anything.
            assert_eq!(changes(&f), Vec::<String>::new());
            assert!(present(&f, "csi-open"));
            // lvm's own refusal is the same answer, never INTERNAL.
            let e = delete(&c, "csi-busy").await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
            assert!(e.message().contains("csi-busy in use"), "{e:?}");
            assert!(present(&f, "csi-busy"));
        }

        #[tokio::test]
        async fn never_issued_ids_get_the_spec_codes_and_run_nothing() {
            let f = fake();
            let c = service(&f).await;
            let before = f.runner.call_lines().len();
            for id in ["fake-vol-id-1", "../x", "vg0/a b", "vg0/csi-ours/x"] {
                let codes = [
                    c.delete_volume(Request::new(DeleteVolumeRequest {
                        volume_id: id.into(),
                        ..Default::default()
                    }))
                    .await
                    .map(drop),
                    c.validate_volume_capabilities(Request::new(
                        ValidateVolumeCapabilitiesRequest {
                            volume_id: id.into(),
                            volume_capabilities: vec![VolumeCapability::default()],
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(drop),
                    c.controller_get_volume(Request::new(ControllerGetVolumeRequest {
                        volume_id: id.into(),
                    }))
                    .await
                    .map(drop),
                    c.controller_expand_volume(Request::new(ControllerExpandVolumeRequest {
                        volume_id: id.into(),
                        capacity_range: Some(CapacityRange {
                            required_bytes: 1 << 30,
                            limit_bytes: 0,
                        }),
                        ..Default::default()
                    }))
                    .await
                    .map(drop),
                    c.delete_snapshot(Request::new(DeleteSnapshotRequest {
                        snapshot_id: id.into(),
                        ..Default::default()
                    }))
                    .await
                    .map(drop),
                ];
                let codes: Vec<tonic::Code> = codes
                    .iter()
                    .map(|r| r.as_ref().err().map_or(tonic::Code::Ok, |e| e.code()))
                    .collect();
                use tonic::Code::{NotFound, Ok};
                assert_eq!(codes, [Ok, NotFound, NotFound, NotFound, Ok], "{id}");
            }
            // An empty id is a missing required field.
            let e = c
                .delete_volume(Request::new(DeleteVolumeRequest::default()))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert_eq!(f.runner.call_lines().len(), before, "an lvm command ran");
        }

        #[tokio::test]
        async fn expansion_below_the_current_size_is_out_of_range() {
            let f = fake();
            let c = service(&f).await;
            let e = c
                .controller_expand_volume(Request::new(ControllerExpandVolumeRequest {
                    volume_id: "vg0/csi-ours".into(),
                    capacity_range: Some(CapacityRange {
                        required_bytes: 0,
                        limit_bytes: 32 << 20,
                    }),
                    ..Default::default()
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
            // A limit at the current size is met: OK with the size, nothing changed.
            let r = c
                .controller_expand_volume(Request::new(ControllerExpandVolumeRequest {
                    volume_id: "vg0/csi-ours".into(),
                    capacity_range: Some(CapacityRange {
                        required_bytes: 0,
                        limit_bytes: 64 << 20,
                    }),
                    ..Default::default()
                }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.capacity_bytes, 64 << 20);
            assert_eq!(changes(&f), Vec::<String>::new());
        }

        #[tokio::test]
        async fn adopted_volumes_are_no_snapshot_or_clone_source() {
            let f = fake();
            let c = service(&f).await;
            let e = c
                .create_snapshot(Request::new(CreateSnapshotRequest {
                    source_volume_id: "vg0/adopted".into(),
                    name: "s1".into(),
                    ..Default::default()
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
            assert!(e.message().contains("static volume"), "{e:?}");
            assert_eq!(changes(&f), Vec::<String>::new());
        }
    }

    /// DeleteVolume against a fake lvm that answers a read limited to some LVs (`-S` of the
    /// `lv` subreport) with only those LVs and the LVs whose origin they are, as lvm does:
    /// the read it runs, the lvm commands per delete, and each of its answers.
    mod delete_reads {
        use std::sync::Mutex;

        use vglet_runner::{FakeRunner, Reply};

        use super::*;

        const OURS: &[&str] = &[
            "vglet.owner=lvm.vglet.io",
            "vglet.name=pvc-1",
            "vglet.size=67108864",
            "vglet.fs=ext4",
        ];

        #[derive(Clone)]
        struct FakeLv {
            name: String,
            attr: &'static str,
            origin: &'static str,
            segtype: &'static str,
            tags: Vec<String>,
        }

        fn ours(name: &str) -> FakeLv {
            FakeLv {
                name: name.into(),
                attr: "-wi-a-----",
                origin: "",
                segtype: "linear",
                tags: OURS.iter().map(|t| t.to_string()).collect(),
            }
        }

        fn row(l: &FakeLv) -> String {
            format!(
                r#"{{"vg_name":"vg0","lv_name":"{n}","lv_uuid":"U-{n}","lv_attr":"{a}","lv_size":"67108864","lv_active":"active","lv_tags":"{t}","lv_path":"/dev/vg0/{n}","lv_dm_path":"/dev/mapper/vg0-{n}","lv_layout":"linear","lv_role":"public","pool_lv":"","origin":"{o}","data_percent":""}}"#,
                n = l.name,
                a = l.attr,
                t = l.tags.join(","),
                o = l.origin
            )
        }

        /// The LVs a selection `lv_name="a" || origin="a" || ...` names.
        fn selected(selection: &str) -> Vec<String> {
            selection
                .split(" || ")
                .filter_map(|c| c.strip_prefix("lv_name=\"")?.strip_suffix('"'))
                .map(String::from)
                .collect()
        }

        struct Fake {
            lvs: Arc<Mutex<Vec<FakeLv>>>,
            runner: FakeRunner,
        }

        fn fake(lvs: Vec<FakeLv>) -> Fake {
            let lvs = Arc::new(Mutex::new(lvs));
            let state = lvs.clone();
            let runner = FakeRunner::with(move |c| {
                let args = c.arg_strings();
                match args.first().map(String::as_str) {
                    Some("version") => Reply::ok("  LVM version:     2.03.16(2) (2022-05-18)\n"),
                    Some("fullreport") => {
                        // The lv subreport's selection, when there is one.
                        let names = args
                            .windows(6)
                            .find(|w| w[0] == "--configreport" && w[1] == "lv" && w[4] == "-S")
                            .map(|w| selected(&w[5]));
                        let shown: Vec<FakeLv> = state
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|l| {
                                names.as_ref().is_none_or(|n| {
                                    n.contains(&l.name) || n.iter().any(|n| n == l.origin)
                                })
                            })
                            .cloned()
                            .collect();
                        let lvs: Vec<String> = shown.iter().map(row).collect();
                        let segs: Vec<String> = shown
                            .iter()
                            .map(|l| {
                                format!(
                                    r#"{{"lv_uuid":"U-{}","seg_start":"0","segtype":"{}"}}"#,
                                    l.name, l.segtype
                                )
                            })
                            .collect();
                        Reply::ok(format!(
                            r#"{{"report":[{{"vg":[{{"vg_name":"vg0","vg_size":"1073741824","vg_free":"536870912","vg_extent_size":"4194304","vg_lock_type":"","vg_tags":"vglet.vg=1"}}],"pv":[{{"pv_name":"/dev/vda","vg_name":"vg0","pv_size":"1073741824","pv_free":"536870912"}}],"lv":[{}],"pvseg":[],"seg":[{}]}}]}}"#,
                            lvs.join(","),
                            segs.join(",")
                        ))
                    }
                    Some("lvremove") => {
                        let target = args.last().unwrap().strip_prefix("vg0/").unwrap();
                        state.lock().unwrap().retain(|l| l.name != target);
                        Reply::ok("")
                    }
                    _ => Reply::fail(5, "unexpected"),
                }
            });
            Fake { lvs, runner }
        }

        async fn service(f: &Fake) -> (tempfile::TempDir, ControllerService) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = crate::test_config(dir.path(), &["--mode=controller".to_string()]);
            let driver = crate::build_driver_with(cfg, Arc::new(f.runner.clone()))
                .await
                .unwrap();
            (
                dir,
                ControllerService {
                    driver: Arc::new(driver),
                },
            )
        }

        /// lvm commands since call `before`, without `version`.
        fn lvm_since(f: &Fake, before: usize) -> Vec<String> {
            f.runner.call_lines()[before..]
                .iter()
                .filter(|l| !l.contains(" version"))
                .cloned()
                .collect()
        }

        fn kinds(lvm: &[String]) -> Vec<&str> {
            lvm.iter()
                .map(|l| l.split_whitespace().nth(1).unwrap_or_default())
                .collect()
        }

        fn present(f: &Fake, name: &str) -> bool {
            f.lvs.lock().unwrap().iter().any(|l| l.name == name)
        }

        async fn delete(c: &ControllerService, lv: &str) -> Result<(), Status> {
            c.delete_volume(Request::new(DeleteVolumeRequest {
                volume_id: format!("vg0/{lv}"),
                ..Default::default()
            }))
            .await
            .map(drop)
        }

        /// Runs a delete of `lv`: its outcome and the lvm commands it ran.
        async fn deleted(
            f: &Fake,
            c: &ControllerService,
            lv: &str,
        ) -> (Result<(), Status>, Vec<String>) {
            let before = f.runner.call_lines().len();
            let r = delete(c, lv).await;
            (r, lvm_since(f, before))
        }

        fn scoped_read(lv: &str) -> String {
            format!(r#"-S lv_name="{lv}" || origin="{lv}""#)
        }

        #[tokio::test]
        async fn a_delete_is_one_read_of_the_lv_and_its_snapshots_then_lvremove() {
            let mut lvs: Vec<FakeLv> = (0..50).map(|i| ours(&format!("csi-other-{i}"))).collect();
            lvs.push(ours("csi-a"));
            let f = fake(lvs);
            let (_dir, c) = service(&f).await;
            let (r, lvm) = deleted(&f, &c, "csi-a").await;
            r.unwrap();
            assert_eq!(kinds(&lvm), ["fullreport", "lvremove"], "{lvm:#?}");
            assert!(lvm[0].contains(&scoped_read("csi-a")), "{lvm:#?}");
            assert!(lvm[0].ends_with(" vg0"), "{lvm:#?}");
            assert_eq!(lvm[1], "sh lvremove -y vg0/csi-a");
            assert!(!present(&f, "csi-a"));
            assert!(present(&f, "csi-other-0"));
            // Gone is gone: one read, nothing removed.
            let (r, lvm) = deleted(&f, &c, "csi-a").await;
            r.unwrap();
            assert_eq!(kinds(&lvm), ["fullreport"], "{lvm:#?}");
        }

        #[tokio::test]
        async fn thick_snapshots_block_the_delete_and_thin_ones_do_not() {
            let snap = FakeLv {
                name: "snap-1".into(),
                attr: "swi-a-s---",
                origin: "csi-thick",
                ..ours("snap-1")
            };
            let thin_snap = FakeLv {
                name: "snap-2".into(),
                attr: "Vwi-a-tz--",
                origin: "csi-thin",
                segtype: "thin",
                ..ours("snap-2")
            };
            let f = fake(vec![ours("csi-thick"), snap, ours("csi-thin"), thin_snap]);
            let (_dir, c) = service(&f).await;
            let (r, lvm) = deleted(&f, &c, "csi-thick").await;
            let e = r.unwrap_err();
            assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
            assert!(
                e.message().contains("copy-on-write snapshots (vg0/snap-1)"),
                "{e:?}"
            );
            assert_eq!(kinds(&lvm), ["fullreport"], "{lvm:#?}");
            assert!(present(&f, "csi-thick") && present(&f, "snap-1"));
            let (r, lvm) = deleted(&f, &c, "csi-thin").await;
            r.unwrap();
            assert_eq!(kinds(&lvm), ["fullreport", "lvremove"], "{lvm:#?}");
            assert!(lvm[0].contains(&scoped_read("csi-thin")), "{lvm:#?}");
        }

        #[tokio::test]
        async fn lvs_not_ours_or_in_use_are_refused_and_never_issued_ids_are_ok() {
            let foreign = FakeLv {
                tags: vec!["team=a".into()],
                ..ours("csi-foreign")
            };
            let open = FakeLv {
                attr: "-wi-ao----",
                ..ours("csi-open")
            };
            let f = fake(vec![foreign, open]);
            let (_dir, c) = service(&f).await;
            for lv in ["csi-foreign", "csi-open"] {
                let (r, lvm) = deleted(&f, &c, lv).await;
                let e = r.unwrap_err();
                assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{lv}: {e:?}");
                assert_eq!(kinds(&lvm), ["fullreport"], "{lv}: {lvm:#?}");
                assert!(lvm[0].contains(&scoped_read(lv)), "{lvm:#?}");
                assert!(present(&f, lv), "{lv}");
            }
            let (r, _) = deleted(&f, &c, "csi-open").await;
            assert!(
                r.unwrap_err()
                    .message()
                    .contains("is in use: its device is open on node n1")
            );
            // An id of our form that names no LV: the spec's OK, after one read.
            let (r, lvm) = deleted(&f, &c, "csi-never").await;
            r.unwrap();
            assert_eq!(kinds(&lvm), ["fullreport"], "{lvm:#?}");
        }
    }
}
