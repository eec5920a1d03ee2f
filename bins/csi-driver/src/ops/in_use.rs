//! Whether a volume is in use, which DeleteVolume refuses (CSI spec, DeleteVolume: "Volume
//! in use | 9 FAILED_PRECONDITION") instead of removing the LV under a pod.
//!
//! lvm alone does not know: it refuses to remove an LV that is open (a mounted filesystem,
//! a process, a device stacked on it), but a raw block volume bind-mounted into a pod is
//! not open until the pod opens it, and lvremove takes it. So the node's records count
//! too, where the controller can see them (`--mode all`). Another host using an LV of a
//! shared VG holds its LV lock, which lvremove meets as [`vglet_lvm::LvmError::Locked`].

use vglet_lvm::Lv;
use vglet_state::Record;

use crate::node_state::staged::without_dashes;

/// What holds `lv` on node `node`, from its report and this node's record of it; `None`
/// when nothing does. A record of an earlier LV of the same name (another uuid) is not
/// about this one.
pub fn holder(lv: &Lv, record: Option<&Record>, node: &str) -> Option<String> {
    let record = record.filter(|r| {
        r.lv_uuid.is_empty()
            || lv.uuid.is_empty()
            || without_dashes(&r.lv_uuid) == without_dashes(&lv.uuid)
    });
    if let Some(r) = record {
        if !r.targets.is_empty() {
            let at: Vec<String> = r
                .targets
                .iter()
                .map(|t| t.path.display().to_string())
                .collect();
            return Some(format!(
                "published at {} on node {node} (staged at {})",
                at.join(", "),
                r.staging_path.display()
            ));
        }
        return Some(format!(
            "staged at {} on node {node}",
            r.staging_path.display()
        ));
    }
    // lv_attr's sixth character is `o` while the device is open (lvm's lv_device_open).
    if lv.attr.chars().nth(5) == Some('o') {
        return Some(format!(
            "its device is open on node {node} (a mounted filesystem, a process or a device stacked on it holds it)"
        ));
    }
    None
}

/// The holder of a shared-VG LV's sanlock lease: its node (from the tag vg-init wrote on
/// that host) when known, and always the host_id, which is what sanlock itself reports.
pub fn lock_holder(host_id: u64, vg_tags: &[String]) -> String {
    match vglet_lvm::tags::sanlock_host_node(vg_tags, host_id) {
        Some(node) => format!("node {node} (sanlock host_id {host_id})"),
        None => format!("the host with sanlock host_id {host_id}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use vglet_state::{Access, Activation, Target};

    use super::*;

    const UUID: &str = "f3kLtQ-cNnV-Qp2W-VMbU-hT0R-7cdn-9Zv0xw";

    fn lv(attr: &str) -> Lv {
        Lv {
            vg: "vg0".into(),
            name: "csi-a".into(),
            uuid: UUID.into(),
            attr: attr.into(),
            ..Default::default()
        }
    }

    fn record(targets: &[&str], uuid: &str) -> Record {
        Record {
            version: 1,
            volume_id: "vg0/csi-a".into(),
            vg: "vg0".into(),
            lv: "csi-a".into(),
            lv_uuid: uuid.into(),
            driver: "lvm.vglet.io".into(),
            access: Access::Block,
            read_only: false,
            activation: Activation::Local,
            staging_path: PathBuf::from("/var/lib/kubelet/staging/a"),
            targets: targets
                .iter()
                .map(|t| Target {
                    path: PathBuf::from(t),
                    read_only: false,
                })
                .collect(),
            crypt_mapping: None,
        }
    }

    #[test]
    fn free_when_closed_and_unrecorded() {
        assert_eq!(holder(&lv("-wi-a-----"), None, "n1"), None);
        assert_eq!(holder(&lv("-wi-------"), None, "n1"), None);
        // Without device-mapper lvm cannot tell: `X` is no opener.
        assert_eq!(holder(&lv("-wi-XX----"), None, "n1"), None);
    }

    #[test]
    fn open_device_holds_it() {
        let why = holder(&lv("-wi-ao----"), None, "n1").unwrap();
        assert!(why.contains("open on node n1"), "{why}");
    }

    #[test]
    fn records_hold_it_even_without_an_opener() {
        let why = holder(
            &lv("-wi-a-----"),
            Some(&record(&["/pods/p1/dev"], UUID)),
            "n1",
        )
        .unwrap();
        assert!(
            why.contains("published at /pods/p1/dev on node n1"),
            "{why}"
        );
        let why = holder(&lv("-wi-a-----"), Some(&record(&[], "")), "n1").unwrap();
        assert!(
            why.starts_with("staged at /var/lib/kubelet/staging/a"),
            "{why}"
        );
        // The uuid compares without lvm's dashes.
        let plain = without_dashes(UUID);
        assert!(holder(&lv("-wi-a-----"), Some(&record(&[], &plain)), "n1").is_some());
    }

    #[test]
    fn lock_holders_are_named_by_node_when_tagged() {
        let tags = vec![vglet_lvm::tags::sanlock_host_tag(2, "node-b")];
        assert_eq!(lock_holder(2, &tags), "node node-b (sanlock host_id 2)");
        assert_eq!(lock_holder(3, &tags), "the host with sanlock host_id 3");
    }

    #[test]
    fn a_record_of_another_lv_of_the_name_does_not() {
        let other = record(&["/pods/p1/dev"], "AbCdEf-GhIj-KlMn-OpQr-StUv-WxYz-012345");
        assert_eq!(holder(&lv("-wi-a-----"), Some(&other), "n1"), None);
        // ... but an opener still does.
        assert!(holder(&lv("-wi-ao----"), Some(&other), "n1").is_some());
    }
}
