//! Discovery against a fake sysfs tree, fake udev links and a FakeRunner that answers for
//! blkid and lvm.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vglet_mount::MountEntry;
use vglet_runner::{Command, FakeRunner, Reply};

use super::*;
use crate::inventory::PMEM_NAMESPACES_VERSION;
use crate::selection::SelectionSpec;
use crate::sysfs::fake::{FakeDisk, add_disk};

const GIB: u64 = 1 << 30;

struct Host {
    _tmp: tempfile::TempDir,
    sys: PathBuf,
    dev: PathBuf,
    /// blkid `-o export` output by kernel name; absent means "no signature" (exit 2).
    blkid: HashMap<String, String>,
    /// pv_name -> vg_name for the lvm report.
    pvs: Vec<(String, String)>,
    mounts: Vec<MountEntry>,
}

impl Host {
    fn new() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().join("sys/class/block");
        let dev = tmp.path().join("dev");
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        Host {
            _tmp: tmp,
            sys,
            dev,
            blkid: HashMap::new(),
            pvs: Vec::new(),
            mounts: Vec::new(),
        }
    }

    /// Also creates the device node (a plain file: discovery only opens it read-only).
    fn disk(&mut self, d: FakeDisk) -> &mut Self {
        add_disk(&self.sys, &d);
        std::fs::write(self.dev.join(&d.name), "").unwrap();
        for (p, _, _) in &d.partitions {
            std::fs::write(self.dev.join(p), "").unwrap();
        }
        self
    }

    fn link(&mut self, sub: &str, link: &str, target: &str) -> &mut Self {
        let dir = self.dev.join("disk").join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(format!("../../{target}"), dir.join(link)).unwrap();
        self
    }

    fn blkid(&mut self, name: &str, export: &str) -> &mut Self {
        self.blkid.insert(name.into(), export.into());
        self
    }

    fn pv(&mut self, name: &str, vg: &str) -> &mut Self {
        self.blkid(name, "TYPE=LVM2_member\nUSAGE=raid\n");
        let path = self.dev.join(name).display().to_string();
        self.pvs.push((path, vg.into()));
        self
    }

    fn runner(&self) -> FakeRunner {
        let blkid = self.blkid.clone();
        let pvs = self.pvs.clone();
        FakeRunner::with(move |c: &Command| {
            let args = c.arg_strings();
            match c.program_name().as_str() {
                "blkid" => {
                    let dev = args.last().unwrap();
                    let name = Path::new(dev).file_name().unwrap().to_str().unwrap();
                    match blkid.get(name) {
                        Some(out) => Reply::ok(out.clone()),
                        None => Reply::fail(2, ""),
                    }
                }
                "lvm" if args[0] == "version" => {
                    Reply::ok("  LVM version:     2.03.16(2) (2022-05-18)\n")
                }
                "lvm" if args[0] == "fullreport" => Reply::ok(fullreport(&pvs)),
                _ => Reply::fail(127, format!("unexpected command {}", c.argv_string())),
            }
        })
    }

    async fn discover(
        &self,
        f: impl FnOnce(&mut SelectionSpec, &mut DiscoverOptions),
    ) -> (Inventory, FakeRunner) {
        let mut spec = SelectionSpec::default();
        let mut opts = DiscoverOptions::new(Selection::new(&SelectionSpec::default()).unwrap());
        f(&mut spec, &mut opts);
        opts.selection = Selection::new(&spec).unwrap();
        opts.sys_block = self.sys.clone();
        opts.dev_dir = self.dev.clone();
        let runner = self.runner();
        let inv = Discoverer::new(Arc::new(runner.clone()), Programs::all_in("/sbin"))
            .unwrap()
            .with_mounts(self.mounts.clone())
            .discover(&opts)
            .await
            .unwrap();
        (inv, runner)
    }

    fn p(&self, rel: &str) -> String {
        self.dev.join(rel).display().to_string()
    }
}

fn fullreport(pvs: &[(String, String)]) -> String {
    let mut vgs: Vec<&str> = pvs
        .iter()
        .map(|(_, vg)| vg.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    vgs.dedup();
    let mut elements: Vec<serde_json::Value> = vgs
        .iter()
        .map(|vg| {
            serde_json::json!({
                "vg": [{"vg_name": vg, "vg_uuid": format!("{vg}-uuid-0000")}],
                "pv": pvs.iter().filter(|(_, v)| v == vg)
                    .map(|(p, v)| serde_json::json!({"pv_name": p, "vg_name": v}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    elements.push(serde_json::json!({
        "pv": pvs.iter().filter(|(_, v)| v.is_empty())
            .map(|(p, _)| serde_json::json!({"pv_name": p, "vg_name": ""}))
            .collect::<Vec<_>>(),
    }));
    serde_json::json!({ "report": elements }).to_string()
}

fn mount(dev: (u32, u32), at: &str) -> MountEntry {
    MountEntry {
        mount_id: 1,
        parent_id: 0,
        major: dev.0,
        minor: dev.1,
        root: PathBuf::from("/"),
        mount_point: PathBuf::from(at),
        fs_type: "ext4".into(),
        source: None,
        options: vec!["rw".into()],
    }
}

fn skipped<'a>(inv: &'a Inventory, kernel: &str) -> &'a Skipped {
    inv.skipped
        .iter()
        .find(|s| s.kernel_path.ends_with(&format!("/{kernel}")))
        .unwrap_or_else(|| panic!("{kernel} not skipped: {inv:#?}"))
}

fn chosen_names(inv: &Inventory) -> Vec<String> {
    inv.devices
        .iter()
        .map(|d| d.kernel_path.rsplit('/').next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_skip_reason_and_blank_disks_chosen() {
    let mut h = Host::new();
    h.disk(FakeDisk::new("vdb", (254, 16), 10 * GIB))
        .disk(FakeDisk::new("vdc", (254, 32), 10 * GIB))
        .blkid("vdc", "TYPE=ext4\nUSAGE=filesystem\nUUID=x\n")
        .disk(FakeDisk {
            partitions: vec![("vdd1".into(), (254, 49), vec![])],
            ..FakeDisk::new("vdd", (254, 48), 10 * GIB)
        })
        .blkid("vdd", "PTTYPE=gpt\n")
        .disk(FakeDisk {
            holders: vec!["md0".into()],
            ..FakeDisk::new("vde", (254, 64), 10 * GIB)
        })
        .disk(FakeDisk {
            ro: true,
            ..FakeDisk::new("vdf", (254, 80), 10 * GIB)
        })
        .disk(FakeDisk {
            removable: true,
            ..FakeDisk::new("vdg", (254, 96), 10 * GIB)
        })
        .disk(FakeDisk::new("vdh", (254, 112), 100 << 20))
        .disk(FakeDisk::new("vdi", (254, 128), 10 * GIB))
        .pv("vdi", "other")
        .disk(FakeDisk::new("vdj", (254, 144), 10 * GIB))
        .pv("vdj", "")
        .disk(FakeDisk::new("vdk", (254, 160), 10 * GIB))
        .blkid("vdk", "TYPE=swap\nUSAGE=other\n")
        .disk(FakeDisk::new("sda", (8, 0), 10 * GIB));
    h.mounts.push(mount((254, 49), "/boot"));
    let (inv, runner) = h
        .discover(|s, o| {
            s.globs = vec![format!("{}/vd*", h.dev.display())];
            o.target_vg = Some("vg0".into());
        })
        .await;
    assert_eq!(chosen_names(&inv), ["vdb"]);
    let vdb = &inv.devices[0];
    assert_eq!(vdb.path, h.p("vdb"));
    assert_eq!(vdb.size_bytes, 10 * GIB);
    assert_eq!(vdb.source, DeviceSource::Disk);
    assert!(vdb.reason.contains("matched glob"), "{}", vdb.reason);
    let reasons = |k| skipped(&inv, k).reasons.join("; ");
    assert_eq!(
        reasons("vdc"),
        "holds an ext4 filesystem; not taken without --wipe"
    );
    assert_eq!(
        reasons("vdd"),
        "partition vdd1 mounted at /boot; holds a gpt partition table; not taken without --wipe; has partitions: vdd1"
    );
    assert_eq!(
        reasons("vde"),
        "in use by md0 (holders: device-mapper, md, ...); never taken, not even with --wipe"
    );
    assert_eq!(reasons("vdf"), "read-only");
    assert_eq!(reasons("vdg"), "removable media");
    assert_eq!(reasons("vdh"), "smaller than --min-size (100 MiB < 1 GiB)");
    assert!(
        reasons("vdi").starts_with("a PV of VG other"),
        "{}",
        reasons("vdi")
    );
    // The orphan PV: the same refusal vg-init gives without --wipe.
    assert!(
        reasons("vdj").starts_with("an orphan LVM PV"),
        "{}",
        reasons("vdj")
    );
    assert!(reasons("vdj").ends_with("not taken without --wipe"));
    assert_eq!(reasons("vdk"), "holds swap space; not taken without --wipe");
    // Not matched: not listed without --explain; partitions are never offered by /dev/vd*.
    assert!(!inv.skipped.iter().any(|s| s.kernel_path.ends_with("/sda")));
    assert!(!inv.skipped.iter().any(|s| s.kernel_path.ends_with("/vdd1")));
    assert_eq!(inv.skipped.len(), 9);
    // Read-only tools only, and lvm only asked about the two PVs.
    for line in runner.call_lines() {
        assert!(
            line.starts_with("blkid -p -o export ")
                || line == "lvm version"
                || line.starts_with("lvm fullreport"),
            "{line}"
        );
    }
    let fullreport = runner
        .call_lines()
        .into_iter()
        .find(|l| l.starts_with("lvm fullreport"))
        .unwrap();
    assert!(
        fullreport.contains(&format!("--devices {},{}", h.p("vdi"), h.p("vdj"))),
        "{fullreport}"
    );
}

#[tokio::test]
async fn mounted_whole_disk_and_failed_blkid_are_unsafe() {
    let mut h = Host::new();
    h.disk(FakeDisk::new("vdb", (254, 16), 10 * GIB))
        .blkid("vdb", "TYPE=xfs\nUSAGE=filesystem\n")
        .disk(FakeDisk::new("vdc", (254, 32), 10 * GIB));
    h.mounts.push(mount((254, 16), "/data"));
    h.mounts.push(mount((254, 16), "/var/lib/kubelet/x"));
    let mut runner_host = h;
    runner_host.blkid.insert("vdc".into(), String::new());
    let h = runner_host;
    let mut opts = DiscoverOptions::new(
        Selection::new(&SelectionSpec {
            globs: vec![format!("{}/vd*", h.dev.display())],
            ..Default::default()
        })
        .unwrap(),
    );
    opts.sys_block = h.sys.clone();
    opts.dev_dir = h.dev.clone();
    let runner = FakeRunner::with(|c: &Command| {
        if c.arg_strings().last().unwrap().ends_with("vdc") {
            Reply::Timeout
        } else {
            Reply::ok("TYPE=xfs\nUSAGE=filesystem\n")
        }
    });
    let inv = Discoverer::new(Arc::new(runner), Programs::all_in("/sbin"))
        .unwrap()
        .with_mounts(h.mounts.clone())
        .discover(&opts)
        .await
        .unwrap();
    assert!(inv.devices.is_empty());
    assert_eq!(
        skipped(&inv, "vdb").reasons,
        [
            "mounted at /data, /var/lib/kubelet/x",
            "holds an xfs filesystem; not taken without --wipe"
        ]
    );
    let vdc = &skipped(&inv, "vdc").reasons;
    assert!(
        vdc[0].starts_with("its signatures could not be read"),
        "{vdc:?}"
    );
}

/// blkid says "nothing found" (exit 2) also when it cannot open the device; such a device
/// must not pass for blank.
#[tokio::test]
async fn unreadable_device_is_not_blank() {
    let mut h = Host::new();
    h.disk(FakeDisk::new("vdb", (254, 16), 10 * GIB))
        .disk(FakeDisk::new("vdc", (254, 32), 10 * GIB));
    std::fs::remove_file(h.dev.join("vdc")).unwrap();
    let (inv, runner) = h
        .discover(|s, _| s.globs = vec![format!("{}/vd*", h.dev.display())])
        .await;
    assert_eq!(chosen_names(&inv), ["vdb"]);
    let r = &skipped(&inv, "vdc").reasons;
    assert!(r[0].contains("cannot open it read-only"), "{r:?}");
    assert_eq!(runner.call_lines().len(), 1);
}

#[tokio::test]
async fn include_and_exclude_patterns() {
    let mut h = Host::new();
    h.disk(FakeDisk {
        model: Some("Samsung SSD 980".into()),
        serial: Some("S1".into()),
        ..FakeDisk::new("nvme0n1", (259, 0), 100 * GIB)
    })
    .disk(FakeDisk {
        model: Some("Samsung SSD 980".into()),
        serial: Some("S2".into()),
        ..FakeDisk::new("nvme1n1", (259, 1), 100 * GIB)
    })
    .disk(FakeDisk {
        model: Some("INTEL SSDPE".into()),
        serial: Some("I1".into()),
        ..FakeDisk::new("nvme2n1", (259, 2), 100 * GIB)
    })
    .disk(FakeDisk::new("sda", (8, 0), 100 * GIB));
    let nvme = format!("{}/nvme*n1", h.dev.display());
    let (inv, _) = h
        .discover(|s, _| {
            s.globs = vec![nvme.clone()];
            s.model_regex = Some("^Samsung".into());
            s.exclude_regexes = vec!["^S2$".into()];
        })
        .await;
    assert_eq!(chosen_names(&inv), ["nvme0n1"]);
    assert!(inv.devices[0].reason.contains("--model-regex ^Samsung"));
    assert!(inv.skipped.is_empty(), "{:?}", inv.skipped);

    let (inv, runner) = h
        .discover(|s, o| {
            s.globs = vec![nvme.clone()];
            s.exclude_globs = vec![format!("{}/nvme2*", h.dev.display())];
            o.explain = true;
        })
        .await;
    assert_eq!(chosen_names(&inv), ["nvme0n1", "nvme1n1"]);
    assert!(skipped(&inv, "nvme2n1").reasons[0].starts_with("excluded by --exclude-glob"));
    assert_eq!(
        skipped(&inv, "sda").reasons,
        ["not matched by any include pattern"]
    );
    // Explain probes every device, so its reasons are complete.
    assert_eq!(runner.call_lines().len(), 4);
}

#[tokio::test]
async fn stable_paths_prefer_by_id() {
    let mut h = Host::new();
    h.disk(FakeDisk {
        wwid: Some("naa.5000c500aabbccdd".into()),
        ..FakeDisk::new("sdb", (8, 16), 10 * GIB)
    })
    .link("by-id", "scsi-35000c500aabbccdd", "sdb")
    .link("by-id", "wwn-0x5000c500aabbccdd", "sdb")
    .link("by-path", "pci-0000:00:10.0-scsi-0:0:1:0", "sdb")
    .disk(FakeDisk::new("sdc", (8, 32), 10 * GIB))
    .link("by-path", "pci-0000:00:10.0-scsi-0:0:2:0", "sdc")
    .disk(FakeDisk {
        virtio_serial: Some("disk-1".into()),
        ..FakeDisk::new("vdb", (254, 16), 10 * GIB)
    })
    .link("by-id", "virtio-disk-1", "vdb");
    // Selecting by a by-id glob still records the best link.
    let (inv, _) = h
        .discover(|s, _| {
            s.globs = vec![
                format!("{}/disk/by-id/scsi-3*", h.dev.display()),
                format!("{}/sdc", h.dev.display()),
                format!("{}/disk/by-id/virtio-*", h.dev.display()),
            ];
            s.wwn_regex = None;
        })
        .await;
    let paths: Vec<&str> = inv.devices.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            h.p("disk/by-id/wwn-0x5000c500aabbccdd"),
            h.p("disk/by-path/pci-0000:00:10.0-scsi-0:0:2:0"),
            h.p("disk/by-id/virtio-disk-1"),
        ]
    );
    assert_eq!(inv.devices[0].kernel_path, h.p("sdb"));
    assert_eq!(inv.devices[0].wwn.as_deref(), Some("naa.5000c500aabbccdd"));
    assert_eq!(inv.devices[2].serial.as_deref(), Some("disk-1"));
}

#[tokio::test]
async fn existing_pv_of_target_vg_is_offered() {
    let mut h = Host::new();
    // vdb: PV of vg0 with one active LV on it (a dm holder of vg0's uuid).
    h.disk(FakeDisk {
        holders: vec!["dm-0".into()],
        ..FakeDisk::new("vdb", (254, 16), 10 * GIB)
    })
    .pv("vdb", "vg0")
    .disk(FakeDisk {
        dm: Some(("vg0-csi--a".into(), "LVM-vg0uuid0000LVUUID".into())),
        ..FakeDisk::new("dm-0", (253, 0), GIB)
    })
    .disk(FakeDisk::new("vdc", (254, 32), 10 * GIB))
    .disk(FakeDisk::new("vdd", (254, 48), 10 * GIB))
    .pv("vdd", "vg1");
    let glob = format!("{}/vd*", h.dev.display());
    let (inv, _) = h
        .discover(|s, o| {
            s.globs = vec![glob.clone()];
            o.target_vg = Some("vg0".into());
        })
        .await;
    assert_eq!(chosen_names(&inv), ["vdb", "vdc"]);
    assert_eq!(inv.devices[0].existing_pv_of.as_deref(), Some("vg0"));
    assert!(inv.devices[0].reason.ends_with("already a PV of VG vg0"));
    assert_eq!(inv.devices[1].existing_pv_of, None);
    assert_eq!(inv.target_vg.as_deref(), Some("vg0"));
    assert_eq!(
        skipped(&inv, "vdd").reasons,
        ["a PV of VG vg1 (no LVs); not taken without --wipe"]
    );

    // Without a target VG the same PV is someone else's.
    let (inv, _) = h.discover(|s, _| s.globs = vec![glob.clone()]).await;
    assert_eq!(chosen_names(&inv), ["vdc"]);
    assert_eq!(
        skipped(&inv, "vdb").reasons,
        [
            "a PV of VG vg0 (no LVs); not taken without --wipe",
            "in use by dm-0 (holders: device-mapper, md, ...); never taken, not even with --wipe"
        ]
    );
}

#[tokio::test]
async fn lvm_failure_makes_pvs_unknown_not_fatal() {
    let mut h = Host::new();
    h.disk(FakeDisk::new("vdb", (254, 16), 10 * GIB))
        .disk(FakeDisk::new("vdc", (254, 32), 10 * GIB));
    let mut opts = DiscoverOptions::new(
        Selection::new(&SelectionSpec {
            globs: vec![format!("{}/vd*", h.dev.display())],
            ..Default::default()
        })
        .unwrap(),
    );
    opts.sys_block = h.sys.clone();
    opts.dev_dir = h.dev.clone();
    opts.target_vg = Some("vg0".into());
    let runner = FakeRunner::with(|c: &Command| match c.program_name().as_str() {
        "blkid" if c.arg_strings().last().unwrap().ends_with("vdb") => {
            Reply::ok("TYPE=LVM2_member\nUSAGE=raid\n")
        }
        "blkid" => Reply::fail(2, ""),
        _ => Reply::fail(5, "lvm exploded"),
    });
    h.mounts.clear();
    let inv = Discoverer::new(Arc::new(runner), Programs::all_in("/sbin"))
        .unwrap()
        .with_mounts(vec![])
        .discover(&opts)
        .await
        .unwrap();
    assert_eq!(chosen_names(&inv), ["vdc"]);
    let r = &skipped(&inv, "vdb").reasons;
    assert!(
        r[0].starts_with("an LVM PV of a VG this host cannot see (lvm report failed"),
        "{r:?}"
    );
}

#[tokio::test]
async fn loop_devices_only_when_a_glob_names_them() {
    let mut h = Host::new();
    h.disk(FakeDisk::new("loop0", (7, 0), 10 * GIB))
        .disk(FakeDisk::new("loop1", (7, 1), 0))
        .disk(FakeDisk::new("vdb", (254, 16), 10 * GIB));
    let (inv, _) = h
        .discover(|s, _| s.globs = vec![format!("{}/*", h.dev.display())])
        .await;
    assert_eq!(chosen_names(&inv), ["vdb"]);
    let (inv, runner) = h
        .discover(|s, _| s.globs = vec![format!("{}/loop*", h.dev.display())])
        .await;
    assert_eq!(chosen_names(&inv), ["loop0"]);
    assert_eq!(
        skipped(&inv, "loop1").reasons,
        ["size 0 (no medium, or no backing file)"]
    );
    // An empty loop device is not probed.
    assert_eq!(runner.call_lines().len(), 1);
}

#[tokio::test]
async fn pmem_namespaces_are_a_source() {
    let mut h = Host::new();
    h.disk(FakeDisk::new("pmem0", (259, 0), 16 * GIB))
        .disk(FakeDisk::new("pmem1s", (259, 1), 16 * GIB))
        .disk(FakeDisk::new("pmem2", (259, 2), 16 * GIB))
        .blkid("pmem2", "TYPE=ext4\nUSAGE=filesystem\n")
        .disk(FakeDisk::new("vdb", (254, 16), 10 * GIB));
    let ns = |name: &str, blockdev: &str, region: &str, mode: &str| PmemNamespace {
        name: name.into(),
        dev: format!("namespace{}.0", &region[6..]),
        blockdev: blockdev.into(),
        region: region.into(),
        mode: mode.into(),
        size_bytes: 16 * GIB,
    };
    let doc = PmemNamespaces {
        version: PMEM_NAMESPACES_VERSION,
        generator: "pmem-ns-init 0.1.0".into(),
        namespaces: vec![
            ns("vglet-fsdax-region0", "/dev/pmem0", "region0", "fsdax"),
            ns("vglet-sector-region1", "/dev/pmem1s", "region1", "sector"),
            ns("vglet-fsdax-region2", "/dev/pmem2", "region2", "fsdax"),
            ns("vglet-fsdax-region3", "/dev/pmem3", "region3", "fsdax"),
        ],
    };
    let file = h.dev.join("../namespaces.json");
    std::fs::write(&file, serde_json::to_string(&doc).unwrap()).unwrap();

    let (inv, _) = h
        .discover(|_, o| o.pmem = Some(PmemSource::read(&file, Some("fsdax".into())).unwrap()))
        .await;
    assert_eq!(chosen_names(&inv), ["pmem0"]);
    let d = &inv.devices[0];
    assert_eq!(d.source, DeviceSource::Pmem);
    assert_eq!(
        d.pmem,
        Some(PmemInfo {
            region: "region0".into(),
            mode: "fsdax".into(),
            namespace: "vglet-fsdax-region0".into(),
        })
    );
    assert!(d.reason.contains("pmem namespace vglet-fsdax-region0"));
    assert_eq!(
        skipped(&inv, "pmem2").reasons,
        ["holds an ext4 filesystem; not taken without --wipe"]
    );
    assert!(skipped(&inv, "pmem3").reasons[0].contains("not found"));
    // Filtered by mode (even though a glob would match it): only listed with --explain.
    assert!(!inv.skipped.iter().any(|s| s.path.ends_with("/pmem1s")));

    let (inv, _) = h
        .discover(|s, o| {
            o.pmem = Some(PmemSource::read(&file, Some("fsdax".into())).unwrap());
            s.globs = vec![format!("{}/*", h.dev.display())];
            s.exclude_globs = vec![format!("{}/pmem2", h.dev.display())];
            o.explain = true;
        })
        .await;
    assert_eq!(chosen_names(&inv), ["pmem0"]);
    assert!(
        inv.devices[0].reason.contains("matched glob"),
        "{}",
        inv.devices[0].reason
    );
    assert!(skipped(&inv, "pmem1s").reasons[0].contains("not selected by --pmem-mode fsdax"));
    assert!(skipped(&inv, "pmem2").reasons[0].starts_with("excluded by --exclude-glob"));
    // The file is the source: other devices are not candidates even when a glob matches.
    assert_eq!(
        skipped(&inv, "vdb").reasons,
        ["not a namespace listed in --pmem-namespaces"]
    );

    let (inv, _) = h
        .discover(|_, o| o.pmem = Some(PmemSource::read(&file, None).unwrap()))
        .await;
    assert_eq!(chosen_names(&inv), ["pmem0", "pmem1s"]);
    assert_eq!(inv.devices[1].pmem.as_ref().unwrap().mode, "sector");

    // A document of an unknown version is refused.
    std::fs::write(
        &file,
        serde_json::to_string(&doc)
            .unwrap()
            .replace("\"version\":1", "\"version\":9"),
    )
    .unwrap();
    assert!(PmemSource::read(&file, None).is_err());
}

/// Each decision is logged once, with readable values, unless the caller shows the decisions
/// as a table (`log_decisions: false`, a person at a terminal): then not at all.
#[tokio::test]
async fn decisions_are_logged_once_unless_a_table_shows_them() {
    use tracing::instrument::WithSubscriber;
    let mut h = Host::new();
    h.disk(FakeDisk::new("vdb", (254, 16), 10 * GIB))
        .disk(FakeDisk::new("vdc", (254, 32), 10 * GIB))
        .blkid("vdc", "TYPE=ext4\nUSAGE=filesystem\n");
    for log_decisions in [true, false] {
        let logs = vglet_common::logging::LogCapture::default();
        let glob = format!("{}/vd*", h.dev.display());
        let (inv, _) = h
            .discover(move |s, o| {
                s.globs = vec![glob];
                o.log_decisions = log_decisions;
            })
            .with_subscriber(logs.subscriber(tracing::Level::INFO))
            .await;
        assert_eq!(chosen_names(&inv), ["vdb"]);
        let text = logs.text();
        let n = usize::from(log_decisions);
        assert_eq!(text.matches("device chosen").count(), n, "{text}");
        assert_eq!(text.matches("device skipped").count(), n, "{text}");
        assert!(!text.contains("Some(") && !text.contains("[\""), "{text}");
    }
}
