//! DAX (direct access) for filesystems on fsdax persistent memory. Whether a volume gets DAX
//! is decided by the driver from its VG's tags, never by users' mount flags: a `dax` flag
//! that contradicts the volume is refused, and after mounting the mount table must show DAX,
//! because xfs silently drops `dax=always` on a device that cannot do it.

use crate::{MountEntry, MountError, MountOptions, parse_mount_flags};

/// The option fsdax volumes are mounted with. Accepted by xfs and by ext4 since Linux 5.10,
/// and what both print in the mount table when DAX is on.
pub const DAX_ALWAYS: &str = "dax=always";

fn option_name(flag: &str) -> &str {
    flag.split_once('=').map_or(flag, |(n, _)| n)
}

/// Checks the `dax` entries of users' mount flags against the volume: on fsdax memory only
/// `dax` and `dax=always` (what the driver sets anyway) are accepted, elsewhere none.
pub fn check_dax_flags(flags: &[String], fsdax: bool) -> Result<(), MountError> {
    for f in flags.iter().filter(|f| option_name(f) == "dax") {
        let reason = if !fsdax {
            "the volume is not on fsdax persistent memory, so it cannot be mounted with DAX"
        } else if f == "dax" || f == DAX_ALWAYS {
            continue;
        } else {
            "the volume is on fsdax persistent memory and is always mounted with dax=always"
        };
        return Err(MountError::InvalidOption {
            option: f.clone(),
            reason: reason.to_string(),
        });
    }
    Ok(())
}

/// The mount options for users' `flags` on a volume: as [`parse_mount_flags`] gives them,
/// plus [`DAX_ALWAYS`] when `fsdax`. The flags' own dax entries are checked by
/// [`check_dax_flags`] and replaced, so the data string never says dax twice.
pub fn volume_mount_options(flags: &[String], fsdax: bool) -> Result<MountOptions, MountError> {
    check_dax_flags(flags, fsdax)?;
    let rest: Vec<String> = flags
        .iter()
        .filter(|f| option_name(f) != "dax")
        .cloned()
        .collect();
    let mut opts = parse_mount_flags(&rest)?;
    if fsdax {
        opts.add_data_option(DAX_ALWAYS)?;
    }
    Ok(opts)
}

/// True when the mount table shows DAX on for the whole filesystem.
pub fn mount_has_dax(m: &MountEntry) -> bool {
    m.options.iter().any(|o| o == DAX_ALWAYS || o == "dax")
}

/// mkfs options for a filesystem on fsdax memory: the user's, plus what DAX needs unless the
/// user chose it already. xfs: no reflink (xfs refuses DAX with reflink on many kernels).
/// ext4: block size equal to the page size (mke2fs picks 1 KiB blocks for small volumes,
/// and ext4 only does DAX with page-sized blocks).
pub fn fsdax_mkfs_options(
    fs: &str,
    user: &[String],
    page_size: u64,
) -> Result<Vec<String>, MountError> {
    let mut out = user.to_vec();
    let bad = |value: &str, reason: &str| MountError::InvalidArgument {
        what: "mkfs option",
        value: value.to_string(),
        reason: reason.to_string(),
    };
    match fs {
        "xfs" => {
            if let Some(w) = user.iter().find(|w| w.contains("reflink=1")) {
                return Err(bad(w, "reflink and DAX exclude each other on fsdax memory"));
            }
            if !user.iter().any(|w| w.contains("reflink=")) {
                out.extend(["-m".to_string(), "reflink=0".to_string()]);
            }
        }
        "ext4" => match user.iter().position(|w| w == "-b") {
            Some(i) => {
                let given = user.get(i + 1).map(String::as_str).unwrap_or("");
                if given != page_size.to_string() {
                    return Err(bad(
                        given,
                        &format!(
                            "ext4 does DAX only with the page size as block size ({page_size})"
                        ),
                    ));
                }
            }
            None => out.extend(["-b".to_string(), page_size.to_string()]),
        },
        _ => {}
    }
    Ok(out)
}

/// The kernel's page size.
pub fn page_size() -> u64 {
    procfs::page_size()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn user_dax_flags_must_agree_with_the_volume() {
        check_dax_flags(&s(&["noatime"]), false).unwrap();
        check_dax_flags(&s(&["dax", "dax=always"]), true).unwrap();
        for f in ["dax", "dax=always", "dax=inode", "dax=never"] {
            let e = check_dax_flags(&s(&[f]), false).unwrap_err().to_string();
            assert!(e.contains("not on fsdax"), "{e}");
        }
        for f in ["dax=inode", "dax=never"] {
            let e = check_dax_flags(&s(&[f]), true).unwrap_err().to_string();
            assert!(e.contains(f) && e.contains("always mounted"), "{e}");
        }
        // Not a dax option, only a similar name: left to the allow-list.
        check_dax_flags(&s(&["daxx"]), false).unwrap();
    }

    #[test]
    fn fsdax_volumes_get_dax_always_once() {
        let o = volume_mount_options(&s(&["noatime", "dax", "nouuid"]), true).unwrap();
        assert_eq!(o.data_options(), ["nouuid", "dax=always"]);
        assert!(o.flags.contains(nix::mount::MsFlags::MS_NOATIME));
        let o = volume_mount_options(&s(&["dax=always"]), true).unwrap();
        assert_eq!(o.data, "dax=always");
        let o = volume_mount_options(&s(&["nouuid"]), false).unwrap();
        assert_eq!(o.data, "nouuid");
        assert!(volume_mount_options(&s(&["dax"]), false).is_err());
        // The allow-list still applies to everything else.
        assert!(volume_mount_options(&s(&["bind"]), true).is_err());
    }

    fn entry(options: &[&str]) -> MountEntry {
        MountEntry {
            mount_id: 1,
            parent_id: 0,
            major: 253,
            minor: 0,
            root: "/".into(),
            mount_point: "/mnt".into(),
            fs_type: "xfs".into(),
            source: Some("/dev/vg/lv".into()),
            options: s(options),
        }
    }

    #[test]
    fn dax_is_read_from_the_mount_table() {
        assert!(mount_has_dax(&entry(&[
            "rw",
            "relatime",
            "attr2",
            "dax=always"
        ])));
        assert!(mount_has_dax(&entry(&["rw", "dax"])));
        assert!(!mount_has_dax(&entry(&[
            "rw", "relatime", "attr2", "inode64"
        ])));
        assert!(!mount_has_dax(&entry(&["rw", "dax=inode"])));
        assert!(!mount_has_dax(&entry(&["rw", "dax=never"])));
    }

    #[test]
    fn dax_is_read_from_real_mountinfo_lines() {
        let text = "\
36 25 253:3 / /stage/a rw,relatime shared:1 - xfs /dev/mapper/pm-a rw,attr2,dax=always,inode64,logbufs=8,noquota
37 25 253:4 / /stage/b rw,relatime shared:1 - ext4 /dev/mapper/pm-b rw,dax=always
38 25 253:5 / /stage/c rw,relatime shared:1 - ext4 /dev/mapper/pm-c rw
";
        let m = crate::parse_mountinfo(text).unwrap();
        let dax: Vec<bool> = m.iter().map(mount_has_dax).collect();
        assert_eq!(dax, [true, true, false]);
    }

    #[test]
    fn mkfs_options_for_dax() {
        assert_eq!(
            fsdax_mkfs_options("xfs", &[], 4096).unwrap(),
            s(&["-m", "reflink=0"])
        );
        assert_eq!(
            fsdax_mkfs_options("xfs", &s(&["-m", "crc=1,reflink=0"]), 4096).unwrap(),
            s(&["-m", "crc=1,reflink=0"])
        );
        assert!(fsdax_mkfs_options("xfs", &s(&["-m", "reflink=1"]), 4096).is_err());
        assert_eq!(
            fsdax_mkfs_options("ext4", &s(&["-L", "x"]), 4096).unwrap(),
            s(&["-L", "x", "-b", "4096"])
        );
        fsdax_mkfs_options("ext4", &s(&["-b", "4096"]), 4096).unwrap();
        assert!(fsdax_mkfs_options("ext4", &s(&["-b", "1024"]), 4096).is_err());
    }
}
