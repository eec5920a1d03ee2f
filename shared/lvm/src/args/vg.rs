//! argv builders for preparing hosts: PVs, VGs, their tags and lockspaces, thin pools, and
//! the queries vg-init asks before touching anything.

use super::CommonOptions;
use crate::size::size_arg;
use crate::vg_requests::{PoolSize, ThinPoolCreate, VgCreate};

/// `--metadatasize` in KiB: lvm takes the `b` suffix for LV sizes but rounds metadata
/// areas to sectors anyway, and whole KiB reads better in logs.
fn metadata_size_arg(bytes: u64) -> String {
    format!("{}k", bytes.div_ceil(1024))
}

fn push_metadata_size(argv: &mut Vec<String>, metadata_size: Option<u64>) {
    if let Some(size) = metadata_size {
        argv.push("--metadatasize".into());
        argv.push(metadata_size_arg(size));
    }
}

fn push_tags(argv: &mut Vec<String>, flag: &str, tags: &[String]) {
    for tag in tags {
        argv.push(flag.to_string());
        argv.push(tag.clone());
    }
}

/// Initialise PVs. No `-y`: should a signature appear after vg-init checked the device,
/// pvcreate's own prompt (answered "no" without a terminal) stops it.
pub fn pvcreate(
    devices: &[String],
    metadata_size: Option<u64>,
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("pvcreate");
    push_metadata_size(&mut argv, metadata_size);
    argv.extend(devices.iter().cloned());
    argv
}

pub fn vgcreate(req: &VgCreate, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("vgcreate");
    if let Some(lock) = req.lock_type {
        argv.extend([
            "--shared".to_string(),
            "--locktype".to_string(),
            lock.to_string(),
        ]);
    }
    push_metadata_size(&mut argv, req.metadata_size);
    push_tags(&mut argv, "--addtag", &req.tags);
    argv.push(req.vg.clone());
    argv.extend(req.devices.iter().cloned());
    argv
}

pub fn vgextend(
    vg: &str,
    devices: &[String],
    metadata_size: Option<u64>,
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("vgextend");
    push_metadata_size(&mut argv, metadata_size);
    argv.push(vg.to_string());
    argv.extend(devices.iter().cloned());
    argv
}

pub fn vgchange_add_tags(vg: &str, tags: &[String], common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("vgchange");
    push_tags(&mut argv, "--addtag", tags);
    argv.push(vg.to_string());
    argv
}

pub fn vgchange_del_tags(vg: &str, tags: &[String], common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("vgchange");
    push_tags(&mut argv, "--deltag", tags);
    argv.push(vg.to_string());
    argv
}

/// Tag PVs (vg-init's [`crate::tags::FAST_PV_TAG`]). Adding a tag a PV has is no error.
pub fn pvchange_add_tags(
    devices: &[String],
    tags: &[String],
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("pvchange");
    push_tags(&mut argv, "--addtag", tags);
    argv.extend(devices.iter().cloned());
    argv
}

/// Start the VG's lockspace; lvm waits until it is ready (sanlock: 20 s to minutes).
pub fn vgchange_lockstart(vg: &str, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("vgchange");
    argv.extend(["--lockstart".to_string(), vg.to_string()]);
    argv
}

pub fn vgchange_lockstop(vg: &str, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("vgchange");
    argv.extend(["--lockstop".to_string(), vg.to_string()]);
    argv
}

/// Stamp the VG with a system ID. Only the host's own ID is safe: a VG with another ID
/// becomes foreign here at once.
pub fn vgchange_system_id(vg: &str, system_id: &str, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("vgchange");
    argv.extend([
        "--systemid".to_string(),
        system_id.to_string(),
        vg.to_string(),
    ]);
    argv
}

pub fn lvcreate_thin_pool(req: &ThinPoolCreate, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("lvcreate");
    argv.extend(["--type", "thin-pool"].map(String::from));
    match req.size {
        PoolSize::PercentOfVg(p) => argv.extend(["-l".to_string(), format!("{p}%VG")]),
        PoolSize::PercentOfFree(p) => argv.extend(["-l".to_string(), format!("{p}%FREE")]),
        PoolSize::Bytes(b) => argv.extend(["-L".to_string(), size_arg(b)]),
    }
    if !req.activate {
        argv.push("-an".into());
    }
    argv.extend(["-n".to_string(), req.name.clone(), req.vg.clone()]);
    argv
}

/// `lvm systemid`: the host's system ID as lvm computes it from its configuration.
pub fn systemid() -> Vec<String> {
    vec!["systemid".to_string()]
}

/// Configuration values with lvm's defaults filled in, e.g. `global/use_lvmlockd`.
pub fn config_values(paths: &[&str]) -> Vec<String> {
    let mut argv = vec!["config".to_string(), "--typeconfig".into(), "full".into()];
    argv.extend(paths.iter().map(|p| p.to_string()));
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockd::LockType;

    fn s(argv: &[String]) -> String {
        argv.join(" ")
    }

    fn none() -> CommonOptions {
        CommonOptions::default()
    }

    fn devs() -> Vec<String> {
        vec!["/dev/disk/by-id/virtio-d1".into(), "/dev/vdb".into()]
    }

    #[test]
    fn pvcreate_argv() {
        assert_eq!(
            s(&pvcreate(&devs(), Some(16 << 20), &none())),
            "pvcreate --metadatasize 16384k /dev/disk/by-id/virtio-d1 /dev/vdb"
        );
        assert_eq!(
            s(&pvcreate(&devs()[..1], None, &none())),
            "pvcreate /dev/disk/by-id/virtio-d1"
        );
        assert_eq!(metadata_size_arg(1000), "1k");
    }

    #[test]
    fn vgcreate_local_and_shared() {
        let mut req = VgCreate {
            vg: "vg0".into(),
            devices: devs(),
            tags: vec!["vglet.managed=true".into(), "team=a".into()],
            lock_type: None,
            metadata_size: None,
        };
        assert_eq!(
            s(&vgcreate(&req, &none())),
            "vgcreate --addtag vglet.managed=true --addtag team=a vg0 /dev/disk/by-id/virtio-d1 /dev/vdb"
        );
        req.lock_type = Some(LockType::Sanlock);
        req.metadata_size = Some(16 << 20);
        let c = CommonOptions {
            config: Some("global { x = 1 }".into()),
            ..Default::default()
        };
        assert_eq!(
            vgcreate(&req, &c),
            vec![
                "vgcreate",
                "--config",
                "global { x = 1 }",
                "--shared",
                "--locktype",
                "sanlock",
                "--metadatasize",
                "16384k",
                "--addtag",
                "vglet.managed=true",
                "--addtag",
                "team=a",
                "vg0",
                "/dev/disk/by-id/virtio-d1",
                "/dev/vdb"
            ]
        );
    }

    #[test]
    fn vg_modify_argvs() {
        let c = none();
        assert_eq!(
            s(&vgextend("vg0", &devs(), None, &c)),
            "vgextend vg0 /dev/disk/by-id/virtio-d1 /dev/vdb"
        );
        assert_eq!(
            s(&vgextend("vg0", &devs()[1..], Some(4 << 20), &c)),
            "vgextend --metadatasize 4096k vg0 /dev/vdb"
        );
        let tags = vec!["a=b".to_string(), "c".to_string()];
        assert_eq!(
            s(&vgchange_add_tags("vg0", &tags, &c)),
            "vgchange --addtag a=b --addtag c vg0"
        );
        assert_eq!(
            s(&vgchange_del_tags("vg0", &tags, &c)),
            "vgchange --deltag a=b --deltag c vg0"
        );
        assert_eq!(
            s(&vgchange_lockstart("vg0", &c)),
            "vgchange --lockstart vg0"
        );
        assert_eq!(s(&vgchange_lockstop("vg0", &c)), "vgchange --lockstop vg0");
        assert_eq!(
            s(&vgchange_system_id("vg0", "node1", &c)),
            "vgchange --systemid node1 vg0"
        );
        assert_eq!(systemid(), vec!["systemid"]);
        assert_eq!(
            s(&config_values(&["global/use_lvmlockd", "local/host_id"])),
            "config --typeconfig full global/use_lvmlockd local/host_id"
        );
    }

    #[test]
    fn thin_pool_argvs() {
        let mut req = ThinPoolCreate {
            vg: "vg0".into(),
            name: "pool".into(),
            size: PoolSize::PercentOfVg(80),
            activate: true,
        };
        assert_eq!(
            s(&lvcreate_thin_pool(&req, &none())),
            "lvcreate --type thin-pool -l 80%VG -n pool vg0"
        );
        req.size = PoolSize::PercentOfFree(50);
        req.activate = false;
        assert_eq!(
            s(&lvcreate_thin_pool(&req, &none())),
            "lvcreate --type thin-pool -l 50%FREE -an -n pool vg0"
        );
        req.size = PoolSize::Bytes(100 << 20);
        assert_eq!(
            s(&lvcreate_thin_pool(&req, &none())),
            "lvcreate --type thin-pool -L 104857600b -an -n pool vg0"
        );
    }
}
