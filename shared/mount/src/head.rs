//! Whether a device still starts with the zeroes `lvcreate -Z y` wrote.
//!
//! This is not a signature probe (blkid is that): it only tells whether anything at all has
//! been written to the first 4 KiB since the LV was created. Every filesystem vglet makes
//! writes its superblock there (xfs at 0, ext4 at 1 KiB), and `lvcreate --wipesignatures y`
//! already removed every signature blkid knows anywhere on the LV. So an LV that vglet
//! created and whose head is still zero holds nothing a mkfs could destroy, and the node
//! can skip the blkid run (~150-300 ms under emulation) on a volume's first stage.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::MountError;

/// What `lvcreate -Z y` zeroes.
const ZEROED_HEAD_BYTES: usize = 4096;

/// O_DIRECT needs a buffer aligned to the device's logical block size (at most 4 KiB).
#[repr(C, align(4096))]
struct Block([u8; ZEROED_HEAD_BYTES]);

/// Whether the first 4 KiB of `dev` are all zero, read past the page cache (O_DIRECT): a
/// filesystem's own writes may have bypassed a cached copy of zeroes. A device that cannot
/// be read that way is an error, never a "yes".
pub fn head_is_zeroed(dev: &Path) -> Result<bool, MountError> {
    Ok(read_head(dev)?.iter().all(|b| *b == 0))
}

/// The first 4 KiB of `dev`, read past the page cache (O_DIRECT): what is on the device,
/// not a cached copy from before a writer that bypassed the cache.
pub(crate) fn read_head(dev: &Path) -> Result<[u8; ZEROED_HEAD_BYTES], MountError> {
    let io = |source| MountError::Io {
        op: "reading the start of",
        path: dev.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECT | nix::libc::O_CLOEXEC)
        .open(dev)
        .map_err(io)?;
    let mut block = Box::new(Block([0xff; ZEROED_HEAD_BYTES]));
    file.read_exact(&mut block.0).map_err(io)?;
    Ok(block.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A file on a filesystem that takes O_DIRECT (tmpfs does not); `None` skips the test
    /// where none is at hand.
    fn direct_file(content: &[u8]) -> Option<tempfile::NamedTempFile> {
        let mut f = tempfile::NamedTempFile::new().ok()?;
        f.write_all(content).ok()?;
        f.flush().ok()?;
        head_is_zeroed(f.path()).ok().map(|_| f)
    }

    #[test]
    fn zeroes_are_a_fresh_head_and_any_byte_is_not() {
        let Some(zero) = direct_file(&[0u8; 8192]) else {
            eprintln!("no O_DIRECT-capable filesystem for the test file; skipped");
            return;
        };
        assert!(head_is_zeroed(zero.path()).unwrap());
        let mut sb = vec![0u8; 8192];
        sb[1024 + 56] = 0x53; // where ext4's magic lives
        let ext4 = direct_file(&sb).unwrap();
        assert!(!head_is_zeroed(ext4.path()).unwrap());
        let mut tail = vec![0u8; 8192];
        tail[4095] = 1;
        let last = direct_file(&tail).unwrap();
        assert!(!head_is_zeroed(last.path()).unwrap());
    }

    #[test]
    fn a_short_device_is_an_error_not_a_fresh_head() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[0u8; 512]).unwrap();
        assert!(head_is_zeroed(f.path()).is_err());
        assert!(head_is_zeroed(Path::new("/nonexistent/device")).is_err());
    }
}
