//! The validated request: flags and inventory turned into what the VG must look like.

use std::time::Duration;

use vglet_devices::inventory::{Device, Inventory};
use vglet_lvm::naming::{validate_lv_name, validate_tag, validate_vg_name};
use vglet_lvm::tags::{PMEM_MODE_PREFIX, PMEM_REGION_PREFIX, PmemMode};
use vglet_lvm::{LockType, PoolSize};

use crate::cli::Cli;
use crate::error::VgInitError;

/// The tag every VG vg-init manages carries, and `vglet.vg-init=<version>`: which vg-init
/// last shaped the VG (the tag vocabulary lives in vglet_lvm::tags).
use vglet_lvm::tags::{MANAGED_TAG, VG_INIT_PREFIX};

pub fn version_tag() -> String {
    format!("{VG_INIT_PREFIX}{}", vglet_common::VERSION)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemIdWish {
    /// Not managed: lvm stamps the host's ID on new VGs if it has one.
    Unmanaged,
    /// The VG must carry no system ID.
    Absent,
    /// The host's own lvm system ID (`auto`).
    Host,
    /// This ID, which must be the host's.
    Exactly(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinPoolWish {
    pub name: String,
    pub size: PoolSize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub vg: String,
    /// Device paths as given (inventory first, then --device, then --fast-device),
    /// duplicates removed.
    pub devices: Vec<String>,
    /// The --fast-device paths as given (also in `devices`): their PVs get
    /// [`vglet_lvm::tags::FAST_PV_TAG`].
    pub fast_devices: Vec<String>,
    /// Every tag the VG must carry: vg-init's own, then the operator's.
    pub tags: Vec<String>,
    /// `Some`: shared VG with this lock manager.
    pub lock_type: Option<LockType>,
    /// This host's node name, for the sanlock host tag.
    pub node_name: Option<String>,
    pub system_id: SystemIdWish,
    pub thin_pool: Option<ThinPoolWish>,
    pub metadata_size: u64,
    pub wipe: bool,
    pub lockstart_timeout: Duration,
    pub dry_run: bool,
    pub nothing_to_do_exit_code: i32,
}

/// The PMEM tags a VG built from these devices carries: `vglet.pmem=<mode>` and
/// `vglet.pmem-region=<region>`, the csi-driver's source of truth for choosing the VG by mode
/// and for mounting with DAX. Empty for ordinary disks. The devices must all be namespaces
/// of one region and one mode: a VG across regions would let a linear LV span regions, and
/// across modes it would put DAX filesystems on BTT devices.
fn pmem_tags_of(devices: &[Device]) -> Result<Vec<String>, VgInitError> {
    let pmem: Vec<_> = devices.iter().filter_map(|d| d.pmem.as_ref()).collect();
    let Some(first) = pmem.first() else {
        return Ok(Vec::new());
    };
    if pmem.len() != devices.len() {
        return Err(usage(
            "--inventory mixes persistent-memory namespaces with other devices; \
             a PMEM VG holds namespaces only",
        ));
    }
    let mode = PmemMode::parse(&first.mode).ok_or_else(|| {
        usage(format!(
            "--inventory: namespace {} has mode {:?}; vglet uses fsdax and sector",
            first.namespace, first.mode
        ))
    })?;
    if let Some(other) = pmem
        .iter()
        .find(|p| p.mode != first.mode || p.region != first.region)
    {
        return Err(usage(format!(
            "--inventory holds namespaces of more than one region or mode ({} is {} in {}, \
             {} is {} in {}); make one VG per region and mode \
             (pmem-ns-init --region, disk-discover --pmem-mode)",
            first.namespace, first.mode, first.region, other.namespace, other.mode, other.region
        )));
    }
    let region = format!("{PMEM_REGION_PREFIX}{}", first.region);
    validate_tag(&region)
        .map_err(|e| usage(format!("--inventory: region {:?}: {e}", first.region)))?;
    Ok(vec![mode.tag(), region])
}

fn usage(msg: impl Into<String>) -> VgInitError {
    VgInitError::Usage(msg.into())
}

impl Request {
    /// `inventory_text`: the inventory document when `--inventory` was given (read by the
    /// caller, so that this stays pure).
    pub fn from_cli(cli: &Cli, inventory_text: Option<&str>) -> Result<Request, VgInitError> {
        validate_vg_name(&cli.vg).map_err(|e| usage(format!("--vg: {e}")))?;
        let mut devices: Vec<String> = Vec::new();
        let mut pmem_tags = Vec::new();
        if let Some(text) = inventory_text {
            let inv = Inventory::from_json(text)
                .map_err(|e| VgInitError::Failed(format!("--inventory: {e}")))?;
            if let Some(target) = inv.target_vg.as_deref().filter(|t| *t != cli.vg) {
                return Err(usage(format!(
                    "--inventory was made for VG {target:?}, not {:?} (disk-discover --target-vg)",
                    cli.vg
                )));
            }
            pmem_tags = pmem_tags_of(&inv.devices)?;
            devices.extend(inv.devices.into_iter().map(|d| d.path));
        }
        if !pmem_tags.is_empty() && !cli.devices.is_empty() {
            return Err(usage(
                "--device cannot be added to an inventory of persistent-memory namespaces: \
                 a PMEM VG holds namespaces of one region and one mode only",
            ));
        }
        for d in &cli.devices {
            if !d.starts_with("/dev/") {
                return Err(usage(format!("--device {d:?}: not a /dev path")));
            }
            devices.push(d.clone());
        }
        let mut fast_devices = Vec::new();
        for d in cli
            .fast_devices
            .iter()
            .map(|d| d.trim())
            .filter(|d| !d.is_empty())
        {
            if !d.starts_with("/dev/") {
                return Err(usage(format!("--fast-device {d:?}: not a /dev path")));
            }
            if !pmem_tags.is_empty() {
                return Err(usage(
                    "--fast-device cannot be added to an inventory of persistent-memory \
                     namespaces: a PMEM VG holds namespaces of one region and one mode only \
                     (a namespace can be the fast tier of a VG of disks instead)",
                ));
            }
            if cli.shared {
                return Err(usage(
                    "--fast-device with --shared: csi-driver caches volumes of local VGs only \
                     (a cache is activated with its volume, exclusively, on one host)",
                ));
            }
            devices.push(d.to_string());
            if !fast_devices.iter().any(|f| f == d) {
                fast_devices.push(d.to_string());
            }
        }
        let mut seen = std::collections::HashSet::new();
        devices.retain(|d| seen.insert(d.clone()));

        let mut tags = vec![MANAGED_TAG.to_string(), version_tag()];
        tags.extend(pmem_tags.iter().cloned());
        for t in cli.tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
            validate_tag(t).map_err(|e| usage(format!("--tag: {e}")))?;
            if t.starts_with(VG_INIT_PREFIX) || t.starts_with(vglet_lvm::tags::MANAGED_PREFIX) {
                return Err(usage(format!("--tag {t:?}: vg-init sets this tag itself")));
            }
            // Saying the same as the inventory is fine (scripts written before vg-init set
            // these tags itself pass them); saying otherwise would mislabel the VG.
            for prefix in [PMEM_MODE_PREFIX, PMEM_REGION_PREFIX] {
                if let Some(own) = pmem_tags.iter().find(|p| p.starts_with(prefix))
                    && t.starts_with(prefix)
                    && t != own
                {
                    return Err(usage(format!(
                        "--tag {t:?} contradicts the inventory, whose namespaces give {own:?}"
                    )));
                }
            }
            if !tags.iter().any(|x| x == t) {
                tags.push(t.to_string());
            }
        }

        let lock_type = match (cli.shared, cli.lock_type.as_deref()) {
            (true, Some("none")) => {
                return Err(usage(
                    "--shared with --lock-type none: a shared VG needs a lock manager",
                ));
            }
            (false, None | Some("none")) => None,
            (true, None) => Some(LockType::Sanlock),
            (_, Some(t)) => Some(t.parse::<LockType>().map_err(usage)?),
        };

        let system_id = match cli.system_id.as_deref().map(str::trim) {
            None | Some("") => SystemIdWish::Unmanaged,
            Some("none") => SystemIdWish::Absent,
            Some("auto") => SystemIdWish::Host,
            Some(id)
                if id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c)) =>
            {
                SystemIdWish::Exactly(id.to_string())
            }
            Some(id) => return Err(usage(format!("--system-id {id:?}: not a valid system ID"))),
        };
        if lock_type.is_some() && system_id != SystemIdWish::Unmanaged {
            return Err(usage(
                "--system-id does not apply to a shared VG: lvmlockd, not a system ID, guards it",
            ));
        }

        let thin_pool = match cli.thin_pool.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => {
                validate_lv_name(name).map_err(|e| usage(format!("--thin-pool: {e}")))?;
                Some(ThinPoolWish {
                    name: name.to_string(),
                    size: parse_pool_size(&cli.thin_pool_size)
                        .map_err(|e| usage(format!("--thin-pool-size: {e}")))?,
                })
            }
        };
        let metadata_size =
            parse_size(&cli.metadata_size).map_err(|e| usage(format!("--metadata-size: {e}")))?;
        if metadata_size < (1 << 20) {
            return Err(usage("--metadata-size: at least 1MiB"));
        }

        let node_name = match cli.node_name.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(n) if n.len() > 253 || n.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(usage(format!(
                    "--node-name {n:?}: not a node name (at most 253 characters, no spaces)"
                )));
            }
            Some(n) => Some(n.to_string()),
        };

        Ok(Request {
            vg: cli.vg.clone(),
            devices,
            fast_devices,
            tags,
            lock_type,
            node_name,
            system_id,
            thin_pool,
            metadata_size,
            wipe: cli.wipe,
            lockstart_timeout: cli.lockstart_timeout,
            dry_run: cli.dry_run,
            nothing_to_do_exit_code: cli.nothing_to_do_exit_code,
        })
    }
}

/// A byte size in the one size grammar of every vglet binary (`vglet_common::size`,
/// docs/units.md: `16Mi`/`16MiB` binary, `10G` decimal, bare bytes); zero is refused.
pub fn parse_size(s: &str) -> Result<u64, String> {
    match vglet_common::size::parse_size(s)? {
        0 => Err(format!("{s:?}: must be greater than zero")),
        b => Ok(b),
    }
}

/// `80%`, `80%VG`, `50%FREE` or a size.
pub fn parse_pool_size(s: &str) -> Result<PoolSize, String> {
    let s = s.trim();
    if let Some((num, of)) = s.split_once('%') {
        let p: u8 = num
            .trim()
            .parse()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| format!("{s:?}: percent must be 1-100"))?;
        return match of.to_ascii_uppercase().as_str() {
            "" | "VG" => Ok(PoolSize::PercentOfVg(p)),
            "FREE" => Ok(PoolSize::PercentOfFree(p)),
            other => Err(format!("{s:?}: %{other} (use %VG or %FREE)")),
        };
    }
    parse_size(s).map(PoolSize::Bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        cli: Cli,
    }

    pub(crate) fn cli(args: &[&str]) -> Cli {
        T::try_parse_from(std::iter::once("vg-init").chain(args.iter().copied()))
            .unwrap()
            .cli
    }

    fn req(args: &[&str]) -> Result<Request, VgInitError> {
        Request::from_cli(&cli(args), None)
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("16Mi").unwrap(), 16 << 20);
        assert_eq!(parse_size("1Gi").unwrap(), 1 << 30);
        assert_eq!(
            parse_size("10G").unwrap(),
            10_000_000_000,
            "decimal, as everywhere"
        );
        assert!(
            parse_size("16m").is_err(),
            "lowercase m is no unit in the one grammar"
        );
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("0").is_err());
        assert!(parse_size("1x").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(parse_pool_size("80%").unwrap(), PoolSize::PercentOfVg(80));
        assert_eq!(parse_pool_size("80%vg").unwrap(), PoolSize::PercentOfVg(80));
        assert_eq!(
            parse_pool_size("50%FREE").unwrap(),
            PoolSize::PercentOfFree(50)
        );
        assert_eq!(parse_pool_size("1Gi").unwrap(), PoolSize::Bytes(1 << 30));
        assert!(parse_pool_size("0%").is_err());
        assert!(parse_pool_size("101%").is_err());
        assert!(parse_pool_size("5%PVS").is_err());
    }

    #[test]
    fn defaults_and_tags() {
        let r = req(&[
            "--vg", "vg0", "--device", "/dev/vda", "--device", "/dev/vda", "--tag", "team=a,x",
        ])
        .unwrap();
        assert_eq!(r.devices, vec!["/dev/vda"]);
        assert_eq!(
            r.tags,
            vec![
                MANAGED_TAG.to_string(),
                version_tag(),
                "team=a".into(),
                "x".into()
            ]
        );
        assert_eq!(r.lock_type, None);
        assert_eq!(r.metadata_size, 16 << 20);
        assert_eq!(r.nothing_to_do_exit_code, 4);
        assert_eq!(r.lockstart_timeout, Duration::from_secs(120));
        assert_eq!(r.system_id, SystemIdWish::Unmanaged);
        assert!(!r.wipe && !r.dry_run);
    }

    #[test]
    fn lock_types() {
        let lt = |a: &[&str]| req(a).map(|r| r.lock_type);
        assert_eq!(
            lt(&["--vg", "v", "--shared"]).unwrap(),
            Some(LockType::Sanlock)
        );
        assert_eq!(
            lt(&["--vg", "v", "--shared", "--lock-type", "dlm"]).unwrap(),
            Some(LockType::Dlm)
        );
        assert_eq!(
            lt(&["--vg", "v", "--lock-type", "idm"]).unwrap(),
            Some(LockType::Idm)
        );
        assert_eq!(lt(&["--vg", "v", "--lock-type", "none"]).unwrap(), None);
        assert!(matches!(
            lt(&["--vg", "v", "--shared", "--lock-type", "none"]),
            Err(VgInitError::Usage(_))
        ));
        assert!(matches!(
            req(&["--vg", "v", "--shared", "--system-id", "auto"]),
            Err(VgInitError::Usage(_))
        ));
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["--vg", "bad name"][..],
            &["--vg", "v", "--device", "vda"],
            &["--vg", "v", "--tag", "a b"],
            &["--vg", "v", "--tag", "vglet.vg-init=9"],
            &["--vg", "v", "--thin-pool", "p", "--thin-pool-size", "0%"],
            &["--vg", "v", "--thin-pool", "x_tmeta"],
            &["--vg", "v", "--metadata-size", "4k"],
            &["--vg", "v", "--system-id", "a b"],
        ] {
            assert!(matches!(req(args), Err(VgInitError::Usage(_))), "{args:?}");
        }
    }

    #[test]
    fn fast_devices_are_devices_too_and_local_only() {
        let r = req(&[
            "--vg",
            "vg0",
            "--device",
            "/dev/vda",
            "--fast-device",
            "/dev/nvme0n1",
            "--fast-device",
            "/dev/nvme0n1",
        ])
        .unwrap();
        assert_eq!(r.devices, vec!["/dev/vda", "/dev/nvme0n1"]);
        assert_eq!(r.fast_devices, vec!["/dev/nvme0n1"]);
        // Also a device given with --device: one device, tagged fast.
        let r = req(&[
            "--vg",
            "v",
            "--device",
            "/dev/pmem0",
            "--fast-device",
            "/dev/pmem0",
        ])
        .unwrap();
        assert_eq!(r.devices, vec!["/dev/pmem0"]);
        assert_eq!(r.fast_devices, vec!["/dev/pmem0"]);
        for (args, want) in [
            (
                &["--vg", "v", "--fast-device", "nvme0n1"][..],
                "not a /dev path",
            ),
            (
                &["--vg", "v", "--shared", "--fast-device", "/dev/nvme0n1"],
                "--shared",
            ),
        ] {
            match req(args) {
                Err(VgInitError::Usage(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        let inv = pmem_inv(&[("region0", "fsdax", "pmem")]);
        assert!(matches!(
            Request::from_cli(&cli(&["--vg", "p", "--fast-device", "/dev/vdb"]), Some(&inv)),
            Err(VgInitError::Usage(m)) if m.contains("--fast-device")
        ));
    }

    #[test]
    fn inventory_devices_come_first() {
        let inv = r#"{"version":1,"generator":"disk-discover 0.1.0","hostname":"n","generated_unix":1,
            "target_vg":"vg0","devices":[{"path":"/dev/disk/by-id/virtio-d1","kernel_path":"/dev/vda",
            "size_bytes":1073741824,"source":"disk","reason":"glob"}],"skipped":[]}"#;
        let r =
            Request::from_cli(&cli(&["--vg", "vg0", "--device", "/dev/vdb"]), Some(inv)).unwrap();
        assert_eq!(r.devices, vec!["/dev/disk/by-id/virtio-d1", "/dev/vdb"]);
        assert!(matches!(
            Request::from_cli(&cli(&["--vg", "other"]), Some(inv)),
            Err(VgInitError::Usage(m)) if m.contains("made for VG")
        ));
        assert!(matches!(
            Request::from_cli(&cli(&["--vg", "vg0"]), Some("{}")),
            Err(VgInitError::Failed(_))
        ));
    }

    fn pmem_inv(devs: &[(&str, &str, &str)]) -> String {
        let devices: Vec<String> = devs
            .iter()
            .enumerate()
            .map(|(i, (region, mode, source))| {
                let pmem = if *source == "pmem" {
                    format!(r#","pmem":{{"region":"{region}","mode":"{mode}","namespace":"vglet-{mode}-{region}"}}"#)
                } else {
                    String::new()
                };
                format!(
                    r#"{{"path":"/dev/pmem{i}","kernel_path":"/dev/pmem{i}","size_bytes":1073741824,"source":"{source}"{pmem},"reason":"r"}}"#
                )
            })
            .collect();
        format!(
            r#"{{"version":1,"generator":"g","hostname":"n","generated_unix":1,"devices":[{}],"skipped":[]}}"#,
            devices.join(",")
        )
    }

    #[test]
    fn pmem_inventory_tags_the_vg_with_mode_and_region() {
        let inv = pmem_inv(&[("region1", "sector", "pmem")]);
        let r = Request::from_cli(&cli(&["--vg", "p"]), Some(&inv)).unwrap();
        assert_eq!(
            r.tags,
            vec![
                MANAGED_TAG.to_string(),
                version_tag(),
                "vglet.pmem=sector".into(),
                "vglet.pmem-region=region1".into()
            ]
        );
        // The tag scripts passed before vg-init set it: accepted, not doubled.
        let r = Request::from_cli(
            &cli(&["--vg", "p", "--tag", "vglet.pmem=sector"]),
            Some(&inv),
        )
        .unwrap();
        assert_eq!(r.tags.len(), 4);
        for bad in ["vglet.pmem=fsdax", "vglet.pmem-region=region0"] {
            assert!(matches!(
                Request::from_cli(&cli(&["--vg", "p", "--tag", bad]), Some(&inv)),
                Err(VgInitError::Usage(m)) if m.contains("contradicts")
            ));
        }
        // Without an inventory of namespaces the operator's tag is kept as before.
        let r = req(&[
            "--vg",
            "p",
            "--device",
            "/dev/pmem0",
            "--tag",
            "vglet.pmem=fsdax",
        ])
        .unwrap();
        assert!(r.tags.contains(&"vglet.pmem=fsdax".to_string()));
    }

    #[test]
    fn pmem_vg_stays_in_one_region_and_mode() {
        for (devs, want) in [
            (
                &[("region0", "fsdax", "pmem"), ("region1", "fsdax", "pmem")][..],
                "more than one region",
            ),
            (
                &[("region0", "fsdax", "pmem"), ("region0", "sector", "pmem")],
                "more than one region or mode",
            ),
            (&[("region0", "fsdax", "pmem"), ("", "", "disk")], "mixes"),
            (&[("region0", "devdax", "pmem")], "devdax"),
        ] {
            let inv = pmem_inv(devs);
            match Request::from_cli(&cli(&["--vg", "p"]), Some(&inv)) {
                Err(VgInitError::Usage(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{devs:?}: {other:?}"),
            }
        }
        let inv = pmem_inv(&[("region0", "fsdax", "pmem")]);
        assert!(matches!(
            Request::from_cli(&cli(&["--vg", "p", "--device", "/dev/vdb"]), Some(&inv)),
            Err(VgInitError::Usage(m)) if m.contains("--device")
        ));
    }
}
