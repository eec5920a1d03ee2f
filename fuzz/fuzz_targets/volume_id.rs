//! Volume ids come back from the CO in every RPC: parsing must never panic, and whatever it
//! accepts must be two valid LVM names that print back to the same text.
#![no_main]

use csi_driver::rules::volume_id::VolumeId;
use libfuzzer_sys::fuzz_target;
use vglet_lvm::naming::{validate_lv_name, validate_vg_name};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = VolumeId::parse(s) {
        assert!(validate_vg_name(&id.vg).is_ok(), "{s:?}");
        assert!(validate_lv_name(&id.lv).is_ok(), "{s:?}");
        assert_eq!(id.to_string(), s);
        assert_eq!(VolumeId::parse(&id.to_string()).as_ref(), Ok(&id));
    }
});
