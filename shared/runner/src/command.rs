use std::ffi::{OsStr, OsString};
use std::time::Duration;

/// Default bound for one external command. lvm commands normally take well under a second;
/// a minute means a hung device or lock manager, which must surface as an error.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The descriptor number a child sees [`Command::extra_input`] on.
pub const EXTRA_INPUT_FD: i32 = 3;
/// The path a program opens to read [`Command::extra_input`].
pub const EXTRA_INPUT_PATH: &str = "/dev/fd/3";

/// An external command as argv plus its environment, stdin and timeout.
///
/// `Debug` shows the length of stdin, never its bytes: stdin is how secrets (a LUKS key)
/// reach a program, and a `{:?}` of a command must not put one in a log or a panic.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub stdin: Option<Vec<u8>>,
    /// A second secret input beside stdin (a program that needs two keys at once, such
    /// as `cryptsetup luksAddKey`): the runner puts these bytes in an anonymous memory
    /// file (memfd, never on disk) that the child sees as descriptor [`EXTRA_INPUT_FD`],
    /// so argv names only [`EXTRA_INPUT_PATH`]. No other child inherits it.
    pub extra_input: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Non-zero exit codes that are answers, not failures (blkid's 2 = "no signature"):
    /// logged like a success.
    pub answer_codes: Vec<i32>,
    /// Added to the child's nice value (higher: less CPU when the CPU is contended), for
    /// background work that must not slow what the calling process serves. `None`: the
    /// caller's priority.
    pub niceness: Option<i32>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env)
            .field(
                "stdin",
                &self.stdin.as_ref().map(|d| format!("<{} bytes>", d.len())),
            )
            .field(
                "extra_input",
                &self
                    .extra_input
                    .as_ref()
                    .map(|d| format!("<{} bytes>", d.len())),
            )
            .field("timeout", &self.timeout)
            .field("answer_codes", &self.answer_codes)
            .finish()
    }
}

impl Command {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            extra_input: None,
            timeout: DEFAULT_TIMEOUT,
            answer_codes: Vec::new(),
            niceness: None,
        }
    }

    /// Runs the child `n` nice levels below the caller (see [`Command::niceness`]).
    pub fn niceness(mut self, n: i32) -> Self {
        self.niceness = Some(n);
        self
    }

    /// Exit codes that answer the question rather than report a failure (see
    /// [`Command::answer_codes`]); the caller still reads the code.
    pub fn answers_with(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.answer_codes.extend(codes);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), val.as_ref().to_owned()));
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// See [`Command::extra_input`]: the child reads `data` at [`EXTRA_INPUT_PATH`].
    pub fn extra_input(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.extra_input = Some(data.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Program name without its directory, for logs and metrics labels.
    pub fn program_name(&self) -> String {
        let p = self.program.to_string_lossy();
        p.rsplit('/').next().unwrap_or(&p).to_string()
    }

    /// The argv joined by spaces, for logs and error messages (never executed).
    pub fn argv_string(&self) -> String {
        std::iter::once(&self.program)
            .chain(self.args.iter())
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The arguments as UTF-8 strings (lossy), convenient for assertions in tests.
    pub fn arg_strings(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }
}

/// A finished command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub duration: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_string_joins_program_and_args() {
        let c = Command::new("/sbin/lvm").args(["lvs", "--reportformat", "json"]);
        assert_eq!(c.argv_string(), "/sbin/lvm lvs --reportformat json");
        assert_eq!(c.program_name(), "lvm");
    }

    /// What a command is fed on stdin (a key) never shows in its `Debug`, only its length.
    #[test]
    fn debug_hides_stdin() {
        let c = Command::new("/sbin/cryptsetup")
            .stdin(b"s3cret-key".to_vec())
            .extra_input(b"n3w-key".to_vec());
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("n3w"),
            "{shown}"
        );
        assert!(shown.contains("<10 bytes>"), "{shown}");
        assert!(shown.contains("<7 bytes>"), "{shown}");
    }
}
