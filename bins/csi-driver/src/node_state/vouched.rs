//! Volumes this process created, so that NodeStageVolume can stage one without an lvm read
//! (~350-800 ms under emulation, 20-50 ms on hardware, on every first stage).
//!
//! With node-local VGs the driver runs as `--mode all`: the controller that made an LV and
//! the node service that stages it are one process. What CreateVolume learned first-hand
//! (the LV is ours, its uuid, what it was created as, that its VG is node-local without
//! fsdax memory) is remembered here, in memory only: nothing outside the process can add
//! to it, unlike the volume context, which any PV author writes (docs/static-volumes.md).
//!
//! NodeStageVolume trusts an entry only when the kernel agrees with it: the device node
//! `/dev/<vg>/<lv>` exists (the LV is active here) and device-mapper names it with that very
//! uuid. lvm gives every LV a fresh random uuid, so a device carrying it is the LV
//! CreateVolume made, never one re-created under the name. Whatever does not agree, and
//! every volume after a restart, takes the lvm read as before.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use vglet_volume::host::{NodeHost, dm_device};
use vglet_volume::{SystemHost, device_path, dm_lv_ids, dm_uuid_is_lv, without_dashes};

use vglet_lvm::tags::Content;

use crate::rules::volume_id::VolumeId;

/// Entries beyond this are not remembered (their stage reads lvm): a bound on memory that
/// a node's volumes do not come near.
pub const MAX_REMEMBERED: usize = 16_384;

/// A volume as CreateVolume made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    pub lv_uuid: String,
    pub content: Content,
}

/// What this process's CreateVolume vouches for, by volume id.
#[derive(Debug, Default)]
pub struct VouchedVolumes {
    volumes: Mutex<HashMap<String, Vouched>>,
}

impl VouchedVolumes {
    pub fn remember(&self, id: &VolumeId, v: Vouched) {
        let mut m = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() < MAX_REMEMBERED || m.contains_key(&id.to_string()) {
            m.insert(id.to_string(), v);
        }
    }

    pub fn forget(&self, id: &VolumeId) {
        let mut m = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&id.to_string());
    }

    pub fn get(&self, id: &VolumeId) -> Option<Vouched> {
        let m = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&id.to_string()).cloned()
    }
}

/// lvm's text form of a uuid (6-4-4-4-4-4-6 characters) from its 32 characters.
pub fn lvm_uuid_text(raw: &str) -> Option<String> {
    if raw.len() != 32 || !raw.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let mut out = String::with_capacity(38);
    let mut at = 0;
    for (i, n) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.push_str(&raw[at..at + n]);
        at += n;
    }
    Some(out)
}

/// The uuid of LV `id` as device-mapper shows it on this node, if the LV is active here
/// and belongs to the VG with uuid `vg_uuid`: how CreateVolume learns a new LV's uuid
/// without reading it back from lvm.
pub fn active_lv_uuid(id: &VolumeId, vg_uuid: &str) -> Option<String> {
    let (_, dm_uuid) = dm_device(&SystemHost, &device_path(&id.vg, &id.lv))?;
    lv_uuid_in_vg(&dm_uuid, vg_uuid)
}

/// The LV part of a device-mapper uuid `LVM-<vg><lv>` whose VG part is `vg_uuid`.
fn lv_uuid_in_vg(dm_uuid: &str, vg_uuid: &str) -> Option<String> {
    let (vg, lv) = dm_lv_ids(dm_uuid)?;
    (vg == without_dashes(vg_uuid))
        .then(|| lvm_uuid_text(lv))
        .flatten()
}

/// Whether `dev` is the active LV with uuid `lv_uuid`, as `host` shows it.
pub fn device_is_lv(host: &dyn NodeHost, dev: &Path, lv_uuid: &str) -> bool {
    dm_device(host, dev).is_some_and(|(_, dm_uuid)| dm_uuid_is_lv(&dm_uuid, lv_uuid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LV: &str = "f3kLtQ-cNnV-Qp2W-VMbU-hT0R-7cdn-9Zv0xw";
    const VG: &str = "AbCdEf-GhIj-KlMn-OpQr-StUv-WxYz-012345";

    #[test]
    fn remembered_until_forgotten_and_bounded() {
        let created = VouchedVolumes::default();
        let id = VolumeId::parse("vg0/csi-a").unwrap();
        let v = Vouched {
            lv_uuid: LV.into(),
            content: Content::Filesystem("ext4".into()),
        };
        created.remember(&id, v.clone());
        assert_eq!(created.get(&id), Some(v.clone()));
        created.forget(&id);
        assert_eq!(created.get(&id), None);
        for i in 0..MAX_REMEMBERED + 10 {
            created.remember(
                &VolumeId::parse(&format!("vg0/csi-{i}")).unwrap(),
                v.clone(),
            );
        }
        assert_eq!(created.volumes.lock().unwrap().len(), MAX_REMEMBERED);
        assert_eq!(created.get(&VolumeId::parse("vg0/csi-1").unwrap()), Some(v));
    }

    #[test]
    fn uuid_text_is_lvms_grouping() {
        let raw = LV.replace('-', "");
        assert_eq!(lvm_uuid_text(&raw).as_deref(), Some(LV));
        assert_eq!(lvm_uuid_text("abc"), None);
        assert_eq!(lvm_uuid_text(&"é".repeat(16)), None);
    }

    #[test]
    fn the_lv_uuid_is_taken_only_from_a_device_of_the_expected_vg() {
        let dm = format!("LVM-{}{}\n", VG.replace('-', ""), LV.replace('-', ""));
        assert_eq!(lv_uuid_in_vg(&dm, VG).as_deref(), Some(LV));
        let other_vg = "ZZCdEf-GhIj-KlMn-OpQr-StUv-WxYz-012345";
        assert_eq!(lv_uuid_in_vg(&dm, other_vg), None);
        // LVM's internal layers carry a suffix and are never the LV itself.
        assert_eq!(lv_uuid_in_vg(&format!("{}-real", dm.trim_end()), VG), None);
        assert_eq!(lv_uuid_in_vg("CRYPT-LUKS2-abc", VG), None);
    }
}
