//! Structured logs: human-readable on a terminal, JSON lines otherwise (a container's stdout
//! goes to a log collector that wants one object per line).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, RwLock};

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
                        .with_writer(|| GuardedStderr),
                )
                .try_init()
        } else {
            registry
                .with(
                    fmt::layer()
                        .with_target(false)
                        .with_writer(|| GuardedStderr),
                )
                .try_init()
        };
        // A second init (tests) keeps the first subscriber.
        let _ = result;
    }
}

/// Runs one write to stderr; see [`set_stderr_guard`].
pub type StderrGuard = Arc<dyn Fn(&mut dyn FnMut()) + Send + Sync>;

static STDERR_GUARD: RwLock<Option<StderrGuard>> = RwLock::new(None);

/// While a terminal progress display (a spinner) owns stderr, log lines must be written around
/// it, not into it: each log write then runs inside `guard` (e.g. indicatif's
/// `|w| bar.suspend(w)`, which clears the spinner, writes, and redraws it). `None` ends that.
pub fn set_stderr_guard(guard: Option<StderrGuard>) {
    *STDERR_GUARD.write().unwrap_or_else(|e| e.into_inner()) = guard;
}

/// While it lives, log lines are written around `bar` (cleared, written, redrawn), never into
/// it: every binary with a progress display on a terminal holds one for the display's life.
#[must_use = "the guard ends when this is dropped"]
pub struct LogsAround(());

impl LogsAround {
    pub fn bar(bar: &indicatif::ProgressBar) -> LogsAround {
        let b = bar.clone();
        set_stderr_guard(Some(Arc::new(move |w: &mut dyn FnMut()| b.suspend(w))));
        LogsAround(())
    }
}

impl Drop for LogsAround {
    fn drop(&mut self) {
        set_stderr_guard(None);
    }
}

/// Where the log layers write: stderr, through the guard when one is set. The fmt layer hands
/// each event over in one write, so a line is never split around a redraw.
struct GuardedStderr;

impl Write for GuardedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let guard = STDERR_GUARD
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match guard {
            Some(guard) => {
                let mut result = Ok(buf.len());
                guard(&mut || result = std::io::stderr().write_all(buf).map(|()| buf.len()));
                result
            }
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Log lines captured in memory, for tests that assert what a piece of code logs (and what it
/// does not): `fut.with_subscriber(capture.subscriber(level)).await`, then `capture.text()`.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// A text subscriber (no colours) at `level` and above that writes here.
    pub fn subscriber(&self, level: tracing::Level) -> impl tracing::Subscriber + Send + Sync {
        let sink = self.clone();
        fmt()
            .with_ansi(false)
            .with_max_level(level)
            .with_writer(move || sink.clone())
            .finish()
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The guard is process-wide: its tests take turns.
    static ONE_GUARD_TEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn log_writes_go_through_the_guard_while_one_is_set() {
        let _one = ONE_GUARD_TEST.lock().unwrap_or_else(|e| e.into_inner());
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        set_stderr_guard(Some(Arc::new(move |w: &mut dyn FnMut()| {
            seen.fetch_add(1, Ordering::SeqCst);
            w();
        })));
        assert_eq!(GuardedStderr.write(b"a log line\n").unwrap(), 11);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the write ran inside the guard"
        );
        set_stderr_guard(None);
        GuardedStderr.write_all(b"another\n").unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "no guard once it is cleared"
        );
    }

    #[test]
    fn a_bar_guards_the_log_until_dropped() {
        let _one = ONE_GUARD_TEST.lock().unwrap_or_else(|e| e.into_inner());
        let bar = indicatif::ProgressBar::hidden();
        let logs = LogsAround::bar(&bar);
        assert!(STDERR_GUARD.read().unwrap().is_some());
        drop(logs);
        assert!(STDERR_GUARD.read().unwrap().is_none());
    }
}
