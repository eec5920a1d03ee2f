use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::{Command, Output, RunError, Runner};

/// How a command ended, as seen by an [`Observer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOutcome {
    /// It ran to its end; `None` when a signal killed it.
    Exited(Option<i32>),
    /// It hit its timeout and was killed.
    TimedOut,
    /// It never started (missing binary, no permission, ...).
    SpawnFailed,
}

impl CommandOutcome {
    /// A short label for metrics: `ok`, `failed`, `timeout`, `spawn_error`.
    pub fn label(&self) -> &'static str {
        match self {
            CommandOutcome::Exited(Some(0)) => "ok",
            CommandOutcome::Exited(_) => "failed",
            CommandOutcome::TimedOut => "timeout",
            CommandOutcome::SpawnFailed => "spawn_error",
        }
    }
}

/// One finished command, reported to the observer of a [`SystemRunner`]. It carries the
/// program name only, never the arguments: argv can hold user input that metrics labels
/// must not multiply on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEvent {
    /// Program without its directory, e.g. `lvm`, `mkfs.xfs`.
    pub program: String,
    pub duration: Duration,
    pub outcome: CommandOutcome,
}

/// Called once per finished command, on the runtime's thread: keep it cheap and
/// non-blocking (update a counter, not a network call).
pub type Observer = Arc<dyn Fn(&CommandEvent) + Send + Sync>;

/// Runs commands on this host with tokio. The child is spawned with `kill_on_drop`, so a
/// timeout or a dropped future (cancelled RPC) kills it; tokio reaps it afterwards, so no
/// zombie is left behind.
#[derive(Default, Clone)]
pub struct SystemRunner {
    observer: Option<Observer>,
    /// Marks every child's environment (see [`crate::orphans`]).
    owner: Option<String>,
}

impl std::fmt::Debug for SystemRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemRunner")
            .field("observer", &self.observer.is_some())
            .field("owner", &self.owner)
            .finish()
    }
}

impl SystemRunner {
    pub fn new() -> Self {
        SystemRunner::default()
    }

    /// A runner that reports every finished command to `observer` (metrics without the
    /// runner knowing any metrics library).
    pub fn with_observer(observer: Observer) -> Self {
        SystemRunner {
            observer: Some(observer),
            owner: None,
        }
    }

    /// Marks every child with [`crate::orphans::OWNER_ENV`]`=owner`, so that a successor of
    /// this process can find and stop the children a `kill -9` left running.
    pub fn owned_by(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    fn observe(&self, program: &str, duration: Duration, outcome: CommandOutcome) {
        if let Some(o) = &self.observer {
            o(&CommandEvent {
                program: program.to_string(),
                duration,
                outcome,
            });
        }
    }
}

#[async_trait::async_trait]
impl Runner for SystemRunner {
    async fn run_unchecked(&self, cmd: Command) -> Result<Output, RunError> {
        let argv = cmd.argv_string();
        let program = cmd.program_name();
        let mut child_cmd = tokio::process::Command::new(&cmd.program);
        child_cmd
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .envs(self.owner.iter().map(|o| (crate::orphans::OWNER_ENV, o)))
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(n) = cmd.niceness {
            // SAFETY: nice is one async-signal-safe syscall, touching no memory of the
            // parent's. (A pre_exec hook makes std fork instead of posix_spawn; only
            // background commands pay that.)
            unsafe {
                child_cmd.pre_exec(move || {
                    rustix::process::nice(n)
                        .map(drop)
                        .map_err(std::io::Error::from)
                });
            }
        }
        // Kept open until the child is spawned: it holds the child's copy of the input.
        let _extra =
            match &cmd.extra_input {
                Some(data) => Some(extra_input_fd(&mut child_cmd, data).map_err(|source| {
                    RunError::Spawn {
                        program: program.clone(),
                        source,
                    }
                })?),
                None => None,
            };
        let start = Instant::now();
        let mut child = child_cmd.spawn().map_err(|source| {
            tracing::warn!(cmd = %argv, error = %source, "command failed to start");
            self.observe(&program, start.elapsed(), CommandOutcome::SpawnFailed);
            RunError::Spawn {
                program: program.clone(),
                source,
            }
        })?;
        if let (Some(data), Some(mut stdin)) = (cmd.stdin.clone(), child.stdin.take()) {
            // A child that exits without reading stdin is not our error; its exit code says.
            let _ = stdin.write_all(&data).await;
        }
        let result = tokio::time::timeout(cmd.timeout, child.wait_with_output()).await;
        let duration = start.elapsed();
        match result {
            Err(_) => {
                // Dropping the wait future dropped the child: kill_on_drop sent SIGKILL.
                tracing::error!(cmd = %argv, timeout_ms = cmd.timeout.as_millis() as u64, "command timed out, killed");
                self.observe(&program, duration, CommandOutcome::TimedOut);
                Err(RunError::Timeout {
                    argv,
                    after: cmd.timeout,
                })
            }
            Ok(Err(source)) => {
                self.observe(&program, duration, CommandOutcome::SpawnFailed);
                Err(RunError::Spawn { program, source })
            }
            Ok(Ok(out)) => {
                let code = out.status.code();
                self.observe(&program, duration, CommandOutcome::Exited(code));
                let output = Output {
                    code,
                    stdout: out.stdout,
                    stderr: out.stderr,
                    duration,
                };
                let answered = code.is_some_and(|c| cmd.answer_codes.contains(&c));
                if output.success() || answered {
                    tracing::debug!(cmd = %argv, ms = duration.as_millis() as u64, exit = code.unwrap_or(0), "command ok");
                } else {
                    // A readable value: the code, or the signal that ended it.
                    let exit =
                        code.map_or_else(|| "killed by a signal".to_string(), |c| c.to_string());
                    tracing::info!(cmd = %argv, ms = duration.as_millis() as u64, exit = %exit,
                        stderr = %output.stderr_lossy().trim(), "command failed");
                }
                Ok(output)
            }
        }
    }
}

/// Puts `data` in a sealed anonymous memory file and arranges for the child (only this
/// one) to see it as [`crate::EXTRA_INPUT_FD`]. The file is close-on-exec in this process,
/// so no other child inherits it; it never touches a disk.
///
/// Descriptor 3 in the child: the memfd is first moved to the lowest free number from 3
/// on. Either that is 3 itself (the child only clears close-on-exec), or 3 is open in this
/// process already, so the pipe std uses to report a failed exec cannot be 3 and the
/// `dup2` onto 3 in the child replaces nothing std needs.
fn extra_input_fd(
    child_cmd: &mut tokio::process::Command,
    data: &[u8],
) -> std::io::Result<std::fs::File> {
    use rustix::fs::{MemfdFlags, SealFlags};
    use std::io::{Seek, Write};
    use std::os::fd::AsRawFd;
    let memfd = rustix::fs::memfd_create(
        "vglet-input",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let fd = rustix::io::fcntl_dupfd_cloexec(&memfd, crate::EXTRA_INPUT_FD)?;
    drop(memfd);
    let mut file = std::fs::File::from(fd);
    file.write_all(data)?;
    file.rewind()?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    let raw = file.as_raw_fd();
    let target = crate::EXTRA_INPUT_FD;
    // SAFETY: the closure runs in the forked child before exec and calls only fcntl and
    // dup2, which are async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        child_cmd.pre_exec(move || {
            let r = if raw == target {
                libc::fcntl(raw, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, target)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(file)
}

/// Whether an executable called `name` (or at `name`, a path) is found the way
/// [`crate::Programs::resolve`] searches: for tests that skip without a tool. A binary
/// resolves its programs once, through [`crate::Programs`].
pub fn resolve_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = Path::new(name);
        return crate::programs::is_executable(p).then(|| p.to_path_buf());
    }
    let from_env = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_env
        .into_iter()
        .chain(crate::programs::FIXED_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| crate::programs::is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A failure's log line shows the exit code as a number, and an exit code the caller
    /// declared an answer (blkid's 2, "no signature") is no failure at all.
    #[tokio::test]
    async fn failures_log_readable_codes_and_answers_are_not_failures() {
        use tracing::instrument::WithSubscriber;
        let logs = vglet_common::logging::LogCapture::default();
        let sub = logs.subscriber(tracing::Level::INFO);
        let r = SystemRunner::new();
        async {
            let out = r
                .run_unchecked(
                    Command::new("/bin/sh")
                        .args(["-c", "exit 2"])
                        .answers_with([2]),
                )
                .await
                .unwrap();
            assert_eq!(out.code, Some(2), "the caller still reads the code");
            let _ = r
                .run_unchecked(
                    Command::new("/bin/sh")
                        .args(["-c", "exit 3"])
                        .answers_with([2]),
                )
                .await
                .unwrap();
        }
        .with_subscriber(sub)
        .await;
        let logs = logs.text();
        assert_eq!(logs.matches("command failed").count(), 1, "{logs}");
        assert!(
            logs.contains("exit=3") && !logs.contains("exit 2"),
            "{logs}"
        );
        assert!(!logs.contains("Some("), "{logs}");
    }

    #[tokio::test]
    async fn captures_stdout_and_exit_code() {
        let out = SystemRunner::new()
            .run(Command::new("/bin/sh").args(["-c", "echo hi; echo err >&2"]))
            .await
            .unwrap();
        assert_eq!(out.stdout_lossy(), "hi\n");
        assert_eq!(out.stderr_lossy(), "err\n");
    }

    #[tokio::test]
    async fn nonzero_exit_is_failed_with_stderr() {
        let err = SystemRunner::new()
            .run(Command::new("/bin/sh").args(["-c", "echo boom >&2; exit 5"]))
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), Some(5));
        assert_eq!(err.stderr().trim(), "boom");
    }

    #[tokio::test]
    async fn false_is_an_error_true_is_not() {
        assert!(
            SystemRunner::new()
                .run(Command::new("/bin/true"))
                .await
                .is_ok()
        );
        assert!(
            SystemRunner::new()
                .run(Command::new("/bin/false"))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_background_command_runs_at_its_nice_value() {
        let out = SystemRunner::new()
            .run(
                Command::new("/bin/sh")
                    .args(["-c", "cut -d' ' -f19 /proc/self/stat"])
                    .niceness(7),
            )
            .await
            .unwrap();
        // Field 19 of stat is the nice value: ours plus 7, at most 19.
        let ours: i32 = std::fs::read_to_string("/proc/self/stat")
            .unwrap()
            .rsplit_once(") ")
            .unwrap()
            .1
            .split(' ')
            .nth(16)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(out.stdout_lossy().trim(), (ours + 7).min(19).to_string());
    }

    #[tokio::test]
    async fn missing_program_is_spawn_error() {
        let err = SystemRunner::new()
            .run(Command::new("/nonexistent/vglet-nothing"))
            .await
            .unwrap_err();
        assert!(matches!(err, RunError::Spawn { .. }), "{err:?}");
    }

    /// The extra input reaches the child at /dev/fd/3 beside stdin, and nothing of it is
    /// left open in this process or visible to the next child.
    #[tokio::test]
    async fn extra_input_is_fd_3_of_this_child_only() {
        let out = SystemRunner::new()
            .run(
                Command::new("/bin/sh")
                    .args(["-c", "cat; echo; cat /dev/fd/3"])
                    .stdin(b"one".to_vec())
                    .extra_input(b"two".to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout_lossy(), "one\ntwo");
        // Many in a row (fd 3 taken or not in this process): never leaked, always fd 3.
        for i in 0..20 {
            let keep: Vec<std::fs::File> = (0..i % 3)
                .map(|_| std::fs::File::open("/dev/null").unwrap())
                .collect();
            let out = SystemRunner::new()
                .run(
                    Command::new("/bin/sh")
                        .args(["-c", "cat /dev/fd/3"])
                        .extra_input(format!("k{i}").into_bytes()),
                )
                .await
                .unwrap();
            assert_eq!(out.stdout_lossy(), format!("k{i}"));
            drop(keep);
        }
        let plain = SystemRunner::new()
            .run(Command::new("/bin/sh").args(["-c", "ls -l /proc/self/fd/"]))
            .await
            .unwrap();
        assert!(
            !plain.stdout_lossy().contains("memfd"),
            "{}",
            plain.stdout_lossy()
        );
        let own = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|l| l.to_string_lossy().contains("vglet-input"))
            .count();
        assert_eq!(own, 0, "a memfd is left open in this process");
    }

    #[tokio::test]
    async fn stdin_is_fed() {
        let out = SystemRunner::new()
            .run(Command::new("/bin/cat").stdin(b"abc".to_vec()))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"abc");
    }

    /// The child must be dead (not merely abandoned) after a timeout: it writes its pid, and
    /// we check that the pid is gone.
    #[tokio::test]
    async fn timeout_kills_the_child() {
        let dir = std::env::temp_dir().join(format!("vglet-runner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
        let err = SystemRunner::new()
            .run(
                Command::new("/bin/sh")
                    .args(["-c", &script])
                    .timeout(Duration::from_millis(300)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RunError::Timeout { .. }), "{err:?}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut gone = false;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone entirely, or at worst a zombie awaiting tokio's reaper.
            if stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::remove_dir_all(&dir).ok();
        assert!(gone, "child {pid} still running after timeout");
    }

    #[tokio::test]
    async fn cancelled_future_kills_the_child() {
        let dir = std::env::temp_dir().join(format!("vglet-runner-c-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
        let runner = SystemRunner::new();
        let fut = runner.run(Command::new("/bin/sh").args(["-c", &script]));
        // Cancel the call as a dropped gRPC request would.
        let _ = tokio::time::timeout(Duration::from_millis(300), fut).await;
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut gone = false;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::remove_dir_all(&dir).ok();
        assert!(gone, "child {pid} still running after cancel");
    }

    #[tokio::test]
    async fn observer_sees_program_duration_and_outcome() {
        use std::sync::Mutex;
        let seen: Arc<Mutex<Vec<CommandEvent>>> = Arc::default();
        let sink = seen.clone();
        let runner = SystemRunner::with_observer(Arc::new(move |e: &CommandEvent| {
            sink.lock().unwrap().push(e.clone())
        }));
        runner.run(Command::new("/bin/true")).await.unwrap();
        runner.run(Command::new("/bin/false")).await.unwrap_err();
        runner
            .run(
                Command::new("/bin/sleep")
                    .arg("5")
                    .timeout(Duration::from_millis(100)),
            )
            .await
            .unwrap_err();
        runner
            .run(Command::new("/nonexistent/vglet-nothing"))
            .await
            .unwrap_err();
        let seen = seen.lock().unwrap();
        let got: Vec<(&str, &str)> = seen
            .iter()
            .map(|e| (e.program.as_str(), e.outcome.label()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("true", "ok"),
                ("false", "failed"),
                ("sleep", "timeout"),
                ("vglet-nothing", "spawn_error")
            ]
        );
        assert!(seen[2].duration >= Duration::from_millis(100));
    }

    #[test]
    fn resolves_sh() {
        assert!(resolve_program("sh").is_some());
        assert!(resolve_program("/bin/sh").is_some());
        assert!(resolve_program("vglet-surely-missing").is_none());
    }
}
