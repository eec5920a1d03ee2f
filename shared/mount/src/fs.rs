use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vglet_runner::{Command, Output, Program, Programs, RunError, Runner};

use crate::MountError;

/// The filesystems vglet creates and mounts.
pub const SUPPORTED_FILESYSTEMS: &[&str] = &["ext4", "xfs"];

/// mkfs and grow on a multi-TiB LV with a slow backend take minutes, not seconds.
pub const MKFS_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const GROW_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// A full fsck of a large filesystem can take long; killing it halfway through a repair is
/// worse than waiting.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// mkfs.ext4 `-E` options always used: no discard (minutes on a large thin or SAN LV),
/// lazy init. Public so a benchmark floor runs mkfs exactly as the driver does.
pub const EXT4_DEFAULT_EXTENDED: &str = "nodiscard,lazy_itable_init=1,lazy_journal_init=1";
/// Options users may pass to mkfs; each takes exactly one value.
const EXT4_MKFS_OPTIONS: &[&str] = &["-b", "-i", "-I", "-m", "-L", "-O", "-E", "-T", "-N"];
const XFS_MKFS_OPTIONS: &[&str] = &["-b", "-i", "-m", "-n", "-l", "-d", "-L", "-s"];
/// xfs sub-options that name another file or device: `-d name=/dev/other` or
/// `-l logdev=/dev/other` would format a device the caller never asked for.
const XFS_DEVICE_SUBOPTIONS: &[&str] = &["name", "file", "logdev", "rtdev"];

/// Checks that `fs` is one vglet supports and returns its canonical name.
pub fn validate_fs_type(fs: &str) -> Result<&'static str, MountError> {
    SUPPORTED_FILESYSTEMS
        .iter()
        .find(|s| **s == fs)
        .copied()
        .ok_or_else(|| MountError::InvalidFsType(fs.to_string()))
}

/// What blkid found on a device that may hold data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A filesystem, LVM PV, RAID member, LUKS header, swap... (`TYPE`, and blkid's `USAGE`
    /// such as "filesystem", "raid", "crypto", "other").
    Content {
        type_name: String,
        usage: Option<String>,
    },
    /// A partition table (`PTTYPE`: "gpt", "dos", ...).
    PartitionTable(String),
    /// More than one signature; blkid's explanation.
    Ambivalent(String),
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signature::Content {
                type_name,
                usage: Some(u),
            } => write!(f, "{type_name} ({u})"),
            Signature::Content { type_name, .. } => write!(f, "{type_name}"),
            Signature::PartitionTable(t) => write!(f, "{t} partition table"),
            Signature::Ambivalent(d) => write!(f, "several signatures: {d}"),
        }
    }
}

/// The verdict of a filesystem check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    Clean,
    /// fsck found errors and fixed them (fsck exit 1 or 2).
    Repaired,
    /// xfs_repair -n saw a dirty log; mounting replays it, so this is not damage.
    NeedsLogReplay,
    /// Errors remain; the output says which.
    Corrupt {
        detail: String,
    },
}

/// `clean`, `repaired`, `needs log replay`, `corrupt`: for logs (the detail is logged apart).
impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckOutcome::Clean => "clean",
            CheckOutcome::Repaired => "repaired",
            CheckOutcome::NeedsLogReplay => "needs log replay",
            CheckOutcome::Corrupt { .. } => "corrupt",
        })
    }
}

/// How far the mkfs of a filesystem got, by the filesystem's own evidence in its primary
/// superblock (read past the page cache).
///
/// - **xfs**: mkfs.xfs writes the primary superblock early with `sb_inprogress` set and
///   clears the flag in its very last write, after flushing everything else (the kernel
///   refuses to mount a filesystem with the flag set: "Structure needs cleaning"). Seen
///   with strace on xfsprogs 6.1: superblock at offset 0 written in the 2nd write of 65,
///   rewritten with the flag cleared in the last one, then fsync.
/// - **ext4**: mke2fs zeroes the superblock area first and writes the primary superblock
///   (offset 1024) only in ext2fs_close, after an fsync of everything else (strace on
///   e2fsprogs 1.47: the 318th of 318 writes, between two fsyncs). An interrupted mke2fs
///   therefore leaves no ext4 signature at all; a primary superblock means mkfs finished.
///   Its `s_state` must still say valid and error-free: anything else is a filesystem that
///   was used, never a half-made one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MkfsProgress {
    Complete,
    /// An xfs primary superblock with `sb_inprogress` set: mkfs.xfs was interrupted.
    InProgress,
    /// Not what an interrupted or a finished mkfs of this filesystem leaves (says what).
    Other(String),
}

/// Where each filesystem's primary superblock and its fields are.
const XFS_MAGIC: &[u8; 4] = b"XFSB";
const XFS_SB_INPROGRESS: usize = 126;
const EXT4_SB: usize = 1024;
const EXT4_MAGIC: u16 = 0xEF53;
const EXT4_VALID_FS: u16 = 0x1;
const EXT4_ERROR_FS: u16 = 0x2;

/// [`MkfsProgress`] of `fs` on `dev`.
pub fn mkfs_progress(dev: &Path, fs: &str) -> Result<MkfsProgress, MountError> {
    let fs = validate_fs_type(fs)?;
    Ok(mkfs_progress_in(fs, &crate::head::read_head(dev)?))
}

/// [`MkfsProgress`] of `fs` from the first 4 KiB of its device.
pub fn mkfs_progress_in(fs: &str, head: &[u8]) -> MkfsProgress {
    let le16 = |at: usize| {
        head.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    match fs {
        "xfs" => match (head.get(..4), head.get(XFS_SB_INPROGRESS)) {
            (Some(m), Some(0)) if m == XFS_MAGIC => MkfsProgress::Complete,
            (Some(m), Some(_)) if m == XFS_MAGIC => MkfsProgress::InProgress,
            _ => MkfsProgress::Other("no xfs primary superblock at offset 0".into()),
        },
        "ext4" => match (le16(EXT4_SB + 56), le16(EXT4_SB + 58)) {
            (Some(EXT4_MAGIC), Some(state))
                if state & EXT4_VALID_FS != 0 && state & EXT4_ERROR_FS == 0 =>
            {
                MkfsProgress::Complete
            }
            (Some(EXT4_MAGIC), Some(state)) => MkfsProgress::Other(format!(
                "ext4 superblock state {state:#x} (not cleanly made: mke2fs writes it valid, once, at its end)"
            )),
            _ => MkfsProgress::Other("no ext4 primary superblock at offset 1024".into()),
        },
        other => MkfsProgress::Other(format!("{other} is not a filesystem vglet makes")),
    }
}

/// blkid, mkfs, grow and fsck through the runner.
#[derive(Debug, Clone)]
pub struct Filesystems {
    runner: Arc<dyn Runner>,
    /// Resolved at the binary's start; a tool absent there fails its use with
    /// [`MountError::ProgramMissing`] (an xfs-less node still serves ext4).
    programs: Programs,
}

impl Filesystems {
    pub fn new(runner: Arc<dyn Runner>, programs: Programs) -> Self {
        Filesystems { runner, programs }
    }

    fn program(&self, program: Program) -> Result<Command, MountError> {
        Ok(self.programs.command(program)?)
    }

    /// The filesystem (or other content) type on `dev`: "ext4", "xfs", "LVM2_member", ...;
    /// `None` when blkid finds no content signature. A bare partition table is not reported
    /// here: check [`Filesystems::detect_any_signature`] before formatting.
    pub async fn detect(&self, dev: &Path) -> Result<Option<String>, MountError> {
        check_device_path("device", dev)?;
        // Exit 2 is blkid's "no signature", an answer.
        let cmd = self
            .program(Program::Blkid)?
            .args(["-p", "-o", "value", "-s", "TYPE"])
            .arg(dev)
            .answers_with([2]);
        let out = self.run_unchecked("blkid", dev, cmd.clone()).await?;
        match out.code {
            Some(0) => Ok(out
                .stdout_lossy()
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)),
            Some(2) => no_signature(dev, &out),
            Some(8) => Err(MountError::AmbivalentSignature {
                path: dev.to_path_buf(),
                detail: out.stderr_lossy().trim().to_string(),
            }),
            _ => Err(failed("blkid", dev, &cmd, out)),
        }
    }

    /// Any signature on `dev`, partition tables included: the guard that keeps mkfs from
    /// ever formatting over data.
    pub async fn detect_any_signature(&self, dev: &Path) -> Result<Option<Signature>, MountError> {
        check_device_path("device", dev)?;
        let cmd = self
            .program(Program::Blkid)?
            .args(["-p", "-o", "export"])
            .arg(dev)
            .answers_with([2]);
        let out = self.run_unchecked("blkid", dev, cmd.clone()).await?;
        match out.code {
            Some(0) => {
                let stdout = out.stdout_lossy();
                let field = |key: &str| {
                    stdout.lines().find_map(|l| {
                        l.strip_prefix(key)
                            .and_then(|r| r.strip_prefix('='))
                            .map(|v| v.trim().to_string())
                            .filter(|v| !v.is_empty())
                    })
                };
                Ok(if let Some(type_name) = field("TYPE") {
                    Some(Signature::Content {
                        type_name,
                        usage: field("USAGE"),
                    })
                } else {
                    field("PTTYPE").map(Signature::PartitionTable)
                })
            }
            Some(2) => no_signature(dev, &out),
            Some(8) => Ok(Some(Signature::Ambivalent(
                out.stderr_lossy().trim().to_string(),
            ))),
            _ => Err(failed("blkid", dev, &cmd, out)),
        }
    }

    /// Creates an `fs` filesystem on `dev`. Discards are skipped (a fresh LV reads as zeroes
    /// or is thin; discarding terabytes makes mkfs take minutes). The caller must have made
    /// sure `dev` is empty: mkfs.ext4 runs with -F.
    ///
    /// `extra` is a flat list of option/value pairs, e.g. `["-L", "data", "-m", "1"]`; only
    /// the options in a per-filesystem allow-list are accepted, so no extra positional
    /// argument (a second device, an ext4 size) can slip in.
    pub async fn mkfs(&self, dev: &Path, fs: &str, extra: &[String]) -> Result<(), MountError> {
        self.mkfs_with(dev, fs, extra, false).await
    }

    /// [`Filesystems::mkfs`] over what an interrupted mkfs of `fs` left on `dev` (mkfs.xfs
    /// refuses to overwrite its own half-made superblock without -f). The caller must have
    /// proven that nothing else is there: [`mkfs_progress`] says `InProgress`.
    pub async fn mkfs_over_half_made(
        &self,
        dev: &Path,
        fs: &str,
        extra: &[String],
    ) -> Result<(), MountError> {
        self.mkfs_with(dev, fs, extra, true).await
    }

    async fn mkfs_with(
        &self,
        dev: &Path,
        fs: &str,
        extra: &[String],
        overwrite: bool,
    ) -> Result<(), MountError> {
        let fs = validate_fs_type(fs)?;
        check_device_path("device", dev)?;
        let pairs = parse_mkfs_options(fs, extra)?;
        let (tool, cmd) = match fs {
            "ext4" => {
                // mke2fs keeps only the last -E, so the user's extended options are appended
                // to ours (later keys win) instead of being passed as a second -E.
                let mut extended = EXT4_DEFAULT_EXTENDED.to_string();
                for (_, v) in pairs.iter().filter(|(o, _)| o == "-E") {
                    extended.push(',');
                    extended.push_str(v);
                }
                let mut cmd = self
                    .program(Program::MkfsExt4)?
                    .args(["-F", "-q", "-E", &extended]);
                for (o, v) in pairs.iter().filter(|(o, _)| o != "-E") {
                    cmd = cmd.args([o, v]);
                }
                ("mkfs.ext4", cmd)
            }
            _ => {
                let mut cmd = self.program(Program::MkfsXfs)?.args(["-q", "-K"]);
                if overwrite {
                    cmd = cmd.arg("-f");
                }
                for (o, v) in &pairs {
                    cmd = cmd.args([o, v]);
                }
                ("mkfs.xfs", cmd)
            }
        };
        let cmd = cmd.arg(dev).timeout(MKFS_TIMEOUT);
        tracing::info!(dev = %dev.display(), fs, cmd = %cmd.argv_string(), "creating filesystem");
        self.run(tool, dev, cmd).await
    }

    /// Grows the filesystem to fill its (already extended) device: ext4 through the device,
    /// xfs through its mount point (xfs can only grow while mounted).
    pub async fn grow(&self, fs: &str, dev: &Path, mount_point: &Path) -> Result<(), MountError> {
        let fs = validate_fs_type(fs)?;
        check_device_path("device", dev)?;
        let (tool, path, cmd) = match fs {
            "ext4" => ("resize2fs", dev, self.program(Program::Resize2fs)?.arg(dev)),
            _ => {
                check_device_path("mount point", mount_point)?;
                (
                    "xfs_growfs",
                    mount_point,
                    self.program(Program::XfsGrowfs)?.arg("-d").arg(mount_point),
                )
            }
        };
        tracing::info!(dev = %dev.display(), fs, cmd = %cmd.argv_string(), "growing filesystem");
        self.run(tool, path, cmd.timeout(GROW_TIMEOUT)).await
    }

    /// Checks the (unmounted) filesystem on `dev`: ext4 with `fsck.ext4 -p` (safe automatic
    /// repairs), xfs with `xfs_repair -n` (no modification).
    pub async fn check(&self, fs: &str, dev: &Path) -> Result<CheckOutcome, MountError> {
        let fs = validate_fs_type(fs)?;
        check_device_path("device", dev)?;
        let (tool, cmd) = match fs {
            "ext4" => (
                "fsck.ext4",
                self.program(Program::FsckExt4)?.arg("-p").arg(dev),
            ),
            _ => (
                "xfs_repair",
                self.program(Program::XfsRepair)?.arg("-n").arg(dev),
            ),
        };
        let cmd = cmd.timeout(CHECK_TIMEOUT);
        let out = self.run_unchecked(tool, dev, cmd.clone()).await?;
        let detail = || {
            let mut d = format!(
                "{}\n{}",
                out.stdout_lossy().trim(),
                out.stderr_lossy().trim()
            );
            d = d.trim().to_string();
            if d.len() > 4096 {
                let mut cut = 4096;
                while !d.is_char_boundary(cut) {
                    cut -= 1;
                }
                d.truncate(cut);
            }
            d
        };
        let outcome = match (fs, out.code) {
            (_, Some(0)) => CheckOutcome::Clean,
            ("ext4", Some(1 | 2)) => CheckOutcome::Repaired,
            ("ext4", Some(4)) => CheckOutcome::Corrupt { detail: detail() },
            ("xfs", Some(1)) => CheckOutcome::Corrupt { detail: detail() },
            ("xfs", Some(2)) => CheckOutcome::NeedsLogReplay,
            _ => return Err(failed(tool, dev, &cmd, out)),
        };
        tracing::info!(dev = %dev.display(), fs, %outcome, "filesystem check");
        Ok(outcome)
    }

    async fn run_unchecked(
        &self,
        tool: &'static str,
        path: &Path,
        cmd: Command,
    ) -> Result<Output, MountError> {
        self.runner
            .run_unchecked(cmd)
            .await
            .map_err(|source| MountError::Command {
                tool,
                path: path.to_path_buf(),
                source,
            })
    }

    async fn run(&self, tool: &'static str, path: &Path, cmd: Command) -> Result<(), MountError> {
        self.runner
            .run(cmd)
            .await
            .map(drop)
            .map_err(|source| MountError::Command {
                tool,
                path: path.to_path_buf(),
                source,
            })
    }
}

/// A path that starts with '-' would be read as an option; only absolute paths are passed.
fn check_device_path(what: &'static str, p: &Path) -> Result<(), MountError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = p.as_os_str().as_bytes();
    if !p.is_absolute() || bytes.contains(&0) {
        return Err(MountError::InvalidPath {
            path: p.to_path_buf(),
            reason: format!("{what} must be an absolute path"),
        });
    }
    Ok(())
}

fn failed(tool: &'static str, path: &Path, cmd: &Command, out: Output) -> MountError {
    MountError::Command {
        tool,
        path: path.to_path_buf(),
        source: RunError::Failed {
            argv: cmd.argv_string(),
            code: out.code,
            stdout: out.stdout_lossy(),
            stderr: out.stderr_lossy(),
        },
    }
}

fn parse_mkfs_options(fs: &str, extra: &[String]) -> Result<Vec<(String, String)>, MountError> {
    let allowed = if fs == "ext4" {
        EXT4_MKFS_OPTIONS
    } else {
        XFS_MKFS_OPTIONS
    };
    let bad = |value: &str, reason: String| MountError::InvalidArgument {
        what: "mkfs option",
        value: value.to_string(),
        reason,
    };
    let mut pairs = Vec::new();
    let mut it = extra.iter();
    while let Some(opt) = it.next() {
        if !allowed.contains(&opt.as_str()) {
            return Err(bad(
                opt,
                format!("not one of the allowed {fs} options {}", allowed.join(" ")),
            ));
        }
        let value = it
            .next()
            .ok_or_else(|| bad(opt, "needs a value".to_string()))?;
        if value.is_empty()
            || value.len() > 256
            || value.starts_with('-')
            || value.chars().any(char::is_control)
        {
            return Err(bad(value, format!("not a valid value for {opt}")));
        }
        if fs == "xfs" && opt != "-L" {
            if value.contains('/') {
                return Err(bad(value, format!("paths are not allowed in {opt}")));
            }
            for sub in value.split(',') {
                let key = sub.split_once('=').map_or(sub, |(k, _)| k);
                if XFS_DEVICE_SUBOPTIONS.contains(&key) {
                    return Err(bad(value, format!("{opt} {key}= names another device")));
                }
            }
        }
        pairs.push((opt.clone(), value.clone()));
    }
    Ok(pairs)
}

/// blkid exits 2 both for "nothing found" and for "could not open the device" (it then says
/// why on stderr). Only a device we can open and that blkid found empty counts as blank: an
/// unreadable device taken for blank is one mkfs away from data loss.
fn no_signature<T>(dev: &Path, out: &vglet_runner::Output) -> Result<Option<T>, MountError> {
    let stderr = out.stderr_lossy();
    let readable = std::fs::File::open(dev).map_err(|e| MountError::Io {
        op: "open read-only to probe",
        path: dev.to_path_buf(),
        source: e,
    });
    match (stderr.trim().is_empty(), readable) {
        (true, Ok(_)) => Ok(None),
        (_, Err(e)) => Err(e),
        (false, Ok(_)) => Err(MountError::Io {
            op: "probe signatures (blkid)",
            path: dev.to_path_buf(),
            source: std::io::Error::other(stderr.trim().to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vglet_runner::{FakeRunner, Reply, SystemRunner, resolve_program};

    fn fs_with(f: FakeRunner) -> Filesystems {
        Filesystems::new(Arc::new(f), Programs::all_in("/sbin"))
    }

    /// A node without xfsprogs: xfs is refused naming the tool, nothing runs, ext4 works.
    #[tokio::test]
    async fn an_absent_tool_refuses_its_filesystem_only() {
        let f = FakeRunner::new();
        let programs = Programs::all_in("/sbin")
            .without(Program::MkfsXfs)
            .without(Program::XfsGrowfs);
        let fs = Filesystems::new(Arc::new(f.clone()), programs);
        let dev = Path::new("/dev/vg0/lv0");
        let e = fs.mkfs(dev, "xfs", &[]).await.unwrap_err();
        assert!(
            matches!(&e, MountError::ProgramMissing(m) if m.program == Program::MkfsXfs),
            "{e}"
        );
        assert!(
            e.to_string().contains("formatting xfs volumes is disabled"),
            "{e}"
        );
        let e = fs.grow("xfs", dev, Path::new("/mnt/x")).await.unwrap_err();
        assert!(matches!(e, MountError::ProgramMissing(_)), "{e}");
        assert!(f.calls().is_empty());
        fs.mkfs(dev, "ext4", &[]).await.unwrap();
        assert_eq!(f.calls()[0].program, "/sbin/mkfs.ext4");
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mkfs_progress_reads_each_filesystems_own_flag() {
        let mut xfs = vec![0u8; 4096];
        xfs[..4].copy_from_slice(b"XFSB");
        xfs[126] = 1;
        assert_eq!(mkfs_progress_in("xfs", &xfs), MkfsProgress::InProgress);
        xfs[126] = 0;
        assert_eq!(mkfs_progress_in("xfs", &xfs), MkfsProgress::Complete);
        assert!(matches!(
            mkfs_progress_in("xfs", &[0u8; 4096]),
            MkfsProgress::Other(_)
        ));
        let mut ext4 = vec![0u8; 4096];
        ext4[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        ext4[1024 + 58] = 1;
        assert_eq!(mkfs_progress_in("ext4", &ext4), MkfsProgress::Complete);
        ext4[1024 + 58] = 3; // valid, with errors
        assert!(matches!(
            mkfs_progress_in("ext4", &ext4),
            MkfsProgress::Other(_)
        ));
        ext4[1024 + 58] = 0; // mounted without a journal, never cleanly unmounted
        assert!(matches!(
            mkfs_progress_in("ext4", &ext4),
            MkfsProgress::Other(_)
        ));
        assert!(matches!(
            mkfs_progress_in("ext4", &xfs),
            MkfsProgress::Other(_)
        ));
        assert!(matches!(
            mkfs_progress_in("xfs", &[]),
            MkfsProgress::Other(_)
        ));
    }

    /// The real tools on an image file, where the host has them: a finished mkfs is
    /// Complete, and xfs with its in-progress flag set back is InProgress.
    #[test]
    fn mkfs_progress_of_real_filesystems() {
        for fs in ["xfs", "ext4"] {
            let Some(tool) = resolve_program(&format!("mkfs.{fs}")) else {
                eprintln!("mkfs.{fs} not installed; skipped");
                continue;
            };
            let img = tempfile::NamedTempFile::new().unwrap();
            img.as_file().set_len(320 << 20).unwrap();
            let args: &[&str] = if fs == "xfs" {
                &["-q", "-K"]
            } else {
                &["-F", "-q"]
            };
            let ok = std::process::Command::new(tool)
                .args(args)
                .arg(img.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "mkfs.{fs}");
            let Ok(progress) = mkfs_progress(img.path(), fs) else {
                eprintln!("no O_DIRECT on the temp directory; skipped");
                return;
            };
            assert_eq!(progress, MkfsProgress::Complete, "{fs}");
            if fs == "xfs" {
                use std::os::unix::fs::FileExt;
                img.as_file().write_at(&[1], 126).unwrap();
                img.as_file().sync_all().unwrap();
                assert_eq!(
                    mkfs_progress(img.path(), fs).unwrap(),
                    MkfsProgress::InProgress
                );
            }
        }
    }

    #[tokio::test]
    async fn detect_reads_blkid_type() {
        let f = FakeRunner::with(|_| Reply::ok("xfs\n"));
        let got = fs_with(f.clone())
            .detect(Path::new("/dev/vg/lv"))
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some("xfs"));
        assert_eq!(f.call_lines(), vec!["blkid -p -o value -s TYPE /dev/vg/lv"]);
        assert_eq!(f.calls()[0].program_name(), "blkid");
    }

    #[tokio::test]
    async fn detect_exit_2_is_no_signature() {
        let blank = tempfile::NamedTempFile::new().unwrap();
        let f = FakeRunner::with(|_| Reply::fail(2, ""));
        assert_eq!(fs_with(f).detect(blank.path()).await.unwrap(), None);
        let f = FakeRunner::with(|_| Reply::ok("\n"));
        assert_eq!(fs_with(f).detect(Path::new("/dev/x")).await.unwrap(), None);
        let f = FakeRunner::with(|_| Reply::ok("LVM2_member\n"));
        assert_eq!(
            fs_with(f)
                .detect(Path::new("/dev/x"))
                .await
                .unwrap()
                .as_deref(),
            Some("LVM2_member")
        );
    }

    #[tokio::test]
    async fn detect_other_exits_are_errors() {
        let f = FakeRunner::with(|_| Reply::fail(4, "blkid: error: /dev/x: No such file"));
        let err = fs_with(f).detect(Path::new("/dev/x")).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("blkid") && msg.contains("/dev/x") && msg.contains("No such file"),
            "{msg}"
        );
        let f = FakeRunner::with(|_| Reply::fail(8, "ambivalent result"));
        let err = fs_with(f).detect(Path::new("/dev/x")).await.unwrap_err();
        assert!(
            matches!(err, MountError::AmbivalentSignature { .. }),
            "{err:?}"
        );
        let f = FakeRunner::with(|_| Reply::Timeout);
        let err = fs_with(f).detect(Path::new("/dev/x")).await.unwrap_err();
        assert!(matches!(
            err,
            MountError::Command {
                source: RunError::Timeout { .. },
                ..
            }
        ));
        let f = FakeRunner::new();
        assert!(matches!(
            fs_with(f.clone()).detect(Path::new("-x")).await,
            Err(MountError::InvalidPath { .. })
        ));
        assert!(f.calls().is_empty());
    }

    #[tokio::test]
    async fn any_signature_sees_partition_tables() {
        let f = FakeRunner::with(|_| Reply::ok("DEVNAME=/dev/x\nPTUUID=abc\nPTTYPE=gpt\n"));
        let sig = fs_with(f.clone())
            .detect_any_signature(Path::new("/dev/x"))
            .await
            .unwrap();
        assert_eq!(sig, Some(Signature::PartitionTable("gpt".into())));
        assert_eq!(f.call_lines(), vec!["blkid -p -o export /dev/x"]);
        assert_eq!(sig.unwrap().to_string(), "gpt partition table");

        let f = FakeRunner::with(|_| {
            Reply::ok("DEVNAME=/dev/x\nUUID=u\nVERSION=LVM2 001\nTYPE=LVM2_member\nUSAGE=raid\n")
        });
        let sig = fs_with(f)
            .detect_any_signature(Path::new("/dev/x"))
            .await
            .unwrap();
        assert_eq!(
            sig,
            Some(Signature::Content {
                type_name: "LVM2_member".into(),
                usage: Some("raid".into())
            })
        );
        let blank = tempfile::NamedTempFile::new().unwrap();
        let f = FakeRunner::with(|_| Reply::fail(2, ""));
        assert_eq!(
            fs_with(f).detect_any_signature(blank.path()).await.unwrap(),
            None
        );
        // Exit 2 also means "could not open": never read that as blank.
        let f = FakeRunner::with(|_| Reply::fail(2, "error: /dev/x: Operation not permitted"));
        assert!(fs_with(f).detect_any_signature(blank.path()).await.is_err());
        let f = FakeRunner::with(|_| Reply::fail(2, ""));
        assert!(
            fs_with(f)
                .detect_any_signature(Path::new("/nonexistent/vglet-dev"))
                .await
                .is_err(),
            "a device we cannot open is not blank"
        );
        let f = FakeRunner::with(|_| Reply::fail(8, "ambivalent result"));
        assert!(matches!(
            fs_with(f)
                .detect_any_signature(Path::new("/dev/x"))
                .await
                .unwrap(),
            Some(Signature::Ambivalent(_))
        ));
    }

    #[tokio::test]
    async fn mkfs_ext4_argv() {
        let f = FakeRunner::new();
        fs_with(f.clone())
            .mkfs(Path::new("/dev/vg/lv"), "ext4", &[])
            .await
            .unwrap();
        assert_eq!(
            f.call_lines(),
            vec!["mkfs.ext4 -F -q -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 /dev/vg/lv"]
        );
        assert_eq!(f.calls()[0].timeout, MKFS_TIMEOUT);
    }

    #[tokio::test]
    async fn mkfs_ext4_merges_extended_options() {
        let f = FakeRunner::new();
        fs_with(f.clone())
            .mkfs(
                Path::new("/dev/vg/lv"),
                "ext4",
                &strings(&["-m", "0", "-E", "stride=16", "-L", "my data"]),
            )
            .await
            .unwrap();
        assert_eq!(
            f.calls()[0].arg_strings(),
            strings(&[
                "-F",
                "-q",
                "-E",
                "nodiscard,lazy_itable_init=1,lazy_journal_init=1,stride=16",
                "-m",
                "0",
                "-L",
                "my data",
                "/dev/vg/lv"
            ])
        );
    }

    #[tokio::test]
    async fn mkfs_xfs_argv() {
        let f = FakeRunner::new();
        fs_with(f.clone())
            .mkfs(
                Path::new("/dev/vg/lv"),
                "xfs",
                &strings(&["-m", "reflink=1,crc=1", "-d", "su=64k,sw=4"]),
            )
            .await
            .unwrap();
        assert_eq!(
            f.call_lines(),
            vec!["mkfs.xfs -q -K -m reflink=1,crc=1 -d su=64k,sw=4 /dev/vg/lv"]
        );
        assert_eq!(f.calls()[0].timeout, MKFS_TIMEOUT);
    }

    #[tokio::test]
    async fn mkfs_over_half_made_forces_only_there() {
        let f = FakeRunner::new();
        let fs = fs_with(f.clone());
        let dev = Path::new("/dev/vg/lv");
        fs.mkfs_over_half_made(dev, "xfs", &[]).await.unwrap();
        fs.mkfs_over_half_made(dev, "ext4", &[]).await.unwrap();
        let lines = f.call_lines();
        assert_eq!(lines[0], "mkfs.xfs -q -K -f /dev/vg/lv");
        assert!(lines[1].starts_with("mkfs.ext4 -F -q "), "{lines:?}");
    }

    #[tokio::test]
    async fn mkfs_rejects_bad_input_without_running_anything() {
        let f = FakeRunner::new();
        let fs = fs_with(f.clone());
        let dev = Path::new("/dev/vg/lv");
        assert!(matches!(
            fs.mkfs(dev, "btrfs", &[]).await,
            Err(MountError::InvalidFsType(t)) if t == "btrfs"
        ));
        assert!(matches!(
            fs.mkfs(dev, "EXT4", &[]).await,
            Err(MountError::InvalidFsType(_))
        ));
        for (fstype, extra) in [
            ("ext4", vec!["/dev/sdb"]),
            ("ext4", vec!["-L"]),
            ("ext4", vec!["-L", "x", "1000"]),
            ("ext4", vec!["-J", "device=/dev/sdb"]),
            ("ext4", vec!["-d", "/etc"]),
            ("ext4", vec!["-F"]),
            ("ext4", vec!["-b", "-F"]),
            ("ext4", vec!["-b4096"]),
            ("ext4", vec!["-L", ""]),
            ("ext4", vec!["-L", "a\nb"]),
            ("xfs", vec!["-f", "x"]),
            ("xfs", vec!["-d", "name=/dev/sdb"]),
            ("xfs", vec!["-d", "su=64k,file=1"]),
            ("xfs", vec!["-l", "logdev=sdb"]),
            ("xfs", vec!["-r", "rtdev=/dev/sdc"]),
            ("xfs", vec!["-O", "x"]),
        ] {
            let err = fs.mkfs(dev, fstype, &strings(&extra)).await.unwrap_err();
            assert!(
                matches!(err, MountError::InvalidArgument { .. }),
                "{extra:?}: {err:?}"
            );
        }
        assert!(matches!(
            fs.mkfs(Path::new("vg/lv"), "xfs", &[]).await,
            Err(MountError::InvalidPath { .. })
        ));
        assert!(f.calls().is_empty());
    }

    #[tokio::test]
    async fn mkfs_failure_names_device_and_stderr() {
        let f = FakeRunner::with(|_| Reply::fail(1, "mkfs.xfs: cannot open /dev/x: Device busy"));
        let err = fs_with(f)
            .mkfs(Path::new("/dev/x"), "xfs", &[])
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("mkfs.xfs on \"/dev/x\""), "{msg}");
        assert!(msg.contains("Device busy"), "{msg}");
    }

    #[tokio::test]
    async fn grow_argv() {
        let f = FakeRunner::new();
        let fs = fs_with(f.clone());
        fs.grow("ext4", Path::new("/dev/vg/a"), Path::new("/mnt/a"))
            .await
            .unwrap();
        fs.grow("xfs", Path::new("/dev/vg/b"), Path::new("/mnt/b"))
            .await
            .unwrap();
        assert_eq!(
            f.call_lines(),
            vec!["resize2fs /dev/vg/a", "xfs_growfs -d /mnt/b"]
        );
        assert!(matches!(
            fs.grow("vfat", Path::new("/dev/vg/b"), Path::new("/mnt/b"))
                .await,
            Err(MountError::InvalidFsType(_))
        ));
    }

    #[tokio::test]
    async fn check_maps_exit_codes() {
        let dev = Path::new("/dev/vg/lv");
        for (fs, code, want) in [
            ("ext4", 0, Some(CheckOutcome::Clean)),
            ("ext4", 1, Some(CheckOutcome::Repaired)),
            ("ext4", 2, Some(CheckOutcome::Repaired)),
            (
                "ext4",
                4,
                Some(CheckOutcome::Corrupt {
                    detail: "bad inode".into(),
                }),
            ),
            ("ext4", 8, None),
            ("xfs", 0, Some(CheckOutcome::Clean)),
            (
                "xfs",
                1,
                Some(CheckOutcome::Corrupt {
                    detail: "bad inode".into(),
                }),
            ),
            ("xfs", 2, Some(CheckOutcome::NeedsLogReplay)),
            ("xfs", 4, None),
        ] {
            let f = FakeRunner::with(move |_| {
                if code == 0 {
                    Reply::ok("")
                } else {
                    Reply::fail(code, "bad inode")
                }
            });
            let got = fs_with(f.clone()).check(fs, dev).await;
            match want {
                Some(w) => assert_eq!(got.unwrap(), w, "{fs} exit {code}"),
                None => assert!(got.is_err(), "{fs} exit {code}"),
            }
            let line = &f.call_lines()[0];
            assert_eq!(
                line,
                if fs == "ext4" {
                    "fsck.ext4 -p /dev/vg/lv"
                } else {
                    "xfs_repair -n /dev/vg/lv"
                }
            );
        }
    }

    /// Real tools on a sparse file: blkid works on regular files, so this covers mkfs,
    /// detect and check end to end without a block device.
    #[tokio::test]
    async fn loop_mkfs_xfs_and_ext4_on_a_file() {
        if resolve_program("mkfs.xfs").is_none() || resolve_program("blkid").is_none() {
            eprintln!("skipping: mkfs.xfs or blkid not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let file = std::fs::File::create(&img).unwrap();
        file.set_len(320 << 20).unwrap();
        drop(file);
        let fs = Filesystems::new(
            Arc::new(SystemRunner::new()),
            Programs::found_on_this_host(),
        );
        assert_eq!(fs.detect(&img).await.unwrap(), None);
        assert_eq!(fs.detect_any_signature(&img).await.unwrap(), None);
        fs.mkfs(&img, "xfs", &strings(&["-L", "vgtest"]))
            .await
            .unwrap();
        assert_eq!(fs.detect(&img).await.unwrap().as_deref(), Some("xfs"));
        assert_eq!(
            fs.detect_any_signature(&img).await.unwrap(),
            Some(Signature::Content {
                type_name: "xfs".into(),
                usage: Some("filesystem".into())
            })
        );
        // Without -f, mkfs.xfs refuses to format over an existing filesystem.
        assert!(fs.mkfs(&img, "xfs", &[]).await.is_err());
        if resolve_program("xfs_repair").is_some() {
            assert_eq!(fs.check("xfs", &img).await.unwrap(), CheckOutcome::Clean);
        }

        let img4 = dir.path().join("disk4.img");
        std::fs::File::create(&img4)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        if resolve_program("mkfs.ext4").is_some() {
            fs.mkfs(&img4, "ext4", &strings(&["-m", "0"]))
                .await
                .unwrap();
            assert_eq!(fs.detect(&img4).await.unwrap().as_deref(), Some("ext4"));
            if resolve_program("fsck.ext4").is_some() {
                assert_eq!(fs.check("ext4", &img4).await.unwrap(), CheckOutcome::Clean);
            }
        }
    }

    /// A bare MBR is invisible to `detect` (no TYPE) but must stop a mkfs.
    #[tokio::test]
    async fn loop_partition_table_on_a_file() {
        if resolve_program("blkid").is_none() {
            eprintln!("skipping: blkid not installed");
            return;
        }
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(20 << 20).unwrap();
        let mut mbr = [0u8; 512];
        mbr[440..444].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        // One Linux partition starting at sector 2048.
        mbr[446 + 4] = 0x83;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&20000u32.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        std::os::unix::fs::FileExt::write_all_at(f.as_file(), &mbr, 0).unwrap();
        let fs = Filesystems::new(
            Arc::new(SystemRunner::new()),
            Programs::found_on_this_host(),
        );
        assert_eq!(fs.detect(f.path()).await.unwrap(), None);
        assert_eq!(
            fs.detect_any_signature(f.path()).await.unwrap(),
            Some(Signature::PartitionTable("dos".into()))
        );
    }
}
