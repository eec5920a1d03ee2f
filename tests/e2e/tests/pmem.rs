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

use std::time::{Duration, Instant};

use vglet_devices::inventory::{DeviceSource, Inventory, PmemNamespaces};
use vglet_e2e::{CmdOut, bin, in_guest, mount_at, run_program, sh};
use vglet_ndctl::{Region, parse_regions};

const MIB: u64 = 1 << 20;
const OUT: &str = "/run/vglet/pmem.json";
const SPLIT: [&str; 4] = ["--use-for-fsdax", "70", "--use-for-sector", "30"];

#[test]
fn pmem_chain_in_guest() {
    if in_guest() || vglet_vmh::skip_vm_tests("pmem_chain_in_guest") {
        return;
    }
    for b in ["pmem-ns-init", "disk-discover", "vg-init"] {
        bin(b);
    }
    let vm = vglet_vmh::Vm::new("pmem")
        .mem_mib(1024)
        .cpus(2)
        .fresh_pmem("pm0", 1 << 30)
        .fresh_pmem("pm1", 1 << 30)
        .modules(["nfit", "nd_pmem", "nd_btt", "dax_pmem", "dm_mod", "xfs"])
        .timeout(Duration::from_secs(900));
    let exe = std::env::current_exe().unwrap();
    let out = vm
        .run(&format!(
            "{} --exact guest_pmem_chain --include-ignored --nocapture --test-threads=1",
            exe.display()
        ))
        .expect("guest run");
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
            let tag = format!("vglet.pmem={mode}");
            let out = run_program(
                &bin("vg-init"),
                &["--vg", &vg, "--inventory", &inv_path, "--tag", &tag],
            );
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
    t.step("done");
    eprintln!("\n--- pmem timings:\n{}", t.1.join("\n"));
}
