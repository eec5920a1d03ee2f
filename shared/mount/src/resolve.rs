//! Paths a CO hands over, resolved once and acted on through the result.
//!
//! A path string is only a question; the answer is an `O_PATH` file descriptor reached
//! from `/` one component at a time with `openat2(RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)`, so no symlink in any position (first, middle, last, before a
//! trailing slash) is ever followed, and a symlink planted after the walk changes nothing:
//! every later mount, unmount, stat and removal goes through the descriptor (or its
//! `/proc/self/fd/N` name, which the kernel resolves to exactly that file), never through a
//! second lookup of the string. Missing directories are created with `mkdirat` relative to
//! the parent descriptor and reopened the same way.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, StatxAttributes, StatxFlags};
use rustix::io::Errno;

use crate::MountError;
use crate::paths::validate_target_path;

/// What [`resolve`] makes of a missing path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Nothing: a missing component is [`MountError::NotFound`].
    Nothing,
    /// Missing directories, the last one included (mode 0750, as kubelet makes them).
    Dir,
    /// Missing parent directories and an empty regular file last (mode 0640): what a raw
    /// block volume is bind-mounted onto.
    File,
}

/// What kind of file a resolved path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    BlockDevice,
    Other,
}

/// What the kernel says of a resolved file: enough to prove whose mount it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub kind: Kind,
    /// The file is the root of a mount (something is mounted exactly here).
    pub mount_root: bool,
    /// (major, minor) of the filesystem holding the file: for a mounted ext4/xfs root, the
    /// block device it was mounted from.
    pub dev: (u64, u64),
    /// (major, minor) a device node stands for (a bind-mounted raw block volume).
    pub rdev: (u64, u64),
    /// Size in bytes (regular files).
    pub size: u64,
    /// The mount is read-only.
    pub read_only: bool,
}

/// A path resolved without following any symlink, held open.
#[derive(Debug)]
pub struct Resolved {
    fd: OwnedFd,
    /// The directory holding it, and its name there (`None` for `/` itself).
    parent: Option<(OwnedFd, OsString)>,
    /// The path as asked, without `.` components, repeated or trailing slashes.
    path: PathBuf,
}

fn invalid(path: &Path, reason: impl Into<String>) -> MountError {
    MountError::InvalidPath {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_err(op: &'static str, path: &Path, e: Errno) -> MountError {
    MountError::io(
        op,
        path,
        std::io::Error::from_raw_os_error(e.raw_os_error()),
    )
}

/// Every lookup takes a single name relative to an already resolved directory, so these
/// flags apply to each component in turn; `RESOLVE_BENEATH` keeps even a bug here from
/// climbing out of that directory.
const RESOLVE: ResolveFlags = ResolveFlags::NO_SYMLINKS
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::BENEATH);

/// No O_NOFOLLOW: with O_PATH it would open a symlink itself instead of refusing it;
/// RESOLVE_NO_SYMLINKS refuses it (ELOOP) in every position.
fn open_name(dir: &OwnedFd, name: &OsStr, extra: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    loop {
        match rustix::fs::openat2(dir, name, OFlags::CLOEXEC | extra, mode, RESOLVE) {
            // openat2 asks to be retried when a rename raced the lookup.
            Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

fn open_path(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    open_name(dir, name, OFlags::PATH, Mode::empty())
}

fn normal_names(path: &Path) -> Vec<&OsStr> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// An absolute path without `.` components, repeated or trailing slashes: the form in
/// which the driver records and compares the paths a CO hands over (`/a/./b/` and `/a/b`
/// are one publish target).
pub fn normalize_path(path: &Path) -> PathBuf {
    std::iter::once(OsStr::new("/"))
        .chain(normal_names(path))
        .collect()
}

/// Resolves `path` (absolute, no `..`: [`validate_target_path`]) component by component
/// without following a symlink anywhere, creating what `create` allows.
pub fn resolve(path: &Path, create: Create) -> Result<Resolved, MountError> {
    validate_target_path(path)?;
    let trailing_slash = path.as_os_str().as_bytes().ends_with(b"/") && path != Path::new("/");
    if trailing_slash && create == Create::File {
        return Err(invalid(
            path,
            "a trailing slash names a directory, not a file",
        ));
    }
    let names = normal_names(path);
    let clean = normalize_path(path);
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open", Path::new("/"), e))?;
    let mut cur = root;
    let mut parent = None;
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let here: PathBuf = std::iter::once(OsStr::new("/"))
            .chain(names[..=i].iter().copied())
            .collect();
        let next = match open_path(&cur, name) {
            Ok(fd) => fd,
            Err(Errno::LOOP) | Err(Errno::XDEV) => {
                return Err(invalid(path, format!("{} is a symlink", here.display())));
            }
            Err(Errno::NOENT) if create != Create::Nothing => {
                if last && create == Create::File {
                    // O_CREAT without O_EXCL: a file appearing meanwhile is taken as it
                    // is (checked below); RESOLVE_NO_SYMLINKS refuses a symlink
                    // appearing meanwhile.
                    let f = open_name(
                        &cur,
                        name,
                        OFlags::CREATE | OFlags::WRONLY,
                        Mode::from_raw_mode(0o640),
                    )
                    .map_err(|e| match e {
                        Errno::LOOP | Errno::XDEV => {
                            invalid(path, format!("{} is a symlink", here.display()))
                        }
                        e => io_err("create file", &here, e),
                    })?;
                    drop(f);
                } else {
                    match rustix::fs::mkdirat(&cur, *name, Mode::from_raw_mode(0o750)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_err("create directory", &here, e)),
                    }
                }
                open_path(&cur, name).map_err(|e| match e {
                    Errno::LOOP | Errno::XDEV => {
                        invalid(path, format!("{} is a symlink", here.display()))
                    }
                    e => io_err("open", &here, e),
                })?
            }
            Err(Errno::NOENT) => return Err(MountError::NotFound { path: here }),
            Err(e) => return Err(io_err("open", &here, e)),
        };
        if !last {
            let st = rustix::fs::fstat(&next).map_err(|e| io_err("stat", &here, e))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return Err(invalid(
                    path,
                    format!("{} is not a directory", here.display()),
                ));
            }
        }
        parent = Some((std::mem::replace(&mut cur, next), name.to_os_string()));
    }
    let resolved = Resolved {
        fd: cur,
        parent,
        path: clean,
    };
    let kind = resolved.identity()?.kind;
    let ok = match create {
        Create::Dir => kind == Kind::Dir,
        // A device node is the file with the volume already bound on it.
        Create::File => matches!(kind, Kind::File | Kind::BlockDevice),
        Create::Nothing => !trailing_slash || kind == Kind::Dir,
    };
    if !ok {
        let want = match create {
            Create::File => "a regular file",
            _ => "a directory",
        };
        return Err(invalid(path, format!("is not {want} ({kind:?})")));
    }
    Ok(resolved)
}

impl Resolved {
    /// The path as resolved (normalised: no `.`, no repeated or trailing slashes).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A name the kernel resolves to exactly this file, whatever happens to the path:
    /// what mount(2), umount2(2), open_tree(2) and statvfs(2) are given. It is only valid
    /// in this process and while `self` lives.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    pub fn identity(&self) -> Result<Identity, MountError> {
        let st = rustix::fs::statx(
            &self.fd,
            "",
            AtFlags::EMPTY_PATH,
            StatxFlags::TYPE | StatxFlags::SIZE,
        )
        .map_err(|e| io_err("stat", &self.path, e))?;
        // Linux 5.8 and later always report it; without it nothing could be proven.
        if !st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
            return Err(io_err(
                "statx (mount root attribute)",
                &self.path,
                Errno::NOSYS,
            ));
        }
        let vfs = rustix::fs::fstatvfs(&self.fd).map_err(|e| io_err("statvfs", &self.path, e))?;
        let kind = match FileType::from_raw_mode(st.stx_mode.into()) {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::BlockDevice => Kind::BlockDevice,
            _ => Kind::Other,
        };
        Ok(Identity {
            kind,
            mount_root: st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT),
            dev: (st.stx_dev_major.into(), st.stx_dev_minor.into()),
            rdev: (st.stx_rdev_major.into(), st.stx_rdev_minor.into()),
            size: st.stx_size,
            read_only: vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
        })
    }

    /// Looks at the same path again (after a mount or unmount there), from the same parent
    /// directory: the file now on top at that name, never a symlink.
    pub fn reopen(&self) -> Result<Resolved, MountError> {
        match &self.parent {
            Some((dir, name)) => reopen_at(dir, name, &self.path),
            None => resolve(&self.path, Create::Nothing),
        }
    }

    /// Removes the empty directory or empty regular file at this name, as NodeUnpublish
    /// must for what it created, and nothing else: a non-empty directory or file, a device
    /// node or a mount stays, and a file swapped in at the name since (a symlink included)
    /// is not followed. `false` when something else was left in place.
    pub fn remove_created(&self) -> Result<bool, MountError> {
        let Some((dir, name)) = &self.parent else {
            return Ok(false);
        };
        let now = match self.reopen() {
            Ok(r) => r,
            Err(MountError::NotFound { .. }) => return Ok(true),
            Err(MountError::InvalidPath { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let id = now.identity()?;
        if id.mount_root {
            return Ok(false);
        }
        let flags = match id.kind {
            // rmdir refuses a non-empty directory by itself.
            Kind::Dir => AtFlags::REMOVEDIR,
            Kind::File if id.size == 0 => AtFlags::empty(),
            _ => return Ok(false),
        };
        match rustix::fs::unlinkat(dir, name.as_os_str(), flags) {
            Ok(()) | Err(Errno::NOENT) => Ok(true),
            Err(Errno::NOTEMPTY) | Err(Errno::EXIST) | Err(Errno::BUSY) => Ok(false),
            Err(e) => Err(io_err("remove", &self.path, e)),
        }
    }

    /// Gives up the descriptor of the mount this path resolved to, so that it can be
    /// unmounted: any open file in a mount, an `O_PATH` one included, makes umount2(2)
    /// fail with EBUSY. What is kept is the parent directory (in the mount below) and the
    /// name, and the mount's id to check the name still leads to the very same mount.
    pub fn release_for_unmount(self) -> Result<MountName, MountError> {
        let Some((parent, name)) = self.parent else {
            return Err(invalid(&self.path, "the root directory is never unmounted"));
        };
        let mnt_id = mount_id(&self.fd, OsStr::new(""), AtFlags::EMPTY_PATH, &self.path)?;
        Ok(MountName {
            parent,
            name,
            mnt_id,
            path: self.path,
        })
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The file now at `name` in the resolved directory `dir`, never through a symlink.
fn reopen_at(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<Resolved, MountError> {
    let fd = open_path(dir, name).map_err(|e| match e {
        Errno::NOENT => MountError::NotFound {
            path: path.to_path_buf(),
        },
        Errno::LOOP | Errno::XDEV => invalid(path, "is now a symlink"),
        e => io_err("open", path, e),
    })?;
    let dir = dir
        .try_clone()
        .map_err(|e| MountError::io("dup", path, e))?;
    Ok(Resolved {
        fd,
        parent: Some((dir, name.to_os_string())),
        path: path.to_path_buf(),
    })
}

fn mount_id<Fd: AsFd>(
    fd: Fd,
    name: &OsStr,
    flags: AtFlags,
    path: &Path,
) -> Result<u64, MountError> {
    let st = rustix::fs::statx(fd, name, flags, StatxFlags::MNT_ID)
        .map_err(|e| io_err("stat", path, e))?;
    if st.stx_mask & StatxFlags::MNT_ID.bits() == 0 {
        return Err(io_err("statx (mount id)", path, Errno::NOSYS));
    }
    Ok(st.stx_mnt_id)
}

/// A mount to unmount, named by its parent directory's descriptor and its name there (see
/// [`Resolved::release_for_unmount`]).
#[derive(Debug)]
pub struct MountName {
    parent: OwnedFd,
    name: OsString,
    mnt_id: u64,
    path: PathBuf,
}

impl MountName {
    /// What umount2(2) is given: `/proc/self/fd/<parent>/<name>`, looked up in the
    /// resolved parent; the unmount must not follow a symlink at `name` (UMOUNT_NOFOLLOW,
    /// as [`crate::SystemMounter`] does).
    pub fn proc_path(&self) -> PathBuf {
        Path::new(&format!("/proc/self/fd/{}", self.parent.as_raw_fd())).join(&self.name)
    }

    /// Whether the name still leads to the mount that was proven, right before the
    /// unmount: a directory renamed into its place meanwhile shows another mount id.
    pub fn is_same_mount(&self) -> Result<bool, MountError> {
        match mount_id(
            &self.parent,
            &self.name,
            AtFlags::SYMLINK_NOFOLLOW,
            &self.path,
        ) {
            Ok(id) => Ok(id == self.mnt_id),
            Err(MountError::Io { source, .. })
                if source.raw_os_error() == Some(Errno::NOENT.raw_os_error()) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file at the name now (after the unmount: the directory or file below).
    pub fn reopen(&self) -> Result<Resolved, MountError> {
        reopen_at(&self.parent, &self.name, &self.path)
    }
}

/// Why a resolved path is or is not a mount of a given volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountProof {
    /// Mounted here, and of the volume's device.
    Ours,
    /// Nothing is mounted exactly here.
    NotMounted,
    /// Something else is mounted here (another device, a tmpfs, a bind of another file).
    Foreign,
}

/// Whether `id` is a mount of the volume whose device node has the numbers `device`: a
/// filesystem mount shows them as its root's device, a bind of the device node (raw block)
/// as the node's rdev. The caller proves separately that `device` is the volume's LV (its
/// device-mapper uuid).
pub fn mount_proof(id: &Identity, device: (u64, u64), block: bool) -> MountProof {
    if !id.mount_root {
        return MountProof::NotMounted;
    }
    let ours = if block {
        id.kind == Kind::BlockDevice && id.rdev == device
    } else {
        id.kind == Kind::Dir && id.dev == device
    };
    if ours {
        MountProof::Ours
    } else {
        MountProof::Foreign
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn refused(r: Result<Resolved, MountError>, why: &str) {
        match r {
            Err(MountError::InvalidPath { .. }) => {}
            other => panic!("{why}: {other:?}"),
        }
    }

    #[test]
    fn resolves_and_creates_directories_and_files() {
        let d = tmp();
        let p = d.path().join("a/b/c");
        let r = resolve(&p, Create::Dir).unwrap();
        assert!(p.is_dir());
        assert_eq!(r.path(), p);
        let id = r.identity().unwrap();
        assert_eq!(id.kind, Kind::Dir);
        assert!(!id.mount_root);
        // Found again, `.` and slashes normalised.
        let again = format!("{}/./a//b/c/", d.path().display());
        let r = resolve(Path::new(&again), Create::Nothing).unwrap();
        assert_eq!(r.path(), p);
        let f = d.path().join("x/y/dev");
        let r = resolve(&f, Create::File).unwrap();
        assert!(f.is_file());
        assert_eq!(r.identity().unwrap().kind, Kind::File);
        // The proc name opens the very file.
        assert_eq!(
            std::fs::metadata(r.proc_path()).unwrap().len(),
            0,
            "{:?}",
            r.proc_path()
        );
    }

    #[test]
    fn normal_form() {
        assert_eq!(normalize_path(Path::new("/a/./b//c/")), Path::new("/a/b/c"));
        assert_eq!(normalize_path(Path::new("/")), Path::new("/"));
        assert_eq!(normalize_path(Path::new("/a")), Path::new("/a"));
    }

    #[test]
    fn missing_is_not_found_without_create() {
        let d = tmp();
        match resolve(&d.path().join("none/x"), Create::Nothing) {
            Err(MountError::NotFound { path }) => assert_eq!(path, d.path().join("none")),
            other => panic!("{other:?}"),
        }
        assert!(!d.path().join("none").exists(), "nothing created");
    }

    #[test]
    fn symlinks_in_every_position_are_refused() {
        let d = tmp();
        let real = d.path().join("real");
        std::fs::create_dir_all(real.join("sub")).unwrap();
        symlink(&real, d.path().join("ln")).unwrap();
        symlink("/", d.path().join("ln-root")).unwrap();
        let root = d.path().join("ln-root");
        for (p, why) in [
            (d.path().join("ln"), "last component"),
            (
                PathBuf::from(format!("{}/", d.path().join("ln").display())),
                "trailing slash",
            ),
            (d.path().join("ln/sub"), "middle component"),
            (root.join("etc"), "a parent to /"),
            (root.join("tmp/new"), "a parent to / with creation"),
        ] {
            refused(resolve(&p, Create::Nothing), why);
            refused(resolve(&p, Create::Dir), why);
            refused(resolve(&p, Create::File), why);
        }
        assert!(!real.join("new").exists());
        assert!(!Path::new("/tmp/new").exists() || Path::new("/tmp/new").is_dir());
        // The first component: the tempdir lives under a real directory, so plant the
        // link as the tree's first component relative to a fresh root is impossible on
        // the host; a symlink directly under / is what the guest test covers.
    }

    #[test]
    fn kinds_are_checked() {
        let d = tmp();
        let f = d.path().join("file");
        std::fs::write(&f, b"data").unwrap();
        refused(resolve(&f, Create::Dir), "a file for a directory");
        refused(resolve(d.path(), Create::File), "a directory for a file");
        refused(
            resolve(Path::new(&format!("{}/", f.display())), Create::Nothing),
            "a trailing slash on a file",
        );
        refused(resolve(&f.join("below"), Create::Dir), "a file as a parent");
        refused(
            resolve(
                Path::new(&format!("{}/", d.path().join("n").display())),
                Create::File,
            ),
            "a trailing slash for a file to create",
        );
        refused(resolve(Path::new("rel"), Create::Nothing), "relative");
        refused(resolve(Path::new("/a/../b"), Create::Nothing), "dot-dot");
    }

    #[test]
    fn removal_takes_only_what_the_driver_made() {
        let d = tmp();
        let dir = resolve(&d.path().join("t"), Create::Dir).unwrap();
        assert!(dir.remove_created().unwrap());
        assert!(!d.path().join("t").exists());
        let file = resolve(&d.path().join("f"), Create::File).unwrap();
        assert!(file.remove_created().unwrap());
        assert!(!d.path().join("f").exists());
        // A file with content, a non-empty directory: kept.
        let keep = d.path().join("keep");
        std::fs::write(&keep, b"hostname").unwrap();
        let r = resolve(&keep, Create::Nothing).unwrap();
        assert!(!r.remove_created().unwrap());
        assert_eq!(std::fs::read(&keep).unwrap(), b"hostname");
        let full = d.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("x"), b"").unwrap();
        let r = resolve(&full, Create::Nothing).unwrap();
        assert!(!r.remove_created().unwrap());
        assert!(full.join("x").exists());
        // Swapped for a symlink after resolution: the link is not followed, the
        // directory it points to stays whole.
        let t = d.path().join("swap");
        let r = resolve(&t, Create::Dir).unwrap();
        std::fs::remove_dir(&t).unwrap();
        symlink(&full, &t).unwrap();
        assert!(!r.remove_created().unwrap());
        assert!(full.join("x").exists());
        assert!(t.symlink_metadata().unwrap().file_type().is_symlink());
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_never_redirects() {
        // One thread swaps a directory for a symlink to `elsewhere` in a loop; every
        // resolution either refuses or lands on a directory that is not `elsewhere`.
        let d = tmp();
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let marker = rustix::fs::stat(&elsewhere).unwrap().st_ino;
        let a = d.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (a, elsewhere, stop) = (a.clone(), elsewhere.clone(), stop.clone());
            let aside = d.path().join("aside");
            std::thread::spawn(move || {
                let mut swaps = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || swaps < 200 {
                    // The resolver may create `a` itself while it is missing: errors
                    // here only mean that, and the loop goes on.
                    let _ = std::fs::rename(&a, &aside);
                    let _ = symlink(&elsewhere, &a);
                    let _ = std::fs::remove_file(&a);
                    let _ = std::fs::rename(&aside, &a);
                    swaps += 1;
                }
                swaps
            })
        };
        let (mut refusals, mut landed) = (0, 0);
        for _ in 0..2000 {
            match resolve(&a.join("t"), Create::Dir) {
                Ok(r) => {
                    let st = rustix::fs::fstat(r.as_fd()).unwrap();
                    assert_ne!(st.st_ino, marker);
                    let up = r
                        .parent
                        .as_ref()
                        .map(|(p, _)| rustix::fs::fstat(p).unwrap().st_ino);
                    assert_ne!(up, Some(marker), "created inside the symlink's target");
                    landed += 1;
                }
                Err(MountError::InvalidPath { .. }) | Err(MountError::NotFound { .. }) => {
                    refusals += 1
                }
                Err(MountError::Io { .. }) => refusals += 1,
                Err(e) => panic!("{e}"),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        assert!(landed + refusals == 2000);
        assert_eq!(
            std::fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "nothing made there"
        );
    }

    #[test]
    fn proofs() {
        let dir = Identity {
            kind: Kind::Dir,
            mount_root: true,
            dev: (253, 3),
            rdev: (0, 0),
            size: 0,
            read_only: false,
        };
        assert_eq!(mount_proof(&dir, (253, 3), false), MountProof::Ours);
        assert_eq!(mount_proof(&dir, (253, 4), false), MountProof::Foreign);
        assert_eq!(
            mount_proof(&dir, (253, 3), true),
            MountProof::Foreign,
            "a dir for block"
        );
        let plain = Identity {
            mount_root: false,
            ..dir
        };
        assert_eq!(mount_proof(&plain, (253, 3), false), MountProof::NotMounted);
        // A bind of the device node: devtmpfs' numbers as dev, the LV's as rdev.
        let node = Identity {
            kind: Kind::BlockDevice,
            mount_root: true,
            dev: (0, 5),
            rdev: (253, 3),
            size: 0,
            read_only: false,
        };
        assert_eq!(mount_proof(&node, (253, 3), true), MountProof::Ours);
        assert_eq!(mount_proof(&node, (253, 3), false), MountProof::Foreign);
        assert_eq!(mount_proof(&node, (253, 9), true), MountProof::Foreign);
        let file = Identity {
            kind: Kind::File,
            ..node
        };
        assert_eq!(mount_proof(&file, (253, 3), true), MountProof::Foreign);
    }
}
