//! The one list of external programs vglet runs, resolved once when a binary starts.
//!
//! Each binary asks for the programs it needs ([`Wanted`]): a required one that is missing
//! stops the start with one error naming it and where it was looked for (an operator learns
//! it from the pod's first log line, not from the first volume that fails); an optional one
//! that is missing only disables what it is for, which [`Programs::log_absent`] says at start
//! and [`ProgramMissing`] repeats when that feature is asked for. Everything that runs a
//! program takes its path from the resolved [`Programs`]; nothing falls back to a bare name.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::Command;

/// Searched after PATH: a daemon's PATH in a container is often minimal, and lvm, blkid and
/// the mkfs tools live in sbin.
pub const FIXED_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"];

/// Every external program vglet runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Program {
    Lvm,
    Lvmlockctl,
    Sanlock,
    DlmTool,
    Wipefs,
    Blkid,
    MkfsExt4,
    FsckExt4,
    Resize2fs,
    MkfsXfs,
    XfsRepair,
    XfsGrowfs,
    Ndctl,
    Dd,
    Blockdev,
    Cmp,
    Cryptsetup,
}

impl Program {
    pub const ALL: &[Program] = &[
        Program::Lvm,
        Program::Lvmlockctl,
        Program::Sanlock,
        Program::DlmTool,
        Program::Wipefs,
        Program::Blkid,
        Program::MkfsExt4,
        Program::FsckExt4,
        Program::Resize2fs,
        Program::MkfsXfs,
        Program::XfsRepair,
        Program::XfsGrowfs,
        Program::Ndctl,
        Program::Dd,
        Program::Blockdev,
        Program::Cmp,
        Program::Cryptsetup,
    ];

    /// The executable's file name.
    pub fn name(self) -> &'static str {
        match self {
            Program::Lvm => "lvm",
            Program::Lvmlockctl => "lvmlockctl",
            Program::Sanlock => "sanlock",
            Program::DlmTool => "dlm_tool",
            Program::Wipefs => "wipefs",
            Program::Blkid => "blkid",
            Program::MkfsExt4 => "mkfs.ext4",
            Program::FsckExt4 => "fsck.ext4",
            Program::Resize2fs => "resize2fs",
            Program::MkfsXfs => "mkfs.xfs",
            Program::XfsRepair => "xfs_repair",
            Program::XfsGrowfs => "xfs_growfs",
            Program::Ndctl => "ndctl",
            Program::Dd => "dd",
            Program::Blockdev => "blockdev",
            Program::Cmp => "cmp",
            Program::Cryptsetup => "cryptsetup",
        }
    }

    /// The Debian package that installs it, for the error that says it is missing.
    pub fn package(self) -> &'static str {
        match self {
            Program::Lvm => "lvm2",
            Program::Lvmlockctl => "lvm2-lockd",
            Program::Sanlock => "sanlock",
            Program::DlmTool => "dlm-controld",
            Program::Wipefs | Program::Blkid | Program::Blockdev => "util-linux",
            Program::MkfsExt4 | Program::FsckExt4 | Program::Resize2fs => "e2fsprogs",
            Program::MkfsXfs | Program::XfsRepair | Program::XfsGrowfs => "xfsprogs",
            Program::Ndctl => "ndctl",
            Program::Dd => "coreutils",
            Program::Cmp => "diffutils",
            Program::Cryptsetup => "cryptsetup-bin",
        }
    }

    /// What vglet runs it for: what its absence disables.
    pub fn purpose(self) -> &'static str {
        match self {
            Program::Lvm => "every LVM operation",
            Program::Lvmlockctl => "reading which shared-VG lockspaces are started",
            Program::Sanlock => "checking sanlock and naming the host that holds a lock",
            Program::DlmTool => "checking dlm for dlm-locked shared VGs",
            Program::Wipefs => "listing and erasing signatures on devices",
            Program::Blkid => "probing devices for data before they are formatted or taken",
            Program::MkfsExt4 => "formatting ext4 volumes",
            Program::FsckExt4 => "checking ext4 filesystems",
            Program::Resize2fs => "growing ext4 filesystems",
            Program::MkfsXfs => "formatting xfs volumes",
            Program::XfsRepair => "checking xfs filesystems",
            Program::XfsGrowfs => "growing xfs filesystems",
            Program::Ndctl => "reading and creating PMEM namespaces",
            Program::Dd => "copying volumes (clones, restores by copy)",
            Program::Blockdev => "flushing device caches before a copy is verified",
            Program::Cmp => "verifying copied volumes",
            Program::Cryptsetup => "encrypted (LUKS2) volumes",
        }
    }

    /// The environment variable that points at it (`VGLET_MKFS_EXT4=/opt/bin/mkfs.ext4`);
    /// `VGLET_LVM` and `VGLET_NDCTL` are also the `--lvm` and `--ndctl` flags' variables.
    pub fn env_var(self) -> String {
        let name: String = self
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("VGLET_{name}")
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A program a binary asks for, and whether it can start without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub program: Program,
    pub required: bool,
}

/// The binary cannot do its job without it.
pub const fn required(program: Program) -> Wanted {
    Wanted {
        program,
        required: true,
    }
}

/// Without it only [`Program::purpose`] is disabled.
pub const fn optional(program: Program) -> Wanted {
    Wanted {
        program,
        required: false,
    }
}

/// A path given for a program by a flag (`--lvm`), which wins over its environment variable
/// and the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub program: Program,
    pub path: PathBuf,
    /// How the operator gave it, for the error: `"--lvm"`.
    pub from: &'static str,
}

/// Where one program was looked for, in words.
fn looked_in(from: &Source, program: Program) -> String {
    match from {
        Source::Given { path, from } => {
            format!("{from} {} is not an executable file", path.display())
        }
        Source::Search { path_dirs } => {
            let path = if path_dirs.is_empty() {
                "PATH (unset)".to_string()
            } else {
                let dirs: Vec<String> = path_dirs.iter().map(|d| d.display().to_string()).collect();
                format!("PATH {}", dirs.join(":"))
            };
            format!(
                "{} unset; looked for {} in {path}, then {}",
                program.env_var(),
                program.name(),
                FIXED_DIRS.join(", ")
            )
        }
    }
}

enum Source {
    Given { path: PathBuf, from: String },
    Search { path_dirs: Vec<PathBuf> },
}

/// Required programs that were not found; each line names one and where it was looked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.lines.join("; "))]
pub struct MissingPrograms {
    pub missing: Vec<Program>,
    lines: Vec<String>,
}

/// An optional program that was absent at start, asked for now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{program} is not available on this host, so {purpose} is disabled ({looked})", purpose = .program.purpose())]
pub struct ProgramMissing {
    pub program: Program,
    looked: String,
}

/// The programs one binary resolved at start: a path for each that was found, and where each
/// absent optional one was looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Programs {
    found: BTreeMap<Program, PathBuf>,
    absent: BTreeMap<Program, String>,
}

impl Programs {
    /// Resolves each wanted program once, in this order: its override (a flag), its
    /// environment variable ([`Program::env_var`]), PATH, then [`FIXED_DIRS`]. A given path
    /// (flag or variable) that is not an executable is not searched past: the operator meant
    /// that one. Any required program missing is one error naming all of them.
    pub fn resolve(wanted: &[Wanted], overrides: &[Override]) -> Result<Programs, MissingPrograms> {
        let path_dirs = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        let fixed: Vec<PathBuf> = FIXED_DIRS.iter().map(PathBuf::from).collect();
        resolve_in(
            wanted,
            overrides,
            |v| std::env::var_os(v),
            &path_dirs,
            &fixed,
        )
    }

    /// Every program vglet knows that is installed here, none required: for tests and tools
    /// that run real programs where they are.
    pub fn found_on_this_host() -> Programs {
        let all: Vec<Wanted> = Program::ALL.iter().map(|p| optional(*p)).collect();
        Programs::resolve(&all, &[]).expect("nothing is required")
    }

    /// Every program at `dir/<name>`, unchecked: for tests that run a fake runner and assert
    /// argv.
    pub fn all_in(dir: impl AsRef<Path>) -> Programs {
        Programs {
            found: Program::ALL
                .iter()
                .map(|p| (*p, dir.as_ref().join(p.name())))
                .collect(),
            absent: BTreeMap::new(),
        }
    }

    /// This set with `program` at `path`, unchecked (tests; vg-init's dry run).
    pub fn with(mut self, program: Program, path: impl Into<PathBuf>) -> Programs {
        self.absent.remove(&program);
        self.found.insert(program, path.into());
        self
    }

    /// This set without `program`, as if it had been absent at start (tests).
    pub fn without(mut self, program: Program) -> Programs {
        self.found.remove(&program);
        self.absent
            .insert(program, "removed from this set".to_string());
        self
    }

    /// Where `program` is; an error saying what its absence disables when it was not found
    /// (or not asked for: a binary that never asked for it must not run it).
    pub fn path(&self, program: Program) -> Result<&Path, ProgramMissing> {
        self.found
            .get(&program)
            .map(PathBuf::as_path)
            .ok_or_else(|| ProgramMissing {
                program,
                looked: self
                    .absent
                    .get(&program)
                    .cloned()
                    .unwrap_or_else(|| "this binary does not use it".to_string()),
            })
    }

    /// A command running `program`.
    pub fn command(&self, program: Program) -> Result<Command, ProgramMissing> {
        self.path(program).map(Command::new)
    }

    /// Whether `program` was found.
    pub fn has(&self, program: Program) -> bool {
        self.found.contains_key(&program)
    }

    /// The optional programs that were not found.
    pub fn absent(&self) -> impl Iterator<Item = Program> + '_ {
        self.absent.keys().copied()
    }

    /// One warning per absent optional program, saying what is disabled: where an operator
    /// looks first (the pod's start-up log).
    pub fn log_absent(&self) {
        for (program, looked) in &self.absent {
            tracing::warn!(
                program = program.name(),
                package = program.package(),
                disabled = program.purpose(),
                looked = %looked,
                "optional program not found; what it is for is disabled"
            );
        }
    }
}

/// [`Programs::resolve`] with the environment and the directories given.
pub fn resolve_in(
    wanted: &[Wanted],
    overrides: &[Override],
    env: impl Fn(&str) -> Option<OsString>,
    path_dirs: &[PathBuf],
    fixed_dirs: &[PathBuf],
) -> Result<Programs, MissingPrograms> {
    let mut programs = Programs::default();
    let mut missing = Vec::new();
    let mut lines = Vec::new();
    for w in wanted {
        if programs.found.contains_key(&w.program) || missing.contains(&w.program) {
            continue;
        }
        let given = overrides
            .iter()
            .find(|o| o.program == w.program)
            .map(|o| (o.path.clone(), o.from.to_string()))
            .or_else(|| {
                let var = w.program.env_var();
                env(&var)
                    .filter(|v| !v.is_empty())
                    .map(|v| (PathBuf::from(v), var))
            });
        let (found, source) = match given {
            // A bare name given by the operator ("lvm", clap's default) is searched like
            // the program's own name.
            Some((path, from)) if path.as_os_str().to_string_lossy().contains('/') => (
                is_executable(&path).then(|| path.clone()),
                Source::Given { path, from },
            ),
            Some((name, _)) => (
                search(&name, path_dirs, fixed_dirs),
                Source::Search {
                    path_dirs: path_dirs.to_vec(),
                },
            ),
            None => (
                search(Path::new(w.program.name()), path_dirs, fixed_dirs),
                Source::Search {
                    path_dirs: path_dirs.to_vec(),
                },
            ),
        };
        match found {
            Some(p) => {
                programs.found.insert(w.program, p);
            }
            None => {
                let looked = looked_in(&source, w.program);
                if w.required {
                    lines.push(format!(
                        "required program {} (Debian package {}, for {}) not found: {looked}",
                        w.program,
                        w.program.package(),
                        w.program.purpose()
                    ));
                    missing.push(w.program);
                } else {
                    programs.absent.insert(w.program, looked);
                }
            }
        }
    }
    if missing.is_empty() {
        // A program wanted both ways and found is not absent.
        let found: Vec<Program> = programs.found.keys().copied().collect();
        for p in found {
            programs.absent.remove(&p);
        }
        Ok(programs)
    } else {
        Err(MissingPrograms { missing, lines })
    }
}

fn search(name: &Path, path_dirs: &[PathBuf], fixed_dirs: &[PathBuf]) -> Option<PathBuf> {
    path_dirs
        .iter()
        .chain(fixed_dirs)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn exe(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn finds_on_path_before_the_fixed_dirs() {
        let path = tempfile::tempdir().unwrap();
        let fixed = tempfile::tempdir().unwrap();
        let on_path = exe(path.path(), "lvm");
        exe(fixed.path(), "lvm");
        let blkid = exe(fixed.path(), "blkid");
        let p = resolve_in(
            &[required(Program::Lvm), required(Program::Blkid)],
            &[],
            no_env,
            &[path.path().to_path_buf()],
            &[fixed.path().to_path_buf()],
        )
        .unwrap();
        assert_eq!(p.path(Program::Lvm).unwrap(), on_path);
        assert_eq!(p.path(Program::Blkid).unwrap(), blkid);
        assert_eq!(
            p.command(Program::Lvm).unwrap().program,
            on_path.as_os_str()
        );
        assert_eq!(p.absent().count(), 0);
    }

    #[test]
    fn a_missing_required_program_is_one_error_naming_it_and_where_it_was_looked_for() {
        let path = tempfile::tempdir().unwrap();
        let fixed = tempfile::tempdir().unwrap();
        exe(fixed.path(), "lvm");
        // Not executable: not a program.
        std::fs::write(path.path().join("mkfs.ext4"), "").unwrap();
        let e = resolve_in(
            &[
                required(Program::Lvm),
                required(Program::MkfsExt4),
                required(Program::Blkid),
            ],
            &[],
            no_env,
            &[path.path().to_path_buf()],
            &[fixed.path().to_path_buf()],
        )
        .unwrap_err();
        assert_eq!(e.missing, vec![Program::MkfsExt4, Program::Blkid]);
        let text = e.to_string();
        assert!(
            text.contains("required program mkfs.ext4 (Debian package e2fsprogs"),
            "{text}"
        );
        assert!(text.contains("VGLET_MKFS_EXT4 unset"), "{text}");
        assert!(text.contains(&path.path().display().to_string()), "{text}");
        assert!(text.contains("/usr/sbin, /sbin"), "{text}");
        assert!(text.contains("required program blkid"), "{text}");
        assert!(!text.contains("program lvm"), "{text}");
    }

    #[test]
    fn a_missing_optional_program_is_reported_and_refused_on_use() {
        let fixed = tempfile::tempdir().unwrap();
        exe(fixed.path(), "mkfs.ext4");
        let p = resolve_in(
            &[required(Program::MkfsExt4), optional(Program::MkfsXfs)],
            &[],
            no_env,
            &[],
            &[fixed.path().to_path_buf()],
        )
        .unwrap();
        assert!(p.has(Program::MkfsExt4));
        assert_eq!(p.absent().collect::<Vec<_>>(), vec![Program::MkfsXfs]);
        let e = p.command(Program::MkfsXfs).unwrap_err();
        assert_eq!(e.program, Program::MkfsXfs);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "mkfs.xfs is not available on this host, so formatting xfs volumes is disabled"
            ),
            "{text}"
        );
        assert!(text.contains("PATH (unset)"), "{text}");
        // Never asked for: refused too, not run by name.
        let e = p.path(Program::Ndctl).unwrap_err();
        assert!(e.to_string().contains("this binary does not use it"), "{e}");
    }

    #[test]
    fn a_flag_wins_and_a_bad_flag_path_is_not_searched_past() {
        let fixed = tempfile::tempdir().unwrap();
        exe(fixed.path(), "lvm");
        let mine = exe(fixed.path(), "my-lvm");
        let flag = |path: PathBuf| Override {
            program: Program::Lvm,
            path,
            from: "--lvm",
        };
        let dirs = [fixed.path().to_path_buf()];
        let p = resolve_in(
            &[required(Program::Lvm)],
            &[flag(mine.clone())],
            no_env,
            &[],
            &dirs,
        )
        .unwrap();
        assert_eq!(p.path(Program::Lvm).unwrap(), mine);
        // A bare name is searched like the program's own.
        let p = resolve_in(
            &[required(Program::Lvm)],
            &[flag("my-lvm".into())],
            no_env,
            &[],
            &dirs,
        )
        .unwrap();
        assert_eq!(p.path(Program::Lvm).unwrap(), mine);
        let e = resolve_in(
            &[required(Program::Lvm)],
            &[flag("/nonexistent/lvm".into())],
            no_env,
            &[],
            &dirs,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("required program lvm (Debian package lvm2, for every LVM operation) not found: --lvm /nonexistent/lvm is not an executable file"),
            "{e}"
        );
    }

    #[test]
    fn the_environment_variable_points_at_a_program() {
        let fixed = tempfile::tempdir().unwrap();
        exe(fixed.path(), "blkid");
        let env = |v: &str| (v == "VGLET_BLKID").then(|| OsString::from("/nonexistent/blkid"));
        let e = resolve_in(
            &[required(Program::Blkid)],
            &[],
            env,
            &[],
            &[fixed.path().to_path_buf()],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("VGLET_BLKID /nonexistent/blkid is not an executable file"),
            "{e}"
        );
        assert_eq!(Program::XfsGrowfs.env_var(), "VGLET_XFS_GROWFS");
        assert_eq!(Program::MkfsExt4.env_var(), "VGLET_MKFS_EXT4");
    }

    #[test]
    fn every_program_has_a_distinct_name() {
        let mut names: Vec<&str> = Program::ALL.iter().map(|p| p.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Program::ALL.len());
    }
}
