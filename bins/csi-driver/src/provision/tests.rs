//! The plan on hand-built reports: no runner, no lvm. Then, with a fake lvm, how many lvm
//! commands an invalid and a valid CreateVolume run.

use std::collections::HashMap;

use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use vglet_csi_proto::v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
use vglet_csi_proto::v1::*;
use vglet_lvm::tags::VolumeTags;
use vglet_lvm::{Lv, LvType, Pv, Report, Vg};

use super::plan::{Create, How};
use super::*;
use crate::driver::{TOPOLOGY_NODE_KEY, vg_topology_key};
use crate::rules::error::VolumeError;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const EXT: u64 = 4 * MIB;
const DRIVER: &str = "lvm.vglet.io";

fn served(vgs: &[String]) -> Served<'_> {
    Served {
        driver: DRIVER,
        node_id: "n1",
        vgs,
        page_size: 4096,
        creating: None,
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A VG of `pv_free` PVs (bytes free each), of size 16 GiB.
fn vg(name: &str, pv_free: &[u64], tags: &[&str]) -> (Vg, Vec<Pv>) {
    let vg = Vg {
        name: name.into(),
        uuid: format!("uuid-{name}"),
        size: 16 * GIB,
        free: pv_free.iter().sum(),
        extent_size: EXT,
        pv_count: pv_free.len() as u64,
        tags: names(tags),
        ..Default::default()
    };
    let pvs = pv_free
        .iter()
        .enumerate()
        .map(|(i, f)| Pv {
            name: format!("/dev/{name}-pv{i}"),
            vg: name.into(),
            free: *f,
            ..Default::default()
        })
        .collect();
    (vg, pvs)
}

fn shared(mut v: (Vg, Vec<Pv>)) -> (Vg, Vec<Pv>) {
    v.0.lock_type = "sanlock".into();
    v
}

fn report(vgs: Vec<(Vg, Vec<Pv>)>, lvs: Vec<Lv>) -> Report {
    let mut r = Report {
        lvs,
        ..Default::default()
    };
    for (vg, pvs) in vgs {
        r.vgs.push(vg);
        r.pvs.extend(pvs);
    }
    r
}

fn ours(vg: &str, csi_name: &str, size: u64, fs: &str) -> Lv {
    let tags = VolumeTags {
        owner: DRIVER.into(),
        name: csi_name.into(),
        size,
        fs: fs.into(),
    };
    Lv {
        vg: vg.into(),
        name: vglet_lvm::naming::lv_name_for(csi_name),
        uuid: "LVUUID".into(),
        size,
        segtype: "linear".into(),
        tags: tags.to_tags(),
        ..Default::default()
    }
}

fn pool(vg: &str, name: &str, size: u64, data_percent: f64) -> Lv {
    Lv {
        vg: vg.into(),
        name: name.into(),
        segtype: "thin-pool".into(),
        size,
        data_percent: Some(data_percent),
        metadata_percent: Some(1.0),
        ..Default::default()
    }
}

fn thin(vg: &str, name: &str, pool: &str, size: u64) -> Lv {
    Lv {
        vg: vg.into(),
        name: name.into(),
        segtype: "thin".into(),
        pool_lv: pool.into(),
        size,
        ..Default::default()
    }
}

fn mount(fs: &str, flags: &[&str], mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: names(flags),
            volume_mount_group: String::new(),
        })),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

fn block(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

fn req(name: &str, bytes: u64, params: &[(&str, &str)]) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes as i64,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount("ext4", &[], Mode::SingleNodeWriter)],
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn ask(r: &CreateVolumeRequest) -> Ask {
    Ask::check(r).unwrap()
}

fn planned(vgs: &[String], r: &CreateVolumeRequest, rep: &Report) -> Result<Plan, VolumeError> {
    plan(&served(vgs), &ask(r), rep)
}

fn create(p: Result<Plan, VolumeError>) -> Create {
    match p {
        Ok(Plan::Create(c)) => c,
        other => panic!("expected a create, got {other:?}"),
    }
}

fn err(p: Result<Plan, VolumeError>) -> VolumeError {
    match p {
        Err(e) => e,
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

/// The gRPC code the error maps to, and its message.
fn code(e: VolumeError) -> (tonic::Code, String) {
    let s = crate::status::volume_status(e);
    (s.code(), s.message().to_string())
}

fn segment(kv: &[(&str, &str)]) -> Topology {
    Topology {
        segments: kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    }
}

#[test]
fn the_vg_with_most_free_space_is_chosen_unless_one_is_named() {
    let vgs = names(&["vg0", "vg1"]);
    let rep = report(
        vec![vg("vg0", &[GIB], &[]), vg("vg1", &[2 * GIB], &[])],
        vec![],
    );
    let c = create(planned(&vgs, &req("pvc-1", 64 * MIB, &[]), &rep));
    assert_eq!(c.vg.name, "vg1");
    assert_eq!(c.lv.vg, "vg1");
    assert_eq!(c.lv.name, "csi-pvc-1");
    assert_eq!(c.lv.size, 64 * MIB);
    assert!(c.lv.activate);
    assert!(matches!(&c.how, How::Layout(l) if l.lv_type == LvType::Linear));
    assert!(!c.reads_back(), "a linear LV is exactly its extents");
    assert!(c.answer.vouch, "node-local, not fsdax");
    assert_eq!(c.tags.fs, "ext4");

    let c = create(planned(
        &vgs,
        &req("pvc-1", 64 * MIB, &[("volumeGroup", "vg0")]),
        &rep,
    ));
    assert_eq!(c.vg.name, "vg0");

    let (code_, m) = code(err(planned(
        &vgs,
        &req("pvc-1", 64 * MIB, &[("volumeGroup", "other")]),
        &rep,
    )));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(
        m.contains("parameters.volumeGroup") && m.contains("served: vg0, vg1"),
        "{m}"
    );

    // Served but not on this host: lvm's own answer, FAILED_PRECONDITION.
    let rep0 = report(vec![vg("vg0", &[GIB], &[])], vec![]);
    let (code_, m) = code(err(planned(
        &vgs,
        &req("pvc-1", 64 * MIB, &[("volumeGroup", "vg1")]),
        &rep0,
    )));
    assert_eq!(code_, tonic::Code::FailedPrecondition, "{m}");
    // Not named: the VG that is there.
    assert_eq!(
        create(planned(&vgs, &req("pvc-1", 64 * MIB, &[]), &rep0))
            .vg
            .name,
        "vg0"
    );
    let (code_, _) = code(err(planned(
        &vgs,
        &req("pvc-1", 64 * MIB, &[]),
        &Report::default(),
    )));
    assert_eq!(code_, tonic::Code::FailedPrecondition);
}

#[test]
fn volume_group_tags_choose_among_the_served_vgs() {
    let vgs = names(&["vg0", "vg1"]);
    let rep = report(
        vec![
            vg("vg0", &[GIB], &["tier=fast"]),
            vg("vg1", &[2 * GIB], &[]),
        ],
        vec![],
    );
    let c = create(planned(
        &vgs,
        &req("pvc-1", 64 * MIB, &[("volumeGroupTag", "tier=fast")]),
        &rep,
    ));
    assert_eq!(c.vg.name, "vg0");
    let (code_, m) = code(err(planned(
        &vgs,
        &req("pvc-1", 64 * MIB, &[("volumeGroupTag", "tier=slow")]),
        &rep,
    )));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("carries tag \"tier=slow\""), "{m}");
}

#[test]
fn topology_requisite_preferred_and_none() {
    let vgs = names(&["local", "shared"]);
    let rep = report(
        vec![
            vg("local", &[4 * GIB], &[]),
            shared(vg("shared", &[GIB], &[])),
        ],
        vec![],
    );
    let this_node = segment(&[
        (TOPOLOGY_NODE_KEY, "n1"),
        (&vg_topology_key("shared"), "true"),
    ]);
    let other_node = segment(&[
        (TOPOLOGY_NODE_KEY, "n2"),
        (&vg_topology_key("shared"), "true"),
    ]);
    let nowhere = segment(&[(TOPOLOGY_NODE_KEY, "n3")]);
    let with = |requisite: Vec<Topology>, preferred: Vec<Topology>| {
        let mut r = req("pvc-1", 64 * MIB, &[]);
        r.volume_capabilities = vec![block(Mode::SingleNodeWriter)];
        r.accessibility_requirements = Some(TopologyRequirement {
            requisite,
            preferred,
        });
        r
    };
    // None: the most free space.
    let mut r = req("pvc-1", 64 * MIB, &[]);
    assert_eq!(create(planned(&vgs, &r, &rep)).vg.name, "local");
    r.accessibility_requirements = Some(TopologyRequirement::default());
    assert_eq!(create(planned(&vgs, &r, &rep)).vg.name, "local");
    // Requisite: only VGs it reaches.
    let c = create(planned(&vgs, &with(vec![other_node.clone()], vec![]), &rep));
    assert_eq!(c.vg.name, "shared");
    assert!(
        !c.answer.vouch,
        "a shared VG's volume is staged from an lvm read"
    );
    let c = create(planned(
        &vgs,
        &with(vec![this_node.clone(), other_node.clone()], vec![]),
        &rep,
    ));
    assert_eq!(c.vg.name, "local", "both reachable: the most free");
    let (code_, m) = code(err(planned(
        &vgs,
        &with(vec![nowhere.clone()], vec![]),
        &rep,
    )));
    assert_eq!(code_, tonic::Code::ResourceExhausted, "{m}");
    assert!(m.contains("no requisite topology can reach"), "{m}");
    // Preferred: in order, before free space.
    let c = create(planned(
        &vgs,
        &with(
            vec![this_node.clone(), other_node.clone()],
            vec![other_node.clone(), this_node.clone()],
        ),
        &rep,
    ));
    assert_eq!(
        c.vg.name, "shared",
        "the first preferred reaches only the shared VG"
    );
    let c = create(planned(
        &vgs,
        &with(vec![], vec![this_node.clone(), other_node.clone()]),
        &rep,
    ));
    assert_eq!(c.vg.name, "local");
    // Preferred alone never refuses: a VG it does not reach is still taken.
    let c = create(planned(&vgs, &with(vec![], vec![nowhere.clone()]), &rep));
    assert_eq!(c.vg.name, "local");
    // A named VG the requisite does not reach.
    let mut r = with(vec![other_node], vec![]);
    r.parameters.insert("volumeGroup".into(), "local".into());
    let (code_, _) = code(err(planned(&vgs, &r, &rep)));
    assert_eq!(code_, tonic::Code::ResourceExhausted);
}

#[test]
fn capabilities_are_checked_against_the_chosen_vgs_kind() {
    let vgs = names(&["vg0"]);
    let local = report(vec![vg("vg0", &[GIB], &[])], vec![]);
    let shared_rep = report(vec![shared(vg("vg0", &[GIB], &[]))], vec![]);
    let mut r = req("pvc-1", 64 * MIB, &[]);
    r.volume_capabilities = vec![block(Mode::MultiNodeMultiWriter)];
    let (code_, m) = code(err(planned(&vgs, &r, &local)));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("node-local"), "{m}");
    let c = create(planned(&vgs, &r, &shared_rep));
    assert_eq!(c.tags.fs, "block");
    // Shared VGs take no thin volumes and no content sources.
    let r = req("pvc-1", 64 * MIB, &[("type", "thin"), ("thinPool", "pool")]);
    let mut shared_pool = shared_rep.clone();
    shared_pool.lvs.push(pool("vg0", "pool", GIB, 0.0));
    let (code_, m) = code(err(planned(&vgs, &r, &shared_pool)));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("node-local volume group"), "{m}");
}

#[test]
fn layouts_fit_or_are_refused() {
    let vgs = names(&["vg0"]);
    let one_pv = report(vec![vg("vg0", &[4 * GIB], &[])], vec![]);
    let two_pvs = report(vec![vg("vg0", &[GIB, GIB], &[])], vec![]);
    let raid1 = req("pvc-r", 100 * MIB, &[("type", "raid1")]);
    let (code_, m) = code(err(planned(&vgs, &raid1, &one_pv)));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("needs 2 physical volumes"), "{m}");
    let c = create(planned(&vgs, &raid1, &two_pvs));
    assert!(matches!(&c.how, How::Layout(l) if l.lv_type == LvType::Raid1));
    assert!(c.reads_back(), "lvm decides a RAID LV's size");
    // Striped: whole extents per stripe.
    let striped = req("pvc-s", 5 * MIB, &[("type", "striped"), ("stripes", "2")]);
    assert_eq!(create(planned(&vgs, &striped, &two_pvs)).lv.size, 8 * MIB);
    // Space on too few PVs.
    let big = req("pvc-r", 1500 * MIB, &[("type", "raid1")]);
    let (code_, m) = code(err(planned(&vgs, &big, &two_pvs)));
    assert_eq!(code_, tonic::Code::ResourceExhausted, "{m}");
    // Linear may span PVs.
    let c = create(planned(&vgs, &req("pvc-l", 1500 * MIB, &[]), &two_pvs));
    assert_eq!(c.lv.size, 1500 * MIB);
}

/// `vg` with its last PV of the fast tier.
fn with_fast(mut v: (Vg, Vec<Pv>)) -> (Vg, Vec<Pv>) {
    v.1.last_mut().unwrap().tags = vec![vglet_lvm::tags::FAST_PV_TAG.into()];
    v
}

#[test]
fn volumes_stay_off_the_fast_tier() {
    let vgs = names(&["vg0"]);
    // Two data PVs of 1 GiB free and a fast one of 4 GiB.
    let rep = report(
        vec![with_fast(vg("vg0", &[GIB, GIB, 4 * GIB], &[]))],
        vec![],
    );
    let data = names(&["/dev/vg0-pv0", "/dev/vg0-pv1"]);
    for params in [
        &[][..],
        &[("type", "raid1")][..],
        &[("type", "striped"), ("stripes", "2")][..],
    ] {
        let c = create(planned(&vgs, &req("pvc-a", 100 * MIB, params), &rep));
        assert_eq!(c.lv.pvs, data, "{params:?}");
    }
    // 2.5 GiB fit in the VG's free space only with the fast PV's: refused, not spilled.
    let (code_, m) = code(err(planned(&vgs, &req("pvc-a", 2560 * MIB, &[]), &rep)));
    assert_eq!(code_, tonic::Code::ResourceExhausted, "{m}");
    assert!(
        m.contains("on its data physical volumes (/dev/vg0-pv0, /dev/vg0-pv1"),
        "{m}"
    );
    // raid1 with 2 mirrors needs 3 PVs; the fast one is not among them.
    let (code_, m) = code(err(planned(
        &vgs,
        &req("pvc-a", 100 * MIB, &[("type", "raid1"), ("mirrors", "2")]),
        &rep,
    )));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("has 2 on its data physical volumes"), "{m}");
    // No fast tier: no PV list, lvm chooses.
    let plain = report(vec![vg("vg0", &[GIB, GIB], &[])], vec![]);
    assert!(
        create(planned(&vgs, &req("pvc-a", 100 * MIB, &[]), &plain))
            .lv
            .pvs
            .is_empty()
    );
    // Only fast PVs: nothing for volumes.
    let only_fast = report(vec![with_fast(vg("vg0", &[4 * GIB], &[]))], vec![]);
    let (code_, m) = code(err(planned(
        &vgs,
        &req("pvc-a", 100 * MIB, &[]),
        &only_fast,
    )));
    assert_eq!(code_, tonic::Code::ResourceExhausted, "{m}");
    assert!(m.contains("only fast physical volumes"), "{m}");
}

#[test]
fn a_cache_from_birth_is_refused_before_anything_is_created() {
    let vgs = names(&["vg0"]);
    let with_cache = |cache_size: &str| {
        let mut r = req("pvc-c", 256 * MIB, &[]);
        r.mutable_parameters = [("cache", "cache"), ("cacheSize", cache_size)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        r
    };
    let local = report(vec![with_fast(vg("vg0", &[GIB, 256 * MIB], &[]))], vec![]);
    create(planned(&vgs, &with_cache("64Mi"), &local));
    // A shared VG: refused by the plan, so no lvcreate runs.
    let sh = report(
        vec![shared(with_fast(vg("vg0", &[GIB, 256 * MIB], &[])))],
        vec![],
    );
    let (code_, m) = code(err(planned(&vgs, &with_cache("64Mi"), &sh)));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(
        m.starts_with("mutable_parameters.cache: ") && m.contains("shared volume group vg0"),
        "{m}"
    );
    // A cache the fast tier cannot hold, or no fast tier at all.
    let (code_, m) = code(err(planned(&vgs, &with_cache("512Mi"), &local)));
    assert_eq!(code_, tonic::Code::ResourceExhausted, "{m}");
    assert!(m.contains("/dev/vg0-pv1"), "{m}");
    let no_fast = report(vec![vg("vg0", &[GIB, GIB], &[])], vec![]);
    let (code_, m) = code(err(planned(&vgs, &with_cache("64Mi"), &no_fast)));
    assert_eq!(code_, tonic::Code::ResourceExhausted, "{m}");
    assert!(m.contains("no fast physical volume"), "{m}");
}

#[test]
fn mutable_parameters_give_the_layout_at_creation_and_must_agree_with_the_class() {
    let vgs = names(&["vg0"]);
    let three = report(vec![vg("vg0", &[GIB, GIB, GIB], &[])], vec![]);
    let with = |params: &[(&str, &str)], mutable: &[(&str, &str)]| {
        let mut r = req("pvc-m", 100 * MIB, params);
        r.mutable_parameters = mutable
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        r
    };
    let r = with(&[], &[("type", "raid1"), ("mirrors", "2")]);
    let c = create(planned(&vgs, &r, &three));
    assert!(
        matches!(&c.how, How::Layout(l) if l.lv_type == LvType::Raid1 && l.mirrors() == 2),
        "{:?}",
        c.how
    );
    let r = with(&[("type", "raid1")], &[("type", "raid1")]);
    assert!(matches!(&create(planned(&vgs, &r, &three)).how, How::Layout(l) if l.mirrors() == 1));
    // A cache key leaves the layout alone and rides along to the attach after the create.
    let r = with(&[], &[("cache", "writecache"), ("cacheSize", "64Mi")]);
    let a = Ask::check(&r).unwrap();
    assert_eq!(
        a.cache,
        Some(crate::rules::cache::CacheWish::Mode {
            mode: vglet_lvm::CacheMode::Writecache,
            size: Some(64 * MIB)
        })
    );
    // The VG needs a fast tier for it (checked before the create, see
    // a_cache_from_birth_is_refused_before_anything_is_created).
    let with_tier = report(vec![with_fast(vg("vg0", &[GIB, GIB, GIB], &[]))], vec![]);
    assert!(
        matches!(&create(planned(&vgs, &r, &with_tier)).how, How::Layout(l) if l.lv_type == LvType::Linear)
    );
    for (params, mutable, part) in [
        (
            &[("type", "striped")][..],
            &[("type", "raid1")][..],
            "contradicts",
        ),
        (&[], &[("volumeGroup", "vg0")], "unknown mutable parameter"),
        (&[("pmemMode", "fsdax")], &[("type", "raid1")], "one region"),
        // A cache refused before any lvm read, naming the rule.
        (
            &[("type", "thin"), ("thinPool", "pool0")],
            &[("cache", "writecache")],
            "mutable_parameters.cache: writecache asked for a thin volume",
        ),
        (
            &[("pmemMode", "fsdax")],
            &[("cache", "cache")],
            "passes DAX through",
        ),
        (&[], &[("cache", "lvmcache")], "none, cache or writecache"),
    ] {
        let e = Ask::check(&with(params, mutable)).unwrap_err();
        assert!(matches!(e, VolumeError::Invalid { .. }), "{e:?}");
        assert!(e.to_string().contains(part), "{e}");
    }
}

#[test]
fn sizes_out_of_range_and_exhausted() {
    let vgs = names(&["vg0"]);
    let rep = report(vec![vg("vg0", &[GIB], &[])], vec![]);
    // Rounding to extents passes the limit.
    let mut r = req("pvc-1", MIB, &[]);
    r.capacity_range = Some(CapacityRange {
        required_bytes: MIB as i64,
        limit_bytes: 2 * MIB as i64,
    });
    let (code_, m) = code(err(planned(&vgs, &r, &rep)));
    assert_eq!(code_, tonic::Code::OutOfRange, "{m}");
    // Larger than the VG.
    let (code_, m) = code(err(planned(&vgs, &req("pvc-1", 17 * GIB, &[]), &rep)));
    assert_eq!(code_, tonic::Code::OutOfRange, "{m}");
    assert!(m.contains("larger than volume group vg0"), "{m}");
    // Larger than its free space.
    let (code_, m) = code(err(planned(&vgs, &req("pvc-1", 2 * GIB, &[]), &rep)));
    assert_eq!(code_, tonic::Code::ResourceExhausted, "{m}");
    // No range: the default size; the size tag keeps what was asked.
    let mut r = req("pvc-1", 0, &[]);
    r.capacity_range = None;
    let c = create(planned(
        &vgs,
        &r,
        &report(vec![vg("vg0", &[4 * GIB], &[])], vec![]),
    ));
    assert_eq!(c.lv.size, crate::rules::capacity::DEFAULT_SIZE);
    let c = create(planned(&vgs, &req("pvc-1", MIB + 1, &[]), &rep));
    assert_eq!((c.lv.size, c.tags.size), (EXT, EXT));
}

#[test]
fn thin_volumes_are_admitted_by_what_the_pool_can_promise() {
    let vgs = names(&["vg0", "vg1"]);
    let rep = report(
        vec![vg("vg0", &[GIB], &[]), vg("vg1", &[4 * GIB], &[])],
        vec![
            pool("vg0", "pool", 1000 * MIB, 10.0),
            thin("vg0", "a", "pool", 300 * MIB),
            thin("vg0", "b", "pool", 500 * MIB),
        ],
    );
    let ask_thin = |bytes, ratio: &str| {
        req(
            "pvc-t",
            bytes,
            &[
                ("type", "thin"),
                ("thinPool", "pool"),
                ("overprovisionRatio", ratio),
            ],
        )
    };
    // The VG that holds the pool, though the other has more free space.
    let c = create(planned(&vgs, &ask_thin(200 * MIB, "1"), &rep));
    assert_eq!(c.vg.name, "vg0");
    assert!(matches!(&c.how, How::Layout(l) if l.lv_type == LvType::Thin));
    assert_eq!(
        c.pool.as_ref().map(|p| p.usage.provisioned),
        Some(800 * MIB)
    );
    let (code_, m) = code(err(planned(&vgs, &ask_thin(300 * MIB, "1"), &rep)));
    assert_eq!(code_, tonic::Code::ResourceExhausted, "{m}");
    assert!(m.contains("can promise 209715200 more bytes"), "{m}");
    create(planned(&vgs, &ask_thin(300 * MIB, "2"), &rep));
    // A pool no served VG holds.
    let mut r = ask_thin(MIB, "1");
    r.parameters.insert("thinPool".into(), "nopool".into());
    let (code_, m) = code(err(planned(&vgs, &r, &rep)));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("holds thin pool \"nopool\""), "{m}");
    // Named VG without it: the pool's own message.
    r.parameters.insert("volumeGroup".into(), "vg1".into());
    let (code_, m) = code(err(planned(&vgs, &r, &rep)));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("parameters.thinPool"), "{m}");
}

#[test]
fn an_existing_volume_is_the_answer_or_already_exists() {
    let vgs = names(&["vg0", "vg1"]);
    let rep = report(
        vec![vg("vg0", &[GIB], &[]), vg("vg1", &[4 * GIB], &[])],
        vec![ours("vg0", "pvc-1", 64 * MIB, "ext4")],
    );
    // In vg0 although vg1 has more free space: the retry finds it.
    match planned(&vgs, &req("pvc-1", 64 * MIB, &[]), &rep) {
        Ok(Plan::Existing(e)) => {
            assert_eq!(e.volume.id.to_string(), "vg0/csi-pvc-1");
            assert!(e.answer.vouch);
        }
        other => panic!("{other:?}"),
    }
    let differs = |r: CreateVolumeRequest, fragment: &str| {
        let (code_, m) = code(err(planned(&vgs, &r, &rep)));
        assert_eq!(code_, tonic::Code::AlreadyExists, "{m}");
        assert!(m.contains(fragment), "{m}");
    };
    differs(
        req("pvc-1", 128 * MIB, &[]),
        "incompatible with the requested capacity",
    );
    differs(
        req("pvc-1", 64 * MIB, &[("volumeGroup", "vg1")]),
        "another volume group",
    );
    let mut r = req("pvc-1", 64 * MIB, &[]);
    r.volume_capabilities = vec![block(Mode::SingleNodeWriter)];
    differs(r, "exists as \"ext4\", the request asks for \"block\"");
    // An LV of the name that is not ours is never taken.
    let mut foreign = rep.clone();
    foreign.lvs[0].tags.clear();
    let (code_, m) = code(err(planned(&vgs, &req("pvc-1", 64 * MIB, &[]), &foreign)));
    assert_eq!(code_, tonic::Code::AlreadyExists, "{m}");
    assert!(m.contains("is not a volume of lvm.vglet.io"), "{m}");
    // One an interrupted attempt left is removed first.
    let mut unfinished = rep.clone();
    unfinished.lvs[0]
        .tags
        .push(vglet_lvm::tags::CREATING_TAG.into());
    match planned(&vgs, &req("pvc-1", 64 * MIB, &[]), &unfinished) {
        Ok(Plan::RemoveUnfinished(id, mark)) => {
            assert_eq!(id.to_string(), "vg0/csi-pvc-1");
            assert_eq!(mark, vglet_lvm::tags::CREATING_TAG);
        }
        other => panic!("{other:?}"),
    }
    // Recorded by a create intent on the node: only the LV carrying that attempt's id is
    // unfinished. An LV of the name made before (the attempt's lvcreate was refused because
    // it existed) is the existing volume, never removed for it.
    let dir = tempfile::tempdir().unwrap();
    let creating = CreateIntents::load(Some(vglet_state::StateStore::open(dir.path()).unwrap()));
    let id = crate::rules::volume_id::VolumeId::new("vg0", "csi-pvc-1");
    let mark = creating.begin(&id).unwrap();
    let with_intent = |rep: &Report| {
        let mut s = served(&vgs);
        s.creating = Some(&creating);
        plan(&s, &ask(&req("pvc-1", 64 * MIB, &[])), rep)
    };
    assert!(
        matches!(with_intent(&rep), Ok(Plan::Existing(_))),
        "an earlier LV of the name is the volume"
    );
    let mut this_attempt = rep.clone();
    this_attempt.lvs[0].tags.push(mark.clone());
    match with_intent(&this_attempt) {
        Ok(Plan::RemoveUnfinished(_, m)) => assert_eq!(m, mark),
        other => panic!("{other:?}"),
    }
}

#[test]
fn persistent_memory_and_dax_refusals() {
    const FSDAX: &[&str] = &["vglet.pmem=fsdax", "vglet.pmem-region=region0"];
    const SECTOR: &[&str] = &["vglet.pmem=sector", "vglet.pmem-region=region1"];
    let vgs = names(&["pm0", "pm1"]);
    let rep = report(
        vec![vg("pm0", &[GIB], FSDAX), vg("pm1", &[2 * GIB], SECTOR)],
        vec![],
    );
    // Without pmemMode the sector VG is never chosen; the fsdax one is.
    let c = create(planned(&vgs, &req("pvc-1", 64 * MIB, &[]), &rep));
    assert_eq!(c.vg.name, "pm0");
    assert!(!c.answer.vouch, "fsdax volumes are staged from an lvm read");
    let c = create(planned(
        &vgs,
        &req("pvc-1", 64 * MIB, &[("pmemMode", "sector")]),
        &rep,
    ));
    assert_eq!(c.vg.name, "pm1");
    let only_sector = names(&["pm1"]);
    let (code_, m) = code(err(planned(
        &only_sector,
        &req("pvc-1", 64 * MIB, &[]),
        &rep,
    )));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("pmemMode: sector"), "{m}");
    let (code_, m) = code(err(planned(
        &vgs,
        &req(
            "pvc-1",
            64 * MIB,
            &[("pmemMode", "fsdax"), ("volumeGroup", "pm1")],
        ),
        &rep,
    )));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("pm1 (sector in region1)"), "{m}");
    // DAX mount flags and mkfs options checked against the VG.
    let mut r = req("pvc-1", 64 * MIB, &[]);
    r.volume_capabilities = vec![mount("ext4", &["dax=never"], Mode::SingleNodeWriter)];
    let (code_, m) = code(err(planned(&vgs, &r, &rep)));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(
        m.contains("volume_capabilities[0].mount.mount_flags"),
        "{m}"
    );
    r.volume_capabilities = vec![mount("ext4", &["dax"], Mode::SingleNodeWriter)];
    create(planned(&vgs, &r, &rep));
    let plain = report(vec![vg("vg0", &[GIB], &[])], vec![]);
    let (code_, _) = code(err(planned(&names(&["vg0"]), &r, &plain)));
    assert_eq!(code_, tonic::Code::InvalidArgument, "dax on ordinary disks");
    let r = req("pvc-1", 64 * MIB, &[("mkfsOptions", "-b 1024")]);
    let (code_, m) = code(err(planned(&vgs, &r, &rep)));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("parameters.mkfsOptions"), "{m}");
    create(planned(&names(&["vg0"]), &r, &plain));
}

#[test]
fn content_sources_are_found_in_the_same_report() {
    let vgs = names(&["vg0"]);
    let mut snap = thin("vg0", "snap-s1", "pool", 64 * MIB);
    snap.tags = vglet_lvm::tags::SnapshotTags {
        owner: DRIVER.into(),
        name: "s1".into(),
        source: "vg0/csi-src".into(),
        created: 1,
        size: 64 * MIB,
    }
    .to_tags();
    let mut src = ours("vg0", "src", 64 * MIB, "ext4");
    src.name = "csi-src".into();
    let rep = report(
        vec![vg("vg0", &[GIB], &[])],
        vec![pool("vg0", "pool", GIB, 0.0), snap, src],
    );
    let from = |t: Type, params: &[(&str, &str)]| {
        let mut r = req("pvc-new", 32 * MIB, params);
        r.volume_content_source = Some(VolumeContentSource { r#type: Some(t) });
        r
    };
    let snapshot = |id: &str| {
        Type::Snapshot(SnapshotSource {
            snapshot_id: id.into(),
        })
    };
    let thin_class = [("type", "thin"), ("thinPool", "pool")];
    let c = create(planned(
        &vgs,
        &from(snapshot("vg0/snap-s1"), &thin_class),
        &rep,
    ));
    assert!(
        matches!(&c.how, How::ThinSnapshotOf { origin, .. } if origin == "snap-s1"),
        "{:?}",
        c.how
    );
    assert_eq!(c.lv.size, 64 * MIB, "at least the source's size");
    assert!(c.answer.content_source.is_some());
    let c = create(planned(&vgs, &from(snapshot("vg0/snap-s1"), &[]), &rep));
    assert!(matches!(&c.how, How::Copy { .. }), "{:?}", c.how);
    let volume = Type::Volume(VolumeSource {
        volume_id: "vg0/csi-src".into(),
    });
    assert!(matches!(
        create(planned(&vgs, &from(volume.clone(), &[]), &rep)).how,
        How::Copy { .. }
    ));
    let mut r = from(volume, &[]);
    r.volume_capabilities = vec![block(Mode::SingleNodeWriter)];
    let (code_, m) = code(err(planned(&vgs, &r, &rep)));
    assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("volume_content_source"), "{m}");
    for id in ["vg0/snap-gone", "vg9/snap-s1"] {
        let (code_, m) = code(err(planned(&vgs, &from(snapshot(id), &[]), &rep)));
        assert_eq!(code_, tonic::Code::NotFound, "{id}: {m}");
    }
    // A limit below the source's size.
    let mut r = from(snapshot("vg0/snap-s1"), &[]);
    r.capacity_range = Some(CapacityRange {
        required_bytes: 0,
        limit_bytes: 32 * MIB as i64,
    });
    let (code_, m) = code(err(planned(&vgs, &r, &rep)));
    assert_eq!(code_, tonic::Code::OutOfRange, "{m}");
}

#[test]
fn requests_wrong_by_themselves_are_refused_before_any_read() {
    let bad = |f: &dyn Fn(&mut CreateVolumeRequest), fragment: &str| {
        let mut r = req("pvc-1", 64 * MIB, &[]);
        f(&mut r);
        let e = Ask::check(&r).unwrap_err();
        let (code_, m) = code(e);
        assert_eq!(code_, tonic::Code::InvalidArgument, "{m}");
        assert!(m.contains(fragment), "{m}");
    };
    bad(&|r| r.name.clear(), "name");
    bad(&|r| r.volume_capabilities.clear(), "volume_capabilities");
    bad(
        &|r| {
            r.parameters.insert("fsType".into(), "xfs".into());
        },
        "parameters.fsType",
    );
    bad(
        &|r| {
            r.parameters.insert("typo".into(), "x".into());
        },
        "unknown parameter",
    );
    bad(
        &|r| {
            r.mutable_parameters.insert("k".into(), "v".into());
        },
        "mutable_parameters",
    );
    bad(
        &|r| r.volume_content_source = Some(VolumeContentSource { r#type: None }),
        "volume_content_source",
    );
    let mut r = req("pvc-1", 64 * MIB, &[]);
    r.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Type::Snapshot(SnapshotSource {
            snapshot_id: "never-issued".into(),
        })),
    });
    let (code_, _) = code(Ask::check(&r).unwrap_err());
    assert_eq!(code_, tonic::Code::NotFound);
}

#[test]
fn get_capacity_counts_the_vgs_create_volume_would_choose_from() {
    let vgs = names(&["vg0", "vg1", "pm1", "sh"]);
    let rep = report(
        vec![
            vg("vg0", &[GIB], &["tier=fast"]),
            vg("vg1", &[2 * GIB], &[]),
            vg("pm1", &[3 * GIB], &["vglet.pmem=sector"]),
            shared(vg("sh", &[4 * GIB], &[])),
        ],
        vec![pool("vg1", "pool", GIB, 50.0)],
    );
    let s = served(&vgs);
    let counted = |params: &[(&str, &str)], segments: &[Topology]| {
        let raw = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = crate::rules::params::parse("parameters", &raw).unwrap();
        let got: Vec<String> = choice::capacity_vgs(&s, &rep, &p, segments)
            .into_iter()
            .map(|v| v.name.clone())
            .collect();
        // Each counted VG is one CreateVolume may take, and the others are not.
        for name in &vgs {
            let vg = rep.vg(name).unwrap();
            let takes = choice::refusal(&s, &rep, vg, &p, segments).is_none();
            assert_eq!(takes, got.contains(name), "{name}");
        }
        got
    };
    assert_eq!(counted(&[], &[]), ["vg0", "vg1", "sh"], "no sector VG");
    assert_eq!(counted(&[("pmemMode", "sector")], &[]), ["pm1"]);
    assert_eq!(counted(&[("volumeGroupTag", "tier=fast")], &[]), ["vg0"]);
    assert_eq!(counted(&[("volumeGroup", "pm1")], &[]), ["pm1"]);
    assert_eq!(
        counted(&[("type", "thin"), ("thinPool", "pool")], &[]),
        ["vg1"]
    );
    let other = segment(&[(TOPOLOGY_NODE_KEY, "n2"), (&vg_topology_key("sh"), "true")]);
    assert_eq!(counted(&[], &[other]), ["sh"]);
    let p = crate::rules::params::parse(
        "parameters",
        &[
            ("type".to_string(), "thin".to_string()),
            ("thinPool".into(), "pool".into()),
        ]
        .into_iter()
        .collect(),
    )
    .unwrap();
    assert_eq!(
        choice::largest_volume(&rep, rep.vg("vg1").unwrap(), &p),
        Some(GIB / 2)
    );
    assert_eq!(
        choice::largest_volume(&rep, rep.vg("vg0").unwrap(), &p),
        None
    );
    let p = crate::rules::params::parse("parameters", &HashMap::new()).unwrap();
    assert_eq!(
        choice::largest_volume(&rep, rep.vg("vg1").unwrap(), &p),
        Some(2 * GIB)
    );
}

/// Against a fake lvm: lvm commands per CreateVolume, counted.
mod lvm_reads {
    use std::sync::Arc;

    use tonic::Request;
    use vglet_csi_proto::v1::controller_server::Controller;
    use vglet_runner::{FakeRunner, Reply};

    use super::*;
    use crate::service::controller::ControllerService;

    const REPORT: &str = r#"{"report":[{"vg":[{"vg_name":"vg0","vg_uuid":"VGUUID","vg_size":"1073741824","vg_free":"536870912","vg_extent_size":"4194304","vg_lock_type":""}],"pv":[],"lv":[]}]}"#;

    /// The controller of vg0 (with `--volume-group=vg1` also of vg1, which is missing),
    /// after its start-up read.
    async fn service(extra: &[&str]) -> (tempfile::TempDir, FakeRunner, ControllerService) {
        service_in("--mode=controller", extra).await
    }

    async fn service_in(
        mode: &str,
        extra: &[&str],
    ) -> (tempfile::TempDir, FakeRunner, ControllerService) {
        service_answering(mode, extra, Reply::ok("")).await
    }

    /// As [`service_in`], lvcreate answering `create`.
    async fn service_answering(
        mode: &str,
        extra: &[&str],
        create: Reply,
    ) -> (tempfile::TempDir, FakeRunner, ControllerService) {
        let runner = FakeRunner::with(move |c| {
            let args = c.arg_strings();
            match args.first().map(String::as_str) {
                Some("version") => Reply::ok("  LVM version:     2.03.16(2) (2022-05-18)\n"),
                Some("fullreport") => Reply::ok(REPORT),
                Some("lvcreate") => create.clone(),
                Some("lvchange") => Reply::ok(""),
                _ => Reply::fail(5, "unexpected"),
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let mut flags = vec![mode.to_string()];
        flags.extend(extra.iter().map(|f| f.to_string()));
        let cfg = crate::test_config(dir.path(), &flags);
        let driver = crate::build_driver_with(cfg, Arc::new(runner.clone()))
            .await
            .unwrap();
        let c = ControllerService {
            driver: Arc::new(driver),
        };
        (dir, runner, c)
    }

    fn lvm_since(runner: &FakeRunner, before: usize) -> Vec<String> {
        runner.call_lines()[before..]
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

    #[tokio::test]
    async fn invalid_requests_run_at_most_one_lvm_read() {
        for extra in [&[][..], &["--volume-group=vg1"][..]] {
            let (_dir, runner, c) = service(extra).await;
            // Wrong by itself: nothing is read.
            let before = runner.call_lines().len();
            let mut r = req("pvc-1", 64 * MIB, &[("fsType", "xfs")]);
            let e = c.create_volume(Request::new(r.clone())).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
            assert_eq!(lvm_since(&runner, before), Vec::<String>::new());
            // Wrong for the VG (a multi-node writer on a node-local VG): one served VG
            // read recently decides without a read, two take one read.
            r.parameters.clear();
            r.volume_capabilities = vec![block(Mode::MultiNodeMultiWriter)];
            let before = runner.call_lines().len();
            let e = c.create_volume(Request::new(r.clone())).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
            assert!(e.message().contains("node-local"), "{e:?}");
            let lvm = lvm_since(&runner, before);
            let want: &[&str] = if extra.is_empty() {
                &[]
            } else {
                &["fullreport"]
            };
            assert_eq!(kinds(&lvm), want, "{extra:?}: {lvm:#?}");
        }
    }

    #[tokio::test]
    async fn a_valid_request_reads_at_most_once_and_creates() {
        for extra in [&[][..], &["--volume-group=vg1"][..]] {
            let (_dir, runner, c) = service(extra).await;
            let before = runner.call_lines().len();
            let v = c
                .create_volume(Request::new(req("pvc-1", 64 * MIB, &[])))
                .await
                .unwrap()
                .into_inner()
                .volume
                .unwrap();
            assert_eq!(v.volume_id, "vg0/csi-pvc-1");
            assert_eq!(v.capacity_bytes, 64 << 20);
            let lvm = lvm_since(&runner, before);
            // One served VG read recently: lvcreate without a read of its own (optimistic).
            let want: &[&str] = if extra.is_empty() {
                &["lvcreate", "lvchange"]
            } else {
                &["fullreport", "lvcreate", "lvchange"]
            };
            assert_eq!(kinds(&lvm), want, "{extra:?}: {lvm:#?}");
            let create = &lvm[lvm.len() - 2];
            assert!(create.contains("--addtag vglet.creating"), "{lvm:#?}");
            assert!(create.contains("-L 67108864b"), "{lvm:#?}");
            assert!(
                lvm[lvm.len() - 1].contains("--deltag vglet.creating vg0/csi-pvc-1"),
                "{lvm:#?}"
            );
        }
    }

    /// `--mode all` on a node-local VG: the create is recorded on the node, the LV carries
    /// the attempt's id, and no second lvm commit drops a marker.
    #[tokio::test]
    async fn a_node_local_create_is_one_lvcreate_and_its_intent_is_gone_after() {
        let (dir, runner, c) = service_in("--mode=all", &[]).await;
        let before = runner.call_lines().len();
        c.create_volume(Request::new(req("pvc-1", 64 * MIB, &[])))
            .await
            .unwrap();
        let lvm = lvm_since(&runner, before);
        assert_eq!(kinds(&lvm), &["lvcreate"], "{lvm:#?}");
        assert!(lvm[0].contains("--addtag vglet.create-id="), "{lvm:#?}");
        assert!(!lvm[0].contains("vglet.creating"), "{lvm:#?}");
        let store = vglet_state::StateStore::open(dir.path().join("state")).unwrap();
        assert_eq!(store.create_intents().unwrap(), (vec![], vec![]));
    }

    /// A create lvm refuses before changing anything leaves no intent behind; one that
    /// fails otherwise keeps it (the LV may exist, carrying the attempt's id).
    #[tokio::test]
    async fn an_intent_stays_only_where_lvcreate_may_have_made_an_lv() {
        let exists = Reply::fail(
            5,
            "  Logical Volume \"csi-pvc-1\" already exists in volume group \"vg0\"\n",
        );
        for (reply, kept) in [(exists, 0), (Reply::fail(5, "  Internal error\n"), 1)] {
            let (dir, _runner, c) = service_answering("--mode=all", &[], reply).await;
            let _ = c
                .create_volume(Request::new(req("pvc-1", 64 * MIB, &[])))
                .await
                .unwrap_err();
            let store = vglet_state::StateStore::open(dir.path().join("state")).unwrap();
            assert_eq!(store.create_intents().unwrap().0.len(), kept);
        }
    }
}

#[test]
fn encrypted_volumes_are_tagged_never_vouched_and_restored_only_into_encrypted_classes() {
    let vgs = names(&["vg0"]);
    let mut src = ours("vg0", "src", 64 * MIB, "ext4");
    src.name = "csi-src".into();
    let mut enc_src = ours("vg0", "esrc", 64 * MIB, "ext4");
    enc_src.name = "csi-esrc".into();
    enc_src.uuid = "LVUUID2".into();
    enc_src.tags.push("vglet.encryption=luks2".into());
    let snap_of = |name: &str, source: &str, encrypted: bool| {
        let mut l = thin("vg0", &format!("snap-{name}"), "pool", 64 * MIB);
        l.tags = vglet_lvm::tags::SnapshotTags {
            owner: DRIVER.into(),
            name: name.into(),
            source: source.into(),
            created: 1,
            size: 64 * MIB,
        }
        .to_tags();
        if encrypted {
            l.tags.push("vglet.encryption=luks2".into());
        }
        l
    };
    let mut bad_tag = ours("vg0", "odd", 64 * MIB, "ext4");
    bad_tag.name = "csi-odd".into();
    bad_tag.uuid = "LVUUID3".into();
    bad_tag.tags.push("vglet.encryption=luks9".into());
    let rep = report(
        vec![vg("vg0", &[GIB], &[])],
        vec![
            pool("vg0", "pool", GIB, 0.0),
            src,
            enc_src,
            bad_tag,
            snap_of("plain", "vg0/csi-src", false),
            snap_of("enc", "vg0/csi-esrc", true),
        ],
    );
    let luks = [("encryption", "luks2")];
    // The tag is written by the one lvcreate; the node must read it, so no vouching.
    let c = create(planned(&vgs, &req("pvc-e", 64 * MIB, &luks), &rep));
    assert!(
        c.lv.tags.iter().any(|t| t == "vglet.encryption=luks2"),
        "{:?}",
        c.lv.tags
    );
    assert!(!c.answer.vouch);
    let plain = create(planned(&vgs, &req("pvc-p", 64 * MIB, &[]), &rep));
    assert!(
        !plain
            .lv
            .tags
            .iter()
            .any(|t| t.starts_with("vglet.encryption="))
    );
    assert!(plain.answer.vouch);
    // The existing volume must agree on its encryption.
    let (code_, m) = code(err(planned(&vgs, &req("esrc", 64 * MIB, &[]), &rep)));
    assert_eq!(code_, tonic::Code::AlreadyExists, "{m}");
    assert!(m.contains("encrypted (luks2)"), "{m}");
    assert!(matches!(
        planned(&vgs, &req("esrc", 64 * MIB, &luks), &rep),
        Ok(Plan::Existing(_))
    ));
    let from = |t: Type, params: &[(&str, &str)]| {
        let mut r = req("pvc-clone", 64 * MIB, params);
        r.volume_content_source = Some(VolumeContentSource { r#type: Some(t) });
        r
    };
    let volume = |id: &str| {
        Type::Volume(VolumeSource {
            volume_id: id.into(),
        })
    };
    let snapshot = |id: &str| {
        Type::Snapshot(SnapshotSource {
            snapshot_id: id.into(),
        })
    };
    // An encrypted source into an encrypted class: the copy (or thin snapshot) carries
    // the LUKS header; the new volume is tagged encrypted, so its stage opens it (never
    // mkfs on the LV), and it is not vouched.
    let thin_luks = [
        ("encryption", "luks2"),
        ("type", "thin"),
        ("thinPool", "pool"),
    ];
    for (t, params, instant) in [
        (volume("vg0/csi-esrc"), &luks[..], false),
        (snapshot("vg0/snap-enc"), &luks[..], false),
        (snapshot("vg0/snap-enc"), &thin_luks[..], true),
    ] {
        let c = create(planned(&vgs, &from(t.clone(), params), &rep));
        assert!(
            c.lv.tags.iter().any(|t| t == "vglet.encryption=luks2"),
            "{t:?}: {:?}",
            c.lv.tags
        );
        assert!(!c.answer.vouch, "{t:?}");
        assert_eq!(
            matches!(c.how, How::ThinSnapshotOf { .. }),
            instant,
            "{t:?}: {:?}",
            c.how
        );
        assert!(instant || matches!(c.how, How::Copy { .. }), "{:?}", c.how);
    }
    // The mismatches are refused, each naming why.
    for (t, params, why) in [
        (volume("vg0/csi-src"), &luks[..], "is not encrypted"),
        (snapshot("vg0/snap-plain"), &luks[..], "is not encrypted"),
        (volume("vg0/csi-esrc"), &[][..], "is encrypted (luks2)"),
        (snapshot("vg0/snap-enc"), &[][..], "is encrypted (luks2)"),
        (volume("vg0/csi-odd"), &luks[..], "unknown encryption tag"),
    ] {
        let (code_, m) = code(err(planned(&vgs, &from(t.clone(), params), &rep)));
        assert_eq!(code_, tonic::Code::InvalidArgument, "{t:?}: {m}");
        assert!(m.contains(why), "{t:?}: {m}");
    }
    // Plain into plain is as before.
    assert!(matches!(
        create(planned(&vgs, &from(snapshot("vg0/snap-plain"), &[]), &rep)).how,
        How::Copy { .. }
    ));
}
