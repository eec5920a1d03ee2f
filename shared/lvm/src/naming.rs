//! LVM's naming rules, the CSI name -> LV name mapping, and the codec that lets any string
//! live inside an LVM tag.

use sha2::{Digest, Sha256};

/// Longest VG or LV name lvm accepts (`NAME_LEN` 128 including the NUL).
pub const MAX_NAME_LEN: usize = 127;

/// Longest `len(vg) + len(lv)` lvm 2.03.16 accepts: a longer pair fails in lvcreate with
/// "Internal error: LV name ... is not supported" even when both halves are valid alone.
/// Measured, not documented.
pub const MAX_VG_LV_LEN: usize = 124;

/// Longest device-mapper name (`DM_NAME_LEN` 128 including the NUL). The dm name is
/// `<vg>-<lv>` with every `-` inside either half doubled, and activation fails when it does
/// not fit, long after lvcreate succeeded.
pub const MAX_DM_NAME_LEN: usize = 127;

/// Longest tag vglet writes. lvm 2.03.16 itself has no limit, but the metadata area is small
/// and shared by every LV of the VG, and later lvm releases cap tags at this length.
pub const MAX_TAG_LEN: usize = 1024;

/// Prefix of every LV name vglet creates; it keeps vglet's LVs recognisable in `lvs` output
/// and keeps them clear of lvm's reserved prefixes.
pub const LV_NAME_PREFIX: &str = "csi-";

/// LV names may not start with these (lvm-string.c `_lvname_has_reserved_prefix`).
pub const RESERVED_LV_PREFIXES: &[&str] = &["pvmove", "snapshot"];

/// LV names may not contain these: lvm uses them for the hidden sub-LVs of thin pools,
/// caches, raid, mirrors, integrity, vdo and writecache. Checked against lvm 2.03.16 by
/// creating an LV named `a<s>x` for each (`_idata`, `_tpool`, `_vpool`, `_real`, `_cow` are
/// accepted there, so they are not listed).
pub const RESERVED_LV_SUBSTRINGS: &[&str] = &[
    "_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_imeta", "_iorig", "_mimage", "_mlog",
    "_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig",
];

/// Longest CSI name kept verbatim in the LV name.
const VERBATIM_MAX: usize = 100;
/// Longest sanitized prefix kept in a hashed LV name.
const HASHED_PREFIX_MAX: usize = 40;
/// Budget for the LV half of the dm name (hyphens counted twice). 80 keeps Kubernetes'
/// `pvc-<uuid>` names (45 with hyphens doubled) verbatim and leaves room for any VG name of
/// up to [`MAX_SERVED_VG_LEN`] bytes: lvm caps VG + LV at 124 bytes, device-mapper caps
/// `<vg>-<lv>` at 127 with hyphens doubled.
const MAX_LV_DM_LEN: usize = 80;
/// Longest VG name vglet serves, so that every LV name [`lv_name_for`] makes fits in it.
pub const MAX_SERVED_VG_LEN: usize = MAX_VG_LV_LEN - MAX_LV_DM_LEN;

/// Whether LVs named by [`lv_name_for`] always fit into VG `vg` (raw and dm-escaped limits).
pub fn validate_served_vg_name(vg: &str) -> Result<(), String> {
    validate_vg_name(vg)?;
    if vg.len() > MAX_SERVED_VG_LEN || dm_escaped_len(vg) + 1 + MAX_LV_DM_LEN > 127 {
        return Err(format!(
            "volume group name {vg:?} is too long for vglet: at most {MAX_SERVED_VG_LEN} bytes, and at most {} with each '-' counted twice",
            127 - 1 - MAX_LV_DM_LEN
        ));
    }
    Ok(())
}
/// Hex digits of sha256 in a hashed LV name: 64 bits, far beyond any VG's LV count.
const HASH_HEX_LEN: usize = 16;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-')
}

/// Length of a name's half of the dm name: lvm doubles each hyphen.
pub fn dm_escaped_len(name: &str) -> usize {
    name.len() + name.matches('-').count()
}

fn check_common(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{kind} name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{kind} name is {} bytes long, at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if name.starts_with('-') {
        return Err(format!("{kind} name {name:?} starts with '-'"));
    }
    if name == "." || name == ".." {
        return Err(format!("{kind} name {name:?} is not allowed"));
    }
    if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(format!(
            "{kind} name {name:?} contains {c:?}; only A-Z a-z 0-9 + _ . - are allowed"
        ));
    }
    Ok(())
}

/// LVM's rules for a VG name. Used on untrusted input (volume ids, flags, parameters)
/// before it reaches an argv.
pub fn validate_vg_name(name: &str) -> Result<(), String> {
    check_common("volume group", name)
}

/// LVM's rules for an LV name, including the reserved prefixes and substrings.
pub fn validate_lv_name(name: &str) -> Result<(), String> {
    check_common("logical volume", name)?;
    if let Some(p) = RESERVED_LV_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return Err(format!(
            "logical volume name {name:?} starts with {p:?}, which lvm reserves"
        ));
    }
    if let Some(s) = reserved_substring(name) {
        return Err(format!(
            "logical volume name {name:?} contains {s:?}, which lvm reserves"
        ));
    }
    Ok(())
}

/// Both names, plus the limits that only the pair has: lvm's combined length and the
/// device-mapper name that activation will build.
pub fn validate_volume(vg: &str, lv: &str) -> Result<(), String> {
    validate_vg_name(vg)?;
    validate_lv_name(lv)?;
    if vg.len() + lv.len() > MAX_VG_LV_LEN {
        return Err(format!(
            "{vg}/{lv} is too long: the two names together may have at most {MAX_VG_LV_LEN} bytes"
        ));
    }
    let dm = dm_escaped_len(vg) + 1 + dm_escaped_len(lv);
    if dm > MAX_DM_NAME_LEN {
        return Err(format!(
            "{vg}/{lv} is too long: its device-mapper name would have {dm} bytes, at most {MAX_DM_NAME_LEN} are allowed"
        ));
    }
    Ok(())
}

fn reserved_substring(name: &str) -> Option<&'static str> {
    RESERVED_LV_SUBSTRINGS
        .iter()
        .copied()
        .find(|s| name.contains(s))
}

fn is_verbatim_safe(csi_name: &str) -> bool {
    let mut chars = csi_name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && csi_name.len() <= VERBATIM_MAX
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && reserved_substring(csi_name).is_none()
        && dm_escaped_len(LV_NAME_PREFIX) + dm_escaped_len(csi_name) <= MAX_LV_DM_LEN
}

/// The LV name for a CSI volume name: deterministic (a retried CreateVolume finds the LV
/// it made before) and injective (two CSI names never share an LV).
///
/// Readable names are kept: `csi-<name>`. Any other name becomes
/// `csi-<sanitized prefix>+<16 hex of sha256(name)>`. A verbatim name never contains `+`
/// and a hashed one always does, so the two forms cannot collide. The result always passes
/// [`validate_lv_name`], and its dm half stays within 80 bytes so that it activates in any
/// VG accepted by [`validate_served_vg_name`].
pub fn lv_name_for(csi_name: &str) -> String {
    if is_verbatim_safe(csi_name) {
        return format!("{LV_NAME_PREFIX}{csi_name}");
    }
    let digest = Sha256::digest(csi_name.as_bytes());
    let hash = hex::encode(digest);
    format!(
        "{LV_NAME_PREFIX}{}+{}",
        sanitized_prefix(csi_name),
        &hash[..HASH_HEX_LEN]
    )
}

/// Readable leftovers of a name that cannot be used verbatim: only `[A-Za-z0-9_.-]`, no
/// reserved substring, short enough (dm-escaped) for the hashed form's budget.
fn sanitized_prefix(csi_name: &str) -> String {
    let mut s: String = csi_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Every reserved string starts with its only '_'; turning that '_' into '.' removes the
    // occurrence and cannot create another one.
    while let Some(r) = reserved_substring(&s) {
        s = s.replacen(r, &format!(".{}", &r[1..]), 1);
    }
    let mut out = String::new();
    let mut budget = 0;
    for c in s.chars() {
        let cost = if c == '-' { 2 } else { 1 };
        if budget + cost > HASHED_PREFIX_MAX {
            break;
        }
        budget += cost;
        out.push(c);
    }
    out
}

fn is_tag_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_+.-/=!:&#".contains(&b)
}

/// LVM's rules for a tag (lvm-string.c `validate_tag`), plus [`MAX_TAG_LEN`].
pub fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("tag is empty".to_string());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "tag is {} bytes long, at most {MAX_TAG_LEN} are allowed",
            tag.len()
        ));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !c.is_ascii() || !is_tag_byte(*c as u8))
    {
        return Err(format!(
            "tag {tag:?} contains {c:?}; only A-Z a-z 0-9 _ + . - / = ! : & # are allowed"
        ));
    }
    Ok(())
}

/// Makes any string storable in a tag: every byte of its UTF-8 that is not a tag character,
/// and `&` itself, becomes `&XX` (uppercase hex). Reversed by [`decode_tag_value`].
pub fn encode_tag_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_tag_byte(b) && b != b'&' {
            out.push(b as char);
        } else {
            out.push('&');
            out.push_str(&format!("{b:02X}"));
        }
    }
    out
}

/// Reverses [`encode_tag_value`]. `None` for anything the encoder cannot have produced
/// (a bad or non-canonical escape, a non-tag character, invalid UTF-8), so a tag edited by
/// hand is reported as malformed rather than silently misread.
pub fn decode_tag_value(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'&' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex
                .iter()
                .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h))
            {
                return None;
            }
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if is_tag_byte(v) && v != b'&' {
                return None;
            }
            out.push(v);
            i += 3;
        } else if is_tag_byte(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_vg_names_fit_every_lv_name() {
        let vg = "v".repeat(MAX_SERVED_VG_LEN);
        assert!(validate_served_vg_name(&vg).is_ok());
        assert!(validate_served_vg_name(&format!("{vg}x")).is_err());
        for name in ["x".repeat(75), "-".repeat(300), "a-".repeat(40)] {
            let lv = lv_name_for(&name);
            assert!(validate_volume(&vg, &lv).is_ok(), "{lv}");
        }
    }

    #[test]
    fn readable_names_are_kept() {
        assert_eq!(
            lv_name_for("pvc-0b7e3c1e-5f0d-4a8e-9d51-0123456789ab"),
            "csi-pvc-0b7e3c1e-5f0d-4a8e-9d51-0123456789ab"
        );
        assert_eq!(lv_name_for("a"), "csi-a");
        assert_eq!(lv_name_for("Vol_1.2-3"), "csi-Vol_1.2-3");
        let longest = "x".repeat(75);
        assert_eq!(lv_name_for(&longest), format!("csi-{longest}"));
        assert!(
            lv_name_for(&"x".repeat(76)).contains('+'),
            "past the budget: hashed"
        );
    }

    fn assert_hashed(csi: &str) -> String {
        let lv = lv_name_for(csi);
        let (head, hash) = lv.rsplit_once('+').expect("hashed form has '+'");
        assert!(head.starts_with("csi-"), "{lv}");
        assert_eq!(hash.len(), 16, "{lv}");
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{lv}");
        lv
    }

    #[test]
    fn other_names_are_hashed() {
        for csi in [
            "",
            "-leading-dash",
            ".hidden",
            "_under",
            "has space",
            "slash/inside",
            "plus+sign",
            "ünïcödé",
            "日本語",
            "vol_mimage",
            "x_tdata_tmeta",
            &"y".repeat(101),
            &"a-".repeat(50),
        ] {
            let lv = assert_hashed(csi);
            validate_lv_name(&lv).unwrap_or_else(|e| panic!("{csi:?} -> {lv}: {e}"));
            assert!(dm_escaped_len(&lv) <= MAX_LV_DM_LEN, "{lv}");
        }
    }

    #[test]
    fn hashed_form_keeps_a_readable_prefix() {
        let lv = lv_name_for("my volume/with_mimage");
        assert!(lv.starts_with("csi-my_volume_with.mimage+"), "{lv}");
        let digest = hex::encode(Sha256::digest("my volume/with_mimage".as_bytes()));
        assert!(lv.ends_with(&digest[..16]), "{lv}");
    }

    #[test]
    fn hashed_prefix_is_bounded() {
        let lv = lv_name_for(&"z".repeat(500));
        assert_eq!(lv.len(), 4 + HASHED_PREFIX_MAX + 1 + 16);
        let lv = lv_name_for(&"-".repeat(500));
        assert_eq!(lv.len(), 4 + HASHED_PREFIX_MAX / 2 + 1 + 16);
    }

    #[test]
    fn mapping_is_deterministic_and_injective_on_a_sample() {
        let mut inputs: Vec<String> = vec![
            "a".into(),
            "A".into(),
            "a b".into(),
            "a_b".into(),
            "a+b".into(),
            "a-b".into(),
            "".into(),
            " ".into(),
            "_".into(),
            "x_mimage".into(),
            "x.mimage".into(),
            "x_mimag".into(),
        ];
        for i in 0..2000 {
            inputs.push(format!("pvc-{i}"));
            inputs.push(format!("pvc {i}"));
            inputs.push(format!("pvc_{i}"));
            inputs.push(format!("{}{i}", "q".repeat(i % 130)));
        }
        inputs.sort();
        inputs.dedup();
        let mut seen = std::collections::HashMap::new();
        for csi in &inputs {
            let lv = lv_name_for(csi);
            assert_eq!(lv, lv_name_for(csi));
            validate_lv_name(&lv).unwrap_or_else(|e| panic!("{csi:?} -> {lv}: {e}"));
            if let Some(prev) = seen.insert(lv.clone(), csi.clone()) {
                panic!("{prev:?} and {csi:?} both map to {lv}");
            }
        }
    }

    #[test]
    fn vg_names() {
        for ok in ["vg0", "vglet-local", "a.b_c+d", &"v".repeat(127)] {
            validate_vg_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "-vg",
            "vg/lv",
            "vg lv",
            "vg;rm",
            "vg\n",
            "vég",
            "../etc",
            &"v".repeat(128),
        ] {
            assert!(validate_vg_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lv_names() {
        for ok in [
            "lv0",
            "csi-abc",
            "csi-x+0123456789abcdef",
            "my_lv",
            "snapshoT",
        ] {
            validate_lv_name(ok).unwrap();
        }
        for bad in [
            "",
            "..",
            "-x",
            "a/b",
            "a b",
            "snapshot1",
            "pvmove0",
            "data_tdata",
            "x_rimage_0",
            "x_wcorig",
            "x_cvol",
            "x_iorig",
            &"l".repeat(128),
        ] {
            assert!(validate_lv_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn volume_pair_limits() {
        validate_volume("vgletx", &"a".repeat(118)).unwrap();
        assert!(validate_volume("vgletx", &"a".repeat(119)).is_err());
        assert!(validate_volume("vg-data", &"a-".repeat(50)).is_err());
        validate_volume("vg-data", "csi-pvc-0b7e3c1e-5f0d-4a8e-9d51-0123456789ab").unwrap();
        assert!(validate_volume("vg", "a b").is_err());
        assert!(validate_volume("v g", "ab").is_err());
    }

    #[test]
    fn tags() {
        for ok in [
            "vglet.owner=lvm.vglet.io",
            "a/b:c!d#e&f+g",
            &"t".repeat(1024),
        ] {
            validate_tag(ok).unwrap();
        }
        for bad in ["", "a b", "a,b", "ä", "a\"b", &"t".repeat(1025)] {
            assert!(validate_tag(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn encode_leaves_tag_characters_alone() {
        assert_eq!(
            encode_tag_value("pvc-1_a.b+c/d=e!f:g#h"),
            "pvc-1_a.b+c/d=e!f:g#h"
        );
        assert_eq!(encode_tag_value("a&b"), "a&26b");
        assert_eq!(encode_tag_value("a b,c"), "a&20b&2Cc");
        assert_eq!(encode_tag_value("é"), "&C3&A9");
        assert_eq!(encode_tag_value(""), "");
    }

    #[test]
    fn decode_rejects_what_encode_cannot_produce() {
        for bad in ["&", "&2", "&2g", "&2c", "&41", "a b", "ä", "&FF", "&C3"] {
            assert_eq!(decode_tag_value(bad), None, "{bad:?}");
        }
        assert_eq!(decode_tag_value("a&26b").as_deref(), Some("a&b"));
    }

    #[test]
    fn tag_codec_round_trips() {
        let mut samples: Vec<String> = [
            "",
            " ",
            "&",
            "&&",
            "&26",
            "plain",
            "with space",
            "tab\there",
            "new\nline",
            "comma,sep",
            "quote\"s'",
            "back\\slash",
            "percent%41",
            "ünïcödé",
            "日本語のボリューム",
            "emoji 🚀💾",
            "nul\0byte",
            "\u{7f}\u{80}\u{ffff}\u{10ffff}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        samples.extend((0u32..0x800).filter_map(char::from_u32).map(String::from));
        let all_ascii: String = (0u8..128).map(char::from).collect();
        samples.push(all_ascii);
        // A cheap deterministic generator: no dev-dependency for a few thousand strings.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3000 {
            let len = (x % 24) as usize;
            let s: String = (0..len)
                .filter_map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from_u32((x % 0x3000) as u32)
                })
                .collect();
            samples.push(s);
        }
        for s in &samples {
            let enc = encode_tag_value(s);
            if !enc.is_empty() {
                validate_tag(&enc.chars().take(MAX_TAG_LEN).collect::<String>())
                    .unwrap_or_else(|e| panic!("{s:?} -> {enc:?}: {e}"));
            }
            assert_eq!(decode_tag_value(&enc).as_deref(), Some(s.as_str()), "{s:?}");
        }
    }
}
