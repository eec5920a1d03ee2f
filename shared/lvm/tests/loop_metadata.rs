//! Real lvm on a loop device: creates a VG, then drives `Lvm` through create, read, tag,
//! extend and remove, and checks what lvm reports back.
//!
//! Needs root, losetup and lvm; skips (with the reason on stderr) otherwise. Runs with
//! `activation = 0` so that it only ever writes metadata: it works on hosts without
//! device-mapper and never leaves dm devices behind on hosts that have it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use vglet_lvm::naming::lv_name_for;
use vglet_lvm::tags::VolumeTags;
use vglet_lvm::{LvCreate, Lvm, LvmError, round_up};
use vglet_runner::SystemRunner;

const NO_ACTIVATION: &str = "global { activation = 0 }";
const MIB: u64 = 1024 * 1024;

/// Setup and teardown use std::process directly: Drop cannot await, and this scaffolding
/// is not the code under test.
fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Owns everything the test creates on the host and removes it even when an assertion
/// fails half-way.
struct LoopVg {
    image: PathBuf,
    device: Option<String>,
    vg: String,
    vg_created: bool,
}

impl LoopVg {
    fn setup(lvm_bin: &str) -> Result<LoopVg, String> {
        let pid = std::process::id();
        let mut guard = LoopVg {
            image: std::env::temp_dir().join(format!("vglet-lvm-loop-{pid}.img")),
            device: None,
            vg: format!("vglet-loop-{pid}"),
            vg_created: false,
        };
        let file = std::fs::File::create(&guard.image).map_err(|e| e.to_string())?;
        file.set_len(256 * MIB).map_err(|e| e.to_string())?;
        drop(file);
        let image = guard.image.to_string_lossy().to_string();
        let device = sh("losetup", &["-f", "--show", &image])?;
        guard.device = Some(device.clone());
        sh(
            lvm_bin,
            &["pvcreate", "-y", "--config", NO_ACTIVATION, &device],
        )?;
        sh(
            lvm_bin,
            &[
                "vgcreate",
                "-y",
                "--config",
                NO_ACTIVATION,
                &guard.vg,
                &device,
            ],
        )?;
        guard.vg_created = true;
        Ok(guard)
    }
}

impl Drop for LoopVg {
    fn drop(&mut self) {
        let lvm = vglet_runner::resolve_program("lvm")
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_else(|| "/sbin/lvm".into());
        // Cleanup is best effort: report what could not be undone and carry on.
        let report = |r: Result<String, String>| {
            if let Err(e) = r {
                eprintln!("cleanup: {e}");
            }
        };
        if self.vg_created {
            report(sh(
                &lvm,
                &["vgremove", "-ff", "-y", "--config", NO_ACTIVATION, &self.vg],
            ));
        }
        if let Some(dev) = &self.device {
            report(sh(
                &lvm,
                &["pvremove", "-ff", "-y", "--config", NO_ACTIVATION, dev],
            ));
            report(sh("losetup", &["-d", dev]));
        }
        let _ = std::fs::remove_file(&self.image);
    }
}

fn skip(why: &str) {
    eprintln!("SKIP loop_metadata: {why}");
}

#[tokio::test]
async fn loop_metadata_roundtrip() {
    if !is_root() {
        return skip("needs root");
    }
    let Some(lvm_bin) = vglet_runner::resolve_program("lvm") else {
        return skip("no lvm binary");
    };
    if vglet_runner::resolve_program("losetup").is_none() {
        return skip("no losetup");
    }
    let lvm_bin = lvm_bin.to_string_lossy().to_string();
    let guard = match LoopVg::setup(&lvm_bin) {
        Ok(g) => g,
        // No loop devices in this container/VM: nothing to test against.
        Err(e) => return skip(&format!("cannot set up a loop VG: {e}")),
    };
    let vg_name = guard.vg.clone();
    let device = guard.device.clone().unwrap();

    let lvm = Lvm::new(
        Arc::new(SystemRunner::new()),
        vglet_runner::Programs::found_on_this_host(),
    )
    .unwrap();
    lvm.set_config(Some(NO_ACTIVATION.to_string()));
    lvm.set_device_scope(vec![device.clone()]);
    let version = lvm.version().await.unwrap();
    eprintln!("lvm {version}, VG {vg_name} on {device}");

    let vg = lvm.vg(&vg_name).await.unwrap();
    assert_eq!(vg.name, vg_name);
    assert_eq!(vg.extent_size, 4 * MIB);
    assert_eq!((vg.pv_count, vg.lv_count), (1, 0));
    assert_eq!(vg.free, vg.free_count * vg.extent_size);
    assert_eq!(vg.free, vg.size);
    assert!(!vg.is_shared());

    // A CSI name that only fits the hashed form ('+' in the LV name) and a readable one.
    let csi_name = "pvc loop/ü 1";
    let lv_name = lv_name_for(csi_name);
    assert!(lv_name.contains('+'), "{lv_name}");
    let tags = VolumeTags {
        owner: "lvm.vglet.io".into(),
        name: csi_name.into(),
        size: 10 * MIB,
        fs: "ext4".into(),
    };
    let req = LvCreate {
        vg: vg_name.clone(),
        name: lv_name.clone(),
        size: 10 * MIB,
        tags: tags.to_tags(),
        activate: false,
        pvs: vec![],
    };
    lvm.create_lv(&req).await.unwrap();
    let readable = lv_name_for("pvc-loop-2");
    assert_eq!(readable, "csi-pvc-loop-2");
    lvm.create_lv(&LvCreate {
        name: readable.clone(),
        size: 4 * MIB,
        tags: vec![],
        ..req.clone()
    })
    .await
    .unwrap();

    let lv = lvm
        .lv(&vg_name, &lv_name)
        .await
        .unwrap()
        .expect("created LV");
    assert_eq!(lv.size, round_up(10 * MIB, vg.extent_size));
    assert_eq!(lv.size, 12 * MIB);
    assert_eq!(lv.vg, vg_name);
    assert_eq!(lv.path, format!("/dev/{vg_name}/{lv_name}"));
    assert_eq!(lv.segtype, "linear");
    assert!(!lv.active);
    assert!(!lv.is_hidden());
    assert_eq!(VolumeTags::from_tags(&lv.tags), Some(tags.clone()));
    assert!(vglet_lvm::tags::is_owned_by(&lv.tags, "lvm.vglet.io"));

    // A read of one LV: the VG and its PVs in full, of the LVs only that one (and LVs
    // whose origin it is: none here). The hashed name's '+' goes through the selection.
    let one = lvm.report_lv(&vg_name, &lv_name).await.unwrap();
    let whole = lvm.report(Some(&vg_name)).await.unwrap();
    assert_eq!(one.vgs, whole.vgs);
    assert_eq!(one.pvs, whole.pvs);
    assert_eq!(whole.lvs.len(), 2);
    assert_eq!(one.lvs, vec![whole.lv(&vg_name, &lv_name).unwrap().clone()]);
    assert_eq!(one.lvs[0].segtype, "linear");
    let none = lvm.report_lv(&vg_name, "csi-nothing-here").await.unwrap();
    assert_eq!((none.vgs.len(), none.lvs.len()), (1, 0));
    let e = lvm
        .report_lv("vglet-no-such-vg", &lv_name)
        .await
        .unwrap_err();
    assert!(matches!(e, LvmError::VgNotFound(_)), "{e:?}");

    let vg_after = lvm.vg(&vg_name).await.unwrap();
    assert_eq!(vg_after.lv_count, 2);
    assert_eq!(vg_after.free, vg.free - 12 * MIB - 4 * MIB);

    let e = lvm.create_lv(&req).await.unwrap_err();
    assert!(
        matches!(&e, LvmError::AlreadyExists(n) if *n == format!("{vg_name}/{lv_name}")),
        "{e:?}"
    );

    let huge = LvCreate {
        name: "csi-huge".into(),
        size: 1024 * MIB,
        ..req.clone()
    };
    let e = lvm.create_lv(&huge).await.unwrap_err();
    match &e {
        LvmError::InsufficientSpace {
            vg, needed, free, ..
        } => {
            assert_eq!(*vg, vg_name);
            assert_eq!(*needed, Some(256));
            assert_eq!(*free, Some(vg_after.free_count));
        }
        other => panic!("{other:?}"),
    }

    lvm.extend_lv(&vg_name, &lv_name, 20 * MIB, &[])
        .await
        .unwrap();
    assert_eq!(
        lvm.lv(&vg_name, &lv_name).await.unwrap().unwrap().size,
        20 * MIB
    );
    // Same size and smaller: already done.
    lvm.extend_lv(&vg_name, &lv_name, 20 * MIB, &[])
        .await
        .unwrap();
    lvm.extend_lv(&vg_name, &lv_name, 8 * MIB, &[])
        .await
        .unwrap();
    assert_eq!(
        lvm.lv(&vg_name, &lv_name).await.unwrap().unwrap().size,
        20 * MIB
    );
    let e = lvm
        .extend_lv(&vg_name, &lv_name, 1024 * MIB, &[])
        .await
        .unwrap_err();
    assert!(matches!(e, LvmError::InsufficientSpace { .. }), "{e:?}");

    let extra = vec!["vglet.extra=1".to_string()];
    lvm.add_lv_tags(&vg_name, &lv_name, &extra).await.unwrap();
    let lv = lvm.lv(&vg_name, &lv_name).await.unwrap().unwrap();
    assert!(lv.tags.contains(&extra[0]), "{:?}", lv.tags);
    lvm.del_lv_tags(&vg_name, &lv_name, &extra).await.unwrap();
    let lv = lvm.lv(&vg_name, &lv_name).await.unwrap().unwrap();
    assert!(!lv.tags.contains(&extra[0]), "{:?}", lv.tags);
    assert_eq!(VolumeTags::from_tags(&lv.tags), Some(tags));

    let report = lvm.report(None).await.unwrap();
    assert!(report.vg(&vg_name).is_some());
    assert_eq!(
        report
            .pvs_in(&vg_name)
            .map(|p| p.name.clone())
            .collect::<Vec<_>>(),
        vec![device.clone()]
    );
    assert_eq!(report.lvs_in(&vg_name).count(), 2);

    assert_eq!(lvm.lv(&vg_name, "csi-missing").await.unwrap(), None);
    let e = lvm.vg("vglet-no-such-vg").await.unwrap_err();
    assert!(matches!(e, LvmError::VgNotFound(_)), "{e:?}");

    lvm.remove_lv(&vg_name, &lv_name).await.unwrap();
    lvm.remove_lv(&vg_name, &readable).await.unwrap();
    assert_eq!(lvm.lv(&vg_name, &lv_name).await.unwrap(), None);
    let e = lvm.remove_lv(&vg_name, &lv_name).await.unwrap_err();
    assert!(
        matches!(&e, LvmError::LvNotFound(n) if *n == format!("{vg_name}/{lv_name}")),
        "{e:?}"
    );
    assert_eq!(lvm.vg(&vg_name).await.unwrap().free, vg.free);

    // A full metadata area (lvm's default, about 1 MiB on this PV) is its own error and
    // writes nothing. Each LV here carries 60 tags of 1,000 bytes, so some 8 fill it (the
    // VG goes with the guard: removing them one by one costs a commit each).
    let fat: Vec<String> = (0..60)
        .map(|i| format!("t{i:02}.{}", "x".repeat(996)))
        .collect();
    let mut made = Vec::new();
    let full = loop {
        let name = format!("csi-fat-{}", made.len());
        let r = lvm
            .create_lv(&LvCreate {
                name: name.clone(),
                size: 4 * MIB,
                tags: fat.clone(),
                ..req.clone()
            })
            .await;
        match r {
            Ok(()) => made.push(name),
            Err(e) => break (name, e),
        }
        assert!(made.len() < 100, "the metadata area never filled");
    };
    let (refused, e) = full;
    assert!(
        matches!(&e, LvmError::MetadataFull { vg, .. } if *vg == vg_name),
        "{e:?}"
    );
    assert!(made.len() >= 4, "filled after {} LVs", made.len());
    assert_eq!(lvm.lv(&vg_name, &refused).await.unwrap(), None);
    assert_eq!(lvm.vg(&vg_name).await.unwrap().lv_count, made.len() as u64);

    drop(guard);
    assert!(
        sh(&lvm_bin, &["vgs", "--config", NO_ACTIVATION, &vg_name]).is_err(),
        "VG left behind"
    );
}
