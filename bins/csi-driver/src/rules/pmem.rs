//! Persistent memory: which served VGs a StorageClass's `pmemMode` admits. The VG tags
//! vg-init writes (`vglet.pmem=<mode>`, `vglet.pmem-region=<region>`) are the only source:
//! the same tags make the node mount fsdax volumes with DAX.

use vglet_lvm::Vg;
use vglet_lvm::tags::{PMEM_REGION_PREFIX, PmemMode, VgPmem};

use crate::rules::error::VolumeError;
use crate::rules::params::PMEM_MODE;

/// Whether the driver may choose a VG with these tags by itself for `want`. Without a mode,
/// ordinary and fsdax VGs qualify (fsdax is the default mode), sector VGs do not: a sector
/// volume is never handed out to a StorageClass that did not ask for one. VGs with
/// contradicting PMEM tags are never chosen.
pub fn admits(tags: &[String], want: Option<PmemMode>) -> bool {
    match (VgPmem::from_tags(tags), want) {
        (VgPmem::Bad, _) => false,
        (pmem, Some(m)) => pmem == VgPmem::Mode(m),
        (VgPmem::None, None) => true,
        (VgPmem::Mode(m), None) => m == PmemMode::Fsdax,
    }
}

/// Whether a VG the StorageClass names (`volumeGroup`) or a volume already lives in agrees
/// with `want`. Without a mode any VG does: naming a VG is an explicit choice.
pub fn agrees(tags: &[String], want: Option<PmemMode>) -> bool {
    want.is_none_or(|m| VgPmem::from_tags(tags) == VgPmem::Mode(m))
}

/// "vg0 (not persistent memory)", "pm0 (fsdax in region0)", for error messages.
pub fn describe(vg: &Vg) -> String {
    let region = vg
        .tags
        .iter()
        .find_map(|t| t.strip_prefix(PMEM_REGION_PREFIX));
    let what = match (VgPmem::from_tags(&vg.tags), region) {
        (VgPmem::None, _) => "not persistent memory".to_string(),
        (VgPmem::Bad, _) => "contradicting vglet.pmem tags".to_string(),
        (VgPmem::Mode(m), Some(r)) => format!("{m} in {r}"),
        (VgPmem::Mode(m), None) => m.to_string(),
    };
    format!("{} ({what})", vg.name)
}

/// INVALID_ARGUMENT for a named VG that contradicts `pmemMode`.
pub fn check_named(vg: &Vg, want: Option<PmemMode>) -> Result<(), VolumeError> {
    if agrees(&vg.tags, want) {
        return Ok(());
    }
    Err(VolumeError::invalid(
        format!("parameters.{PMEM_MODE}"),
        format!(
            "asks for {} persistent memory, but the volume group is {}",
            want.map(|m| m.as_str()).unwrap_or_default(),
            describe(vg)
        ),
    ))
}

/// INVALID_ARGUMENT when no served VG is of the asked (or default) mode. `vgs`: the served
/// VGs that could be read.
pub fn none_of_mode(want: Option<PmemMode>, vgs: &[Vg]) -> VolumeError {
    let served: Vec<String> = vgs.iter().map(describe).collect();
    let served = if served.is_empty() {
        "none readable".to_string()
    } else {
        served.join(", ")
    };
    match want {
        Some(m) => VolumeError::invalid(
            format!("parameters.{PMEM_MODE}"),
            format!(
                "no served volume group is persistent memory in {m} mode (a VG vg-init tagged {}); served: {served}",
                m.tag()
            ),
        ),
        None => VolumeError::invalid(
            "parameters",
            format!(
                "no served volume group takes volumes without {PMEM_MODE}: sector-mode persistent memory is used only with {PMEM_MODE}: sector; served: {served}"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    fn vg(name: &str, t: &[&str]) -> Vg {
        Vg {
            name: name.into(),
            tags: tags(t),
            ..Default::default()
        }
    }

    const FSDAX: &[&str] = &[
        "vglet.managed=true",
        "vglet.pmem=fsdax",
        "vglet.pmem-region=region0",
    ];
    const SECTOR: &[&str] = &["vglet.pmem=sector", "vglet.pmem-region=region1"];
    const PLAIN: &[&str] = &["vglet.managed=true"];
    const BAD: &[&str] = &["vglet.pmem=fsdax", "vglet.pmem=sector"];

    #[test]
    fn choice_by_mode() {
        let fs = Some(PmemMode::Fsdax);
        let se = Some(PmemMode::Sector);
        let cases: [(&[&str], Option<PmemMode>, bool); 12] = [
            (FSDAX, fs, true),
            (FSDAX, se, false),
            (FSDAX, None, true),
            (SECTOR, se, true),
            (SECTOR, fs, false),
            (SECTOR, None, false),
            (PLAIN, None, true),
            (PLAIN, fs, false),
            (PLAIN, se, false),
            (BAD, None, false),
            (BAD, fs, false),
            (BAD, se, false),
        ];
        for (t, want, ok) in cases {
            assert_eq!(admits(&tags(t), want), ok, "{t:?} {want:?}");
        }
    }

    #[test]
    fn named_vg_must_agree_only_when_a_mode_is_asked() {
        assert!(agrees(&tags(SECTOR), None));
        assert!(agrees(&tags(PLAIN), None));
        assert!(agrees(&tags(SECTOR), Some(PmemMode::Sector)));
        assert!(!agrees(&tags(PLAIN), Some(PmemMode::Fsdax)));
        let e = check_named(&vg("pm1", SECTOR), Some(PmemMode::Fsdax)).unwrap_err();
        assert!(matches!(e, VolumeError::Invalid { .. }), "{e:?}");
        let m = e.to_string();
        assert!(
            m.contains("parameters.pmemMode") && m.contains("pm1 (sector in region1)"),
            "{m}"
        );
        check_named(&vg("pm0", FSDAX), Some(PmemMode::Fsdax)).unwrap();
    }

    #[test]
    fn missing_mode_names_what_is_served() {
        let vgs = [
            vg("vg0", PLAIN),
            vg("pm1", SECTOR),
            vg("x", BAD),
            vg("pm0", &["vglet.pmem=fsdax"]),
        ];
        let m = none_of_mode(Some(PmemMode::Fsdax), &vgs).to_string();
        assert!(
            m.contains("in fsdax mode") && m.contains("vglet.pmem=fsdax"),
            "{m}"
        );
        assert!(m.contains("vg0 (not persistent memory)"), "{m}");
        assert!(m.contains("pm1 (sector in region1)"), "{m}");
        assert!(m.contains("x (contradicting"), "{m}");
        assert!(m.contains("pm0 (fsdax)"), "{m}");
        let m = none_of_mode(None, &vgs[1..2]).to_string();
        assert!(m.contains("pmemMode: sector"), "{m}");
    }
}
