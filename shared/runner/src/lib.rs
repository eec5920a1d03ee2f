//! The one way vglet runs external programs (lvm, mkfs, blkid, ndctl, ...).
//!
//! Every call is an argv (never a shell string), is bounded by a timeout, is logged with its
//! duration and exit status, and kills its child when the caller's future is dropped (a
//! cancelled gRPC request must not leave an `lvcreate` running behind our back).
//! Libraries take an `Arc<dyn Runner>` so that unit tests can inject [`FakeRunner`].

mod command;
mod fake;
pub mod orphans;
pub mod programs;
mod real;

pub use command::{Command, EXTRA_INPUT_FD, EXTRA_INPUT_PATH, Output};
pub use fake::{FakeRunner, Reply};
pub use programs::{
    MissingPrograms, Override, Program, ProgramMissing, Programs, Wanted, optional, required,
};
pub use real::{CommandEvent, CommandOutcome, Observer, SystemRunner, resolve_program};

use std::time::Duration;

/// What can go wrong running a command, before any tool-specific interpretation.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{argv} timed out after {after:?} and was killed")]
    Timeout { argv: String, after: Duration },
    #[error("{argv} failed ({}): {}", exit_text(*code), stderr.trim())]
    Failed {
        argv: String,
        /// `None` when the child was killed by a signal.
        code: Option<i32>,
        stdout: String,
        stderr: String,
    },
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit {c}"),
        None => "killed by signal".to_string(),
    }
}

impl RunError {
    /// Stderr of a failed command, empty for other errors; tool wrappers classify on it.
    pub fn stderr(&self) -> &str {
        match self {
            RunError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            RunError::Failed { code, .. } => *code,
            _ => None,
        }
    }
}

/// Runs commands. `run` fails with [`RunError::Failed`] on a non-zero exit; use
/// [`Runner::run_unchecked`] where a non-zero exit is an answer, not an error (blkid exits 2
/// for "no signature").
#[async_trait::async_trait]
pub trait Runner: Send + Sync + std::fmt::Debug {
    async fn run_unchecked(&self, cmd: Command) -> Result<Output, RunError>;

    async fn run(&self, cmd: Command) -> Result<Output, RunError> {
        let argv = cmd.argv_string();
        let out = self.run_unchecked(cmd).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(RunError::Failed {
                argv,
                code: out.code,
                stdout: out.stdout_lossy(),
                stderr: out.stderr_lossy(),
            })
        }
    }
}
