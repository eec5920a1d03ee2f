//! The pure half of CreateVolume: from the checked request and one lvm report, what to do.
//! Every rule that needs lvm state is decided here, with no command run; [`super::execute`]
//! only performs the outcome.

use std::collections::HashMap;

use vglet_csi_proto::v1::VolumeContentSource;
use vglet_lvm::tags::{VgPmem, VolumeTags};
use vglet_lvm::{Layout, LvCreate, LvType, Report, Vg};

use super::{Ask, Served, SourceId, choice};
use crate::driver::{self, OwnedVolume, kind_of, vg_in};
use crate::ops::clone::Source;
use crate::ops::reconcile::unfinished_mark;
use crate::ops::snapshot;
use crate::rules::cache::{self, CacheWish};
use crate::rules::capability::{self, Access, VgKind};
use crate::rules::error::VolumeError;
use crate::rules::layout::{self, PoolUsage};
use crate::rules::params::{self, Params};
use crate::rules::pmem;
use crate::rules::volume_id::VolumeId;

/// What CreateVolume does.
#[derive(Debug, Clone)]
pub enum Plan {
    /// The volume exists as asked: the answer is the existing volume (idempotent retry).
    Existing(Existing),
    /// An LV of the name left by an interrupted attempt (this request holds the name now):
    /// remove it (conditional on the tag that marks it, see
    /// [`crate::ops::reconcile::unfinished_mark`]), read again and plan again.
    RemoveUnfinished(VolumeId, String),
    /// Create the volume.
    Create(Create),
}

/// What the answer carries besides the volume.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    pub volume_context: HashMap<String, String>,
    pub content_source: Option<VolumeContentSource>,
    /// Whether CreateVolume may remember the volume for NodeStageVolume (see
    /// [`crate::node_state::vouched`]): only where staging needs nothing else from LVM.
    pub vouch: bool,
}

#[derive(Debug, Clone)]
pub struct Existing {
    pub volume: OwnedVolume,
    pub kind: VgKind,
    pub answer: Answer,
}

#[derive(Debug, Clone)]
pub struct Create {
    pub vg: Vg,
    pub kind: VgKind,
    /// The LV: name, size (whole extents per stripe), the volume's tags, created active
    /// (so lvcreate zeroes its start and wipes old signatures).
    pub lv: LvCreate,
    pub tags: VolumeTags,
    pub how: How,
    /// The thin pool the volume goes to, with what it takes already.
    pub pool: Option<PoolCheck>,
    pub answer: Answer,
}

impl Create {
    /// Whether lvm decides the size (anything but an empty linear LV, whose size is exactly
    /// the extents asked for), so the new LV must be read back.
    pub fn reads_back(&self) -> bool {
        !matches!(&self.how, How::Layout(l) if l.lv_type == LvType::Linear)
    }

    pub fn id(&self) -> VolumeId {
        VolumeId::new(self.lv.vg.clone(), self.lv.name.clone())
    }
}

/// A thin pool's usage and the StorageClass's `thinPoolUsageWarning`, for the warning
/// execute logs when the pool is nearly full.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolCheck {
    pub usage: PoolUsage,
    pub warn_at: f64,
}

/// How the new LV is made.
#[derive(Debug, Clone)]
pub enum How {
    /// An empty LV of this layout.
    Layout(Layout),
    /// A writable thin snapshot of this thin LV (instant restore or clone), grown to the
    /// LV size when that is larger than the origin. `origin_lv`: the origin as read, and
    /// `held`: it is an encrypted volume, whose filesystem (on its mapping, when staged
    /// here) is frozen around the lvcreate (see `ops/snapshot.rs`).
    ThinSnapshotOf {
        origin: String,
        origin_size: u64,
        origin_lv: Box<vglet_lvm::Lv>,
        held: bool,
    },
    /// An LV of this layout filled with the source's data, verified.
    Copy { layout: Layout, source: Box<Source> },
}

/// What the node service needs from the StorageClass, carried in the volume context.
pub fn volume_context(params: &Params) -> HashMap<String, String> {
    let mut c = HashMap::new();
    if !params.mkfs_options.is_empty() {
        c.insert(
            params::CONTEXT_MKFS_OPTIONS.to_string(),
            params.mkfs_options.join(" "),
        );
    }
    c
}

/// Plans CreateVolume of `ask` on `report`, a read of the served VGs (or the optimistic
/// stand-in for one, see `ControllerService::optimistic_report`).
pub fn plan(served: &Served<'_>, ask: &Ask, report: &Report) -> Result<Plan, VolumeError> {
    let source = match &ask.source {
        Some(s) => Some(resolve_source(served, report, s)?),
        None => None,
    };
    let existing = find_by_name(served, report, &ask.lv_name)?;
    if let Some(v) = &existing
        && let Some(mark) = unfinished_mark(served.creating, &v.id, &v.lv)
    {
        return Ok(Plan::RemoveUnfinished(v.id.clone(), mark));
    }
    let params = &ask.params;
    let vg = match (&existing, &source) {
        (Some(v), _) => vg_in(report, &v.id.vg, &format!("volume group {}", v.id.vg))?,
        (None, Some(s)) => beside_source(served, report, ask, s)?,
        (None, None) => choice::choose(served, report, params, ask.requirement.as_ref())?,
    };
    let kind = kind_of(&vg);
    capability::check_all_kind("volume_capabilities", &ask.caps, kind)?;
    let content = &ask.content;
    if let Some(Source::Volume(v)) = &source
        && v.tags.content() != *content
    {
        return Err(VolumeError::invalid(
            "volume_content_source",
            format!(
                "volume {} is {:?}, the request asks for {:?}",
                v.id,
                v.tags.fs,
                content.as_tag()
            ),
        ));
    }
    // The node decides DAX from the VG's tags; a mount flag that contradicts it would only
    // fail at NodeStage, after the volume exists.
    let fsdax = VgPmem::from_tags(&vg.tags).is_fsdax();
    for (i, c) in ask.caps.iter().enumerate() {
        if let Access::Mount { mount_flags, .. } = &c.access {
            vglet_mount::check_dax_flags(mount_flags, fsdax).map_err(|e| {
                VolumeError::invalid(format!("volume_capabilities[{i}].mount.mount_flags"), e)
            })?;
        }
    }
    if fsdax && let Some(fs) = content.fs() {
        vglet_mount::fsdax_mkfs_options(fs, &params.mkfs_options, served.page_size)
            .map_err(|e| VolumeError::invalid(format!("parameters.{}", params::MKFS_OPTIONS), e))?;
    }
    check_encryption(params, fsdax, source.as_ref())?;
    let answer = Answer {
        volume_context: volume_context(params),
        content_source: source.as_ref().map(Source::content_source),
        // An encrypted volume's stage reads its tags from lvm: the encryption tag is what
        // the node believes, and the vouched entry does not carry it.
        vouch: kind == VgKind::Local && !fsdax && params.encryption.is_none(),
    };
    if let Some(v) = existing {
        return compare_existing(ask, &vg, v, kind, answer).map(Plan::Existing);
    }
    plan_create(served, ask, report, vg, kind, source, answer).map(Plan::Create)
}

/// Encryption only where it works end to end: not on fsdax memory (DAX bypasses
/// dm-crypt). A restore or clone copies the source's blocks as they are (a snapshot of the
/// LV, a thin snapshot, or `dd`): an encrypted source's ciphertext with its LUKS header and
/// key slots, a plain source's plaintext. So the new volume is encrypted exactly when its
/// source is, and the StorageClass must say the same: an encrypted class over a plain
/// source would promise encryption at rest for data that is on the disk in the clear
/// (and its stage would find a filesystem, not a LUKS header), and a plain class over an
/// encrypted source would hand out a ciphertext that no stage of that class opens (its
/// class brings no key). Both are INVALID_ARGUMENT, naming the reason.
pub(crate) fn check_encryption(
    params: &Params,
    fsdax: bool,
    source: Option<&Source>,
) -> Result<(), VolumeError> {
    use vglet_lvm::tags::Encryption;
    let field = format!("parameters.{}", params::ENCRYPTION);
    if params.encryption.is_some() && fsdax {
        return Err(VolumeError::invalid(
            field,
            "the chosen volume group is fsdax persistent memory, where an encrypted volume cannot be (DAX bypasses dm-crypt); name another volumeGroup",
        ));
    }
    let Some(s) = source else {
        return Ok(());
    };
    let what = match s {
        Source::Snapshot(_) => "snapshot",
        Source::Volume(_) => "volume",
    };
    let from = Encryption::from_tags(&s.lv().tags).map_err(|t| {
        VolumeError::invalid(
            "volume_content_source",
            format!("{what} {} has an unknown encryption tag {t}", s.id()),
        )
    })?;
    match (from, params.encryption) {
        (None, None) => Ok(()),
        (Some(a), Some(b)) if a == b => Ok(()),
        (None, Some(e)) => Err(VolumeError::invalid(
            field,
            format!(
                "{what} {} is not encrypted: a volume restored or cloned from it holds its data in the clear,                  which parameters.{}={} would not make encrypted at rest; use a StorageClass without encryption                  (or copy the data into a new encrypted volume)",
                s.id(),
                params::ENCRYPTION,
                e.as_str()
            ),
        )),
        (Some(e), _) => Err(VolumeError::invalid(
            field,
            format!(
                "{what} {} is encrypted ({}): a volume restored or cloned from it holds its ciphertext and LUKS header,                  opened with the source's key; use a StorageClass with parameters.{}={} whose node-stage secret holds that key",
                s.id(),
                e.as_str(),
                params::ENCRYPTION,
                e.as_str()
            ),
        )),
    }
}

/// The LV of this name in any served VG (a retry may land after a different VG was chosen
/// the first time); ALREADY_EXISTS when it is not a volume of ours.
fn find_by_name(
    served: &Served<'_>,
    report: &Report,
    lv_name: &str,
) -> Result<Option<OwnedVolume>, VolumeError> {
    for vg in served.vgs {
        let Some(lv) = report.lv(vg, lv_name) else {
            continue;
        };
        let id = VolumeId::new(vg.clone(), lv_name);
        let tags = driver::ownership(served.driver, &id, lv).map_err(|_| {
            VolumeError::AlreadyExists(format!(
                "logical volume {id} exists and is not a volume of {}",
                served.driver
            ))
        })?;
        return Ok(Some(OwnedVolume {
            id,
            lv: lv.clone(),
            tags,
            adopted: None,
        }));
    }
    Ok(None)
}

/// The content source from `report`. NOT_FOUND when it does not exist or its VG is not
/// served (CSI spec, CreateVolume: "Source does not exist | 5 NOT_FOUND"),
/// FAILED_PRECONDITION when it is not ours or a static volume.
fn resolve_source(
    served: &Served<'_>,
    report: &Report,
    s: &SourceId,
) -> Result<Source, VolumeError> {
    let (what, id) = match s {
        SourceId::Snapshot(id) => ("snapshot", id),
        SourceId::Volume(id) => ("volume", id),
    };
    if !served.serves(&id.vg) {
        return Err(VolumeError::NotFound(format!(
            "{what} {id}: volume group {} is not served by this driver",
            id.vg
        )));
    }
    Ok(match s {
        SourceId::Snapshot(id) => {
            Source::Snapshot(snapshot::snapshot_in(served.driver, report, id)?)
        }
        SourceId::Volume(id) => {
            Source::Volume(driver::created_volume_in(served.driver, report, id)?.0)
        }
    })
}

/// The VG of a restored or cloned volume: its source's (LVM cannot snapshot across VGs),
/// which must agree with the StorageClass and the topology.
fn beside_source(
    served: &Served<'_>,
    report: &Report,
    ask: &Ask,
    s: &Source,
) -> Result<Vg, VolumeError> {
    let name = &s.id().vg;
    let params = &ask.params;
    if params.volume_group.as_deref().is_some_and(|g| g != name) {
        return Err(VolumeError::invalid(
            "parameters.volumeGroup",
            format!(
                "the content source {} is in volume group {name}; a restored or cloned volume is created beside its source",
                s.id()
            ),
        ));
    }
    let vg = vg_in(report, name, &format!("volume group {name}"))?;
    pmem::check_named(&vg, params.pmem_mode)?;
    let requisite = ask
        .requirement
        .as_ref()
        .map(|r| r.requisite.as_slice())
        .unwrap_or_default();
    if !choice::reachable(served, requisite, &vg) {
        return Err(choice::unreachable(name, ", where the content source is"));
    }
    Ok(vg)
}

/// The existing volume of the name: the answer when it is the volume asked for,
/// ALREADY_EXISTS (saying how it differs) when not.
fn compare_existing(
    ask: &Ask,
    vg: &Vg,
    v: OwnedVolume,
    kind: VgKind,
    answer: Answer,
) -> Result<Existing, VolumeError> {
    let differs = if v.tags.name != ask.name {
        Some(format!(
            "logical volume {} belongs to another CSI name",
            v.id
        ))
    } else if !ask.range.accepts(v.lv.size) {
        Some(format!(
            "volume {} exists with {} bytes, incompatible with the requested capacity range",
            v.id, v.lv.size
        ))
    } else if ask
        .params
        .volume_group
        .as_deref()
        .is_some_and(|g| g != v.id.vg)
    {
        Some(format!(
            "volume {} exists in another volume group than parameters.volumeGroup",
            v.id
        ))
    } else if v.tags.content() != ask.content {
        Some(format!(
            "volume {} exists as {:?}, the request asks for {:?}",
            v.id,
            v.tags.fs,
            ask.content.as_tag()
        ))
    } else if vglet_lvm::tags::Encryption::from_tags(&v.lv.tags) != Ok(ask.params.encryption) {
        Some(format!(
            "volume {} exists {}, the request asks for parameters.{}={}",
            v.id,
            match vglet_lvm::tags::Encryption::from_tags(&v.lv.tags) {
                Ok(Some(e)) => format!("encrypted ({})", e.as_str()),
                Ok(None) => "unencrypted".to_string(),
                Err(t) => format!("with an unknown encryption tag {t}"),
            },
            params::ENCRYPTION,
            ask.params.encryption.map_or("none", |e| e.as_str())
        ))
    } else if !pmem::agrees(&vg.tags, ask.params.pmem_mode) {
        Some(format!(
            "volume {} exists in volume group {}, not of parameters.pmemMode",
            v.id,
            pmem::describe(vg)
        ))
    } else {
        None
    };
    match differs {
        Some(why) => Err(VolumeError::AlreadyExists(why)),
        None => Ok(Existing {
            volume: v,
            kind,
            answer,
        }),
    }
}

/// A new volume on `vg`: sized, admitted (fit, thin pool), and how it is made.
fn plan_create(
    served: &Served<'_>,
    ask: &Ask,
    report: &Report,
    vg: Vg,
    kind: VgKind,
    source: Option<Source>,
    answer: Answer,
) -> Result<Create, VolumeError> {
    let params = &ask.params;
    let layout = &params.layout;
    let range = ask.range;
    if vg.is_shared() {
        if layout.lv_type == LvType::Thin {
            return Err(VolumeError::invalid(
                "parameters.type",
                format!(
                    "thin volumes need a node-local volume group; {} is shared",
                    vg.name
                ),
            ));
        }
        if source.is_some() {
            return Err(VolumeError::Precondition(format!(
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
        return Err(VolumeError::OutOfRange(format!(
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
    let mut pool = None;
    if layout.lv_type == LvType::Thin {
        let name = layout.thin_pool.as_deref().unwrap_or_default();
        let usage = layout::pool_usage(report, &vg.name, name)?;
        let promisable = usage.promisable(params.overprovision_ratio);
        if size > promisable {
            return Err(VolumeError::NoSpace(format!(
                "thin pool {}/{name} can promise {promisable} more bytes (size {}, {} bytes promised, {:.1}% written, overprovisionRatio {}), {size} bytes requested",
                vg.name,
                usage.size,
                usage.provisioned,
                usage.data_percent,
                params.overprovision_ratio
            )));
        }
        pool = Some(PoolCheck {
            usage,
            warn_at: params.thin_pool_usage_warning,
        });
    } else {
        if size > vg.size {
            return Err(VolumeError::OutOfRange(format!(
                "{size} bytes is larger than volume group {} ({} bytes)",
                vg.name, vg.size
            )));
        }
        layout::check_fits(report, &vg, layout, size)?;
    }
    let tags = VolumeTags {
        owner: served.driver.to_string(),
        name: ask.name.clone(),
        size: range.required.max(size),
        fs: ask.content.as_tag().to_string(),
    };
    let how = match source {
        Some(s)
            if s.is_thin()
                && layout.lv_type == LvType::Thin
                && layout.thin_pool.as_deref() == Some(s.lv().pool_lv.as_str()) =>
        {
            How::ThinSnapshotOf {
                origin: s.id().lv.clone(),
                origin_size: s.lv().size,
                origin_lv: Box::new(s.lv().clone()),
                held: matches!(s, Source::Volume(_)) && ask.params.encryption.is_some(),
            }
        }
        Some(s) => How::Copy {
            layout: layout.clone(),
            source: Box::new(s),
        },
        None => How::Layout(layout.clone()),
    };
    // A cache from birth is attached once the volume exists (see ControllerService::
    // create_volume); what would refuse it is checked now, before anything is created.
    if let Some(wish @ CacheWish::Mode { .. }) = ask.cache {
        let id = VolumeId::new(vg.name.clone(), &ask.lv_name).to_string();
        cache::admits_vg(&id, &vg)?;
        let pvs: Vec<&vglet_lvm::Pv> = report.pvs_in(&vg.name).collect();
        let cache_size = wish.size_for(size).unwrap_or(cache::MIN_CACHE_SIZE);
        cache::check_room(&id, &vg, &pvs, cache_size, 0)?;
    }
    // A VG with a fast tier: the volume goes on its data PVs only (a thin volume's blocks
    // are its pool's).
    let pvs = match layout.lv_type {
        LvType::Thin => Vec::new(),
        _ => layout::data_room(report, &vg)?.pvs,
    };
    Ok(Create {
        lv: LvCreate {
            vg: vg.name.clone(),
            name: ask.lv_name.clone(),
            size,
            tags: tags
                .to_tags()
                .into_iter()
                .chain(ask.params.encryption.map(|e| e.tag()))
                .collect(),
            activate: true,
            pvs,
        },
        vg,
        kind,
        tags,
        how,
        pool,
        answer,
    })
}
