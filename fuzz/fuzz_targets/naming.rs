//! The CSI name -> LV name mapping and the tag codec: every CSI name maps to a valid LV name
//! that activates in a short-named VG, two different names never share an LV, and every
//! string survives the tag codec unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vglet_lvm::naming::{
    decode_tag_value, encode_tag_value, lv_name_for, validate_lv_name, validate_served_vg_name,
    validate_tag, validate_volume,
};

/// controller.rs `MAX_NAME_LEN`.
const MAX_CSI_NAME: usize = 256;

fn check_one(name: &str) {
    let lv = lv_name_for(name);
    assert!(validate_lv_name(&lv).is_ok(), "{name:?} -> {lv:?}");
    assert!(lv.starts_with("csi-"), "{lv:?}");
    // Every LV name must fit into the longest VG name vglet serves (raw and dm limits).
    assert!(validate_volume("vg0", &lv).is_ok(), "{name:?} -> {lv:?}");
    let longest = "v".repeat(vglet_lvm::naming::MAX_SERVED_VG_LEN);
    assert!(validate_served_vg_name(&longest).is_ok());
    assert!(validate_volume(&longest, &lv).is_ok(), "{lv:?}");
    assert_eq!(lv_name_for(name), lv, "deterministic");

    let enc = encode_tag_value(name);
    // CreateVolume accepts names of up to 256 bytes; escaping triples a byte at most, so
    // the whole name tag stays within LVM's tag rules and length.
    if name.len() <= MAX_CSI_NAME {
        let tag = format!("vglet.name={enc}");
        assert!(validate_tag(&tag).is_ok(), "{name:?} -> {tag:?}");
    }
    assert_eq!(decode_tag_value(&enc).as_deref(), Some(name));
}

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes as a tag: decode must not panic, and anything it accepts is canonical.
    if let Ok(s) = std::str::from_utf8(data)
        && let Some(d) = decode_tag_value(s)
    {
        assert_eq!(encode_tag_value(&d), s);
    }
    // Two names from one input (split at the first 0 byte): injectivity.
    let (a, b) = match data.iter().position(|&x| x == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let a = String::from_utf8_lossy(a);
    let b = String::from_utf8_lossy(b);
    check_one(&a);
    check_one(&b);
    if a != b {
        assert_ne!(
            lv_name_for(&a),
            lv_name_for(&b),
            "{a:?} and {b:?} share an LV"
        );
    }
});
