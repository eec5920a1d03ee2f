//! StorageClass and VolumeSnapshotClass parameters. Unknown keys and contradicting
//! combinations are rejected: a typo must never silently give a different volume than the
//! one asked for. docs/storageclass-parameters.md is the reference for every key here.

use std::collections::HashMap;

use vglet_lvm::tags::{Encryption, PmemMode};
use vglet_lvm::{Layout, LvType};

use crate::rules::error::VolumeError;

pub const VOLUME_GROUP: &str = "volumeGroup";
pub const VOLUME_GROUP_TAG: &str = "volumeGroupTag";
pub const FS_TYPE: &str = "fsType";
pub const MKFS_OPTIONS: &str = "mkfsOptions";
pub const TYPE: &str = "type";
pub const STRIPES: &str = "stripes";
pub const STRIPE_SIZE: &str = "stripeSize";
pub const MIRRORS: &str = "mirrors";
pub const INTEGRITY: &str = "integrity";
pub const THIN_POOL: &str = "thinPool";
pub const OVERPROVISION_RATIO: &str = "overprovisionRatio";
pub const THIN_POOL_USAGE_WARNING: &str = "thinPoolUsageWarning";
/// Persistent memory: the namespace mode (`fsdax` or `sector`) of the VG the volume goes to.
pub const PMEM_MODE: &str = "pmemMode";
/// Encryption at rest: `luks2` (LUKS2 between the LV and the filesystem, keyed by the
/// node-stage secret) or `none` (the default).
pub const ENCRYPTION: &str = "encryption";
/// VolumeSnapshotClass: COW area of a thick snapshot, in percent of the origin.
pub const SNAPSHOT_SIZE_PERCENT: &str = "snapshotSizePercent";

/// Where the node service finds the mkfs options chosen at CreateVolume (the volume context
/// travels with the PV to NodeStageVolume).
pub const CONTEXT_MKFS_OPTIONS: &str = "vglet.io/mkfsOptions";

/// Keys the external-provisioner and external-snapshotter add themselves
/// (`--extra-create-metadata`) or reserve.
const CO_PREFIX: &str = "csi.storage.k8s.io/";

pub const KNOWN: &[&str] = &[
    VOLUME_GROUP,
    VOLUME_GROUP_TAG,
    FS_TYPE,
    MKFS_OPTIONS,
    TYPE,
    STRIPES,
    STRIPE_SIZE,
    MIRRORS,
    INTEGRITY,
    THIN_POOL,
    OVERPROVISION_RATIO,
    THIN_POOL_USAGE_WARNING,
    PMEM_MODE,
    ENCRYPTION,
];
pub const KNOWN_SNAPSHOT: &[&str] = &[SNAPSHOT_SIZE_PERCENT];

pub const MAX_STRIPES: u32 = 64;
/// raid1 with more than 10 images is refused by lvm 2.03's dm-raid target limits in
/// practice; nobody needs more than 10 copies of a volume.
pub const MAX_MIRRORS: u32 = 9;
pub const DEFAULT_THIN_POOL_USAGE_WARNING: f64 = 80.0;
pub const DEFAULT_SNAPSHOT_SIZE_PERCENT: u8 = 100;
const MAX_MKFS_OPTIONS_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub volume_group: Option<String>,
    /// Choose among the served VGs carrying this VG tag.
    pub volume_group_tag: Option<String>,
    pub fs_type: Option<String>,
    pub mkfs_options: Vec<String>,
    pub layout: Layout,
    /// Thin: how many times the pool's size may be promised to thin volumes.
    pub overprovision_ratio: f64,
    /// Thin: pool data or metadata usage (percent) above which a warning is logged.
    pub thin_pool_usage_warning: f64,
    /// Only VGs tagged as persistent memory of this mode. Without it, ordinary and fsdax
    /// VGs are candidates, sector VGs not (see [`crate::rules::pmem`]).
    pub pmem_mode: Option<PmemMode>,
    /// `None`: stored in the clear, as before.
    pub encryption: Option<Encryption>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            volume_group: None,
            volume_group_tag: None,
            fs_type: None,
            mkfs_options: Vec::new(),
            layout: Layout::default(),
            overprovision_ratio: 1.0,
            thin_pool_usage_warning: DEFAULT_THIN_POOL_USAGE_WARNING,
            pmem_mode: None,
            encryption: None,
        }
    }
}

fn unknown(field: &str, key: &str, known: &[&str]) -> VolumeError {
    VolumeError::invalid(
        field,
        format!(
            "unknown parameter {key:?}; valid parameters are: {}",
            known.join(", ")
        ),
    )
}

fn whole(field: &str, value: &str, min: u32, max: u32) -> Result<u32, VolumeError> {
    let n: u32 = value
        .trim()
        .parse()
        .map_err(|_| VolumeError::invalid(field, format!("{value:?} is not a whole number")))?;
    if n < min || n > max {
        return Err(VolumeError::invalid(
            field,
            format!("{n} is out of range: must be between {min} and {max}"),
        ));
    }
    Ok(n)
}

fn number(field: &str, value: &str, min: f64, max: f64) -> Result<f64, VolumeError> {
    let n: f64 = value
        .trim()
        .parse()
        .map_err(|_| VolumeError::invalid(field, format!("{value:?} is not a number")))?;
    if !n.is_finite() || n < min || n > max {
        return Err(VolumeError::invalid(
            field,
            format!("{value} is out of range: must be between {min} and {max}"),
        ));
    }
    Ok(n)
}

fn boolean(field: &str, value: &str) -> Result<bool, VolumeError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(VolumeError::invalid(
            field,
            format!("{other:?} must be \"true\" or \"false\""),
        )),
    }
}

/// Each whitespace-separated word of `mkfsOptions`: an option (`-b`, `--x=y`) or its value.
/// No paths and no shell metacharacters: mkfs runs without a shell, but a device path in
/// the options could point mkfs at another device than the volume.
fn parse_mkfs_options(field: &str, value: &str) -> Result<Vec<String>, VolumeError> {
    if value.len() > MAX_MKFS_OPTIONS_LEN {
        return Err(VolumeError::invalid(
            field,
            format!("at most {MAX_MKFS_OPTIONS_LEN} bytes"),
        ));
    }
    let words: Vec<String> = value.split_whitespace().map(String::from).collect();
    for w in &words {
        let ok = w
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,.:+".contains(c));
        if !ok {
            return Err(VolumeError::invalid(
                field,
                format!("{w:?}: only letters, digits and - _ = , . : + are allowed"),
            ));
        }
    }
    if words.first().is_some_and(|w| !w.starts_with('-')) {
        return Err(VolumeError::invalid(
            field,
            "must start with an option (-x or --xyz)",
        ));
    }
    Ok(words)
}

pub fn parse(field: &str, raw: &HashMap<String, String>) -> Result<Params, VolumeError> {
    let mut p = Params::default();
    let mut keys: Vec<&String> = raw.keys().collect();
    keys.sort();
    let mut type_given = false;
    let mut seen = Vec::new();
    for key in keys {
        let value = &raw[key];
        let f = format!("{field}.{key}");
        match key.as_str() {
            VOLUME_GROUP => {
                vglet_lvm::naming::validate_vg_name(value)
                    .map_err(|e| VolumeError::invalid(&f, e))?;
                p.volume_group = Some(value.clone());
            }
            VOLUME_GROUP_TAG => {
                vglet_lvm::naming::validate_tag(value).map_err(|e| VolumeError::invalid(&f, e))?;
                p.volume_group_tag = Some(value.clone());
            }
            FS_TYPE => {
                if !crate::rules::capability::FS_TYPES.contains(&value.as_str()) {
                    return Err(VolumeError::invalid(
                        &f,
                        format!(
                            "{value:?} is not supported; use one of {}",
                            crate::rules::capability::FS_TYPES.join(", ")
                        ),
                    ));
                }
                p.fs_type = Some(value.clone());
            }
            MKFS_OPTIONS => p.mkfs_options = parse_mkfs_options(&f, value)?,
            TYPE => {
                p.layout.lv_type = LvType::parse(value.trim()).ok_or_else(|| {
                    VolumeError::invalid(
                        &f,
                        format!(
                            "{value:?} is not a volume type; use one of {}",
                            LvType::ALL
                                .iter()
                                .map(|t| t.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                type_given = true;
            }
            STRIPES => p.layout.stripes = Some(whole(&f, value, 1, MAX_STRIPES)?),
            STRIPE_SIZE => {
                // The one size grammar (docs/units.md): `64k` is 64000 bytes, as in a
                // PVC, so a stripe size is written `64Ki`; the hint says so.
                let size = vglet_common::size::parse_size(value)
                    .map_err(|e| VolumeError::invalid(&f, e))?;
                if !size.is_power_of_two() || !(4 << 10..=1 << 30).contains(&size) {
                    return Err(VolumeError::invalid(
                        &f,
                        format!(
                            "{value:?} is {size} bytes; a stripe size is a power of two between 4Ki and 1Gi (k, M, G are powers of 1000: write 64Ki, not 64k)"
                        ),
                    ));
                }
                p.layout.stripe_size = Some(size);
            }
            MIRRORS => p.layout.mirrors = Some(whole(&f, value, 0, MAX_MIRRORS)?),
            INTEGRITY => p.layout.integrity = boolean(&f, value)?,
            THIN_POOL => {
                vglet_lvm::naming::validate_lv_name(value)
                    .map_err(|e| VolumeError::invalid(&f, e))?;
                p.layout.thin_pool = Some(value.clone());
            }
            OVERPROVISION_RATIO => p.overprovision_ratio = number(&f, value, 0.1, 1000.0)?,
            THIN_POOL_USAGE_WARNING => p.thin_pool_usage_warning = number(&f, value, 1.0, 100.0)?,
            PMEM_MODE => {
                p.pmem_mode = Some(PmemMode::parse(value.trim()).ok_or_else(|| {
                    VolumeError::invalid(
                        &f,
                        format!("{value:?} is not a persistent-memory mode; use fsdax or sector"),
                    )
                })?)
            }
            ENCRYPTION => {
                p.encryption = match value.trim() {
                    "none" => None,
                    v => Some(Encryption::parse(v).ok_or_else(|| {
                        VolumeError::invalid(
                            &f,
                            format!("{value:?} is not an encryption; use luks2 or none"),
                        )
                    })?),
                }
            }
            k if k.starts_with(CO_PREFIX) => continue,
            other => return Err(unknown(field, other, KNOWN)),
        }
        seen.push(key.as_str());
    }
    check_combination(field, &p, type_given, &seen)?;
    Ok(p)
}

/// Rules between keys: each message names the key that does not fit and why.
fn check_combination(
    field: &str,
    p: &Params,
    type_given: bool,
    seen: &[&str],
) -> Result<(), VolumeError> {
    let t = p.layout.lv_type;
    let has = |k: &str| seen.contains(&k);
    let ty = if type_given {
        t.as_str().to_string()
    } else {
        "linear (the default)".to_string()
    };
    if p.volume_group.is_some() && p.volume_group_tag.is_some() {
        return Err(VolumeError::invalid(
            field,
            format!("{VOLUME_GROUP} and {VOLUME_GROUP_TAG} exclude each other"),
        ));
    }
    if has(STRIPES) && !t.takes_stripes() {
        return Err(VolumeError::invalid(
            format!("{field}.{STRIPES}"),
            format!("applies to type striped, raid0, raid5, raid6 and raid10, not {ty}"),
        ));
    }
    if let Some(s) = p.layout.stripes
        && s < t.min_stripes()
    {
        return Err(VolumeError::invalid(
            format!("{field}.{STRIPES}"),
            format!(
                "type {t} needs at least {} stripes, got {s}",
                t.min_stripes()
            ),
        ));
    }
    if has(STRIPE_SIZE) && !t.takes_stripes() {
        return Err(VolumeError::invalid(
            format!("{field}.{STRIPE_SIZE}"),
            format!("applies to striped and striped RAID types, not {ty}"),
        ));
    }
    if has(MIRRORS) {
        if t != LvType::Raid1 {
            return Err(VolumeError::invalid(
                format!("{field}.{MIRRORS}"),
                format!("applies to type raid1 only, not {ty} (raid10 always keeps two copies)"),
            ));
        }
        if p.layout.mirrors == Some(0) {
            return Err(VolumeError::invalid(
                format!("{field}.{MIRRORS}"),
                "must be at least 1: raid1 with 0 mirrors has no redundancy (use type linear)",
            ));
        }
    }
    if p.layout.integrity && !t.is_redundant_raid() {
        return Err(VolumeError::invalid(
            format!("{field}.{INTEGRITY}"),
            format!("applies to type raid1, raid5, raid6 and raid10, not {ty}"),
        ));
    }
    if t == LvType::Thin && p.layout.thin_pool.is_none() {
        return Err(VolumeError::invalid(
            format!("{field}.{THIN_POOL}"),
            "is required for type thin",
        ));
    }
    // A PMEM VG is one namespace of one region: a layout that needs several PVs can never
    // be placed there, and spreading a volume across regions is what the per-region VGs
    // exist to prevent.
    if p.pmem_mode.is_some() && p.layout.needs_distinct_pvs() {
        return Err(VolumeError::invalid(
            format!("{field}.{TYPE}"),
            format!(
                "{ty} needs several physical volumes; a {PMEM_MODE} volume goes to a volume group of one namespace in one region (use linear or thin)"
            ),
        ));
    }
    // DAX maps the device's pages into the application: there is no place for dm-crypt
    // between them.
    if p.encryption.is_some() && p.pmem_mode == Some(PmemMode::Fsdax) {
        return Err(VolumeError::invalid(
            format!("{field}.{ENCRYPTION}"),
            "an encrypted volume cannot be on fsdax persistent memory (DAX bypasses dm-crypt); use pmemMode sector or no pmemMode",
        ));
    }
    for key in [THIN_POOL, OVERPROVISION_RATIO, THIN_POOL_USAGE_WARNING] {
        if has(key) && t != LvType::Thin {
            return Err(VolumeError::invalid(
                format!("{field}.{key}"),
                format!("applies to type thin only, not {ty}"),
            ));
        }
    }
    Ok(())
}

/// VolumeSnapshotClass parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotParams {
    pub size_percent: u8,
}

pub fn parse_snapshot(
    field: &str,
    raw: &HashMap<String, String>,
) -> Result<SnapshotParams, VolumeError> {
    let mut p = SnapshotParams {
        size_percent: DEFAULT_SNAPSHOT_SIZE_PERCENT,
    };
    let mut keys: Vec<&String> = raw.keys().collect();
    keys.sort();
    for key in keys {
        let value = &raw[key];
        match key.as_str() {
            SNAPSHOT_SIZE_PERCENT => {
                p.size_percent = whole(
                    &format!("{field}.{key}"),
                    value.trim_end_matches('%'),
                    1,
                    100,
                )? as u8
            }
            k if k.starts_with(CO_PREFIX) => {}
            other => return Err(unknown(field, other, KNOWN_SNAPSHOT)),
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(kv: &[(&str, &str)]) -> String {
        let e = parse("parameters", &map(kv)).unwrap_err();
        assert!(matches!(e, VolumeError::Invalid { .. }), "{e:?}");
        e.to_string()
    }

    #[test]
    fn encryption() {
        let p = |v: &str| parse("parameters", &map(&[(ENCRYPTION, v)]));
        assert_eq!(p("luks2").unwrap().encryption, Some(Encryption::Luks2));
        assert_eq!(p("none").unwrap().encryption, None);
        assert_eq!(parse("parameters", &map(&[])).unwrap().encryption, None);
        let e = err(&[(ENCRYPTION, "luks1")]);
        assert!(e.contains("use luks2 or none"), "{e}");
        let e = err(&[(ENCRYPTION, "luks2"), (PMEM_MODE, "fsdax")]);
        assert!(e.contains("DAX"), "{e}");
        assert!(p("luks2").is_ok());
        assert!(
            parse(
                "parameters",
                &map(&[(ENCRYPTION, "luks2"), (TYPE, "raid1")])
            )
            .is_ok()
        );
    }

    #[test]
    fn accepts_known_and_co_keys() {
        let p = parse(
            "parameters",
            &map(&[
                ("volumeGroup", "vg0"),
                ("csi.storage.k8s.io/pvc/name", "data"),
            ]),
        )
        .unwrap();
        assert_eq!(p.volume_group.as_deref(), Some("vg0"));
        assert_eq!(p.layout, Layout::linear());
    }

    #[test]
    fn rejects_typos_listing_valid_keys() {
        let m = err(&[("volumegroup", "vg0")]);
        for k in KNOWN {
            assert!(m.contains(k), "{m}");
        }
    }

    #[test]
    fn rejects_bad_vg_name() {
        assert!(parse("parameters", &map(&[("volumeGroup", "../etc")])).is_err());
        err(&[("volumeGroupTag", "a b")]);
        assert!(err(&[("volumeGroup", "a"), ("volumeGroupTag", "t")]).contains("exclude"));
    }

    #[test]
    fn layouts() {
        let p = parse(
            "parameters",
            &map(&[
                ("type", "striped"),
                ("stripes", "3"),
                ("stripeSize", "128Ki"),
            ]),
        )
        .unwrap();
        assert_eq!(p.layout.lv_type, LvType::Striped);
        assert_eq!(p.layout.data_stripes(), 3);
        assert_eq!(p.layout.stripe_size, Some(128 << 10));
        let p = parse(
            "parameters",
            &map(&[("type", "raid1"), ("mirrors", "2"), ("integrity", "true")]),
        )
        .unwrap();
        assert_eq!((p.layout.images(), p.layout.integrity), (3, true));
        let p = parse("parameters", &map(&[("type", "raid6")])).unwrap();
        assert_eq!(p.layout.images(), 5);
        let p = parse(
            "parameters",
            &map(&[
                ("type", "thin"),
                ("thinPool", "pool0"),
                ("overprovisionRatio", "2.5"),
                ("thinPoolUsageWarning", "90"),
            ]),
        )
        .unwrap();
        assert_eq!(p.layout.thin_pool.as_deref(), Some("pool0"));
        assert_eq!(p.overprovision_ratio, 2.5);
        assert_eq!(p.thin_pool_usage_warning, 90.0);
    }

    #[test]
    fn invalid_combinations_name_the_key() {
        assert!(err(&[("type", "raid7")]).contains("raid10"));
        assert!(err(&[("type", "raid1"), ("mirrors", "0")]).contains("mirrors"));
        assert!(err(&[("type", "raid1"), ("mirrors", "10")]).contains("mirrors"));
        assert!(err(&[("type", "raid5"), ("mirrors", "1")]).contains("raid1 only"));
        assert!(err(&[("stripes", "2")]).contains("linear (the default)"));
        assert!(err(&[("type", "raid6"), ("stripes", "2")]).contains("at least 3"));
        assert!(err(&[("type", "striped"), ("stripes", "1")]).contains("at least 2"));
        assert!(err(&[("type", "striped"), ("stripes", "x")]).contains("whole number"));
        assert!(err(&[("type", "striped"), ("stripeSize", "3Ki")]).contains("power of two"));
        assert!(err(&[("type", "striped"), ("stripeSize", "1Ki")]).contains("power of two"));
        assert!(err(&[("type", "raid1"), ("stripeSize", "64Ki")]).contains("stripeSize"));
        assert!(err(&[("type", "raid0"), ("integrity", "true")]).contains("integrity"));
        assert!(err(&[("type", "raid1"), ("integrity", "yes")]).contains("\"true\""));
        assert!(err(&[("type", "thin")]).contains("thinPool"));
        assert!(err(&[("thinPool", "p")]).contains("thin only"));
        assert!(err(&[("overprovisionRatio", "2")]).contains("thin only"));
        assert!(
            err(&[
                ("type", "thin"),
                ("thinPool", "p"),
                ("overprovisionRatio", "NaN")
            ])
            .contains("overprovisionRatio")
        );
        assert!(err(&[("type", "thin"), ("thinPool", "p_tdata")]).contains("thinPool"));
        assert!(err(&[("fsType", "btrfs")]).contains("ext4"));
    }

    #[test]
    fn mkfs_options() {
        let p = parse(
            "parameters",
            &map(&[("mkfsOptions", "-b 4096  -E lazy_itable_init=0,nodiscard")]),
        )
        .unwrap();
        assert_eq!(
            p.mkfs_options,
            vec!["-b", "4096", "-E", "lazy_itable_init=0,nodiscard"]
        );
        err(&[("mkfsOptions", "-L x /dev/sda")]);
        err(&[("mkfsOptions", "-L $(reboot)")]);
        err(&[("mkfsOptions", "4096")]);
        err(&[("mkfsOptions", &"-x ".repeat(100))]);
    }

    #[test]
    fn stripe_sizes_take_the_one_size_grammar() {
        let size = |v: &str| {
            parse(
                "parameters",
                &map(&[("type", "striped"), ("stripes", "2"), ("stripeSize", v)]),
            )
        };
        assert_eq!(size("65536").unwrap().layout.stripe_size, Some(65536));
        assert_eq!(size("64Ki").unwrap().layout.stripe_size, Some(65536));
        assert_eq!(size("64KiB").unwrap().layout.stripe_size, Some(65536));
        assert_eq!(size("1Mi").unwrap().layout.stripe_size, Some(1 << 20));
        // Decimal, as every size vglet reads: not a power of two, and the message says
        // how to write it.
        let e = size("64k").unwrap_err().to_string();
        assert!(e.contains("64000 bytes") && e.contains("64Ki"), "{e}");
        assert!(size("1M").is_err());
        assert!(size("k").is_err());
    }

    #[test]
    fn snapshot_params() {
        assert_eq!(
            parse_snapshot("parameters", &map(&[]))
                .unwrap()
                .size_percent,
            100
        );
        assert_eq!(
            parse_snapshot("parameters", &map(&[("snapshotSizePercent", "30%")]))
                .unwrap()
                .size_percent,
            30
        );
        assert!(parse_snapshot("parameters", &map(&[("snapshotSizePercent", "0")])).is_err());
        assert!(parse_snapshot("parameters", &map(&[("snapshotSizePercent", "150")])).is_err());
        let e = parse_snapshot("parameters", &map(&[("sizePercent", "5")])).unwrap_err();
        assert!(e.to_string().contains("snapshotSizePercent"));
        parse_snapshot(
            "parameters",
            &map(&[("csi.storage.k8s.io/volumesnapshot/name", "s")]),
        )
        .unwrap();
    }

    #[test]
    fn pmem_mode() {
        let p = parse("parameters", &map(&[("pmemMode", "fsdax")])).unwrap();
        assert_eq!(p.pmem_mode, Some(PmemMode::Fsdax));
        let p = parse(
            "parameters",
            &map(&[("pmemMode", "sector"), ("volumeGroup", "pm")]),
        )
        .unwrap();
        assert_eq!(p.pmem_mode, Some(PmemMode::Sector));
        assert_eq!(parse("parameters", &map(&[])).unwrap().pmem_mode, None);
        let m = err(&[("pmemMode", "devdax")]);
        assert!(
            m.contains("parameters.pmemMode") && m.contains("fsdax or sector"),
            "{m}"
        );
        err(&[("pmemMode", "")]);
        err(&[("pmemMode", "FSDAX")]);
        let m = err(&[("pmemMode", "fsdax"), ("type", "striped")]);
        assert!(
            m.contains("parameters.type") && m.contains("one region"),
            "{m}"
        );
        err(&[("pmemMode", "fsdax"), ("type", "raid1")]);
        let p = parse(
            "parameters",
            &map(&[("pmemMode", "fsdax"), ("type", "thin"), ("thinPool", "p")]),
        )
        .unwrap();
        assert_eq!(p.layout.lv_type, LvType::Thin);
        assert!(err(&[("pmemmode", "fsdax")]).contains("pmemMode"));
    }
}
