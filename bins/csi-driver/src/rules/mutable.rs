//! Mutable parameters: the keys a VolumeAttributesClass may carry, which
//! ControllerModifyVolume applies to an existing volume and CreateVolume applies at birth
//! (`mutable_parameters`). Validated as StorageClass parameters are: an unknown key is refused
//! listing the valid ones, a bad value names its key. docs/storageclass-parameters.md
//! ("Mutable parameters") is the reference for every key here.
//!
//! Each concern is one field of [`Mutable`], `None` when the class does not mention it (the
//! volume keeps what it has). A new concern adds its keys to [`KNOWN`], a field, and an arm
//! in [`parse`].

use std::collections::HashMap;

use vglet_lvm::LvType;

use crate::rules::cache::{self, CacheWish};
use crate::rules::error::VolumeError;
use crate::rules::params::{self, MAX_MIRRORS};

/// `linear` or `raid1`.
pub const TYPE: &str = params::TYPE;
/// raid1's additional copies, 1 to [`MAX_MIRRORS`]; only with `type: raid1` (default 1).
pub const MIRRORS: &str = params::MIRRORS;

/// The cache tier ([`crate::rules::cache`]).
pub const CACHE: &str = cache::CACHE;
pub const CACHE_SIZE: &str = cache::CACHE_SIZE;

pub const KNOWN: &[&str] = &[TYPE, MIRRORS, CACHE, CACHE_SIZE];

/// Keys the CO reserves (as in StorageClass parameters).
const CO_PREFIX: &str = "csi.storage.k8s.io/";

/// How many copies of the data a volume keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redundancy {
    /// One copy, on one or more PVs.
    Linear,
    /// `mirrors` + 1 copies, each on its own PV.
    Raid1 { mirrors: u32 },
}

impl Redundancy {
    pub fn images(self) -> u32 {
        match self {
            Redundancy::Linear => 1,
            Redundancy::Raid1 { mirrors } => mirrors + 1,
        }
    }

    /// `linear`, `raid1 with 2 mirrors`: for messages.
    pub fn describe(self) -> String {
        match self {
            Redundancy::Linear => "linear".into(),
            Redundancy::Raid1 { mirrors } => format!("raid1 with {mirrors} mirrors"),
        }
    }

    /// The StorageClass-form keys that say the same, for CreateVolume.
    fn as_parameters(self) -> Vec<(&'static str, String)> {
        match self {
            Redundancy::Linear => vec![(TYPE, "linear".into())],
            Redundancy::Raid1 { mirrors } => {
                vec![(TYPE, "raid1".into()), (MIRRORS, mirrors.to_string())]
            }
        }
    }
}

/// Parsed mutable parameters: what the class asks of the volume. Every `None` is left as
/// the volume has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutable {
    pub redundancy: Option<Redundancy>,
    pub cache: Option<CacheWish>,
}

impl Mutable {
    pub fn is_empty(&self) -> bool {
        self == &Mutable::default()
    }
}

fn unknown(field: &str, key: &str) -> VolumeError {
    VolumeError::invalid(
        field,
        format!(
            "unknown mutable parameter {key:?}; valid mutable parameters are: {} (the other StorageClass parameters are fixed at creation)",
            KNOWN.join(", ")
        ),
    )
}

/// `field` is the request's field name (`mutable_parameters`).
pub fn parse(field: &str, raw: &HashMap<String, String>) -> Result<Mutable, VolumeError> {
    let mut keys: Vec<&String> = raw.keys().collect();
    keys.sort();
    let mut lv_type = None;
    let mut mirrors = None;
    for key in keys {
        let value = raw[key].trim();
        let f = format!("{field}.{key}");
        match key.as_str() {
            TYPE => {
                lv_type = Some(match LvType::parse(value) {
                    Some(t @ (LvType::Linear | LvType::Raid1)) => t,
                    _ => {
                        return Err(VolumeError::invalid(
                            &f,
                            format!(
                                "{value:?} cannot be changed to on a live volume; use linear or raid1 (other types are fixed at creation: see docs/storageclass-parameters.md)"
                            ),
                        ));
                    }
                });
            }
            MIRRORS => {
                let n: u32 = value.parse().map_err(|_| {
                    VolumeError::invalid(&f, format!("{value:?} is not a whole number"))
                })?;
                if !(1..=MAX_MIRRORS).contains(&n) {
                    return Err(VolumeError::invalid(
                        &f,
                        format!(
                            "{n} is out of range: must be between 1 and {MAX_MIRRORS} (for one copy use type linear)"
                        ),
                    ));
                }
                mirrors = Some(n);
            }
            // Read together below: cacheSize depends on cache.
            CACHE | CACHE_SIZE => {}
            k if k.starts_with(CO_PREFIX) => {}
            other => return Err(unknown(field, other)),
        }
    }
    let redundancy = match (lv_type, mirrors) {
        (None, None) => None,
        (Some(LvType::Raid1), m) => Some(Redundancy::Raid1 {
            mirrors: m.unwrap_or(1),
        }),
        (Some(_), None) => Some(Redundancy::Linear),
        (t, Some(_)) => {
            return Err(VolumeError::invalid(
                format!("{field}.{MIRRORS}"),
                format!(
                    "applies to type raid1 only, not {}; set {field}.{TYPE}: raid1",
                    match t {
                        Some(t) => t.as_str(),
                        None => "an unset type",
                    }
                ),
            ));
        }
    };
    Ok(Mutable {
        redundancy,
        cache: cache::parse(field, raw)?,
    })
}

/// CreateVolume's StorageClass parameters with the mutable parameters applied: what the
/// volume is created as. A key both give must say the same; the redundancy keys are one
/// unit (a class's `type: raid1` means one mirror unless it says otherwise, so a
/// StorageClass's `mirrors: 2` under it is a contradiction, not a completion).
pub fn apply_to_parameters(
    params_field: &str,
    parameters: &HashMap<String, String>,
    mutable_field: &str,
    mutable: &Mutable,
) -> Result<HashMap<String, String>, VolumeError> {
    let mut merged = parameters.clone();
    if let Some(r) = mutable.redundancy {
        let given = |k: &str| parameters.get(k).map(|v| v.trim().to_string());
        let sc_says_type = given(TYPE);
        let sc_says_mirrors = given(MIRRORS);
        if sc_says_type.is_some() || sc_says_mirrors.is_some() {
            let sc = match sc_says_type.as_deref() {
                Some("raid1") => sc_says_mirrors
                    .as_deref()
                    .and_then(|m| m.parse().ok())
                    .map(|mirrors| Redundancy::Raid1 { mirrors })
                    .or(Some(Redundancy::Raid1 { mirrors: 1 })),
                Some("linear") if sc_says_mirrors.is_none() => Some(Redundancy::Linear),
                _ => None,
            };
            if sc != Some(r) {
                let shown: Vec<String> = [TYPE, MIRRORS]
                    .iter()
                    .filter_map(|k| given(k).map(|v| format!("{params_field}.{k}={v}")))
                    .collect();
                return Err(VolumeError::invalid(
                    mutable_field,
                    format!(
                        "asks for {}, which contradicts {}; the StorageClass and the VolumeAttributesClass must agree (or leave type and mirrors to the VolumeAttributesClass alone)",
                        r.describe(),
                        shown.join(" ")
                    ),
                ));
            }
        }
        for (k, v) in r.as_parameters() {
            merged.insert(k.to_string(), v);
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parsed(kv: &[(&str, &str)]) -> Result<Mutable, VolumeError> {
        parse("mutable_parameters", &map(kv))
    }

    fn err(kv: &[(&str, &str)]) -> String {
        let e = parsed(kv).unwrap_err();
        assert!(matches!(e, VolumeError::Invalid { .. }), "{e:?}");
        e.to_string()
    }

    #[test]
    fn redundancy_keys() {
        assert_eq!(parsed(&[]).unwrap(), Mutable::default());
        assert!(parsed(&[]).unwrap().is_empty());
        assert_eq!(
            parsed(&[("type", "linear")]).unwrap().redundancy,
            Some(Redundancy::Linear)
        );
        assert_eq!(
            parsed(&[("type", "raid1")]).unwrap().redundancy,
            Some(Redundancy::Raid1 { mirrors: 1 })
        );
        assert_eq!(
            parsed(&[("type", " raid1 "), ("mirrors", "2")])
                .unwrap()
                .redundancy,
            Some(Redundancy::Raid1 { mirrors: 2 })
        );
        // The provisioner's own keys are not the class's.
        assert!(
            parsed(&[("csi.storage.k8s.io/pvc/name", "x")])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn refusals_name_the_key_and_the_rule() {
        let m = err(&[("volumeGroup", "vg0")]);
        assert!(m.starts_with("mutable_parameters: unknown mutable parameter \"volumeGroup\""));
        for k in KNOWN {
            assert!(m.contains(k), "{m}");
        }
        let m = err(&[("type", "raid5")]);
        assert!(m.contains("mutable_parameters.type") && m.contains("linear or raid1"));
        err(&[("type", "thin")]);
        err(&[("type", "Raid1")]);
        let m = err(&[("mirrors", "2")]);
        assert!(m.contains("mutable_parameters.mirrors") && m.contains("raid1 only"));
        assert!(err(&[("type", "linear"), ("mirrors", "1")]).contains("not linear"));
        assert!(err(&[("type", "raid1"), ("mirrors", "0")]).contains("type linear"));
        assert!(err(&[("type", "raid1"), ("mirrors", "10")]).contains("between 1 and 9"));
        assert!(err(&[("type", "raid1"), ("mirrors", "two")]).contains("whole number"));
    }

    #[test]
    fn creation_merges_and_refuses_contradictions() {
        let apply = |sc: &[(&str, &str)], m: &[(&str, &str)]| {
            apply_to_parameters(
                "parameters",
                &map(sc),
                "mutable_parameters",
                &parsed(m).unwrap(),
            )
        };
        // Nothing mutable: the StorageClass's parameters as they are.
        let sc = [("volumeGroup", "vg0"), ("type", "striped")];
        assert_eq!(apply(&sc, &[]).unwrap(), map(&sc));
        // The class alone decides.
        let m = apply(
            &[("fsType", "ext4")],
            &[("type", "raid1"), ("mirrors", "2")],
        )
        .unwrap();
        assert_eq!(
            m,
            map(&[("fsType", "ext4"), ("type", "raid1"), ("mirrors", "2")])
        );
        // Both say the same.
        apply(&[("type", "raid1")], &[("type", "raid1"), ("mirrors", "1")]).unwrap();
        apply(&[("type", "linear")], &[("type", "linear")]).unwrap();
        // Contradictions.
        for (sc, m) in [
            (&[("type", "striped")][..], &[("type", "raid1")][..]),
            (&[("type", "linear")], &[("type", "raid1")]),
            (&[("type", "raid1"), ("mirrors", "2")], &[("type", "raid1")]),
            (&[("type", "raid1")], &[("type", "linear")]),
        ] {
            let e = apply(sc, m).unwrap_err().to_string();
            assert!(
                e.starts_with("mutable_parameters: asks for") && e.contains("parameters.type="),
                "{e}"
            );
        }
    }
}
