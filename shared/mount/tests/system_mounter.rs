//! SystemMounter against the real kernel. Needs root (CAP_SYS_ADMIN); skipped otherwise.
//! Mounts happen under private temp directories and are undone by a guard even when an
//! assertion fails, so a failing test does not leave mounts behind on the host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use vglet_mount::{
    Filesystems, MountError, Mounter, SystemMounter, block_device_size, ensure_dir, ensure_file,
    fs_stats, mount_at, mounts_of_device, parse_mount_flags,
};
use vglet_runner::{Command, Runner, SystemRunner, resolve_program};

/// Root is not enough in a container without CAP_SYS_ADMIN: try a throwaway tmpfs mount.
fn is_root() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root to mount");
        return false;
    }
    let probe = tempfile::tempdir().unwrap();
    let mounted = nix::mount::mount(
        Some("tmpfs"),
        probe.path(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    );
    match mounted {
        Ok(()) => {
            nix::mount::umount2(probe.path(), nix::mount::MntFlags::empty()).unwrap();
            true
        }
        Err(e) => {
            eprintln!("skipping: cannot mount here ({e})");
            false
        }
    }
}

/// Unmounts whatever is still mounted at these paths, newest first.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            while mount_at(p).ok().flatten().is_some() {
                if nix::mount::umount2(p.as_path(), nix::mount::MntFlags::MNT_DETACH).is_err() {
                    break;
                }
            }
        }
    }
}

#[test]
fn tmpfs_mount_readonly_bind_and_unmount() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A space in the path also checks the \040 decoding of the mount table.
    let staging = dir.path().join("staging dir");
    let target = dir.path().join("pod/target");
    ensure_dir(&staging).unwrap();
    ensure_dir(&target).unwrap();
    let _cleanup = Cleanup(vec![staging.clone(), target.clone()]);
    let m = SystemMounter::new();

    let mut opts = parse_mount_flags(&["noatime".into(), "nodev".into(), "nosuid".into()]).unwrap();
    opts.data = "size=16m".into();
    m.mount(Path::new("tmpfs"), &staging, "tmpfs", &opts)
        .unwrap();
    let st = mount_at(&staging).unwrap().expect("staging is mounted");
    assert_eq!(st.fs_type, "tmpfs");
    assert_eq!(st.mount_point, staging);
    assert_eq!(st.source.as_deref(), Some("tmpfs"));
    assert!(!st.readonly());
    assert!(st.has_option("noatime") && st.has_option("nodev") && st.has_option("nosuid"));
    std::fs::write(staging.join("hello"), b"hi").unwrap();

    let stats = fs_stats(&staging).unwrap();
    assert_eq!(stats.total_bytes, 16 << 20);
    assert!(stats.used_bytes > 0 && stats.used_bytes < stats.total_bytes);
    assert!(stats.used_inodes >= 1);

    m.bind(&staging, &target, true).unwrap();
    let b = mount_at(&target).unwrap().expect("bind is mounted");
    assert!(b.readonly(), "{:?}", b.options);
    assert_eq!(b.options[0], "ro");
    assert_eq!((b.major, b.minor), (st.major, st.minor));
    // The read-only remount kept the flags the source mount had.
    assert!(
        b.has_option("nodev") && b.has_option("nosuid") && b.has_option("noatime"),
        "{:?}",
        b.options
    );
    assert_eq!(std::fs::read(target.join("hello")).unwrap(), b"hi");
    let err = std::fs::write(target.join("nope"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::EROFS as i32));
    // The staging mount itself stays writable.
    std::fs::write(staging.join("still-rw"), b"x").unwrap();
    let both = mounts_of_device(st.major, st.minor).unwrap();
    assert_eq!(both.len(), 2, "{both:?}");

    // An open file keeps the mount busy; unmount must say so rather than detach lazily.
    {
        let _open = std::fs::File::open(target.join("hello")).unwrap();
        let err = m.unmount(&target).unwrap_err();
        assert!(matches!(err, MountError::Busy { .. }), "{err:?}");
    }

    m.unmount(&target).unwrap();
    assert!(mount_at(&target).unwrap().is_none());
    let err = m.unmount(&target).unwrap_err();
    assert!(err.is_not_mounted(), "{err:?}");
    m.unmount(&staging).unwrap();
    assert!(mount_at(&staging).unwrap().is_none());
    assert!(m.unmount(&staging).unwrap_err().is_not_mounted());
    assert!(
        m.unmount(&dir.path().join("missing"))
            .unwrap_err()
            .is_not_mounted()
    );
}

#[test]
fn writable_bind_and_mount_errors() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let dst = dir.path().join("dst");
    ensure_dir(&src).unwrap();
    ensure_dir(&dst).unwrap();
    let _cleanup = Cleanup(vec![dst.clone()]);
    let m = SystemMounter::new();
    m.bind(&src, &dst, false).unwrap();
    let b = mount_at(&dst).unwrap().expect("bind");
    assert!(!b.readonly());
    std::fs::write(dst.join("f"), b"x").unwrap();
    assert_eq!(std::fs::read(src.join("f")).unwrap(), b"x");
    m.unmount(&dst).unwrap();

    let err = m
        .bind(&dir.path().join("missing"), &dst, false)
        .unwrap_err();
    assert!(
        matches!(
            err,
            MountError::Bind {
                errno: Errno::ENOENT,
                ..
            }
        ),
        "{err:?}"
    );
    let err = m
        .mount(
            Path::new("/nonexistent/dev"),
            &dst,
            "xfs",
            &Default::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/dev"), "{err}");
    assert!(err.errno().is_some());
}

/// A raw block volume: a device node bind-mounted onto a regular file.
#[test]
fn loop_raw_block_bind_onto_file() {
    if !is_root() {
        return;
    }
    if !loop_available() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let runner: Arc<dyn Runner> = Arc::new(SystemRunner::new());
    let (loopdev, _detach) = attach(&rt, &runner, &img, 96 << 20);

    assert_eq!(block_device_size(&loopdev).unwrap(), 96 << 20);

    let target = dir.path().join("pod/volumeDevices/pv");
    ensure_dir(target.parent().unwrap()).unwrap();
    ensure_file(&target).unwrap();
    let _cleanup = Cleanup(vec![target.clone()]);
    let m = SystemMounter::new();
    m.bind(&loopdev, &target, false).unwrap();
    ensure_file(&target).expect("a bound device node is an acceptable target");
    assert_eq!(block_device_size(&target).unwrap(), 96 << 20);
    let entry = mount_at(&target).unwrap().expect("bind on file");
    assert_eq!(entry.mount_point, target);
    assert_eq!(entry.fs_type, "devtmpfs");

    // mkfs + detect through the bound path and on the device itself.
    let fs = Filesystems::new(runner.clone(), vglet_runner::Programs::found_on_this_host());
    // Extra options reach mkfs (a small image would otherwise get 1 KiB blocks).
    rt.block_on(fs.mkfs(&loopdev, "ext4", &["-b".into(), "4096".into()]))
        .unwrap();
    assert_eq!(
        rt.block_on(fs.detect(&target)).unwrap().as_deref(),
        Some("ext4")
    );
    m.unmount(&target).unwrap();
    assert!(mount_at(&target).unwrap().is_none());

    // Offline ext4 grow: online resize needs CAP_SYS_RESOURCE, which CI sandboxes may lack.
    resize_image(&rt, &runner, &img, &loopdev, 160 << 20);
    rt.block_on(fs.grow("ext4", &loopdev, Path::new("/unused")))
        .unwrap();
    let mnt = dir.path().join("mnt");
    ensure_dir(&mnt).unwrap();
    let _cleanup2 = Cleanup(vec![mnt.clone()]);
    m.mount(
        &loopdev,
        &mnt,
        "ext4",
        &parse_mount_flags(&["noatime".into()]).unwrap(),
    )
    .unwrap();
    let total = fs_stats(&mnt).unwrap().total_bytes;
    assert!(total > 140 << 20, "ext4 grew to {total}");
    m.unmount(&mnt).unwrap();
}

fn resize_image(
    rt: &tokio::runtime::Runtime,
    runner: &Arc<dyn Runner>,
    img: &Path,
    loopdev: &Path,
    size: u64,
) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(img)
        .unwrap()
        .set_len(size)
        .unwrap();
    rt.block_on(runner.run(Command::new("losetup").arg("-c").arg(loopdev)))
        .unwrap();
    assert_eq!(block_device_size(loopdev).unwrap(), size);
}

struct Detach(Arc<dyn Runner>, PathBuf);

impl Drop for Detach {
    fn drop(&mut self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = rt.block_on(self.0.run(Command::new("losetup").arg("-d").arg(&self.1)));
    }
}

fn loop_available() -> bool {
    if resolve_program("losetup").is_none() || !Path::new("/dev/loop-control").exists() {
        eprintln!("skipping: no loop devices");
        return false;
    }
    true
}

/// Attaches a sparse image of `size` bytes to a free loop device.
fn attach(
    rt: &tokio::runtime::Runtime,
    runner: &Arc<dyn Runner>,
    img: &Path,
    size: u64,
) -> (PathBuf, Detach) {
    std::fs::File::create(img).unwrap().set_len(size).unwrap();
    let out = rt
        .block_on(runner.run(Command::new("losetup").args(["-f", "--show"]).arg(img)))
        .unwrap();
    let dev = PathBuf::from(out.stdout_lossy().trim());
    (dev.clone(), Detach(runner.clone(), dev))
}

/// xfs grows only while mounted, through its mount point.
#[test]
fn loop_xfs_mount_and_online_grow() {
    if !is_root() || !loop_available() || resolve_program("mkfs.xfs").is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("xfs.img");
    let runner: Arc<dyn Runner> = Arc::new(SystemRunner::new());
    let (dev, _detach) = attach(&rt, &runner, &img, 320 << 20);
    let fs = Filesystems::new(runner.clone(), vglet_runner::Programs::found_on_this_host());
    assert_eq!(rt.block_on(fs.detect(&dev)).unwrap(), None);
    rt.block_on(fs.mkfs(&dev, "xfs", &[])).unwrap();
    assert_eq!(
        rt.block_on(fs.detect(&dev)).unwrap().as_deref(),
        Some("xfs")
    );

    let mnt = dir.path().join("mnt");
    ensure_dir(&mnt).unwrap();
    let _cleanup = Cleanup(vec![mnt.clone()]);
    let m = SystemMounter::new();
    let opts =
        parse_mount_flags(&["noatime".into(), "nouuid".into(), "logbsize=256k".into()]).unwrap();
    m.mount(&dev, &mnt, "xfs", &opts).unwrap();
    let e = mount_at(&mnt).unwrap().expect("xfs mounted");
    assert_eq!(e.fs_type, "xfs");
    assert_eq!(e.source.as_deref(), Some(dev.to_str().unwrap()));
    assert!(
        e.has_option("nouuid") && e.has_option("noatime"),
        "{:?}",
        e.options
    );
    let meta = std::fs::metadata(&dev).unwrap();
    use std::os::unix::fs::MetadataExt;
    let rdev = meta.rdev();
    let (major, minor) = (
        nix::sys::stat::major(rdev) as u32,
        nix::sys::stat::minor(rdev) as u32,
    );
    assert_eq!((e.major, e.minor), (major, minor));
    assert_eq!(mounts_of_device(major, minor).unwrap().len(), 1);

    let before = fs_stats(&mnt).unwrap();
    resize_image(&rt, &runner, &img, &dev, 480 << 20);
    rt.block_on(fs.grow("xfs", &dev, &mnt)).unwrap();
    let after = fs_stats(&mnt).unwrap();
    assert!(
        after.total_bytes > before.total_bytes + (100 << 20),
        "{before:?} -> {after:?}"
    );
    m.unmount(&mnt).unwrap();
    assert_eq!(
        rt.block_on(fs.check("xfs", &dev)).unwrap(),
        vglet_mount::CheckOutcome::Clean
    );
}
