//! pmem-ns-init as a library: `main.rs` only parses flags and calls [`main`].
//!
//! The flow is read (`ndctl list`), optionally write label index blocks ([`labels`]),
//! decide ([`plan::plan`], pure), create, then read again for the result: the document
//! written is what ndctl reports after the run, not what was intended.

pub mod cli;
pub mod labels;
pub mod output;
pub mod plan;

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use vglet_devices::format_size;
use vglet_devices::inventory::PmemNamespaces;
use vglet_ndctl::{Ndctl, Region};
use vglet_runner::{Override, Program, Programs, Runner, SystemRunner, Wanted, required};

pub use cli::Cli;
use plan::{Config, Note, Severity};

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_REFUSED: u8 = 3;

/// The programs pmem-ns-init runs: ndctl for everything, blkid to refuse labelling a
/// region whose namespaces hold data. Both are needed on every run (a run that may label
/// must be able to look first), so both are required.
pub const NEEDS: &[Wanted] = &[required(Program::Ndctl), required(Program::Blkid)];

/// Carves NVDIMM regions into fsdax and sector namespaces for vglet, idempotently, and
/// writes the result for disk-discover.
///
/// Talks to the NVDIMM subsystem through ndctl only. Namespaces it did not name are never
/// touched; nothing is ever resized or destroyed.
#[derive(Debug, clap::Parser)]
#[command(name = "pmem-ns-init", version = vglet_common::VERSION, after_help = cli::AFTER_HELP)]
pub struct Args {
    #[command(flatten)]
    pub cli: Cli,
    #[command(flatten)]
    pub log: vglet_common::logging::LogArgs,
}

/// A mistake in the flags: exit 2, like clap's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The host side: ndctl, the runner for blkid, and where sysfs is (tests point it at a
/// fake tree).
#[derive(Debug, Clone)]
pub struct Host {
    pub ndctl: Ndctl,
    pub runner: Arc<dyn Runner>,
    /// Resolved at start from [`NEEDS`].
    pub programs: Programs,
    pub sys_block: PathBuf,
    /// Show a progress bar (stderr is a terminal).
    pub progress: bool,
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    pub exit: u8,
    /// Names of the namespaces created by this run.
    pub created: Vec<String>,
    /// Regions whose label index blocks this run wrote.
    pub labelled: Vec<String>,
    pub notes: Vec<Note>,
    /// The result document; `None` on a dry run.
    pub document: Option<PmemNamespaces>,
}

/// Runs and maps the outcome to the documented exit status.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pmem-ns-init: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let runner: Arc<dyn Runner> = Arc::new(SystemRunner::new());
    let overrides: Vec<Override> = cli
        .ndctl
        .iter()
        .map(|path| Override {
            program: Program::Ndctl,
            path: path.clone(),
            from: "--ndctl",
        })
        .collect();
    let programs = match Programs::resolve(NEEDS, &overrides) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pmem-ns-init: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let ndctl = Ndctl::new(runner.clone(), &programs).expect("ndctl is required");
    let host = Host {
        ndctl,
        runner,
        programs,
        sys_block: PathBuf::from(vglet_devices::sysfs::SYS_CLASS_BLOCK),
        progress: std::io::stderr().is_terminal(),
    };
    match runtime.block_on(run(&cli, &host)) {
        Ok(outcome) => ExitCode::from(outcome.exit),
        Err(e) => {
            eprintln!("pmem-ns-init: {e:#}");
            let usage = e.downcast_ref::<UsageError>().is_some();
            ExitCode::from(if usage { EXIT_USAGE } else { EXIT_FAILED })
        }
    }
}

fn config(cli: &Cli) -> anyhow::Result<(Config, BTreeSet<String>)> {
    let total = u16::from(cli.use_for_fsdax) + u16::from(cli.use_for_sector);
    if total > 100 {
        return Err(UsageError(format!(
            "--use-for-fsdax {} + --use-for-sector {} = {total}%: more than a region",
            cli.use_for_fsdax, cli.use_for_sector
        ))
        .into());
    }
    if cli.max_namespace_size == Some(0) {
        return Err(UsageError("--max-namespace-size must be above 0".into()).into());
    }
    let regions = cli
        .regions
        .iter()
        .filter(|r| !r.trim().is_empty())
        .map(|r| cli::normalise_region(r))
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(UsageError)?;
    let config = Config {
        fsdax_percent: cli.use_for_fsdax,
        sector_percent: cli.use_for_sector,
        max_namespace_size: cli.max_namespace_size,
        fsdax_align: cli.fsdax_align,
    };
    Ok((config, regions))
}

/// The regions to work on, with notes for filter entries that name no region.
fn in_scope(all: &[Region], wanted: &BTreeSet<String>, notes: &mut Vec<Note>) -> Vec<Region> {
    if wanted.is_empty() {
        if all.is_empty() {
            notes.push(Note {
                region: String::new(),
                severity: Severity::Info,
                message: "no NVDIMM regions found (no persistent memory, or the nfit and \
                          nd_pmem modules are not loaded)"
                    .into(),
            });
        }
        return all.to_vec();
    }
    let known: Vec<&str> = all.iter().map(|r| r.dev.as_str()).collect();
    for w in wanted.iter().filter(|w| !known.contains(&w.as_str())) {
        notes.push(Note {
            region: w.clone(),
            severity: Severity::Refused,
            message: format!(
                "--region {w}: no such region (regions here: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        });
    }
    all.iter()
        .filter(|r| wanted.contains(&r.dev))
        .cloned()
        .collect()
}

fn log_note(n: &Note) {
    match n.severity {
        Severity::Info => tracing::info!(region = %n.region, "{}", n.message),
        Severity::Warn => tracing::warn!(region = %n.region, "{}", n.message),
        Severity::Refused => tracing::error!(region = %n.region, "refused: {}", n.message),
    }
}

/// Reads, labels, plans, creates, reads again and writes the result.
pub async fn run(cli: &Cli, host: &Host) -> anyhow::Result<Outcome> {
    let (config, wanted) = config(cli)?;
    let mut notes = Vec::new();
    let all = host
        .ndctl
        .regions()
        .await
        .context("listing NVDIMM regions")?;
    let mut regions = in_scope(&all, &wanted, &mut notes);

    let mut failed = false;
    let mut labelled = Vec::new();
    let label_less: Vec<&Region> = regions
        .iter()
        .filter(|r| r.is_pmem() && !r.has_labels())
        .collect();
    let mut skip = BTreeSet::new();
    let mut pretend_labelled = Vec::new();
    if cli.init_labels && !label_less.is_empty() {
        let mappings = host
            .ndctl
            .region_mappings()
            .await
            .context("listing the DIMMs of each region")?;
        for region in label_less {
            let dimms = match labels::check(region, &mappings, host).await {
                Ok(dimms) => dimms,
                Err(why) => {
                    notes.push(Note {
                        region: region.dev.clone(),
                        severity: Severity::Refused,
                        message: format!("--init-labels on {}: {why}", region.dev),
                    });
                    skip.insert(region.dev.clone());
                    continue;
                }
            };
            let what = format!(
                "label index blocks on {} ({}), replacing its unused label-less namespace",
                dimms.join(", "),
                region.dev
            );
            if cli.dry_run {
                notes.push(Note {
                    region: region.dev.clone(),
                    severity: Severity::Info,
                    message: format!("would write {what}"),
                });
                pretend_labelled.push(labels::as_labelled(region));
                continue;
            }
            tracing::info!(region = %region.dev, "writing {what}");
            match host.ndctl.init_labels(&region.dev, &dimms).await {
                Ok(()) => labelled.push(region.dev.clone()),
                Err(e) => {
                    tracing::error!(region = %region.dev, "writing label index blocks failed: {e}");
                    failed = true;
                    skip.insert(region.dev.clone());
                }
            }
        }
        if !labelled.is_empty() {
            let all = host
                .ndctl
                .regions()
                .await
                .context("listing NVDIMM regions after writing labels")?;
            regions = in_scope(&all, &wanted, &mut Vec::new());
            for r in &labelled {
                if let Some(region) = regions.iter().find(|x| &x.dev == r)
                    && !region.has_labels()
                {
                    tracing::error!(region = %r, "still label-less after init-labels");
                    failed = true;
                }
            }
        }
    }
    let would_label = !pretend_labelled.is_empty();
    for p in pretend_labelled {
        if let Some(r) = regions.iter_mut().find(|r| r.dev == p.dev) {
            *r = p;
        }
    }
    let to_plan: Vec<Region> = regions
        .iter()
        .filter(|r| !skip.contains(&r.dev))
        .cloned()
        .collect();
    let plan = plan::plan(&to_plan, &config);
    notes.extend(plan.notes.iter().cloned());
    notes.iter().for_each(log_note);
    let refused = notes.iter().any(|n| n.severity == Severity::Refused);

    if cli.dry_run {
        for c in &plan.creates {
            println!(
                "would create {} in {}: {} mode, {}",
                c.name,
                c.region,
                c.mode,
                format_size(c.size)
            );
        }
        let changes = !plan.creates.is_empty() || would_label;
        let exit = if refused {
            EXIT_REFUSED
        } else if changes {
            EXIT_OK
        } else {
            cli.nothing_to_do_exit_code
        };
        return Ok(Outcome {
            exit,
            created: Vec::new(),
            labelled,
            notes,
            document: None,
        });
    }

    let mut created = Vec::new();
    let bar = host.progress.then(|| progress_bar(plan.creates.len()));
    // Log lines (an error on a failed create) are written around the bar, never into it.
    let logs = bar.as_ref().map(vglet_common::logging::LogsAround::bar);
    for c in &plan.creates {
        let start = Instant::now();
        let what = format!(
            "{} ({} mode, {}) in {}",
            c.name,
            c.mode,
            format_size(c.size),
            c.region
        );
        match &bar {
            Some(b) => b.set_message(what.clone()),
            None => tracing::info!("creating {what} ..."),
        }
        match host.ndctl.create_namespace(c).await {
            Ok(ns) => {
                let msg = format!(
                    "created {what}: {} {}",
                    ns.dev,
                    ns.blockdev_path().unwrap_or_default()
                );
                match &bar {
                    Some(b) => b.println(msg),
                    None => tracing::info!(seconds = start.elapsed().as_secs_f64(), "{msg}"),
                }
                created.push(c.name.clone());
            }
            Err(e) => {
                let msg = format!("creating {what} failed: {e}");
                if let Some(b) = &bar {
                    b.println(&msg);
                }
                tracing::error!(region = %c.region, "{msg}");
                failed = true;
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    drop(logs);

    let after = host
        .ndctl
        .regions()
        .await
        .context("listing NVDIMM regions after the changes")?;
    let document = output::document(&in_scope(&after, &wanted, &mut Vec::new()));
    output::write(cli.output.as_deref(), &document)?;
    tracing::info!(
        created = created.len(),
        namespaces = document.namespaces.len(),
        "{} namespace(s) of ours in {} region(s)",
        document.namespaces.len(),
        regions.len()
    );
    let exit = if failed {
        EXIT_FAILED
    } else if refused {
        EXIT_REFUSED
    } else if !created.is_empty() || !labelled.is_empty() {
        EXIT_OK
    } else {
        cli.nothing_to_do_exit_code
    };
    Ok(Outcome {
        exit,
        created,
        labelled,
        notes,
        document: Some(document),
    })
}

fn progress_bar(len: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg} [{elapsed}]")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod flow_tests;
