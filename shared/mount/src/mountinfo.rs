use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use procfs::process::{MountInfo, Process};

use crate::MountError;

/// One line of `/proc/self/mountinfo`, with the kernel's octal escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: i32,
    pub parent_id: i32,
    pub major: u32,
    pub minor: u32,
    /// The directory of the source filesystem that is mounted here ("/" unless a bind mount
    /// of a subdirectory).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// The mount source ("/dev/vg/lv", "tmpfs"); `None` for "none" or empty.
    pub source: Option<String>,
    /// Per-mount and superblock options merged: first "ro" or "rw" (ro when either level is
    /// read-only, since either makes writes fail), then per-mount options, then superblock
    /// options, each group sorted, without duplicates.
    pub options: Vec<String>,
}

impl MountEntry {
    pub fn readonly(&self) -> bool {
        self.options.first().map(String::as_str) == Some("ro")
    }

    /// True for "name" and for "name=value".
    pub fn has_option(&self, name: &str) -> bool {
        self.options
            .iter()
            .any(|o| o == name || o.split_once('=').is_some_and(|(n, _)| n == name))
    }

    fn from_procfs(mi: MountInfo) -> Result<MountEntry, MountError> {
        let (major, minor) = mi
            .majmin
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| {
                MountError::MountTable(format!(
                    "mount {}: bad device number {:?}",
                    mi.mnt_id, mi.majmin
                ))
            })?;
        let format = |(k, v): (&String, &Option<String>)| match v {
            Some(v) => unescape_string(&format!("{k}={v}")),
            None => unescape_string(k),
        };
        let readonly = mi.mount_options.contains_key("ro") || mi.super_options.contains_key("ro");
        let is_mode = |o: &String| o == "ro" || o == "rw";
        let per_mount: BTreeSet<String> = mi.mount_options.iter().map(format).collect();
        let per_super: BTreeSet<String> = mi.super_options.iter().map(format).collect();
        let mut options = vec![if readonly { "ro" } else { "rw" }.to_string()];
        options.extend(per_mount.iter().filter(|o| !is_mode(o)).cloned());
        options.extend(
            per_super
                .into_iter()
                .filter(|o| !is_mode(o) && !per_mount.contains(o)),
        );
        // procfs hands the path fields over with the kernel's escapes still in them.
        let mount_point = mi.mount_point.to_string_lossy().into_owned();
        Ok(MountEntry {
            mount_id: mi.mnt_id,
            parent_id: mi.pid,
            major,
            minor,
            root: unescape_path(&mi.root),
            mount_point: unescape_path(&mount_point),
            fs_type: unescape_string(&mi.fs_type),
            source: mi.mount_source.as_deref().map(unescape_string),
            options,
        })
    }
}

/// Decodes the `\ooo` octal escapes the kernel writes for space, tab, newline and backslash
/// in mountinfo fields. Anything that is not a full three-digit escape is kept as it is.
pub fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && is_octal_escape(&b[i + 1..]) {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn is_octal_escape(rest: &[u8]) -> bool {
    rest.len() >= 3
        && (b'0'..=b'3').contains(&rest[0])
        && rest[1..3].iter().all(|c| (b'0'..=b'7').contains(c))
}

fn unescape_path(s: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape_mountinfo(s)))
}

fn unescape_string(s: &str) -> String {
    String::from_utf8_lossy(&unescape_mountinfo(s)).into_owned()
}

/// Parses mountinfo text (the format of `/proc/<pid>/mountinfo`); for tests and for reading
/// another process's table.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>, MountError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mi = MountInfo::from_line(line)
                .map_err(|e| MountError::MountTable(format!("line {line:?}: {e}")))?;
            MountEntry::from_procfs(mi)
        })
        .collect()
}

/// The mount table of this process's mount namespace, in kernel order (parents before
/// children, older before newer).
pub fn mounts() -> Result<Vec<MountEntry>, MountError> {
    let infos = Process::myself()
        .and_then(|p| p.mountinfo())
        .map_err(|e| MountError::MountTable(format!("/proc/self/mountinfo: {e}")))?;
    infos.into_iter().map(MountEntry::from_procfs).collect()
}

/// The mount visible at `target`: when several are stacked there, the top-most one (the one
/// no other mount at that path sits on). Paths are compared component-wise without resolving
/// symlinks, so pass the path as it was mounted.
pub fn mount_at(target: &Path) -> Result<Option<MountEntry>, MountError> {
    Ok(top_most_at(mounts()?, target))
}

pub(crate) fn top_most_at(all: Vec<MountEntry>, target: &Path) -> Option<MountEntry> {
    let at: Vec<MountEntry> = all
        .into_iter()
        .filter(|m| m.mount_point == target)
        .collect();
    let covered = |m: &MountEntry| {
        at.iter()
            .any(|o| o.parent_id == m.mount_id && o.mount_id != m.mount_id)
    };
    at.iter().rev().find(|m| !covered(m)).or(at.last()).cloned()
}

pub fn is_mount_point(target: &Path) -> Result<bool, MountError> {
    Ok(mount_at(target)?.is_some())
}

/// Every mount of the filesystem on device `major:minor` (the staging mount, the bind mounts
/// into pods, ...), in table order.
pub fn mounts_of_device(major: u32, minor: u32) -> Result<Vec<MountEntry>, MountError> {
    Ok(mounts()?
        .into_iter()
        .filter(|m| m.major == major && m.minor == minor)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
28 27 0:25 / /mnt/sand ro,nosuid,nodev,relatime - tmpfs model_tools_unavailable ro,size=4k,mode=755
101 27 253:3 /sub\\040dir /var/lib/kubelet/pods/x/volumes/my\\040vol\\011tab ro,relatime shared:5 master:2 - xfs /dev/mapper/vg-lv\\134x rw,attr2,inode64,noquota
102 27 253:3 / /staging rw,noatime shared:7 - xfs /dev/mapper/vg-lv rw,attr2,inode64,noquota
103 27 0:60 / /empty rw - tmpfs none rw
";

    #[test]
    fn parses_fields_and_merges_options() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(m.len(), 8);
        let root = &m[1];
        assert_eq!(root.mount_id, 27);
        assert_eq!(root.parent_id, 1);
        assert_eq!((root.major, root.minor), (254, 0));
        assert_eq!(root.root, Path::new("/"));
        assert_eq!(root.mount_point, Path::new("/"));
        assert_eq!(root.fs_type, "ext4");
        assert_eq!(root.source.as_deref(), Some("/dev/vda"));
        assert_eq!(
            root.options,
            vec!["rw", "relatime", "discard", "resv_strict"]
        );
        assert!(!root.readonly());
        assert!(m[4].readonly());
        assert_eq!(
            m[4].options,
            vec!["ro", "nodev", "nosuid", "relatime", "mode=755", "size=4k"]
        );
        assert!(m[4].has_option("size"));
        assert!(m[4].has_option("nodev"));
        assert!(!m[4].has_option("noexec"));
        assert_eq!(m[7].source, None);
    }

    /// procfs leaves `\040` and friends in place; we decode them.
    #[test]
    fn octal_escapes_are_decoded() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        let e = &m[5];
        assert_eq!(
            e.mount_point,
            Path::new("/var/lib/kubelet/pods/x/volumes/my vol\ttab")
        );
        assert_eq!(e.root, Path::new("/sub dir"));
        assert_eq!(e.source.as_deref(), Some("/dev/mapper/vg-lv\\x"));
        // ro per mount, rw on the superblock: the mount is read-only.
        assert!(e.readonly());
        assert_eq!(e.options[0], "ro");
        assert!(!e.options.contains(&"rw".to_string()));
        assert_eq!(unescape_mountinfo("a\\040b\\134\\012"), b"a b\\\n");
        // Not an escape: kept literally.
        assert_eq!(unescape_mountinfo("a\\9b\\04"), b"a\\9b\\04");
    }

    #[test]
    fn top_most_of_stacked_mounts() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        let top = top_most_at(m.clone(), Path::new("/dev/pts")).unwrap();
        assert_eq!(top.mount_id, 29);
        let top = top_most_at(m.clone(), Path::new("/staging/")).unwrap();
        assert_eq!(top.mount_id, 102);
        assert!(top_most_at(m, Path::new("/nothing")).is_none());
    }

    #[test]
    fn bad_line_is_an_error() {
        assert!(matches!(
            parse_mountinfo("garbage"),
            Err(MountError::MountTable(_))
        ));
    }

    #[test]
    fn reads_this_hosts_table() {
        let all = mounts().unwrap();
        assert!(!all.is_empty());
        let root = mount_at(Path::new("/")).unwrap().expect("/ is a mount");
        assert_eq!(root.mount_point, Path::new("/"));
        let proc = mount_at(Path::new("/proc"))
            .unwrap()
            .expect("/proc is a mount");
        assert_eq!(proc.fs_type, "proc");
        assert!(is_mount_point(Path::new("/proc")).unwrap());
        assert!(!is_mount_point(Path::new("/proc/self")).unwrap());
        let same_dev = mounts_of_device(proc.major, proc.minor).unwrap();
        assert!(same_dev.iter().any(|m| m.mount_id == proc.mount_id));
    }
}
