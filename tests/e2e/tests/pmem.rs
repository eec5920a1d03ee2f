//! NVDIMMs in a real kernel: the real `pmem-ns-init`, `disk-discover` and `vg-init`
//! binaries against two emulated NVDIMMs (QEMU nvdimm + ACPI NFIT) in a guest booting
//! Debian's kernel. Fresh emulated DIMMs are label-less, so the run also proves that
//! pmem-ns-init refuses them without --init-labels and labels them with it: that is the
//! path an operator takes on new hardware, so the test takes it rather than preparing
//! labels by hand.
//!
//! Facts asserted from ndctl's own listing, not from pmem-ns-init's answers: each 1 GiB
//! DIMM gives a region of 1 GiB - 128 KiB (label area), capacity 1008 MiB in 16 MiB
//! units; 70/30 takes 704 MiB fsdax + 288 MiB sector, leaving 16 MiB free.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::Code;
use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;

use vglet_devices::inventory::{DeviceSource, Inventory, PmemNamespaces};
use vglet_e2e::req;
use vglet_e2e::{
    Clients, CmdOut, DriverProcess, bin, clients, in_guest, lvs, mount_at, run_program, sh,
};
use vglet_ndctl::{Region, parse_regions};

const MIB: u64 = 1 << 20;
const OUT: &str = "/run/vglet/pmem.json";
const SPLIT: [&str; 4] = ["--use-for-fsdax", "70", "--use-for-sector", "30"];

#[test]
fn pmem_chain_in_guest() {
    if in_guest() || vglet_vmh::skip_vm_tests("pmem_chain_in_guest") {
        return;
    }
    for b in [
        "pmem-ns-init",
        "disk-discover",
        "vg-init",
        "csi-driver",
        "reviver",
    ] {
        bin(b);
    }
    let vm = vglet_vmh::Vm::new("pmem")
        .mem_mib(1024)
        .cpus(2)
        .fresh_pmem("pm0", 1 << 30)
        .fresh_pmem("pm1", 1 << 30)
        .modules([
            "nfit", "nd_pmem", "nd_btt", "dax_pmem", "dm_mod", "xfs", "ext4",
        ])
        .timeout(Duration::from_secs(900));
    let out = vm.run_test("guest_pmem_chain").expect("guest run");
    assert_eq!(out.exit_code, 0, "guest test guest_pmem_chain failed");
    eprintln!("pmem guest: {:.1}s", out.duration.as_secs_f64());
}

// ---------------------------------------------------------------- guest side

struct Timer(Instant, Vec<String>);

impl Timer {
    fn step(&mut self, what: &str) {
        let line = format!("{:6.1}s  {what}", self.0.elapsed().as_secs_f64());
        eprintln!("\n--- pmem: {line}");
        self.1.push(line);
    }
}

fn regions() -> Vec<Region> {
    parse_regions(&sh("ndctl list --regions --namespaces --idle 2>/dev/null")).unwrap()
}

fn ns_init(args: &[&str]) -> CmdOut {
    run_program(&bin("pmem-ns-init"), args)
}

fn with_split<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = SPLIT.to_vec();
    v.extend_from_slice(extra);
    v
}

fn read_doc(path: &str) -> PmemNamespaces {
    PmemNamespaces::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
#[ignore = "runs inside the QEMU guest through pmem_chain_in_guest"]
fn guest_pmem_chain() {
    assert!(in_guest());
    let mut t = Timer(Instant::now(), Vec::new());
    std::fs::create_dir_all("/run/vglet").unwrap();
    let start = Instant::now();
    while regions().len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "NVDIMM regions never appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    t.step("fresh DIMMs are label-less: refused without --init-labels");
    let out = ns_init(&with_split(&["--output", OUT]));
    assert_eq!(out.code, 3, "label-less must be refused");
    assert!(out.stderr.contains("label-less") && out.stderr.contains("--init-labels"));
    assert!(read_doc(OUT).namespaces.is_empty());
    assert!(
        regions().iter().all(|r| !r.has_labels()),
        "refusal changed something"
    );

    t.step("--init-labels, 70/30: labels written, fsdax + sector in each region");
    let out = ns_init(&with_split(&["--init-labels", "--output", OUT]));
    assert_eq!(out.code, 0, "first run");
    let after_first = regions();
    for r in &after_first {
        assert!(r.has_labels(), "{} still label-less", r.dev);
        assert_eq!(r.size, 1_073_610_752);
        // 1008 - 704 - 288: both shares taken in full from the region.
        assert_eq!(r.available_size, 16 * MIB, "{}: free after 70/30", r.dev);
        let ours: Vec<_> = r.real_namespaces().collect();
        assert_eq!(ours.len(), 2, "{}: {ours:?}", r.dev);
        for (mode, share) in [("fsdax", 704 * MIB), ("sector", 288 * MIB)] {
            let name = format!("vglet-{mode}-{}", r.dev);
            let ns = ours
                .iter()
                .find(|n| n.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("{name} missing: {ours:?}"));
            assert_eq!(ns.mode, mode);
            // Usable size: the share less the page map (fsdax) or the BTT (sector).
            assert!(
                ns.size <= share && ns.size > share / 100 * 97,
                "{name}: {} of {share}",
                ns.size
            );
        }
    }
    let doc = read_doc(OUT);
    let got: Vec<(String, String, String)> = doc
        .namespaces
        .iter()
        .map(|n| (n.name.clone(), n.region.clone(), n.mode.clone()))
        .collect();
    let want: Vec<(String, String, String)> = ["region0", "region1"]
        .iter()
        .flat_map(|r| {
            ["fsdax", "sector"].map(|m| (format!("vglet-{m}-{r}"), r.to_string(), m.to_string()))
        })
        .collect();
    assert_eq!(got, want);
    for n in &doc.namespaces {
        assert!(
            std::path::Path::new(&n.blockdev).exists(),
            "{} missing",
            n.blockdev
        );
    }

    t.step("a namespace made by hand in the free 16 MiB of region0");
    sh("ndctl create-namespace --mode fsdax --name handmade --size 16M --region region0");
    let before = regions();
    let handmade = before[0]
        .namespaces
        .iter()
        .find(|n| n.name.as_deref() == Some("handmade"))
        .cloned()
        .expect("handmade namespace");

    t.step("second run: nothing to do, nothing changed, handmade left alone");
    let out = ns_init(&with_split(&["--init-labels", "--output", OUT]));
    assert_eq!(out.code, 4, "second run must be nothing to do");
    assert!(
        out.stderr.contains("leaving foreign namespace"),
        "{}",
        out.stderr
    );
    assert_eq!(regions(), before, "ndctl's view changed on a no-op run");
    assert!(before[0].namespaces.contains(&handmade));
    assert_eq!(read_doc(OUT), doc, "result changed on a no-op run");

    t.step("disk-discover accepts the result (all fsdax namespaces)");
    let inv_path = "/run/vglet/inv-fsdax.json";
    let out = run_program(
        &bin("disk-discover"),
        &[
            "--pmem-namespaces",
            OUT,
            "--pmem-mode",
            "fsdax",
            "--min-size",
            "1Mi",
            "--output",
            inv_path,
        ],
    );
    assert_eq!(out.code, 0);
    let inv = Inventory::from_json(&std::fs::read_to_string(inv_path).unwrap()).unwrap();
    let kernel: Vec<&str> = inv.devices.iter().map(|d| d.kernel_path.as_str()).collect();
    assert_eq!(kernel, ["/dev/pmem0", "/dev/pmem1"], "{inv:?}");
    assert!(inv.devices.iter().all(|d| d.source == DeviceSource::Pmem));

    t.step("the chain per region and mode: pmem-ns-init --region, disk-discover, vg-init");
    for region in ["region0", "region1"] {
        let file = format!("/run/vglet/pmem-{region}.json");
        let out = ns_init(&with_split(&["--region", region, "--output", &file]));
        assert_eq!(out.code, 4);
        for mode in ["fsdax", "sector"] {
            let inv_path = format!("/run/vglet/inv-{mode}-{region}.json");
            let out = run_program(
                &bin("disk-discover"),
                &[
                    "--pmem-namespaces",
                    &file,
                    "--pmem-mode",
                    mode,
                    "--min-size",
                    "1Mi",
                    "--output",
                    &inv_path,
                ],
            );
            assert_eq!(out.code, 0);
            let inv = Inventory::from_json(&std::fs::read_to_string(&inv_path).unwrap()).unwrap();
            assert_eq!(inv.devices.len(), 1, "{inv:?}");
            let pmem = inv.devices[0].pmem.as_ref().unwrap();
            assert_eq!((pmem.region.as_str(), pmem.mode.as_str()), (region, mode));
            let vg = format!("pmem-{mode}-{region}");
            // vg-init tags PMEM VGs itself; region0 also gets the tag scripts passed before
            // it did, which must be accepted as the same tag.
            let tag = format!("vglet.pmem={mode}");
            let mut args = vec!["--vg", &vg, "--inventory", &inv_path];
            if region == "region0" {
                args.extend(["--tag", &tag]);
            }
            let out = run_program(&bin("vg-init"), &args);
            assert_eq!(out.code, 0, "vg-init {vg}");
        }
    }
    let vgs = sh("vgs --noheadings --separator ' ' -o vg_name,pv_count,vg_tags 2>/dev/null");
    eprintln!("{vgs}");
    for region in ["region0", "region1"] {
        for mode in ["fsdax", "sector"] {
            let vg = format!("pmem-{mode}-{region}");
            let line = vgs
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(&format!("{vg} ")))
                .unwrap_or_else(|| panic!("{vg} missing from vgs:\n{vgs}"));
            assert!(line.contains(&format!("vglet.pmem={mode}")), "{line}");
            assert!(
                line.contains(&format!("vglet.pmem-region={region}")),
                "{line}"
            );
            assert_eq!(line.matches("vglet.pmem=").count(), 1, "{line}");
            assert!(line.contains(" 1 "), "one PV: {line}");
        }
    }
    let pv = sh("pvs --noheadings -o pv_name --select vg_name=pmem-sector-region1 2>/dev/null");
    assert!(pv.trim().ends_with('s'), "sector VG on a BTT device: {pv}");

    t.step("DAX by hand on an LV of pmem-fsdax-region0");
    sh("lvcreate -q -y -n daxlv -L 400M pmem-fsdax-region0");
    sh("mkfs.xfs -q -m reflink=0 /dev/pmem-fsdax-region0/daxlv");
    sh("mkdir -p /mnt/dax && mount -o dax /dev/pmem-fsdax-region0/daxlv /mnt/dax");
    let (fs, _, _) = mount_at(std::path::Path::new("/mnt/dax")).expect("mounted");
    assert_eq!(fs, "xfs");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/mnt/dax"))
        .unwrap();
    assert!(line.contains("dax=always"), "{line}");
    sh("echo hello > /mnt/dax/f && sync && cat /mnt/dax/f");
    sh("umount /mnt/dax");
    // Left in place: an LV the driver did not make, which it must never touch.

    driver_steps(&mut t);
    t.step("done");
    eprintln!("\n--- pmem timings:\n{}", t.1.join("\n"));
}

// ------------------------------------------------------- the driver on PMEM VGs

const PMEM_VGS: [&str; 4] = [
    "pmem-fsdax-region0",
    "pmem-sector-region0",
    "pmem-fsdax-region1",
    "pmem-sector-region1",
];
const STATX_ATTR_DAX: u64 = 0x0020_0000;
const STATE: &str = "/run/vglet/pmem-state";

fn cap(fs: &str, flags: &[&str]) -> VolumeCapability {
    req::mount_cap(fs, flags, Mode::SingleNodeWriter)
}

fn create(
    name: &str,
    mib: i64,
    cap: VolumeCapability,
    params: &[(&str, &str)],
) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: mib << 20,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap],
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    }
}

fn stage(
    id: &str,
    staging: &Path,
    cap: VolumeCapability,
    ctx: &HashMap<String, String>,
) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap),
        volume_context: ctx.clone(),
        ..Default::default()
    }
}

/// Every LV of the four PMEM VGs, for "nothing changed" checks.
fn all_lvs() -> Vec<(String, String, u64)> {
    PMEM_VGS
        .iter()
        .flat_map(|vg| lvs(vg).into_iter().map(|(n, s, _)| (vg.to_string(), n, s)))
        .collect()
}

/// The superblock options of the mount at `path`, from mountinfo (where DAX shows).
fn super_options(path: &Path) -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter(|l| l.split(' ').nth(4).map(Path::new) == Some(path))
        .filter_map(|l| l.split_once(" - "))
        .map(|(_, post)| post.split(' ').nth(2).unwrap_or("").to_string())
        .next_back()
        .unwrap_or_else(|| panic!("{} is not mounted", path.display()))
}

/// STATX_ATTR_DAX of a file: the kernel's own word that its I/O bypasses the page cache.
fn statx_dax(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            0,
            libc::STATX_BASIC_STATS,
            &mut st,
        )
    };
    assert_eq!(rc, 0, "statx {}", path.display());
    assert!(
        st.stx_attributes_mask & STATX_ATTR_DAX != 0,
        "kernel does not report STATX_ATTR_DAX"
    );
    st.stx_attributes & STATX_ATTR_DAX != 0
}

/// 1 MiB of a pattern unique to `seed`, written through the mount, synced, and read back
/// after dropping caches (on DAX there is no page cache; on sector it forces a real read).
fn write_and_read_back(dir: &Path, seed: u8) -> PathBuf {
    let f = dir.join("data");
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i as u8) ^ seed).collect();
    std::fs::write(&f, &data).unwrap();
    sh(&format!("sync {}", f.display()));
    sh("echo 3 > /proc/sys/vm/drop_caches");
    assert_eq!(
        std::fs::read(&f).unwrap(),
        data,
        "{} read back differs",
        f.display()
    );
    f
}

fn lv_vg(id: &str) -> &str {
    id.split_once('/').unwrap().0
}

/// (name, parameters, capability, what the INVALID_ARGUMENT message must contain)
type BadCase<'a> = (&'a str, &'a [(&'a str, &'a str)], VolumeCapability, &'a str);

struct Staged {
    id: String,
    staging: PathBuf,
    /// What `data` in the volume holds.
    data: Vec<u8>,
}

/// Create + stage + write/read + publish; returns what to clean up.
async fn volume(
    c: &mut Clients,
    t: &mut Timer,
    name: &str,
    fs: &str,
    mib: i64,
    params: &[(&str, &str)],
    want_vg: &str,
) -> Staged {
    t.step(&format!("{name}: CreateVolume {fs} {params:?}"));
    let cp = cap(fs, &["noatime"]);
    let v = c
        .controller
        .create_volume(create(name, mib, cp.clone(), params))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    // `want_vg` may be a prefix where two VGs are equally good.
    let (vg, lv) = v.volume_id.split_once('/').unwrap();
    assert!(
        vg.starts_with(want_vg),
        "{name} placed in {vg}, not {want_vg}"
    );
    assert!(lvs(vg).iter().any(|l| l.0 == lv), "lvs {vg} lacks {lv}");
    let fsdax = vg.contains("fsdax");

    t.step(&format!("{name}: NodeStage {fs}"));
    let staging = PathBuf::from(format!("/run/e2e-pmem/{name}/staging"));
    std::fs::create_dir_all(&staging).unwrap();
    let req = stage(&v.volume_id, &staging, cp.clone(), &v.volume_context);
    c.node.node_stage_volume(req.clone()).await.unwrap();
    let (mfs, _, _) = mount_at(&staging).expect("staged");
    assert_eq!(mfs, fs);
    let sup = super_options(&staging);
    eprintln!("{name}: {fs} super options {sup}");
    assert_eq!(
        sup.split(',').any(|o| o == "dax=always"),
        fsdax,
        "{name}: {sup}"
    );
    // Repeated stage: a no-op, the DAX check passes on the existing mount.
    c.node.node_stage_volume(req).await.unwrap();
    if fs == "xfs" && fsdax {
        let info = sh(&format!("xfs_info {}", staging.display()));
        assert!(info.contains("reflink=0"), "{info}");
    }
    if fs == "ext4" && fsdax {
        // mke2fs would pick 1 KiB blocks for a volume this small; DAX needs page-sized.
        let bs = sh(&format!("stat -f -c %S {}", staging.display()));
        assert_eq!(bs.trim(), "4096", "ext4 block size");
    }

    t.step(&format!("{name}: write, read back, STATX_ATTR_DAX"));
    let f = write_and_read_back(&staging, name.len() as u8);
    let data = std::fs::read(&f).unwrap();
    assert_eq!(
        statx_dax(&f),
        fsdax,
        "{name}: STATX_ATTR_DAX of {}",
        f.display()
    );

    t.step(&format!("{name}: NodePublish shows the same DAX state"));
    let target = PathBuf::from(format!("/run/e2e-pmem/{name}/pods/mount"));
    c.node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
            target_path: target.display().to_string(),
            volume_capability: Some(cp.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let sup = super_options(&target);
    assert_eq!(
        sup.split(',').any(|o| o == "dax=always"),
        fsdax,
        "target {sup}"
    );
    assert_eq!(statx_dax(&target.join("data")), fsdax);
    c.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap();
    Staged {
        id: v.volume_id,
        staging,
        data,
    }
}

fn driver_steps(t: &mut Timer) {
    t.step("csi-driver serving the four PMEM VGs");
    let socket = PathBuf::from("/run/vglet/pmem-e2e.sock");
    let _driver = DriverProcess::start(
        &[
            "--mode",
            "all",
            "--node-id",
            "pmem-node",
            "--volume-group",
            &PMEM_VGS.join(","),
            "--state-dir",
            STATE,
        ],
        &socket,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = clients(&socket).await;
        let before = all_lvs();

        t.step("bad input: nothing changes");
        let bad: [BadCase; 5] = [
            (
                "pvc-bad-mode",
                &[("pmemMode", "devdax")],
                cap("xfs", &[]),
                "parameters.pmemMode",
            ),
            (
                "pvc-bad-vg",
                &[
                    ("pmemMode", "fsdax"),
                    ("volumeGroup", "pmem-sector-region1"),
                ],
                cap("ext4", &[]),
                "pmem-sector-region1 (sector in region1)",
            ),
            (
                "pvc-bad-striped",
                &[("pmemMode", "fsdax"), ("type", "striped")],
                cap("xfs", &[]),
                "parameters.type",
            ),
            (
                "pvc-bad-dax",
                &[("pmemMode", "sector")],
                cap("ext4", &["dax"]),
                "not on fsdax",
            ),
            (
                "pvc-bad-never",
                &[("pmemMode", "fsdax")],
                cap("xfs", &["dax=never"]),
                "always mounted",
            ),
        ];
        for (name, params, cp, want) in bad {
            let e = c
                .controller
                .create_volume(create(name, 64, cp, params))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{name}: {}", e.message());
            assert!(e.message().contains(want), "{name}: {}", e.message());
        }
        assert_eq!(all_lvs(), before, "a refused CreateVolume changed lvs");

        // The hand-made 400 MiB LV leaves region0's fsdax VG with less free space: the
        // driver must choose region1's.
        let xfs = volume(
            &mut c,
            t,
            "pvc-fsdax-xfs",
            "xfs",
            320,
            &[("pmemMode", "fsdax")],
            "pmem-fsdax-region1",
        )
        .await;
        let ext4 = volume(
            &mut c,
            t,
            "pvc-fsdax-ext4",
            "ext4",
            64,
            &[("pmemMode", "fsdax"), ("volumeGroup", "pmem-fsdax-region0")],
            "pmem-fsdax-region0",
        )
        .await;
        let sector = volume(
            &mut c,
            t,
            "pvc-sector",
            "ext4",
            128,
            &[("pmemMode", "sector")],
            "pmem-sector-",
        )
        .await;

        t.step("no pmemMode: fsdax is the default, sector VGs are never chosen");
        let v = c
            .controller
            .create_volume(create("pvc-default", 16, cap("ext4", &[]), &[]))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert!(
            lv_vg(&v.volume_id).starts_with("pmem-fsdax-"),
            "{}",
            v.volume_id
        );
        c.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: v.volume_id,
                ..Default::default()
            })
            .await
            .unwrap();

        t.step("reviver: the staging mounts lost (as after a reboot) come back, DAX included");
        for s in [&xfs, &sector] {
            sh(&format!("umount {}", s.staging.display()));
            assert!(mount_at(&s.staging).is_none());
        }
        let out = run_program(
            &bin("reviver"),
            &[
                "--state-dir",
                STATE,
                "--volume-group",
                &PMEM_VGS.join(","),
                "--wait-timeout",
                "30s",
            ],
        );
        assert_eq!(out.code, 0, "reviver");
        for (s, fsdax) in [(&xfs, true), (&sector, false)] {
            let sup = super_options(&s.staging);
            assert_eq!(
                sup.split(',').any(|o| o == "dax=always"),
                fsdax,
                "revived: {sup}"
            );
            assert_eq!(statx_dax(&s.staging.join("data")), fsdax);
            sh("echo 3 > /proc/sys/vm/drop_caches");
            let data = std::fs::read(s.staging.join("data")).unwrap();
            assert!(data == s.data, "{}: data differs after revive", s.id);
        }

        t.step("NodeStage with dax=never on an fsdax volume: refused, nothing mounted");
        let staging = PathBuf::from("/run/e2e-pmem/never");
        std::fs::create_dir_all(&staging).unwrap();
        let e = c
            .node
            .node_stage_volume(stage(
                &xfs.id,
                &staging,
                cap("xfs", &["dax=never"]),
                &HashMap::new(),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(mount_at(&staging).is_none());

        t.step("GetCapacity by mode");
        let cap_of = |m: &str| GetCapacityRequest {
            parameters: HashMap::from([("pmemMode".to_string(), m.to_string())]),
            ..Default::default()
        };
        let fsdax = c
            .controller
            .get_capacity(cap_of("fsdax"))
            .await
            .unwrap()
            .into_inner();
        let sectorc = c
            .controller
            .get_capacity(cap_of("sector"))
            .await
            .unwrap()
            .into_inner();
        let free = |vgs: &[&str]| -> i64 {
            vgs.iter()
                .map(|vg| {
                    sh(&format!(
                        "vgs --noheadings --units b --nosuffix -o vg_free {vg}"
                    ))
                    .trim()
                    .parse::<i64>()
                    .unwrap()
                })
                .sum()
        };
        assert_eq!(
            fsdax.available_capacity,
            free(&PMEM_VGS[0..1]) + free(&PMEM_VGS[2..3])
        );
        assert_eq!(
            sectorc.available_capacity,
            free(&PMEM_VGS[1..2]) + free(&PMEM_VGS[3..4])
        );

        t.step("unstage, delete: only the hand-made LV is left");
        for s in [xfs, ext4, sector] {
            c.node
                .node_unstage_volume(NodeUnstageVolumeRequest {
                    volume_id: s.id.clone(),
                    staging_target_path: s.staging.display().to_string(),
                })
                .await
                .unwrap();
            assert!(mount_at(&s.staging).is_none());
            c.controller
                .delete_volume(DeleteVolumeRequest {
                    volume_id: s.id,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        assert_eq!(all_lvs(), before);
    });
}
