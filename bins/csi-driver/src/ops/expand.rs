//! Growing a volume's LV: the one rule ControllerExpandVolume and, with `--expansion node`,
//! NodeExpandVolume of a node-local volume both follow.

use vglet_lvm::tags::VolumeTags;
use vglet_lvm::{Report, Vg};

use crate::driver::{Driver, OwnedVolume};
use crate::rules::capability::VgKind;
use crate::rules::capacity::Range;
use crate::rules::error::VolumeError;

/// Grows the LV of `v` to satisfy `range`, rounded up to whole extents; never shrinks it.
/// Returns the LV's size afterwards. Nothing runs when the LV is already big enough, so a
/// retry after a crash between the lvextend and the filesystem grow converges.
pub async fn grow_lv(
    driver: &Driver,
    v: &OwnedVolume,
    vg: &Vg,
    report: &Report,
    range: Range,
) -> Result<u64, VolumeError> {
    let id = &v.id;
    // LVs never shrink: a limit below the current size cannot be met (CSI spec,
    // ControllerExpandVolume: "Unsupported capacity | 11 OUT_OF_RANGE").
    if range.limit > 0 && range.limit < v.lv.size {
        return Err(VolumeError::OutOfRange(format!(
            "capacity_range: limit_bytes {} is below the volume's current size of {} bytes; volumes do not shrink",
            range.limit, v.lv.size
        )));
    }
    let size = range.lv_size(vg.extent_size)?;
    if size <= v.lv.size {
        return Ok(v.lv.size);
    }
    crate::ops::snapshot::refuse_with_thick_snapshots(report, id, "expanded")?;
    // A thin LV grows inside its pool, not in the VG's free space; any other grows on the
    // VG's data PVs, never onto its fast tier.
    let pvs = if v.lv.segtype == "thin" {
        Vec::new()
    } else {
        let room = crate::rules::layout::data_room(report, vg)?;
        if size - v.lv.size > room.free {
            return Err(VolumeError::NoSpace(format!(
                "volume group {} has {} bytes free{}, growing {id} by {} bytes",
                vg.name,
                room.free,
                room.on(),
                size - v.lv.size
            )));
        }
        room.pvs
    };
    let _w = driver.vg_locks.lock(&id.vg).await;
    match driver.lvm.extend_lv(&id.vg, &id.lv, size, &pvs).await {
        Ok(()) => {}
        // The node using the volume holds its LV lock. The VG lock still guards the
        // metadata, so extend without the LV lock; that node's NodeExpandVolume
        // refreshes its table before growing the filesystem.
        Err(vglet_lvm::LvmError::Locked(_)) if Driver::vg_kind(vg) == VgKind::Shared => {
            tracing::info!("LV is active on another host; extending under the VG lock only");
            driver
                .lvm
                .extend_lv_skip_lv_lock(&id.vg, &id.lv, size, &pvs)
                .await
                .map_err(VolumeError::lvm(format!("extending {id}")))?;
        }
        Err(e) => return Err(VolumeError::lvm(format!("extending {id}"))(e)),
    }
    let new = VolumeTags {
        size: range.required.max(size),
        ..v.tags.clone()
    };
    // The size tag is informational (CreateVolume compares the LV's real size), so
    // a failure to update it is only logged. A static volume gets no vglet tags:
    // they would make it look created by us, and deletable.
    if v.adopted.is_none()
        && let Err(e) = driver.retag(id, &v.tags, &new).await
    {
        tracing::warn!(error = %e, "could not update the size tag");
    }
    tracing::info!(bytes = size, "volume extended");
    Ok(size)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tonic::{Code, Request};
    use vglet_csi_proto::v1::controller_server::Controller;
    use vglet_csi_proto::v1::node_server::Node;
    use vglet_csi_proto::v1::*;
    use vglet_runner::{FakeRunner, Reply};

    use crate::service::controller::ControllerService;
    use crate::service::node::NodeService;

    const MIB: u64 = 1 << 20;

    /// A 64 MiB volume of ours in vg0 with the `vglet.fs` tag `fs`.
    fn lv(name: &str, fs: &str) -> String {
        format!(
            r#"{{"vg_name":"vg0","lv_name":"{name}","lv_uuid":"U-{name}","lv_attr":"-wi-a-----","lv_size":"67108864","lv_active":"active","lv_tags":"vglet.owner=lvm.vglet.io,vglet.name=pvc-{name},vglet.size=67108864,vglet.fs={fs}","lv_path":"/dev/vg0/{name}","lv_dm_path":"/dev/mapper/vg0-{name}","lv_layout":"linear","lv_role":"public","pool_lv":"","origin":"","data_percent":""}}"#
        )
    }

    /// lvm with one VG of `free` bytes free (4 MiB extents) holding two 64 MiB volumes of
    /// ours: `vg0/csi-b` (raw block) and `vg0/csi-f` (ext4).
    fn lvm(free: u64) -> FakeRunner {
        lvm_with_pvs(free, "")
    }

    /// [`lvm`] with the report's PV rows `pvs` (JSON objects, comma-separated).
    fn lvm_with_pvs(free: u64, pvs: &str) -> FakeRunner {
        let lvs = [lv("csi-b", "block"), lv("csi-f", "ext4")].join(",");
        let report = format!(
            r#"{{"report":[{{"vg":[{{"vg_name":"vg0","vg_size":"1073741824","vg_free":"{free}","vg_extent_size":"4194304","vg_lock_type":""}}],"pv":[{pvs}],"lv":[{lvs}]}}]}}"#
        );
        FakeRunner::with(move |c| match c.arg_strings().first().map(String::as_str) {
            Some("version") => Reply::ok("  LVM version:     2.03.16(2) (2022-05-18)\n"),
            Some("fullreport") => Reply::ok(report.clone()),
            Some("lvextend") | Some("lvchange") => Reply::ok(""),
            _ => Reply::fail(5, "unexpected"),
        })
    }

    /// The driver, and the directory its state dir is in (removed when dropped).
    async fn driver(
        f: &FakeRunner,
        expansion: &str,
    ) -> (Arc<crate::driver::Driver>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::test_config(dir.path(), &[format!("--expansion={expansion}")]);
        let d = crate::build_driver_with(config, Arc::new(f.clone()))
            .await
            .unwrap();
        (Arc::new(d), dir)
    }

    /// The commands that change something (no reads).
    fn changes(f: &FakeRunner) -> Vec<String> {
        f.call_lines()
            .into_iter()
            .filter(|l| !l.contains(" fullreport") && !l.contains(" version"))
            .collect()
    }

    /// NodeExpandVolume of `vg0/csi-b` published at a (plain file) path.
    async fn node_expand(
        d: &Arc<crate::driver::Driver>,
        required: u64,
        limit: u64,
    ) -> Result<i64, tonic::Status> {
        let path = tempfile::NamedTempFile::new().unwrap();
        NodeService { driver: d.clone() }
            .node_expand_volume(Request::new(NodeExpandVolumeRequest {
                volume_id: "vg0/csi-b".into(),
                volume_path: path.path().display().to_string(),
                capacity_range: Some(CapacityRange {
                    required_bytes: required as i64,
                    limit_bytes: limit as i64,
                }),
                ..Default::default()
            }))
            .await
            .map(|r| r.into_inner().capacity_bytes)
    }

    #[tokio::test]
    async fn node_mode_extends_the_lv_to_whole_extents_then_needs_nothing() {
        let f = lvm(512 * MIB);
        let (d, _dir) = driver(&f, "node").await;
        assert_eq!(
            node_expand(&d, 100 * MIB + 1, 0).await.unwrap(),
            (104 * MIB) as i64
        );
        let c = changes(&f);
        assert_eq!(c[0], format!("sh lvextend -L {}b vg0/csi-b", 104 * MIB));
        assert!(
            c[1..].iter().all(|l| l.starts_with("sh lvchange")),
            "only the size tag follows: {c:?}"
        );
        // Already big enough (the LV is 64 MiB in this report): nothing runs.
        let f = lvm(512 * MIB);
        let (d, _dir) = driver(&f, "node").await;
        assert_eq!(
            node_expand(&d, 64 * MIB, 0).await.unwrap(),
            (64 * MIB) as i64
        );
        assert_eq!(node_expand(&d, 0, 0).await.unwrap(), (64 * MIB) as i64);
        assert!(changes(&f).is_empty(), "{:?}", changes(&f));
    }

    #[tokio::test]
    async fn node_mode_refusals_change_nothing() {
        let f = lvm(16 * MIB);
        let (d, _dir) = driver(&f, "node").await;
        // 64 MiB more than the 16 MiB free.
        let e = node_expand(&d, 128 * MIB, 0).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        // 65 MiB rounds up to 68 MiB, above the limit.
        let e = node_expand(&d, 65 * MIB, 66 * MIB).await.unwrap_err();
        assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
        assert!(changes(&f).is_empty(), "{:?}", changes(&f));
    }

    #[tokio::test]
    async fn growth_stays_off_the_fast_tier() {
        // 48 MiB free on the data PV, 256 MiB on the fast one.
        let pvs = r#"{"pv_name":"/dev/vda","vg_name":"vg0","pv_free":"50331648","pv_tags":""},{"pv_name":"/dev/vdb","vg_name":"vg0","pv_free":"268435456","pv_tags":"vglet.fast"}"#;
        let f = lvm_with_pvs(304 * MIB, pvs);
        let (d, _dir) = driver(&f, "node").await;
        assert_eq!(
            node_expand(&d, 100 * MIB, 0).await.unwrap(),
            (100 * MIB) as i64
        );
        assert_eq!(
            changes(&f)[0],
            format!("sh lvextend -L {}b vg0/csi-b /dev/vda", 100 * MIB)
        );
        // 64 MiB more fit in the VG only with the fast PV's room: refused, nothing run.
        let f = lvm_with_pvs(304 * MIB, pvs);
        let (d, _dir) = driver(&f, "node").await;
        let e = node_expand(&d, 128 * MIB, 0).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(
            e.message()
                .contains("50331648 bytes free on its data physical volumes (/dev/vda"),
            "{e:?}"
        );
        assert!(changes(&f).is_empty(), "{:?}", changes(&f));
    }

    #[tokio::test]
    async fn node_mode_extends_nothing_for_a_path_that_is_not_the_volumes_mount() {
        let f = lvm(512 * MIB);
        let (d, _dir) = driver(&f, "node").await;
        let path = tempfile::tempdir().unwrap();
        let e = NodeService { driver: d }
            .node_expand_volume(Request::new(NodeExpandVolumeRequest {
                volume_id: "vg0/csi-f".into(),
                volume_path: path.path().display().to_string(),
                capacity_range: Some(CapacityRange {
                    required_bytes: (128 * MIB) as i64,
                    limit_bytes: 0,
                }),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert!(changes(&f).is_empty(), "{:?}", changes(&f));
    }

    #[tokio::test]
    async fn controller_mode_leaves_the_lv_to_the_controller() {
        let f = lvm(512 * MIB);
        let (d, _dir) = driver(&f, "controller").await;
        let e = node_expand(&d, 100 * MIB, 0).await.unwrap_err();
        assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
        assert!(changes(&f).is_empty(), "{:?}", changes(&f));
    }

    async fn advertises_expand(d: &Arc<crate::driver::Driver>) -> bool {
        use controller_service_capability::{Type, rpc::Type as R};
        ControllerService { driver: d.clone() }
            .controller_get_capabilities(Request::new(ControllerGetCapabilitiesRequest {}))
            .await
            .unwrap()
            .into_inner()
            .capabilities
            .iter()
            .any(|c| matches!(&c.r#type, Some(Type::Rpc(r)) if r.r#type == R::ExpandVolume as i32))
    }

    #[tokio::test]
    async fn expand_volume_is_advertised_only_in_controller_mode() {
        let f = lvm(512 * MIB);
        assert!(advertises_expand(&driver(&f, "controller").await.0).await);
        let (d, _dir) = driver(&f, "node").await;
        assert!(!advertises_expand(&d).await);
        // Still served when called (csictl may): the same rule extends the LV.
        let r = ControllerService { driver: d }
            .controller_expand_volume(Request::new(ControllerExpandVolumeRequest {
                volume_id: "vg0/csi-b".into(),
                capacity_range: Some(CapacityRange {
                    required_bytes: (96 * MIB) as i64,
                    limit_bytes: 0,
                }),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.capacity_bytes, (96 * MIB) as i64);
        assert!(!r.node_expansion_required, "a raw block volume");
        assert_eq!(
            changes(&f)[0],
            format!("sh lvextend -L {}b vg0/csi-b", 96 * MIB)
        );
    }
}
