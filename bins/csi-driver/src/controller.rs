//! CSI Controller service: LV lifecycle. LVM tags are the source of truth; no state is kept
//! in the process, so any replica (or a restarted one) answers the same.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use vglet_csi_proto::v1::controller_server::Controller;
use vglet_csi_proto::v1::*;
use vglet_lvm::tags::{PmemMode, VgPmem, VolumeTags};
use vglet_lvm::{LayoutCreate, LvCreate, LvType, Report, SnapshotCreate, SnapshotKind, Vg};

use crate::capability::{self, VgKind};
use crate::capacity::Range;
use crate::clone::{self, Source};
use crate::driver::{Driver, OwnedVolume};
use crate::layout;
use crate::params::{self, Params};
use crate::pmem;
use crate::reconcile::{CREATING_TAG, is_unfinished};
use crate::snapshot;
use crate::status::{invalid, lvm_status};
use crate::volume_id::{self, VolumeId};
use crate::vouched::Vouched;

/// CSI names are free-form; this bound keeps the encoded tag far below LVM's 1024 bytes.
const MAX_NAME_LEN: usize = 256;
/// Creation markers dropped in one commit while more creates of the VG are queued: fewer
/// commits in a burst, at most this many lvcreates of extra latency for the first caller.
const MARKER_BATCH: usize = 8;

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

/// How CreateVolume makes the new LV.
#[derive(Debug, Clone, Copy)]
enum How<'a> {
    /// An empty LV of this layout.
    Layout(&'a vglet_lvm::Layout),
    /// A writable thin snapshot of this thin LV (instant restore or clone).
    ThinSnapshotOf { origin: &'a str, origin_size: u64 },
    /// An LV of this layout filled with the source's data, verified.
    Copy {
        layout: &'a vglet_lvm::Layout,
        source: &'a Source,
    },
}

/// A CreateVolumeRequest, checked.
#[derive(Clone, Copy)]
struct Ask<'a> {
    req: &'a CreateVolumeRequest,
    params: &'a Params,
    range: &'a Range,
    lv_name: &'a str,
    source: Option<&'a Source>,
}

/// How old the last read of the VG may be for CreateVolume to skip its own (see
/// `ControllerService::optimistic_report`). The read's free space may be out of date (lvm
/// re-checks it); the VG's kind and extent size change only by an operator's hand, and not
/// within this bound unnoticed for long.
const OPTIMISTIC_VG_AGE: Duration = Duration::from_secs(30);

/// What the node service needs from the StorageClass, carried in the volume context.
fn volume_context(params: &Params) -> HashMap<String, String> {
    let mut c = HashMap::new();
    if !params.mkfs_options.is_empty() {
        c.insert(
            params::CONTEXT_MKFS_OPTIONS.to_string(),
            params.mkfs_options.join(" "),
        );
    }
    c
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

    /// One `lvm fullreport` of every served VG: what CreateVolume decides on (an existing LV
    /// of the name, the VG, its free space, the layout's fit). A served VG that is missing
    /// is simply absent from it.
    async fn served_report(&self) -> Result<Report, Status> {
        let served = &self.driver.cfg.volume_groups;
        let one = match served.as_slice() {
            [vg] => Some(vg.as_str()),
            _ => None,
        };
        match self.driver.lvm.report(one).await {
            Err(vglet_lvm::LvmError::VgNotFound(_)) => Ok(Report::default()),
            r => r.map_err(|e| lvm_status("reading the served volume groups", e)),
        }
    }

    /// A served VG from `report`, NOT_FOUND-like as [`Driver::vg`] when it is missing.
    fn vg_in(report: &Report, name: &str) -> Result<Vg, Status> {
        report.vg(name).cloned().ok_or_else(|| {
            lvm_status(
                &format!("volume group {name}"),
                vglet_lvm::LvmError::VgNotFound(name.to_string()),
            )
        })
    }

    /// Finds an existing LV for this CSI name in any served VG (a retry may land after a
    /// different VG was chosen the first time).
    fn find_by_name(&self, report: &Report, lv_name: &str) -> Result<Option<OwnedVolume>, Status> {
        for vg in &self.driver.cfg.volume_groups {
            let id = VolumeId::new(vg.clone(), lv_name);
            if let Some(lv) = report.lvs.iter().find(|l| l.vg == *vg && l.name == lv_name) {
                let tags = self.driver.ownership(&id, lv).map_err(|_| {
                    Status::already_exists(format!(
                        "logical volume {id} exists and is not a volume of {}",
                        self.driver.cfg.driver_name
                    ))
                })?;
                return Ok(Some(OwnedVolume {
                    id,
                    lv: lv.clone(),
                    tags,
                    adopted: None,
                }));
            }
        }
        Ok(None)
    }

    /// FAILED_PRECONDITION while the volume has thick snapshots (see
    /// [`snapshot::thick_snapshots_of`] for why).
    pub(crate) fn refuse_with_thick_snapshots(
        report: &Report,
        id: &VolumeId,
        what: &str,
    ) -> Result<(), Status> {
        let snaps: Vec<String> = snapshot::thick_snapshots_of(report, &id.vg, &id.lv)
            .iter()
            .map(|l| format!("{}/{}", l.vg, l.name))
            .collect();
        if snaps.is_empty() {
            return Ok(());
        }
        Err(Status::failed_precondition(format!(
            "volume {id} has copy-on-write snapshots ({}); it cannot be {what} until they are deleted",
            snaps.join(", ")
        )))
    }

    /// FAILED_PRECONDITION while the volume is in use on this node (see [`crate::in_use`]):
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
        match crate::in_use::holder(&v.lv, record.as_ref(), &self.driver.cfg.node_id) {
            Some(why) => Err(Status::failed_precondition(format!(
                "volume {} is in use: {why}; not removed",
                v.id
            ))),
            None => Ok(()),
        }
    }

    /// [`Self::choose_vg`] with the StorageClass's other constraints: a VG tag
    /// (`volumeGroupTag`) or, for thin volumes without `volumeGroup`, the VG that holds the
    /// named pool.
    fn choose_vg_for(
        &self,
        report: &Report,
        params: &Params,
        req: Option<&TopologyRequirement>,
    ) -> Result<Vg, Status> {
        let pool = params
            .layout
            .thin_pool
            .as_deref()
            .filter(|_| params.layout.lv_type == LvType::Thin);
        if params.volume_group.is_some() || (params.volume_group_tag.is_none() && pool.is_none()) {
            return self.choose_vg(
                report,
                params.volume_group.as_deref(),
                params.pmem_mode,
                req,
            );
        }
        let mut best: Option<Vg> = None;
        for name in &self.driver.cfg.volume_groups {
            let Some(vg) = report.vg(name).cloned() else {
                continue;
            };
            if params
                .volume_group_tag
                .as_ref()
                .is_some_and(|t| !vg.tags.contains(t))
                || !pmem::admits(&vg.tags, params.pmem_mode)
                || !self.topology_allows(req, &vg)
            {
                continue;
            }
            if let Some(pool) = pool
                && !report.lvs.iter().any(|l| l.vg == *name && l.name == pool)
            {
                continue;
            }
            if best.as_ref().is_none_or(|b| vg.free > b.free) {
                best = Some(vg);
            }
        }
        best.ok_or_else(|| {
            let mut want = Vec::new();
            if let Some(t) = &params.volume_group_tag {
                want.push(format!("carries tag {t:?}"));
            }
            if let Some(p) = pool {
                want.push(format!("holds thin pool {p:?}"));
            }
            match params.pmem_mode {
                Some(m) => want.push(format!("is {m} persistent memory")),
                None => want.push("is not sector-mode persistent memory".to_string()),
            }
            invalid(
                "parameters",
                format!(
                    "no served volume group reachable from the requested topology {} (served: {})",
                    want.join(" and "),
                    self.driver.cfg.volume_groups.join(", ")
                ),
            )
        })
    }

    /// The VG a new volume goes to: the one named by the parameters, else, among the served
    /// VGs that the topology requirement admits, the one with the most free space.
    /// `pmem`: see [`pmem::admits`]; a VG named by the parameters must agree with it.
    fn choose_vg(
        &self,
        report: &Report,
        wanted: Option<&str>,
        pmem: Option<PmemMode>,
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
            let vg = Self::vg_in(report, name)?;
            pmem::check_named(&vg, pmem)?;
            if !self.topology_allows(req, &vg) {
                return Err(unreachable(name));
            }
            return Ok(vg);
        }
        let mut best: Option<Vg> = None;
        let mut last_err = None;
        // VGs read but not of the mode asked: when nothing else is left, the error says so.
        let mut other_mode = Vec::new();
        let mut mode_found = false;
        for name in &self.driver.cfg.volume_groups {
            match Self::vg_in(report, name) {
                Ok(vg) if !pmem::admits(&vg.tags, pmem) => other_mode.push(vg),
                Ok(vg) if !self.topology_allows(req, &vg) => {
                    mode_found = true;
                    last_err = Some(unreachable(name))
                }
                Ok(vg) => {
                    mode_found = true;
                    if best.as_ref().is_none_or(|b| vg.free > b.free) {
                        best = Some(vg);
                    }
                }
                Err(e) => last_err = Some(e),
            }
        }
        best.ok_or_else(|| {
            if !mode_found && !other_mode.is_empty() {
                return pmem::none_of_mode(pmem, &other_mode);
            }
            last_err.unwrap_or_else(|| Status::failed_precondition("no volume group is served"))
        })
    }

    /// Creates the LV. On a shared VG the LV is created active (exclusively, so lvm zeroes
    /// its start and wipes old signatures) and then released, so that any node can take it;
    /// if the release fails the LV is removed again, so a retry starts clean.
    ///
    /// The LV carries [`CREATING_TAG`] until every step is done: a crash in between (the
    /// lvcreate killed after its metadata commit but before zeroing, or before the release,
    /// or in the middle of copying a content source) leaves an LV that says it is
    /// unfinished, which the next CreateVolume of that name or the start-up reconcile
    /// removes. No CO was ever told about such an LV.
    async fn create_lv(&self, vg: &Vg, mut create: LvCreate, how: How<'_>) -> Result<(), Status> {
        let id = VolumeId::new(vg.name.clone(), create.name.clone());
        create.tags.push(CREATING_TAG.to_string());
        {
            // Held for the metadata change only: a copy into the new LV can take minutes,
            // and takes this lock itself for its temporary snapshot.
            let _w = self.driver.vg_locks.lock(&vg.name).await;
            let created = match how {
                How::Layout(layout) | How::Copy { layout, .. } => {
                    self.driver
                        .lvm
                        .create_lv_layout(&LayoutCreate {
                            lv: create.clone(),
                            layout: layout.clone(),
                        })
                        .await
                }
                How::ThinSnapshotOf { origin, .. } => {
                    self.driver
                        .lvm
                        .create_snapshot(&SnapshotCreate {
                            vg: vg.name.clone(),
                            origin: origin.to_string(),
                            name: create.name.clone(),
                            tags: create.tags.clone(),
                            kind: SnapshotKind::Thin { activate: true },
                        })
                        .await
                }
            };
            created.map_err(|e| lvm_status(&format!("creating {id}"), e))?;
        }
        let finished = async {
            match how {
                How::Copy { layout, source } => {
                    let lv = self
                        .driver
                        .lvm
                        .lv(&id.vg, &id.lv)
                        .await
                        .map_err(|e| lvm_status(&format!("reading back {id}"), e))?
                        .ok_or_else(|| Status::internal(format!("{id} vanished")))?;
                    clone::fill(&self.driver, source, &lv, layout.lv_type == LvType::Thin).await?;
                }
                How::ThinSnapshotOf { origin_size, .. } if create.size > origin_size => {
                    self.driver
                        .lvm
                        .extend_lv(&id.vg, &id.lv, create.size)
                        .await
                        .map_err(|e| {
                            lvm_status(&format!("growing {id} to the requested size"), e)
                        })?;
                }
                _ => {}
            }
            if Driver::vg_kind(vg) == VgKind::Shared {
                self.driver
                    .lvm
                    .deactivate_lv(&id.vg, &id.lv)
                    .await
                    .map_err(|e| lvm_status(&format!("releasing the new LV {id}"), e))?;
            }
            self.driver
                .lvm
                .del_lv_tag_batched(&id.vg, &id.lv, CREATING_TAG, |queued| {
                    // In a burst the creates queue on the VG lock; a marker commit of its
                    // own after each would compete with every lvcreate for lvm's VG lock.
                    queued < MARKER_BATCH && self.driver.vg_locks.busy(&id.vg)
                })
                .await
                .map_err(|e| lvm_status(&format!("marking {id} complete"), e))
        };
        if let Err(status) = finished.await {
            tracing::error!(volume = %id, error = %status.message(), "cannot finish the new LV; removing it");
            if let Err(e2) = self
                .driver
                .lvm
                .remove_lv_if_tagged(&id.vg, &id.lv, CREATING_TAG)
                .await
            {
                tracing::error!(volume = %id, error = %e2, "removing the unfinished LV failed; the next attempt or a restart retries");
            }
            return Err(status);
        }
        Ok(())
    }

    /// A report to create on without reading lvm, where lvm itself re-checks everything it
    /// could get wrong: one served VG (lvm keeps LV names unique per VG, so an LV of this
    /// name from an earlier attempt makes lvcreate fail), node-local, a linear volume
    /// without content source, and the VG as a read at most [`OPTIMISTIC_VG_AGE`] old showed
    /// it. The report holds no LVs: an existing LV of the name or a lack of space shows up
    /// as lvcreate's refusal, after which the fresh read decides (see `create_volume`).
    fn optimistic_report(&self, ask: &Ask<'_>) -> Option<Report> {
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
            .created
            .get(&VolumeId::new(vg.clone(), ask.lv_name))
            .is_some()
        {
            return None;
        }
        let (vg, pvs) = self.driver.lvm.recent_vg(vg, OPTIMISTIC_VG_AGE)?;
        (Driver::vg_kind(&vg) == VgKind::Local).then(|| Report {
            vgs: vec![vg],
            pvs,
            lvs: Vec::new(),
        })
    }

    /// CreateVolume decided on `report`: a fresh read, or the optimistic one of
    /// [`Self::optimistic_report`].
    async fn create_from(
        &self,
        ask: &Ask<'_>,
        mut report: Report,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let Ask {
            req,
            params,
            range,
            lv_name,
            source,
        } = *ask;
        let lv_name = lv_name.to_string();
        let range = *range;
        let source: Option<Source> = source.cloned();
        let existing = match self.find_by_name(&report, &lv_name)? {
            // Left by an interrupted attempt (this process holds the name now): start over.
            Some(v) if is_unfinished(&v.lv) => {
                crate::reconcile::remove_unfinished(&self.driver, &v.id).await?;
                report = self.served_report().await?;
                None
            }
            other => other,
        };
        let vg = match (&existing, &source) {
            (Some(v), _) => Self::vg_in(&report, &v.id.vg)?,
            // Snapshots and clones live beside their source: LVM cannot snapshot across VGs.
            (None, Some(s)) => {
                let name = &s.id().vg;
                if params.volume_group.as_deref().is_some_and(|g| g != name) {
                    return Err(invalid(
                        "parameters.volumeGroup",
                        format!(
                            "the content source {} is in volume group {name}; a restored or cloned volume is created beside its source",
                            s.id()
                        ),
                    ));
                }
                let vg = Self::vg_in(&report, name)?;
                pmem::check_named(&vg, params.pmem_mode)?;
                if !self.topology_allows(req.accessibility_requirements.as_ref(), &vg) {
                    return Err(Status::resource_exhausted(format!(
                        "accessibility_requirements: no requisite topology can reach volume group {name}, where the content source is"
                    )));
                }
                vg
            }
            (None, None) => {
                self.choose_vg_for(&report, params, req.accessibility_requirements.as_ref())?
            }
        };
        let kind = Driver::vg_kind(&vg);
        let caps = capability::validate_all("volume_capabilities", &req.volume_capabilities, kind)?;
        let fs = caps
            .first()
            .and_then(|c| c.fs_type().map(str::to_string))
            .unwrap_or_else(|| "block".to_string());
        if let Some(want) = &params.fs_type
            && fs != "block"
            && *want != fs
        {
            return Err(invalid(
                "parameters.fsType",
                format!(
                    "{want:?} contradicts the volume capability's fs type {fs:?} (set csi.storage.k8s.io/fstype in the StorageClass; kubelet mounts with that one)"
                ),
            ));
        }
        if let Some(Source::Volume(v)) = &source
            && v.tags.fs != fs
        {
            return Err(invalid(
                "volume_content_source",
                format!(
                    "volume {} is {:?}, the request asks for {fs:?}",
                    v.id, v.tags.fs
                ),
            ));
        }
        // The node decides DAX from the VG's tags; a mount flag that contradicts it would
        // only fail at NodeStage, after the volume exists.
        let fsdax = VgPmem::from_tags(&vg.tags).is_fsdax();
        for (i, c) in caps.iter().enumerate() {
            if let capability::Access::Mount { mount_flags, .. } = &c.access {
                vglet_mount::check_dax_flags(mount_flags, fsdax).map_err(|e| {
                    invalid(&format!("volume_capabilities[{i}].mount.mount_flags"), e)
                })?;
            }
        }
        if fsdax && fs != "block" {
            vglet_mount::fsdax_mkfs_options(&fs, &params.mkfs_options, vglet_mount::page_size())
                .map_err(|e| invalid(&format!("parameters.{}", params::MKFS_OPTIONS), e))?;
        }
        let context = volume_context(params);
        // Only where staging needs nothing else from LVM (see crate::vouched).
        let vouch = kind == VgKind::Local && !fsdax;
        let content_source = source.as_ref().map(Source::content_source);

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
            } else if !pmem::agrees(&vg.tags, params.pmem_mode) {
                Err(Status::already_exists(format!(
                    "volume {} exists in volume group {}, not of parameters.pmemMode",
                    v.id,
                    pmem::describe(&vg)
                )))
            } else {
                tracing::info!(volume = %v.id, "volume already exists");
                if vouch && !v.lv.uuid.is_empty() {
                    self.driver.created.remember(
                        &v.id,
                        Vouched {
                            lv_uuid: v.lv.uuid.clone(),
                            created_as: v.tags.fs.clone(),
                        },
                    );
                }
                let mut m = self.volume_message(&v, kind);
                m.volume_context = context;
                m.content_source = content_source;
                Ok(Response::new(CreateVolumeResponse { volume: Some(m) }))
            };
        }

        let layout = &params.layout;
        if kind == VgKind::Shared {
            if layout.lv_type == LvType::Thin {
                return Err(invalid(
                    "parameters.type",
                    format!(
                        "thin volumes need a node-local volume group; {} is shared",
                        vg.name
                    ),
                ));
            }
            if source.is_some() {
                return Err(Status::failed_precondition(format!(
                    "volume group {} is shared; snapshots and clones are supported on node-local volume groups only",
                    vg.name
                )));
            }
        }
        let mut size = layout.round_size(range.lv_size(vg.extent_size)?, vg.extent_size);
        if let Some(s) = &source {
            size = size.max(layout.round_size(s.size(), vg.extent_size));
        }
        if range.limit > 0 && size > range.limit {
            return Err(Status::out_of_range(format!(
                "capacity_range: the volume needs {size} bytes ({}{}), above limit_bytes {}",
                if source.is_some() {
                    "at least the content source's size, "
                } else {
                    ""
                },
                format_args!("whole extents per stripe of {}", layout::describe(layout)),
                range.limit
            )));
        }
        let instant = source.as_ref().is_some_and(|s| {
            s.is_thin()
                && layout.lv_type == LvType::Thin
                && layout.thin_pool.as_deref() == Some(s.lv().pool_lv.as_str())
        });
        if layout.lv_type == LvType::Thin {
            let pool = layout.thin_pool.as_deref().unwrap_or_default();
            let usage = layout::pool_usage(&report, &vg.name, pool)?;
            usage.warn_if_full(&vg.name, params.thin_pool_usage_warning);
            let promisable = usage.promisable(params.overprovision_ratio);
            if size > promisable {
                return Err(Status::resource_exhausted(format!(
                    "thin pool {}/{pool} can promise {promisable} more bytes (size {}, {} bytes promised, {:.1}% written, overprovisionRatio {}), {size} bytes requested",
                    vg.name,
                    usage.size,
                    usage.provisioned,
                    usage.data_percent,
                    params.overprovision_ratio
                )));
            }
        } else {
            if size > vg.size {
                return Err(Status::out_of_range(format!(
                    "{size} bytes is larger than volume group {} ({} bytes)",
                    vg.name, vg.size
                )));
            }
            layout::check_fits(&report, &vg, layout, size)?;
        }
        let tags = VolumeTags {
            owner: self.driver.cfg.driver_name.clone(),
            name: req.name.clone(),
            size: range.required.max(size),
            fs: fs.clone(),
        };
        let id = VolumeId::new(vg.name.clone(), lv_name.clone());
        let how = match &source {
            Some(s) if instant => How::ThinSnapshotOf {
                origin: &s.id().lv,
                origin_size: s.lv().size,
            },
            Some(s) => How::Copy { layout, source: s },
            None => How::Layout(layout),
        };
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
            how,
        )
        .await?;
        let lv = if layout.lv_type == LvType::Linear && source.is_none() {
            // lvcreate allocates exactly `size` (already whole extents) for a linear LV: no
            // second fullreport on the hot path just to learn it.
            vglet_lvm::Lv {
                vg: vg.name.clone(),
                name: lv_name.clone(),
                size,
                tags: tags.to_tags(),
                ..Default::default()
            }
        } else {
            self.driver
                .lvm
                .lv(&vg.name, &lv_name)
                .await
                .map_err(|e| lvm_status(&format!("reading back {id}"), e))?
                .ok_or_else(|| Status::internal(format!("{id} vanished right after creation")))?
        };
        tracing::info!(volume = %id, bytes = lv.size, layout = %layout.lv_type, instant, from = source.as_ref().map(|s| s.id().to_string()).unwrap_or_default(), "volume created");
        if vouch {
            // A linear LV was not read back: device-mapper tells its uuid, as it is active
            // here. Not active here: nothing is remembered and NodeStageVolume reads lvm.
            let lv_uuid = match lv.uuid.is_empty() {
                false => Some(lv.uuid.clone()),
                true => crate::vouched::active_lv_uuid(&id, &vg.uuid),
            };
            if let Some(lv_uuid) = lv_uuid {
                self.driver.created.remember(
                    &id,
                    Vouched {
                        lv_uuid,
                        created_as: fs.clone(),
                    },
                );
            }
        }
        let v = OwnedVolume {
            id,
            lv,
            tags,
            adopted: None,
        };
        let mut m = self.volume_message(&v, kind);
        m.volume_context = context;
        m.content_source = content_source;
        Ok(Response::new(CreateVolumeResponse { volume: Some(m) }))
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        req: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let req = req.into_inner();
        crate::limits::check(&req)?;
        validate_name(&req.name)?;
        let span = tracing::info_span!("CreateVolume", name = %req.name);
        let _e = span.enter();
        let params = params::parse("parameters", &req.parameters)?;
        let range = Range::parse("capacity_range", req.capacity_range.as_ref())?;
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
        let source = match &req.volume_content_source {
            Some(cs) => Some(clone::resolve(&self.driver, cs).await?),
            None => None,
        };
        let ask = Ask {
            req: &req,
            params: &params,
            range: &range,
            lv_name: &lv_name,
            source: source.as_ref(),
        };
        if let Some(report) = self.optimistic_report(&ask) {
            match self.create_from(&ask, report).await {
                Ok(created) => return Ok(created),
                // The attempt created nothing, or removed what it created: the read decides
                // as if it had not been made (the name exists, the space is gone, ...).
                Err(s) => {
                    tracing::debug!(code = ?s.code(), error = %s.message(), "optimistic create did not succeed; reading lvm")
                }
            }
        }
        let report = self.served_report().await?;
        self.create_from(&ask, report).await
    }

    async fn delete_volume(
        &self,
        req: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let req = req.into_inner();
        crate::limits::check(&req)?;
        let Some(id) = volume_id::to_delete("volume_id", &req.volume_id)? else {
            return Ok(Response::new(DeleteVolumeResponse {}));
        };
        let span = tracing::info_span!("DeleteVolume", volume_id = %id);
        let _e = span.enter();
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
        self.driver.created.forget(&id);
        let (v, vg, report) = match self.driver.volume_in_vg(&id).await {
            Err(s) if s.code() == tonic::Code::NotFound => {
                tracing::info!("volume already gone");
                return Ok(Response::new(DeleteVolumeResponse {}));
            }
            Err(s) => return Err(s),
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
        Self::refuse_with_thick_snapshots(&report, &id, "deleted")?;
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
                    Some(host_id) => crate::in_use::lock_holder(host_id, &vg.tags),
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
        crate::limits::check(&req)?;
        let id = volume_id::lookup("volume_id", "volume", &req.volume_id)?;
        if req.volume_capabilities.is_empty() {
            return Err(invalid("volume_capabilities", "at least one is required"));
        }
        let (v, vg, _) = self.driver.volume_in_vg(&id).await?;
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
            // A static volume's content is checked where the device is: NodeStageVolume.
            match v.fs() {
                None => Ok(()),
                Some(fs) if fs == want => Ok(()),
                Some(fs) => Err(Status::invalid_argument(format!(
                    "volume is {fs:?}, capabilities ask for {want:?}"
                ))),
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
            // An unfinished LV is not a volume: no CO was told of it.
            for lv in report.lvs_in(vg).filter(|lv| !is_unfinished(lv)) {
                // Adopted LVs are listed too: the CO has a PV for each, and their health is
                // reported like any other volume's.
                let id = VolumeId::new(vg.clone(), lv.name.clone());
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
        crate::limits::check(&req)?;
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
        // (largest volume, extent size) per reachable VG that can hold this layout.
        let mut fits: Vec<(u64, u64)> = Vec::new();
        let layout = &params.layout;
        for name in &names {
            // A missing VG has no capacity; Probe reports it.
            let Ok(vg) = self.driver.vg(name).await else {
                continue;
            };
            if params
                .volume_group_tag
                .as_ref()
                .is_some_and(|t| !vg.tags.contains(t))
            {
                continue;
            }
            // The same VGs CreateVolume would choose from.
            let mode_fits = if params.volume_group.is_some() {
                pmem::agrees(&vg.tags, params.pmem_mode)
            } else {
                pmem::admits(&vg.tags, params.pmem_mode)
            };
            if !mode_fits {
                continue;
            }
            let reachable = req.accessible_topology.as_ref().is_none_or(|t| {
                self.driver
                    .segment_admits(&t.segments, &vg.name, Driver::vg_kind(&vg))
            });
            if !reachable {
                continue;
            }
            if layout.lv_type == LvType::Linear {
                // A linear LV may span PVs, so the VG's free space is its largest volume.
                fits.push((vg.free, vg.extent_size));
                continue;
            }
            let Ok(report) = self.driver.lvm.report(Some(name)).await else {
                continue;
            };
            if layout.lv_type == LvType::Thin {
                // What the pool can really promise, not the VG's free space.
                let pool = layout.thin_pool.as_deref().unwrap_or_default();
                let Ok(usage) = layout::pool_usage(&report, name, pool) else {
                    continue;
                };
                usage.warn_if_full(name, params.thin_pool_usage_warning);
                fits.push((usage.promisable(params.overprovision_ratio), vg.extent_size));
            } else {
                fits.push((layout::max_size(&report, &vg, layout), vg.extent_size));
            }
        }
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
        ];
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: caps
                .into_iter()
                // Without it the external-resizer leaves the whole expansion to
                // NodeExpandVolume on the volume's node (crate::expand::Expansion::Node).
                .filter(|r| {
                    *r != R::ExpandVolume
                        || self.driver.cfg.expansion == crate::expand::Expansion::Controller
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
        crate::limits::check(&req)?;
        let span =
            tracing::info_span!("CreateSnapshot", name = %req.name, source = %req.source_volume_id);
        let _e = span.enter();
        snapshot::create(&self.driver, req).await.map(Response::new)
    }

    async fn delete_snapshot(
        &self,
        req: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let req = req.into_inner();
        crate::limits::check(&req)?;
        let span = tracing::info_span!("DeleteSnapshot", snapshot_id = %req.snapshot_id);
        let _e = span.enter();
        snapshot::delete(&self.driver, req).await?;
        Ok(Response::new(DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let req = req.into_inner();
        crate::limits::check(&req)?;
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
        crate::limits::check(&req)?;
        let id = volume_id::lookup("volume_id", "volume", &req.volume_id)?;
        let span = tracing::info_span!("ControllerExpandVolume", volume_id = %id);
        let _e = span.enter();
        let range = Range::parse("capacity_range", req.capacity_range.as_ref())?;
        if range.required == 0 && range.limit == 0 {
            return Err(invalid("capacity_range", "is required"));
        }
        let _guard = self.driver.inflight.acquire(&id.to_string())?;
        let (v, vg, report) = self.driver.volume_in_vg(&id).await?;
        let cap = match &req.volume_capability {
            Some(cap) => Some(capability::validate(
                "volume_capability",
                Some(cap),
                Driver::vg_kind(&vg),
            )?),
            None => None,
        };
        // A static volume has no fs tag: the capability tells, and without one the node is
        // asked (NodeExpandVolume of a raw block volume does nothing).
        let node_expansion_required = match v.fs() {
            Some(fs) => fs != "block",
            None => !cap.as_ref().is_some_and(|c| c.is_block()),
        };
        let size = crate::expand::grow_lv(&self.driver, &v, &vg, &report, range).await?;
        Ok(Response::new(ControllerExpandVolumeResponse {
            capacity_bytes: size as i64,
            node_expansion_required,
        }))
    }

    async fn controller_get_volume(
        &self,
        req: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let id = volume_id::lookup("volume_id", "volume", &req.into_inner().volume_id)?;
        let (v, vg, report) = self.driver.volume_in_vg(&id).await?;
        Ok(Response::new(ControllerGetVolumeResponse {
            volume: Some(self.volume_message(&v, Driver::vg_kind(&vg))),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: vec![],
                volume_condition: Some(condition(&v, &report)),
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

/// Controller-side health from the LV and its thin pool in `report` (the controller sees
/// no mount, and a shared VG's LVs are inactive here by design). See [`crate::health`].
pub fn condition(v: &OwnedVolume, report: &Report) -> VolumeCondition {
    let pool = thin_pool_of(&v.lv, report.lvs_in(&v.lv.vg));
    crate::health::volume_condition(Some(&v.lv), pool, None, Default::default())
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
}
