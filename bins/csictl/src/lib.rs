//! csictl: a small CSI client (in the spirit of gocsi's `csc`) for operators and scripts.
//!
//! `main.rs` parses the flags into [`cli::Cli`] and hands them to [`run`], which connects to the
//! plugin ([`client`]), performs the subcommand ([`commands`]) and prints the result as text or
//! JSON ([`output`]). Exit codes are in [`error`] and in `csictl --help`.

pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod output;

use std::io::Write;
use std::process::ExitCode;

use error::{EXIT_CLIENT, Failure};

/// Runs one command to completion and returns the process exit code.
pub fn run(cli: cli::Cli) -> ExitCode {
    let json = cli.global.json;
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run_async(cli)),
        Err(e) => Err(Failure::Usage(format!(
            "cannot start the async runtime: {e}"
        ))),
    };
    let (exit, printed) = match result {
        Ok(report) => {
            let out = if json {
                format!("{}\n", report.json)
            } else {
                report.text
            };
            (report.exit, write_all(&mut std::io::stdout(), &out))
        }
        Err(failure) => {
            let printed = if json {
                write_all(&mut std::io::stdout(), &format!("{}\n", failure.json()))
            } else {
                write_all(&mut std::io::stderr(), &format!("{}\n", failure.text()))
            };
            (failure.exit_code(), printed)
        }
    };
    // A closed stdout (e.g. `| head`) must not turn a result into a success or panic.
    if printed.is_err() && exit == error::EXIT_OK {
        return ExitCode::from(EXIT_CLIENT);
    }
    ExitCode::from(exit)
}

async fn run_async(cli: cli::Cli) -> Result<output::Report, Failure> {
    let target = client::parse_endpoint(&cli.global.endpoint).map_err(Failure::Usage)?;
    commands::validate(&cli.command)?;
    let channel = client::connect(&target, cli.global.timeout)
        .await
        .map_err(|e| Failure::Connect {
            endpoint: target.to_string(),
            message: error::error_chain(&e),
        })?;
    let ctx = commands::Ctx {
        channel,
        timeout: cli.global.timeout,
    };
    commands::execute(cli.command, &ctx).await
}

fn write_all(w: &mut dyn Write, s: &str) -> std::io::Result<()> {
    w.write_all(s.as_bytes())?;
    w.flush()
}
