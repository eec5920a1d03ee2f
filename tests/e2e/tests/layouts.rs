//! Every StorageClass layout end to end in a real kernel (5 virtio disks of 1 GiB): each
//! volume is created, staged, written, unstaged, staged again and read back, and `lvs`
//! must show the layout asked for. Invalid combinations get their error and leave `lvs`
//! unchanged. One boot for all of it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::Code;
use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;
use vglet_e2e::req;
use vglet_e2e::req::params;
use vglet_e2e::rpc::unstage;
use vglet_e2e::{Clients, DriverProcess, clients, in_guest, lvs, run_guest_test, sh};

const VG: &str = "layvg";
/// Two PVs only: for layouts that need more.
const SMALL: &str = "smallvg";
const MIB: i64 = 1 << 20;

#[test]
fn layouts_in_guest() {
    if in_guest() {
        return;
    }
    let mut vm = vglet_vmh::Vm::new("e2e-layouts")
        .mem_mib(1536)
        .cpus(2)
        .modules([
            "dm_mod",
            "dm_raid",
            "raid0",
            "raid1",
            "raid10",
            "raid456",
            "dm_integrity",
            "dm_thin_pool",
            "loop",
            "ext4",
        ])
        .udev(false)
        .timeout(Duration::from_secs(900));
    for d in ["d1", "d2", "d3", "d4", "d5"] {
        vm = vm.fresh_disk(d, 1 << 30);
    }
    run_guest_test("guest_layouts", vm);
}

fn cap() -> VolumeCapability {
    req::mount_cap("ext4", &[], Mode::SingleNodeWriter)
}

fn create_req(name: &str, bytes: i64, kv: &[(&str, &str)]) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap()],
        parameters: params(kv),
        ..Default::default()
    }
}

/// (segtype, stripes) of an LV, as lvs prints them.
fn segtype_stripes(vg: &str, lv: &str) -> (String, u64) {
    let out = sh(&format!(
        "lvs --noheadings -o segtype,stripes --separator : {vg}/{lv}"
    ));
    let (t, s) = out.trim().split_once(':').unwrap();
    (t.trim().to_string(), s.trim().parse().unwrap())
}

async fn stage(c: &mut Clients, id: &str, path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    c.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: path.display().to_string(),
            volume_capability: Some(cap()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("stage {id}: {e:?}"));
}

/// Create, stage, write, unstage, stage, read back, unstage, delete; checks the layout.
async fn roundtrip(c: &mut Clients, name: &str, kv: &[(&str, &str)], want: (&str, u64)) {
    eprintln!("\n--- e2e layout: {name} {kv:?}");
    let t = Instant::now();
    let vol = c
        .controller
        .create_volume(create_req(name, 64 * MIB, kv))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
        .into_inner()
        .volume
        .unwrap();
    let id = vol.volume_id.clone();
    let lv = id.split_once('/').unwrap().1.to_string();
    eprintln!(
        "  created {id} ({} bytes) in {:?}",
        vol.capacity_bytes,
        t.elapsed()
    );
    assert!(vol.capacity_bytes >= 64 * MIB);
    let (segtype, stripes) = segtype_stripes(VG, &lv);
    assert_eq!(
        (segtype.as_str(), stripes),
        want,
        "{name}: lvs shows the layout"
    );
    if kv.contains(&("integrity", "true")) {
        let all = sh(&format!("lvs -a --noheadings -o lv_name,segtype {VG}"));
        assert!(
            all.lines()
                .any(|l| l.contains(&format!("{lv}_rimage_0_imeta")))
                && all.contains("integrity"),
            "{name}: dm-integrity under the images:\n{all}"
        );
    }
    let staging = PathBuf::from(format!("/run/e2e/layouts/{name}"));
    stage(c, &id, &staging).await;
    sh(&format!(
        "head -c 3000000 /dev/urandom > {0}/data && sha256sum {0}/data | cut -d' ' -f1 > /run/e2e/layouts/{name}.sum && sync",
        staging.display()
    ));
    unstage(c, &id, &staging).await;
    stage(c, &id, &staging).await;
    let again = sh(&format!(
        "sha256sum {}/data | cut -d' ' -f1",
        staging.display()
    ));
    let first = std::fs::read_to_string(format!("/run/e2e/layouts/{name}.sum")).unwrap();
    assert_eq!(again, first, "{name}: data read back after restage");
    unstage(c, &id, &staging).await;
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        !lvs(VG).iter().any(|l| l.0 == lv),
        "{name}: LV removed on delete"
    );
    eprintln!("  {name}: ok in {:?}", t.elapsed());
}

#[test]
#[ignore = "runs inside the QEMU guest through layouts_in_guest"]
fn guest_layouts() {
    assert!(in_guest(), "run through layouts_in_guest");
    sh(&format!(
        "pvcreate -q /dev/vda /dev/vdb /dev/vdc /dev/vdd /dev/vde && vgcreate -q {VG} /dev/vda /dev/vdb /dev/vdc /dev/vdd /dev/vde && lvcreate -q -y --type thin-pool -n pool0 -L 256m {VG}"
    ));
    sh(&format!(
        "mkdir -p /run/e2e/small && truncate -s 200M /run/e2e/small/a /run/e2e/small/b && \
         A=$(losetup -f --show /run/e2e/small/a) && B=$(losetup -f --show /run/e2e/small/b) && \
         pvcreate -q $A $B && vgcreate -q {SMALL} $A $B"
    ));
    let socket = PathBuf::from("/run/vglet/layouts.sock");
    let _driver = DriverProcess::start(
        &[
            "--mode",
            "all",
            "--node-id",
            "e2e-node",
            "--volume-group",
            VG,
            "--volume-group",
            SMALL,
            "--state-dir",
            "/run/vglet/state",
        ],
        &socket,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = clients(&socket).await;
        let caps = c
            .controller
            .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        eprintln!("controller capabilities: {caps:?}");

        let v = ("volumeGroup", VG);
        roundtrip(
            &mut c,
            "lay-striped",
            &[
                v,
                ("type", "striped"),
                ("stripes", "2"),
                ("stripeSize", "64Ki"),
            ],
            ("striped", 2),
        )
        .await;
        roundtrip(&mut c, "lay-raid1", &[v, ("type", "raid1")], ("raid1", 2)).await;
        roundtrip(&mut c, "lay-raid5", &[v, ("type", "raid5")], ("raid5", 3)).await;
        roundtrip(&mut c, "lay-raid6", &[v, ("type", "raid6")], ("raid6", 5)).await;
        roundtrip(
            &mut c,
            "lay-raid10",
            &[v, ("type", "raid10")],
            ("raid10", 4),
        )
        .await;
        roundtrip(
            &mut c,
            "lay-raid1-integrity",
            &[v, ("type", "raid1"), ("integrity", "true")],
            ("raid1", 2),
        )
        .await;
        roundtrip(
            &mut c,
            "lay-thin",
            &[("type", "thin"), ("thinPool", "pool0")],
            ("thin", 0),
        )
        .await;
        roundtrip(&mut c, "lay-linear", &[v], ("linear", 1)).await;

        invalid_combinations(&mut c).await;
        thin_capacity(&mut c).await;
    });
    eprintln!("\nE2E LAYOUTS: ALL STEPS PASSED");
}

/// What, parameters, expected code, expected text in the message.
type BadCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Code,
    &'static str,
);

async fn invalid_combinations(c: &mut Clients) {
    eprintln!("\n--- e2e layout: invalid combinations leave lvs unchanged");
    let before = (lvs(VG), lvs(SMALL));
    let cases: Vec<BadCase> = vec![
        (
            "raid5 on 2 PVs",
            vec![("volumeGroup", SMALL), ("type", "raid5")],
            Code::InvalidArgument,
            "needs 3 physical volumes",
        ),
        (
            "raid6 on 5 PVs with 4 stripes",
            vec![("volumeGroup", VG), ("type", "raid6"), ("stripes", "4")],
            Code::InvalidArgument,
            "needs 6 physical volumes",
        ),
        (
            "unknown parameter",
            vec![("volumeGroup", VG), ("raidLevel", "5")],
            Code::InvalidArgument,
            "valid parameters are",
        ),
        (
            "mirrors=0",
            vec![("volumeGroup", VG), ("type", "raid1"), ("mirrors", "0")],
            Code::InvalidArgument,
            "mirrors",
        ),
        (
            "integrity on linear",
            vec![("volumeGroup", VG), ("integrity", "true")],
            Code::InvalidArgument,
            "integrity",
        ),
        (
            "thin without pool",
            vec![("volumeGroup", VG), ("type", "thin")],
            Code::InvalidArgument,
            "thinPool",
        ),
        (
            "thin pool that is not one",
            vec![
                ("volumeGroup", SMALL),
                ("type", "thin"),
                ("thinPool", "nopool"),
            ],
            Code::InvalidArgument,
            "nopool",
        ),
        (
            "raid1 larger than the PVs",
            vec![("volumeGroup", SMALL), ("type", "raid1")],
            Code::ResourceExhausted,
            "bytes free",
        ),
    ];
    let mut failed = Vec::new();
    for (what, kv, code, text) in &cases {
        let size = if *what == "raid1 larger than the PVs" {
            300 * MIB
        } else {
            64 * MIB
        };
        let r = c
            .controller
            .create_volume(create_req("lay-bad", size, kv))
            .await;
        match r {
            Err(s) if s.code() == *code && s.message().contains(text) => {
                eprintln!("  {what:<32} {:?}: {}", s.code(), s.message())
            }
            other => failed.push(format!(
                "{what}: want {code:?} containing {text:?}, got {other:?}"
            )),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert_eq!(
        (lvs(VG), lvs(SMALL)),
        before,
        "lvs changed after invalid requests"
    );
}

async fn thin_capacity(c: &mut Clients) {
    eprintln!("\n--- e2e layout: thin capacity with overprovisioning");
    let cap = |ratio: &'static str| GetCapacityRequest {
        parameters: params(&[
            ("type", "thin"),
            ("thinPool", "pool0"),
            ("overprovisionRatio", ratio),
        ]),
        ..Default::default()
    };
    let one = c
        .controller
        .get_capacity(cap("1"))
        .await
        .unwrap()
        .into_inner();
    let three = c
        .controller
        .get_capacity(cap("3"))
        .await
        .unwrap()
        .into_inner();
    eprintln!("  ratio 1: {one:?}\n  ratio 3: {three:?}");
    assert!(one.available_capacity > 200 * MIB && one.available_capacity <= 256 * MIB);
    assert!(three.available_capacity > 2 * one.available_capacity);
    // Promising more than the ratio allows is refused before anything is created.
    let before = lvs(VG);
    let e = c
        .controller
        .create_volume(create_req(
            "lay-thin-big",
            1024 * MIB,
            &[("type", "thin"), ("thinPool", "pool0")],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(lvs(VG), before);
    let ok = c
        .controller
        .create_volume(create_req(
            "lay-thin-big",
            512 * MIB,
            &[
                ("type", "thin"),
                ("thinPool", "pool0"),
                ("overprovisionRatio", "3"),
            ],
        ))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    eprintln!(
        "  overprovisioned thin volume {} of {} bytes",
        ok.volume_id, ok.capacity_bytes
    );
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: ok.volume_id,
            ..Default::default()
        })
        .await
        .unwrap();
}
