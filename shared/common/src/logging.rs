//! Structured logs: human-readable on a terminal, JSON lines otherwise (a container's stdout
//! goes to a log collector that wants one object per line).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    #[default]
    Auto,
    Text,
    Json,
}

/// Log flags every binary accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info`, `debug`, `vglet_lvm=debug,info`.
    #[arg(long, env = "VGLET_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log format.
    #[arg(long, env = "VGLET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global subscriber; logs go to stderr so stdout stays clean for data
    /// (inventories, JSON results) that the next stage reads.
    pub fn init(&self) {
        let filter = EnvFilter::try_new(&self.log).unwrap_or_else(|_| EnvFilter::new("info"));
        let json = match self.log_format {
            LogFormat::Json => true,
            LogFormat::Text => false,
            LogFormat::Auto => !std::io::stderr().is_terminal(),
        };
        let registry = tracing_subscriber::registry().with(filter);
        let result = if json {
            registry
                .with(
                    fmt::layer()
                        .json()
                        .with_current_span(true)
                        .with_span_list(false)
                        .with_writer(std::io::stderr),
                )
                .try_init()
        } else {
            registry
                .with(fmt::layer().with_target(false).with_writer(std::io::stderr))
                .try_init()
        };
        // A second init (tests) keeps the first subscriber.
        let _ = result;
    }
}
