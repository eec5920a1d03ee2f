//! Host unit tests of the cache tier's plan: attach, detach, switch, the leftover of an
//! interrupted attach, idempotency, the refusals (each naming its rule) and the room on
//! the fast PVs. The guest proves the same on real LVM (tests/e2e/tests/cache_tier.rs).

use vglet_lvm::cache::{CacheMode, cache_lv_name};
use vglet_lvm::tags::{FAST_PV_TAG, VolumeTags};
use vglet_lvm::{Image, Lv, LvImages, Pv, Vg};

use super::plan::{Now, Step, plan};
use crate::driver::OwnedVolume;
use crate::rules::cache::{CacheWish, MIN_CACHE_SIZE};
use crate::rules::error::VolumeError;
use crate::rules::mutable::{Mutable, Redundancy};
use crate::rules::volume_id::VolumeId;

const MIB: u64 = 1 << 20;

fn pvs() -> Vec<Pv> {
    vec![
        Pv {
            name: "/dev/vda".into(),
            vg: "vg0".into(),
            free: 700 * MIB,
            ..Default::default()
        },
        Pv {
            name: "/dev/vdb".into(),
            vg: "vg0".into(),
            free: 300 * MIB,
            tags: vec![FAST_PV_TAG.into()],
            ..Default::default()
        },
        Pv {
            name: "/dev/vdc".into(),
            vg: "vg0".into(),
            free: 700 * MIB,
            ..Default::default()
        },
    ]
}

/// The size of the cache attached to [`cached`] volumes: the default.
const CACHE_NOW: u64 = MIN_CACHE_SIZE;

fn vg() -> Vg {
    Vg {
        name: "vg0".into(),
        extent_size: 4 * MIB,
        ..Default::default()
    }
}

fn volume(segtype: &str, pool: &str) -> OwnedVolume {
    OwnedVolume {
        id: VolumeId::new("vg0", "csi-a"),
        lv: Lv {
            vg: "vg0".into(),
            name: "csi-a".into(),
            size: 256 * MIB,
            segtype: segtype.into(),
            pool_lv: pool.into(),
            active: true,
            ..Default::default()
        },
        tags: VolumeTags {
            owner: "lvm.vglet.io".into(),
            name: "pvc-a".into(),
            size: 256 * MIB,
            fs: "ext4".into(),
        },
        adopted: None,
    }
}

fn cached(mode: CacheMode) -> OwnedVolume {
    volume(mode.as_str(), &format!("[{}_cvol]", cache_lv_name("csi-a")))
}

fn images(origin: Option<&str>) -> LvImages {
    LvImages {
        segtype: String::new(),
        images: vec![Image {
            name: "csi-a".into(),
            pvs: vec!["/dev/vda".into()],
            integrity: false,
        }],
        meta_pvs: vec![],
        cached_origin: origin.map(String::from),
    }
}

fn leftover() -> Lv {
    Lv {
        vg: "vg0".into(),
        name: cache_lv_name("csi-a"),
        segtype: "linear".into(),
        tags: vglet_lvm::tags::cache_lv_tags("lvm.vglet.io", "csi-a"),
        ..Default::default()
    }
}

fn mode(m: CacheMode, size: Option<u64>) -> Mutable {
    Mutable {
        redundancy: None,
        cache: Some(CacheWish::Mode { mode: m, size }),
    }
}

fn none() -> Mutable {
    Mutable {
        redundancy: None,
        cache: Some(CacheWish::None),
    }
}

fn planned_with(
    v: &OwnedVolume,
    vg: &Vg,
    pvs: &[Pv],
    imgs: &LvImages,
    cache_lv: Option<&Lv>,
    want: &Mutable,
) -> Result<Vec<Step>, VolumeError> {
    let cache_size = v.lv.segtype.contains("cache").then_some(CACHE_NOW);
    planned_sized(v, vg, pvs, imgs, cache_lv, cache_size, want)
}

fn planned_sized(
    v: &OwnedVolume,
    vg: &Vg,
    pvs: &[Pv],
    imgs: &LvImages,
    cache_lv: Option<&Lv>,
    cache_size: Option<u64>,
    want: &Mutable,
) -> Result<Vec<Step>, VolumeError> {
    let pvs: Vec<&Pv> = pvs.iter().collect();
    plan(
        &Now {
            volume: v,
            vg,
            pvs: &pvs,
            images: imgs,
            cache_lv,
            cache_size,
        },
        want,
    )
}

fn planned(
    v: &OwnedVolume,
    cache_lv: Option<&Lv>,
    want: &Mutable,
) -> Result<Vec<Step>, VolumeError> {
    let origin = v.lv.segtype.contains("cache").then_some("linear");
    planned_with(v, &vg(), &pvs(), &images(origin), cache_lv, want)
}

#[test]
fn attach_detach_and_switch() {
    let name = cache_lv_name("csi-a");
    let lin = volume("linear", "");
    // Attach: the cache LV first (default size: a tenth of 256 MiB is below the floor).
    assert_eq!(
        planned(&lin, None, &mode(CacheMode::Cache, None)).unwrap(),
        [
            Step::CreateCacheLv {
                name: name.clone(),
                size: MIN_CACHE_SIZE
            },
            Step::AttachCache {
                mode: CacheMode::Cache,
                cachevol: name.clone()
            }
        ]
    );
    assert_eq!(
        planned(&lin, None, &mode(CacheMode::Writecache, Some(64 * MIB))).unwrap(),
        [
            Step::CreateCacheLv {
                name: name.clone(),
                size: 64 * MIB
            },
            Step::AttachCache {
                mode: CacheMode::Writecache,
                cachevol: name.clone()
            }
        ]
    );
    // Detach.
    assert_eq!(
        planned(&cached(CacheMode::Writecache), None, &none()).unwrap(),
        [Step::DetachCache {
            mode: CacheMode::Writecache
        }]
    );
    // Switch: written back and detached, then a new one attached.
    assert_eq!(
        planned(
            &cached(CacheMode::Cache),
            None,
            &mode(CacheMode::Writecache, None)
        )
        .unwrap(),
        [
            Step::DetachCache {
                mode: CacheMode::Cache
            },
            Step::CreateCacheLv {
                name: name.clone(),
                size: MIN_CACHE_SIZE
            },
            Step::AttachCache {
                mode: CacheMode::Writecache,
                cachevol: name
            }
        ]
    );
}

#[test]
fn the_same_class_twice_is_no_step() {
    for m in CacheMode::ALL {
        assert_eq!(planned(&cached(m), None, &mode(m, None)).unwrap(), []);
        // The attached cache's own size, asked in other words (rounded to extents).
        assert_eq!(
            planned(&cached(m), None, &mode(m, Some(CACHE_NOW - MIB))).unwrap(),
            []
        );
    }
    assert_eq!(planned(&volume("linear", ""), None, &none()).unwrap(), []);
    // No cache key: nothing about the cache, whatever the volume has.
    let nothing = Mutable::default();
    assert_eq!(
        planned(&cached(CacheMode::Cache), None, &nothing).unwrap(),
        []
    );
    // A thin volume without a cache already has "none".
    assert_eq!(
        planned(&volume("thin", "pool0"), None, &none()).unwrap(),
        []
    );
}

#[test]
fn an_interrupted_attach_is_finished_or_cleaned_up() {
    let left = leftover();
    let lin = volume("linear", "");
    assert_eq!(
        planned(&lin, Some(&left), &mode(CacheMode::Writecache, None)).unwrap(),
        [Step::AttachCache {
            mode: CacheMode::Writecache,
            cachevol: left.name.clone()
        }]
    );
    assert_eq!(
        planned(&lin, Some(&left), &none()).unwrap(),
        [Step::RemoveCacheLv {
            name: left.name.clone()
        }]
    );
}

fn invalid_naming(e: VolumeError, field: &str, part: &str) {
    let m = e.to_string();
    assert!(matches!(e, VolumeError::Invalid { .. }), "{m}");
    assert!(
        m.starts_with(&format!("{field}: ")) && m.contains(part),
        "{m}"
    );
}

#[test]
fn refusals_name_the_rule() {
    let want = mode(CacheMode::Cache, None);
    invalid_naming(
        planned(&volume("thin", "pool0"), None, &want).unwrap_err(),
        "mutable_parameters.cache",
        "thin volume",
    );
    let shared = Vg {
        lock_type: "sanlock".into(),
        ..vg()
    };
    let lin = volume("linear", "");
    invalid_naming(
        planned_with(&lin, &shared, &pvs(), &images(None), None, &want).unwrap_err(),
        "mutable_parameters.cache",
        "shared volume group",
    );
    let dax = Vg {
        tags: vec![
            "vglet.pmem=fsdax".into(),
            "vglet.pmem-region=region0".into(),
        ],
        ..vg()
    };
    invalid_naming(
        planned_with(&lin, &dax, &pvs(), &images(None), None, &want).unwrap_err(),
        "mutable_parameters.cache",
        "DAX",
    );
    // Changing the redundancy under a cache that stays.
    let both = Mutable {
        redundancy: Some(Redundancy::Raid1 { mirrors: 1 }),
        cache: None,
    };
    invalid_naming(
        planned(&cached(CacheMode::Writecache), None, &both).unwrap_err(),
        "mutable_parameters.type",
        "detach it first",
    );
    // The same redundancy under a cache is no change at all.
    let same = Mutable {
        redundancy: Some(Redundancy::Linear),
        cache: Some(CacheWish::Mode {
            mode: CacheMode::Writecache,
            size: None,
        }),
    };
    assert_eq!(
        planned(&cached(CacheMode::Writecache), None, &same).unwrap(),
        []
    );
    // An LV of another kind by the adopt route is never changed.
    let mut adopted = volume("linear", "");
    adopted.adopted = Some(crate::driver::Adopted { may_delete: false });
    assert!(matches!(
        planned(&adopted, None, &want).unwrap_err(),
        VolumeError::Precondition(_)
    ));
}

#[test]
fn detach_then_change_redundancy_then_attach() {
    // One class that drops the cache and mirrors the volume: detach first, then convert.
    let w = Mutable {
        redundancy: Some(Redundancy::Raid1 { mirrors: 1 }),
        cache: Some(CacheWish::None),
    };
    let steps = planned(&cached(CacheMode::Cache), None, &w).unwrap();
    assert_eq!(
        steps[0],
        Step::DetachCache {
            mode: CacheMode::Cache
        }
    );
    // The new image on the data PV without a copy, never on the fast one.
    assert_eq!(
        steps[1],
        Step::ToRaid1 {
            mirrors: 1,
            pvs: vec!["/dev/vda".into(), "/dev/vdc".into()]
        }
    );
    assert_eq!(steps.len(), 2);
    // Without /dev/vdc the fast PV's room does not make a second copy possible.
    let two: Vec<Pv> = pvs().into_iter().take(2).collect();
    let lin = volume("linear", "");
    let e = planned_with(
        &lin,
        &vg(),
        &two,
        &images(None),
        None,
        &Mutable {
            redundancy: Some(Redundancy::Raid1 { mirrors: 1 }),
            cache: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, VolumeError::NoSpace(m) if m.contains("has 1 data (not fast) physical volumes")),
        "{e:?}"
    );
}

#[test]
fn a_new_cache_size_is_a_detach_then_an_attach_of_that_size() {
    let name = cache_lv_name("csi-a");
    for m in CacheMode::ALL {
        let steps = planned(&cached(m), None, &mode(m, Some(64 * MIB))).unwrap();
        assert_eq!(
            steps,
            [
                Step::DetachCache { mode: m },
                Step::CreateCacheLv {
                    name: name.clone(),
                    size: 64 * MIB
                },
                Step::AttachCache {
                    mode: m,
                    cachevol: name.clone()
                }
            ]
        );
    }
    // Smaller works the same way; rounded up to whole extents first (33 MiB is 36 MiB).
    let w = mode(CacheMode::Cache, Some(33 * MIB));
    let v = cached(CacheMode::Cache);
    let steps = planned_sized(
        &v,
        &vg(),
        &pvs(),
        &images(Some("linear")),
        None,
        Some(128 * MIB),
        &w,
    )
    .unwrap();
    assert_eq!(
        steps[1],
        Step::CreateCacheLv {
            name: name.clone(),
            size: 36 * MIB
        }
    );
    // The room counts the present cache, which goes first: 300 MiB free + 32 MiB of it.
    planned(&v, None, &mode(CacheMode::Cache, Some(332 * MIB))).unwrap();
    let e = planned(&v, None, &mode(CacheMode::Cache, Some(336 * MIB))).unwrap_err();
    assert!(
        matches!(&e, VolumeError::NoSpace(m) if m.contains("once its present cache")),
        "{e:?}"
    );
    // The read must show the attached cache's size when a size is asked.
    let e = planned_sized(&v, &vg(), &pvs(), &images(Some("linear")), None, None, &w).unwrap_err();
    assert!(matches!(e, VolumeError::Internal(_)), "{e:?}");
    // A leftover of another size is removed and one of the size asked made.
    let left = Lv {
        size: 48 * MIB,
        ..leftover()
    };
    let lin = volume("linear", "");
    assert_eq!(
        planned(&lin, Some(&left), &mode(CacheMode::Cache, Some(64 * MIB))).unwrap(),
        [
            Step::RemoveCacheLv { name: name.clone() },
            Step::CreateCacheLv {
                name: name.clone(),
                size: 64 * MIB
            },
            Step::AttachCache {
                mode: CacheMode::Cache,
                cachevol: name.clone()
            }
        ]
    );
    // Of the size asked (or no size asked): attached as it is.
    assert_eq!(
        planned(&lin, Some(&left), &mode(CacheMode::Cache, Some(48 * MIB))).unwrap(),
        [Step::AttachCache {
            mode: CacheMode::Cache,
            cachevol: name.clone()
        }]
    );
}

#[test]
fn no_fast_pv_or_no_room_is_resource_exhausted() {
    let lin = volume("linear", "");
    let slow_only: Vec<Pv> = pvs().into_iter().filter(|p| p.tags.is_empty()).collect();
    let e = planned_with(
        &lin,
        &vg(),
        &slow_only,
        &images(None),
        None,
        &mode(CacheMode::Cache, None),
    )
    .unwrap_err();
    assert!(
        matches!(&e, VolumeError::NoSpace(m) if m.contains("vg-init --fast-device")),
        "{e:?}"
    );
    let e = planned(&lin, None, &mode(CacheMode::Cache, Some(400 * MIB))).unwrap_err();
    assert!(
        matches!(&e, VolumeError::NoSpace(m) if m.contains("/dev/vdb")),
        "{e:?}"
    );
}
