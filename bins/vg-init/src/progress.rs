//! Feedback on long steps (wipe, lockspace start, thin pool): a spinner when a person
//! watches stderr, plain log lines when a log collector does.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use vglet_common::logging::LogsAround;

pub struct Step {
    bar: Option<ProgressBar>,
    _logs: Option<LogsAround>,
    what: String,
    start: Instant,
}

impl Step {
    pub fn start(what: impl Into<String>) -> Step {
        let what = what.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
                bar.set_style(style);
            }
            bar.set_message(what.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        // Log lines are written around the spinner, never into it.
        let logs = bar.as_ref().map(LogsAround::bar);
        if bar.is_none() {
            tracing::info!("{what} ...");
        }
        Step {
            bar,
            _logs: logs,
            what,
            start: Instant::now(),
        }
    }

    /// A progress note (e.g. how long a wait has lasted); logged at most as often as the
    /// caller calls it.
    pub fn note(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(format!("{}: {msg}", self.what)),
            None => tracing::info!("{}: {msg}", self.what),
        }
    }

    pub fn done(self, ok: bool) {
        let secs = self.start.elapsed().as_secs_f64();
        match &self.bar {
            Some(bar) => bar.finish_with_message(format!(
                "{} {} ({secs:.1}s)",
                self.what,
                if ok { "done" } else { "FAILED" }
            )),
            None if ok => tracing::info!(seconds = secs, "{}: done", self.what),
            None => tracing::warn!(seconds = secs, "{}: failed", self.what),
        }
    }
}
