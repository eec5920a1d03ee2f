use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::sys::statvfs::statvfs;

use crate::MountError;

/// Capacity and inode usage of a mounted filesystem, for NodeGetVolumeStats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    pub total_bytes: u64,
    /// What an unprivileged writer can still use (excludes ext4's reserved blocks).
    pub available_bytes: u64,
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
    pub used_inodes: u64,
}

pub fn fs_stats(path: &Path) -> Result<FsStats, MountError> {
    let s = statvfs(path).map_err(|errno| MountError::Stat {
        path: path.to_path_buf(),
        errno,
    })?;
    // Block counts are in units of f_frsize, not f_bsize.
    let unit = s.fragment_size() as u64;
    let blocks = s.blocks() as u64;
    let free = s.blocks_free() as u64;
    let files = s.files() as u64;
    let files_free = s.files_free() as u64;
    Ok(FsStats {
        total_bytes: blocks.saturating_mul(unit),
        available_bytes: (s.blocks_available() as u64).saturating_mul(unit),
        used_bytes: blocks.saturating_sub(free).saturating_mul(unit),
        total_inodes: files,
        free_inodes: files_free,
        used_inodes: files.saturating_sub(files_free),
    })
}

// BLKGETSIZE64 is _IOR(0x12, 114, size_t) but the kernel writes a u64, so the request code
// uses size_t's size while the buffer is a u64 (ioctl_read! would tie both to one type).
nix::ioctl_read_bad!(
    blkgetsize64,
    nix::request_code_read!(0x12, 114, std::mem::size_of::<nix::libc::size_t>()),
    u64
);

/// Size in bytes of a block device (or, for a regular file such as a test image, its
/// length).
pub fn block_device_size(dev: &Path) -> Result<u64, MountError> {
    let mut file = File::open(dev).map_err(|e| MountError::io("open", dev, e))?;
    let mut size: u64 = 0;
    // SAFETY: the fd is open for the duration of the call and `size` is a valid u64 the
    // kernel writes into.
    if unsafe { blkgetsize64(file.as_raw_fd(), &mut size) }.is_ok() {
        return Ok(size);
    }
    // Not a block device (ENOTTY): the end of the file is its size.
    file.seek(SeekFrom::End(0))
        .map_err(|e| MountError::io("seek to end of", dev, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_root_are_consistent() {
        let s = fs_stats(Path::new("/")).unwrap();
        assert!(s.total_bytes > 0);
        assert!(s.used_bytes <= s.total_bytes);
        assert!(s.available_bytes <= s.total_bytes);
        assert_eq!(s.used_inodes + s.free_inodes, s.total_inodes);
    }

    #[test]
    fn stats_of_missing_path_names_it() {
        let err = fs_stats(Path::new("/nonexistent/vglet")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vglet"), "{err}");
        assert_eq!(err.errno(), Some(nix::errno::Errno::ENOENT));
    }

    #[test]
    fn size_of_regular_file_falls_back_to_seek() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(5 << 20).unwrap();
        assert_eq!(block_device_size(f.path()).unwrap(), 5 << 20);
        assert!(matches!(
            block_device_size(Path::new("/nonexistent/dev")),
            Err(MountError::Io { .. })
        ));
    }
}
