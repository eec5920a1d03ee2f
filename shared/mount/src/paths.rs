use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path};

use crate::MountError;

/// PATH_MAX: longer paths cannot be passed to mount(2) anyway.
pub const MAX_PATH_BYTES: usize = 4096;

/// Checks a path that arrived in a CSI request (staging or target path) before anything is
/// created or mounted there: absolute, no `..` that could climb out of kubelet's directory,
/// no NUL, at most [`MAX_PATH_BYTES`].
pub fn validate_target_path(path: &Path) -> Result<(), MountError> {
    let bytes = path.as_os_str().as_bytes();
    let reason = if bytes.is_empty() {
        "empty path"
    } else if bytes.len() > MAX_PATH_BYTES {
        "longer than 4096 bytes"
    } else if bytes.contains(&0) {
        "contains a NUL byte"
    } else if !path.is_absolute() {
        "not an absolute path"
    } else if path.components().any(|c| c == Component::ParentDir) {
        "contains a '..' component"
    } else {
        return Ok(());
    };
    Err(MountError::InvalidPath {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    })
}

/// Makes sure `path` is a directory (creating it and its parents, mode 0750, as kubelet
/// does). A symlink in its place is refused rather than followed.
pub fn ensure_dir(path: &Path) -> Result<(), MountError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(m) => {
            return Err(MountError::InvalidPath {
                path: path.to_path_buf(),
                reason: format!("exists and is not a directory ({})", kind(&m.file_type())),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(MountError::io("stat", path, e)),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(path)
        .map_err(|e| MountError::io("create directory", path, e))
}

/// Makes sure `path` exists as the file a raw block volume is bind-mounted onto. An
/// existing regular file, or a device node (the file with the device already bound on it),
/// is accepted; the parent directory must exist (kubelet creates it).
pub fn ensure_file(path: &Path) -> Result<(), MountError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            let t = m.file_type();
            if t.is_file() || t.is_block_device() {
                return Ok(());
            }
            return Err(MountError::InvalidPath {
                path: path.to_path_buf(),
                reason: format!("exists and is not a regular file ({})", kind(&t)),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(MountError::io("stat", path, e)),
    }
    // O_NOFOLLOW: a symlink planted between the check and the open must not redirect the
    // create somewhere else.
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map(drop)
        .map_err(|e| MountError::io("create file", path, e))
}

fn kind(t: &std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn target_path_rules() {
        validate_target_path(Path::new(
            "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/pv/mount",
        ))
        .unwrap();
        validate_target_path(Path::new("/a/./b/")).unwrap();
        for bad in ["", "relative/path", "/a/../etc", "/..", "../x"] {
            let err = validate_target_path(Path::new(bad)).unwrap_err();
            assert!(matches!(err, MountError::InvalidPath { .. }), "{bad}");
        }
        let nul = std::ffi::OsStr::from_bytes(b"/a\0b");
        assert!(validate_target_path(Path::new(nul)).is_err());
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert!(validate_target_path(Path::new(&long)).is_err());
        let max = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        validate_target_path(Path::new(&max)).unwrap();
        // "a..b" is a name, not a parent reference.
        validate_target_path(Path::new("/a..b/c")).unwrap();
    }

    #[test]
    fn ensure_dir_creates_and_accepts_existing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x/y/z");
        ensure_dir(&p).unwrap();
        assert!(p.is_dir());
        ensure_dir(&p).unwrap();
        let f = d.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(ensure_dir(&f).is_err());
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(ensure_dir(&link).is_err(), "symlinks are not followed");
    }

    #[test]
    fn ensure_file_creates_and_refuses_dirs_and_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("block");
        ensure_file(&p).unwrap();
        assert!(p.is_file());
        std::fs::write(&p, b"keep").unwrap();
        ensure_file(&p).unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"keep",
            "existing file is not truncated"
        );
        assert!(ensure_file(d.path()).is_err());
        let link = d.path().join("link");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let err = ensure_file(&link).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(ensure_file(&d.path().join("missing/parent/file")).is_err());
    }
}
