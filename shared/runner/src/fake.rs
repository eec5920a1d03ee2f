use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Command, Output, RunError, Runner};

/// A scripted reply of [`FakeRunner`].
#[derive(Debug, Clone)]
pub enum Reply {
    Ok(String),
    Fail { code: i32, stderr: String },
    Timeout,
}

impl Reply {
    pub fn ok(stdout: impl Into<String>) -> Self {
        Reply::Ok(stdout.into())
    }
    pub fn fail(code: i32, stderr: impl Into<String>) -> Self {
        Reply::Fail {
            code,
            stderr: stderr.into(),
        }
    }
}

type Handler = dyn Fn(&Command) -> Reply + Send + Sync;

/// A test double: records every command and answers from a handler, so unit tests can
/// assert the exact argv a wrapper builds and how it interprets each kind of answer.
#[derive(Clone)]
pub struct FakeRunner {
    handler: Arc<Handler>,
    calls: Arc<Mutex<Vec<Command>>>,
}

impl std::fmt::Debug for FakeRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRunner")
            .field("calls", &self.calls.lock().unwrap().len())
            .finish()
    }
}

impl FakeRunner {
    /// Every command succeeds with empty output.
    pub fn new() -> Self {
        Self::with(|_| Reply::ok(""))
    }

    pub fn with(handler: impl Fn(&Command) -> Reply + Send + Sync + 'static) -> Self {
        FakeRunner {
            handler: Arc::new(handler),
            calls: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn calls(&self) -> Vec<Command> {
        self.calls.lock().unwrap().clone()
    }

    /// Each recorded call as "program arg arg ...", program without its directory.
    pub fn call_lines(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| {
                std::iter::once(c.program_name())
                    .chain(c.arg_strings())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

impl Default for FakeRunner {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Runner for FakeRunner {
    async fn run_unchecked(&self, cmd: Command) -> Result<Output, RunError> {
        self.calls.lock().unwrap().push(cmd.clone());
        match (self.handler)(&cmd) {
            Reply::Ok(s) => Ok(Output {
                code: Some(0),
                stdout: s.into_bytes(),
                stderr: Vec::new(),
                duration: Duration::ZERO,
            }),
            Reply::Fail { code, stderr } => Ok(Output {
                code: Some(code),
                stdout: Vec::new(),
                stderr: stderr.into_bytes(),
                duration: Duration::ZERO,
            }),
            Reply::Timeout => Err(RunError::Timeout {
                argv: cmd.argv_string(),
                after: cmd.timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_and_replies() {
        let f = FakeRunner::with(|c| {
            if c.arg_strings().first().map(String::as_str) == Some("bad") {
                Reply::fail(5, "nope")
            } else {
                Reply::ok("out")
            }
        });
        assert_eq!(
            f.run(Command::new("/sbin/lvm").arg("good"))
                .await
                .unwrap()
                .stdout_lossy(),
            "out"
        );
        let e = f.run(Command::new("lvm").arg("bad")).await.unwrap_err();
        assert_eq!(e.exit_code(), Some(5));
        assert_eq!(f.call_lines(), vec!["lvm good", "lvm bad"]);
    }
}
