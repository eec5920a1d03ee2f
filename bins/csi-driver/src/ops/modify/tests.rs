//! Host unit tests of ControllerModifyVolume: the pure plan on hand-built reads, and the RPC
//! against a fake lvm that keeps the LV's images (the argv it runs, the steps, the
//! refusals that run no lvconvert). The guest proves the same on real LVM
//! (tests/e2e/tests/modify.rs).

use std::sync::{Arc, Mutex};

use tonic::{Code, Request};
use vglet_csi_proto::v1::controller_server::Controller;
use vglet_csi_proto::v1::*;
use vglet_lvm::tags::VolumeTags;
use vglet_lvm::{Image, Lv, LvImages, Pv, Vg};
use vglet_runner::{FakeRunner, Reply};

use super::plan::{Now, Step, plan};
use crate::driver::OwnedVolume;
use crate::rules::error::VolumeError;
use crate::rules::mutable::{Mutable, Redundancy};
use crate::rules::volume_id::VolumeId;
use crate::service::controller::ControllerService;

const MIB: u64 = 1 << 20;

fn pv(name: &str, free: u64) -> Pv {
    Pv {
        name: name.into(),
        vg: "vg0".into(),
        attr: "a--".into(),
        size: 512 * MIB,
        free,
        ..Default::default()
    }
}

fn vg() -> Vg {
    Vg {
        name: "vg0".into(),
        extent_size: 4 * MIB,
        free: 1024 * MIB,
        pv_count: 3,
        ..Default::default()
    }
}

fn volume(segtype: &str, copy: Option<f64>) -> OwnedVolume {
    OwnedVolume {
        id: VolumeId::new("vg0", "csi-a"),
        lv: Lv {
            vg: "vg0".into(),
            name: "csi-a".into(),
            size: 64 * MIB,
            segtype: segtype.into(),
            copy_percent: copy,
            active: true,
            ..Default::default()
        },
        tags: VolumeTags {
            owner: "lvm.vglet.io".into(),
            name: "pvc-a".into(),
            size: 64 * MIB,
            fs: "ext4".into(),
        },
        adopted: None,
    }
}

fn images(segtype: &str, pvs: &[&str]) -> LvImages {
    let images = if segtype == "raid1" {
        pvs.iter()
            .enumerate()
            .map(|(i, p)| Image {
                name: format!("csi-a_rimage_{i}"),
                pvs: vec![p.to_string()],
                integrity: false,
            })
            .collect()
    } else {
        vec![Image {
            name: "csi-a".into(),
            pvs: pvs.iter().map(|p| p.to_string()).collect(),
            integrity: false,
        }]
    };
    LvImages {
        segtype: segtype.into(),
        images,
        meta_pvs: Vec::new(),
        cached_origin: None,
    }
}

fn want(r: Redundancy) -> Mutable {
    Mutable {
        redundancy: Some(r),
        cache: None,
    }
}

const RAID1: Redundancy = Redundancy::Raid1 { mirrors: 1 };
const RAID2: Redundancy = Redundancy::Raid1 { mirrors: 2 };
const LINEAR: Redundancy = Redundancy::Linear;

/// The plan of `want` for a volume `v` with `imgs` in a VG of the three PVs `pvs`.
fn planned(
    v: &OwnedVolume,
    vg: &Vg,
    pvs: &[Pv],
    imgs: &LvImages,
    w: Redundancy,
) -> Result<Vec<Step>, VolumeError> {
    let pvs: Vec<&Pv> = pvs.iter().collect();
    plan(
        &Now {
            volume: v,
            vg,
            pvs: &pvs,
            images: imgs,
            cache_lv: None,
            cache_size: None,
        },
        &want(w),
    )
}

fn three_pvs() -> Vec<Pv> {
    vec![
        pv("/dev/vda", 400 * MIB),
        pv("/dev/vdb", 500 * MIB),
        pv("/dev/vdc", 500 * MIB),
    ]
}

#[test]
fn the_plan_goes_between_linear_and_raid1_and_is_empty_when_there() {
    let pvs = three_pvs();
    let lin = volume("linear", None);
    let lin_i = images("linear", &["/dev/vda"]);
    assert_eq!(
        planned(&lin, &vg(), &pvs, &lin_i, RAID1).unwrap(),
        [Step::ToRaid1 {
            mirrors: 1,
            pvs: vec![]
        }]
    );
    assert_eq!(
        planned(&lin, &vg(), &pvs, &lin_i, RAID2).unwrap(),
        [Step::ToRaid1 {
            mirrors: 2,
            pvs: vec![]
        }]
    );
    assert!(
        planned(&lin, &vg(), &pvs, &lin_i, LINEAR)
            .unwrap()
            .is_empty()
    );
    // Nothing asked of the redundancy: nothing to do, whatever the volume is.
    let striped = volume("striped", None);
    let pv_refs: Vec<&Pv> = pvs.iter().collect();
    let s_i = images("striped", &["/dev/vda", "/dev/vdb"]);
    assert!(
        plan(
            &Now {
                volume: &striped,
                vg: &vg(),
                pvs: &pv_refs,
                images: &s_i,
                cache_lv: None,
                cache_size: None,
            },
            &Mutable::default()
        )
        .unwrap()
        .is_empty()
    );

    let r1 = volume("raid1", Some(100.0));
    let r1_i = images("raid1", &["/dev/vda", "/dev/vdb"]);
    assert!(planned(&r1, &vg(), &pvs, &r1_i, RAID1).unwrap().is_empty());
    assert_eq!(
        planned(&r1, &vg(), &pvs, &r1_i, RAID2).unwrap(),
        [Step::AddMirrors {
            from: 1,
            to: 2,
            pvs: vec![]
        }]
    );
    // The original (image 0) stays; lvm is told the other image's PV.
    assert_eq!(
        planned(&r1, &vg(), &pvs, &r1_i, LINEAR).unwrap(),
        [Step::DropMirrors {
            from: 1,
            to: 0,
            dropped: vec!["csi-a_rimage_1".into()],
            drop_pvs: vec!["/dev/vdb".into()],
        }]
    );
    let r2 = volume("raid1", Some(100.0));
    let r2_i = images("raid1", &["/dev/vdc", "/dev/vda", "/dev/vdb"]);
    assert!(planned(&r2, &vg(), &pvs, &r2_i, RAID2).unwrap().is_empty());
    assert_eq!(
        planned(&r2, &vg(), &pvs, &r2_i, RAID1).unwrap(),
        [Step::DropMirrors {
            from: 2,
            to: 1,
            dropped: vec!["csi-a_rimage_2".into()],
            drop_pvs: vec!["/dev/vdb".into()],
        }]
    );
}

fn code(e: VolumeError) -> Code {
    crate::status::volume_status(e).code()
}

#[test]
fn refusals_name_the_rule() {
    let pvs = three_pvs();
    let refuse = |v: &OwnedVolume, vg: &Vg, pvs: &[Pv], i: &LvImages, w| {
        planned(v, vg, pvs, i, w).unwrap_err()
    };
    let expect = |e: VolumeError, c: Code, part: &str| {
        let msg = e.to_string();
        assert!(msg.contains(part), "{msg}");
        assert_eq!(code(e), c, "{msg}");
    };
    let lin_i = images("linear", &["/dev/vda"]);
    // Types that change only by a reshape or not at all.
    for (t, part) in [
        ("striped", "striped"),
        ("raid5", "raid5"),
        ("raid10", "raid10"),
        ("thin", "thin pool"),
        ("writecache", "detach it"),
    ] {
        let i = images(t, &["/dev/vda", "/dev/vdb"]);
        expect(
            refuse(&volume(t, None), &vg(), &pvs, &i, RAID1),
            Code::InvalidArgument,
            part,
        );
    }
    // A shared VG.
    let shared = Vg {
        lock_type: "sanlock".into(),
        ..vg()
    };
    expect(
        refuse(&volume("linear", None), &shared, &pvs, &lin_i, RAID1),
        Code::InvalidArgument,
        "lvmlockd(8)",
    );
    // Persistent memory.
    let pmem = Vg {
        tags: vec!["vglet.pmem=fsdax".into()],
        ..vg()
    };
    expect(
        refuse(&volume("linear", None), &pmem, &pvs, &lin_i, RAID1),
        Code::InvalidArgument,
        "fsdax persistent memory",
    );
    // Integrity cannot go linear.
    let mut int_i = images("raid1", &["/dev/vda", "/dev/vdb"]);
    int_i.images[0].integrity = true;
    expect(
        refuse(&volume("raid1", Some(100.0)), &vg(), &pvs, &int_i, LINEAR),
        Code::InvalidArgument,
        "Integrity limitations",
    );
    expect(
        refuse(&volume("raid1", Some(20.0)), &vg(), &pvs, &int_i, RAID2),
        Code::FailedPrecondition,
        "initialising",
    );
    // Dropping a copy while copies are still being written.
    let r1_i = images("raid1", &["/dev/vda", "/dev/vdb"]);
    expect(
        refuse(&volume("raid1", Some(42.0)), &vg(), &pvs, &r1_i, LINEAR),
        Code::FailedPrecondition,
        "42.0% in sync",
    );
    // Too few PVs without a copy, or too little room on them.
    expect(
        refuse(
            &volume("raid1", Some(100.0)),
            &vg(),
            &pvs,
            &r1_i,
            Redundancy::Raid1 { mirrors: 3 },
        ),
        Code::ResourceExhausted,
        "needs 2 more physical volumes",
    );
    let small = vec![
        pv("/dev/vda", 400 * MIB),
        pv("/dev/vdb", 64 * MIB),
        pv("/dev/vdc", 500 * MIB),
    ];
    expect(
        refuse(&volume("linear", None), &vg(), &small, &lin_i, RAID2),
        Code::ResourceExhausted,
        "bytes free each",
    );
    // 64 MiB of data plus one extent of RAID metadata fits in 68 MiB, not in 64.
    let just = vec![pv("/dev/vda", 0), pv("/dev/vdb", 68 * MIB)];
    assert!(planned(&volume("linear", None), &vg(), &just, &lin_i, RAID1).is_ok());
    // A copy on a missing PV is repaired, not dropped by a modify.
    let mut lost = images("raid1", &["/dev/vda", "/dev/vdb"]);
    lost.images[1].pvs = vec!["[unknown]".into()];
    expect(
        refuse(&volume("raid1", Some(100.0)), &vg(), &pvs, &lost, LINEAR),
        Code::FailedPrecondition,
        "missing physical volume",
    );
    // Static volumes keep the operator's layout.
    let mut adopted = volume("linear", None);
    adopted.adopted = Some(crate::driver::Adopted { may_delete: false });
    expect(
        refuse(&adopted, &vg(), &pvs, &lin_i, RAID1),
        Code::FailedPrecondition,
        "static volume",
    );
    // ... but are OK when already as asked (nothing to change).
    assert!(
        planned(&adopted, &vg(), &pvs, &lin_i, LINEAR)
            .unwrap()
            .is_empty()
    );
}

/// The LV `vg0/csi-a` (64 MiB, ext4, ours) as a fake lvm keeps it: the PV of each image,
/// raid1 when more than one, and whether it is active.
#[derive(Debug, Clone)]
struct FakeLv {
    images: Vec<String>,
    active: bool,
    copy: f64,
}

const PVS: [&str; 3] = ["/dev/vda", "/dev/vdb", "/dev/vdc"];

fn fullreport(lv: &FakeLv) -> String {
    let raid = lv.images.len() > 1;
    let segtype = if raid { "raid1" } else { "linear" };
    let pvs: Vec<String> = PVS
        .iter()
        .map(|p| {
            let used = lv.images.iter().any(|i| i == p);
            let free = if used { 512 - 68 } else { 512 } * MIB;
            format!(
                r#"{{"pv_name":"{p}","vg_name":"vg0","pv_attr":"a--","pv_size":"{}","pv_free":"{free}"}}"#,
                512 * MIB
            )
        })
        .collect();
    format!(
        r#"{{"report":[{{"vg":[{{"vg_name":"vg0","vg_size":"1610612736","vg_free":"1073741824","vg_extent_size":"4194304","vg_lock_type":"","pv_count":"3"}}],"pv":[{}],"lv":[{{"vg_name":"vg0","lv_name":"csi-a","lv_uuid":"U-a","lv_attr":"{}","lv_size":"67108864","lv_active":"{}","lv_tags":"vglet.owner=lvm.vglet.io,vglet.name=pvc-a,vglet.size=67108864,vglet.fs=ext4","lv_path":"/dev/vg0/csi-a","lv_dm_path":"/dev/mapper/vg0-csi-a","lv_layout":"{}","lv_role":"public","pool_lv":"","origin":"","data_percent":"","copy_percent":"{}"}}],"seg":[{{"lv_uuid":"U-a","seg_start":"0","segtype":"{segtype}"}}]}}]}}"#,
        pvs.join(","),
        match (raid, lv.active) {
            (true, true) => "rwi-a-r---",
            (true, false) => "rwi---r---",
            (false, true) => "-wi-a-----",
            (false, false) => "-wi-------",
        },
        if lv.active { "active" } else { "" },
        if raid { "raid,raid1" } else { "linear" },
        if raid && lv.active {
            format!("{:.2}", lv.copy)
        } else {
            String::new()
        },
    )
}

fn images_json(lv: &FakeLv) -> String {
    let mut rows = Vec::new();
    if lv.images.len() == 1 {
        rows.push(format!(
            r#"{{"lv_name":"csi-a","segtype":"linear","devices":"{}(0)","copy_percent":""}}"#,
            lv.images[0]
        ));
    } else {
        let subs: Vec<String> = (0..lv.images.len())
            .map(|i| format!("csi-a_rimage_{i}(0)"))
            .collect();
        rows.push(format!(
            r#"{{"lv_name":"csi-a","segtype":"raid1","devices":"{}","copy_percent":"100.00"}}"#,
            subs.join(",")
        ));
        for (i, p) in lv.images.iter().enumerate() {
            rows.push(format!(
                r#"{{"lv_name":"[csi-a_rimage_{i}]","segtype":"linear","devices":"{p}(1)","copy_percent":""}}"#
            ));
            rows.push(format!(
                r#"{{"lv_name":"[csi-a_rmeta_{i}]","segtype":"linear","devices":"{p}(0)","copy_percent":""}}"#
            ));
        }
    }
    format!(r#"{{"report":[{{"lv":[{}]}}]}}"#, rows.join(","))
}

/// Applies `lvconvert [-y] [--type raid1] -m N vg0/csi-a [PV...]` as lvm does: new images
/// on PVs without one, removed images from the PVs named first.
fn lvconvert(lv: &mut FakeLv, args: &[String]) -> Reply {
    if !lv.active {
        return Reply::fail(5, "  vg0/csi-a must be active to perform this operation.\n");
    }
    let m_at = args.iter().position(|a| a == "-m").unwrap();
    let n: usize = args[m_at + 1].parse().unwrap();
    let named: Vec<&String> = args[m_at + 3..].iter().collect();
    while lv.images.len() > n + 1 {
        let at = lv
            .images
            .iter()
            .position(|p| named.contains(&p))
            .unwrap_or(lv.images.len() - 1);
        lv.images.remove(at);
    }
    while lv.images.len() < n + 1 {
        let free = PVS.iter().find(|p| !lv.images.iter().any(|i| i == *p));
        match free {
            Some(p) => lv.images.push(p.to_string()),
            None => return Reply::fail(5, "  Insufficient suitable allocatable extents\n"),
        }
    }
    Reply::ok("  Logical volume vg0/csi-a successfully converted.\n")
}

struct Fake {
    lv: Arc<Mutex<FakeLv>>,
    runner: FakeRunner,
}

fn fake(images: &[&str], active: bool) -> Fake {
    let lv = Arc::new(Mutex::new(FakeLv {
        images: images.iter().map(|s| s.to_string()).collect(),
        active,
        copy: 37.5,
    }));
    let state = lv.clone();
    let runner = FakeRunner::with(move |c| {
        let args = c.arg_strings();
        let mut lv = state.lock().unwrap();
        match args.first().map(String::as_str) {
            Some("version") => Reply::ok("  LVM version:     2.03.16(2) (2022-05-18)\n"),
            Some("fullreport") => Reply::ok(fullreport(&lv)),
            Some("lvs") => Reply::ok(images_json(&lv)),
            Some("lvconvert") => lvconvert(&mut lv, &args),
            Some("lvchange") if args.contains(&"-ay".to_string()) => {
                lv.active = true;
                Reply::ok("")
            }
            Some("lvchange") if args.contains(&"-an".to_string()) => {
                lv.active = false;
                Reply::ok("")
            }
            _ => Reply::fail(5, "unexpected"),
        }
    });
    Fake { lv, runner }
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

async fn modify(c: &ControllerService, id: &str, kv: &[(&str, &str)]) -> Result<(), tonic::Status> {
    c.controller_modify_volume(Request::new(ControllerModifyVolumeRequest {
        volume_id: id.into(),
        mutable_parameters: kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }))
    .await
    .map(drop)
}

/// The commands since call `before` that change something (no reads).
fn changes_since(f: &Fake, before: usize) -> Vec<String> {
    f.runner.call_lines()[before..]
        .iter()
        .filter(|l| !l.contains(" fullreport") && !l.contains(" version") && !l.contains(" lvs "))
        .cloned()
        .collect()
}

async fn changes_of(
    f: &Fake,
    c: &ControllerService,
    kv: &[(&str, &str)],
) -> (Result<(), tonic::Status>, Vec<String>) {
    let before = f.runner.call_lines().len();
    let r = modify(c, "vg0/csi-a", kv).await;
    (r, changes_since(f, before))
}

fn images_now(f: &Fake) -> Vec<String> {
    f.lv.lock().unwrap().images.clone()
}

#[tokio::test]
async fn linear_to_raid1_to_two_mirrors_to_linear_and_each_twice_is_a_no_op() {
    let f = fake(&["/dev/vda"], true);
    let (_dir, c) = service(&f).await;
    let raid1 = [("type", "raid1")];
    let (r, ch) = changes_of(&f, &c, &raid1).await;
    r.unwrap();
    assert_eq!(ch, ["sh lvconvert -y --type raid1 -m 1 vg0/csi-a"]);
    assert_eq!(images_now(&f), ["/dev/vda", "/dev/vdb"]);
    let (r, ch) = changes_of(&f, &c, &raid1).await;
    r.unwrap();
    assert!(ch.is_empty(), "{ch:?}");

    // Still synchronising: the volume's condition says so.
    let got = c
        .controller_get_volume(Request::new(ControllerGetVolumeRequest {
            volume_id: "vg0/csi-a".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let cond = got.status.unwrap().volume_condition.unwrap();
    assert!(cond.message.contains("37.5% synchronised"), "{cond:?}");
    // Adding copies while syncing is lvm's business; dropping one is refused until in sync.
    let two = [("type", "raid1"), ("mirrors", "2")];
    let (r, ch) = changes_of(&f, &c, &two).await;
    r.unwrap();
    assert_eq!(ch, ["sh lvconvert -y -m 2 vg0/csi-a"]);
    assert_eq!(images_now(&f), ["/dev/vda", "/dev/vdb", "/dev/vdc"]);
    let (r, ch) = changes_of(&f, &c, &[("type", "linear")]).await;
    assert_eq!(r.unwrap_err().code(), Code::FailedPrecondition);
    assert!(ch.is_empty(), "{ch:?}");
    f.lv.lock().unwrap().copy = 100.0;
    let (r, ch) = changes_of(&f, &c, &[("type", "linear")]).await;
    r.unwrap();
    assert_eq!(ch, ["sh lvconvert -y -m 0 vg0/csi-a /dev/vdb /dev/vdc"]);
    assert_eq!(images_now(&f), ["/dev/vda"]);
    let (r, ch) = changes_of(&f, &c, &[("type", "linear")]).await;
    r.unwrap();
    assert!(ch.is_empty(), "{ch:?}");
    // ListVolumes reads the layout from lvm, nowhere else: nothing to keep in step.
    let (r, ch) = changes_of(&f, &c, &[]).await;
    r.unwrap();
    assert!(ch.is_empty(), "{ch:?}");
}

#[tokio::test]
async fn refusals_and_unknown_ids_run_no_lvconvert() {
    let f = fake(&["/dev/vda"], true);
    let (_dir, c) = service(&f).await;
    for (kv, want) in [
        (&[("volumeGroup", "vg0")][..], Code::InvalidArgument),
        (&[("type", "raid5")], Code::InvalidArgument),
        (&[("mirrors", "2")], Code::InvalidArgument),
        (
            &[("type", "raid1"), ("mirrors", "3")],
            Code::ResourceExhausted,
        ),
    ] {
        let (r, ch) = changes_of(&f, &c, kv).await;
        assert_eq!(r.unwrap_err().code(), want, "{kv:?}");
        assert!(ch.is_empty(), "{kv:?}: {ch:?}");
    }
    let before = f.runner.call_lines().len();
    for (id, want) in [
        ("", Code::InvalidArgument),
        ("fake-vol-id-1", Code::NotFound),
        ("other/csi-a", Code::NotFound),
        ("vg0/csi-missing", Code::NotFound),
    ] {
        let e = modify(&c, id, &[("type", "raid1")]).await.unwrap_err();
        assert_eq!(e.code(), want, "{id}: {e:?}");
    }
    assert!(changes_since(&f, before).is_empty());
    assert_eq!(images_now(&f), ["/dev/vda"]);
}

#[tokio::test]
async fn an_inactive_volume_is_activated_for_the_conversion_and_left_inactive() {
    let f = fake(&["/dev/vda"], false);
    let (_dir, c) = service(&f).await;
    let (r, ch) = changes_of(&f, &c, &[("type", "raid1")]).await;
    r.unwrap();
    assert_eq!(
        ch,
        [
            "sh lvchange -ay vg0/csi-a",
            "sh lvconvert -y --type raid1 -m 1 vg0/csi-a",
            "sh lvchange -an vg0/csi-a"
        ]
    );
    assert!(!f.lv.lock().unwrap().active);
}

#[tokio::test]
async fn modify_volume_is_advertised() {
    use controller_service_capability::{Type, rpc::Type as R};
    let f = fake(&["/dev/vda"], true);
    let (_dir, c) = service(&f).await;
    let caps = c
        .controller_get_capabilities(Request::new(ControllerGetCapabilitiesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert!(
        caps.iter()
            .any(|c| matches!(&c.r#type, Some(Type::Rpc(r)) if r.r#type == R::ModifyVolume as i32)),
        "{caps:?}"
    );
}
