//! Mount and mkfs options of a volume, assembled once for the node service and the reviver.

use vglet_mount::{MountEntry, MountError, MountOptions};

/// Whether a VG is fsdax persistent memory, by its tags (not the volume context: a PV
/// made by hand in such a VG gets DAX as well).
pub fn is_fsdax_vg(vg_tags: &[String]) -> bool {
    vglet_lvm::tags::VgPmem::from_tags(vg_tags).is_fsdax()
}

/// The staging mount's options: the capability's (or record's) mount flags, `ro` for a
/// reader-only mode, what the filesystem always needs ([`vglet_mount::implied_mount_flags`])
/// and `dax=always` on fsdax memory. A `dax` flag that contradicts the volume is refused.
pub fn staging_mount_options(
    mount_flags: &[String],
    read_only: bool,
    fs_type: &str,
    fsdax: bool,
) -> Result<MountOptions, MountError> {
    let mut flags = mount_flags.to_vec();
    if read_only {
        flags.push("ro".into());
    }
    flags.extend(vglet_mount::implied_mount_flags(fs_type));
    vglet_mount::volume_mount_options(&flags, fsdax)
}

/// The mkfs options of a volume: the StorageClass's, plus what DAX needs on fsdax memory.
pub fn mkfs_options(
    fs_type: &str,
    user: &[String],
    fsdax: bool,
) -> Result<Vec<String>, MountError> {
    if fsdax {
        vglet_mount::fsdax_mkfs_options(fs_type, user, vglet_mount::page_size())
    } else {
        Ok(user.to_vec())
    }
}

/// Whether a mount shows what the volume needs: DAX on fsdax memory (xfs turns
/// `dax=always` off by itself on a device without DAX support). `Err` carries the options
/// the kernel shows, for the message.
pub fn dax_as_needed(mount: Option<&MountEntry>, fsdax: bool) -> Result<(), String> {
    if !fsdax || mount.is_some_and(vglet_mount::mount_has_dax) {
        return Ok(());
    }
    Err(mount.map(|m| m.options.join(",")).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_readonly_implied_and_dax_in_one_place() {
        let o = staging_mount_options(&["noatime".into()], true, "xfs", true).unwrap();
        assert!(o.readonly());
        let s = o.to_strings();
        assert!(s.iter().any(|x| x == "nouuid"), "{s:?}");
        assert!(s.iter().any(|x| x == "dax=always"), "{s:?}");
        assert!(s.iter().any(|x| x == "noatime"), "{s:?}");
        let o = staging_mount_options(&[], false, "ext4", false).unwrap();
        assert!(!o.readonly());
        assert!(!o.to_strings().iter().any(|x| x.starts_with("dax")));
        assert!(staging_mount_options(&["dax".into()], false, "ext4", false).is_err());
        assert_eq!(
            mkfs_options("xfs", &[], true).unwrap(),
            vec!["-m".to_string(), "reflink=0".to_string()]
        );
        assert!(mkfs_options("xfs", &[], false).unwrap().is_empty());
    }
}
