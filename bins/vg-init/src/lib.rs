//! vg-init as a library: the binary only parses flags and calls [`run`].
//!
//! The flow is read ([`state::gather`]), decide ([`plan::plan`], pure), act
//! ([`exec::execute`]), then read again for the result: the printed result is what lvm
//! says after the run, not what was intended.

pub mod cli;
pub mod error;
pub mod exec;
pub mod output;
pub mod plan;
pub mod progress;
pub mod request;
pub mod state;

use std::io::Read;
use std::sync::Arc;

use vglet_lvm::Lvm;
use vglet_runner::{Override, Program, Programs, Runner, SystemRunner, Wanted, optional, required};

pub use cli::Cli;
pub use error::VgInitError;
use plan::Outcome;
use request::Request;
use state::{Host, SystemHost};

/// The programs vg-init runs. lvm and wipefs (which lists what is on a device before it is
/// taken, and erases it under --wipe) on every run; the lock managers' tools only for a
/// shared VG, so without them vg-init still makes local VGs and a shared one is refused
/// with the tool named (the lock manager check says it is not available).
pub const NEEDS: &[Wanted] = &[
    required(Program::Lvm),
    required(Program::Wipefs),
    optional(Program::Lvmlockctl),
    optional(Program::Sanlock),
    optional(Program::DlmTool),
];

/// Resolves [`NEEDS`], `--lvm` first for lvm.
pub fn programs(cli: &Cli) -> Result<Programs, VgInitError> {
    let lvm = Override {
        program: Program::Lvm,
        path: cli.lvm.clone(),
        from: "--lvm",
    };
    Programs::resolve(NEEDS, &[lvm]).map_err(|e| VgInitError::Failed(e.to_string()))
}

/// Runs vg-init and returns its exit status; the JSON result (or failure) is on stdout.
pub async fn run(cli: Cli) -> i32 {
    let vg = cli.vg.clone();
    let runner: Arc<dyn Runner> = Arc::new(SystemRunner::new());
    let lvm = match programs(&cli)
        .and_then(|p| Lvm::new(runner.clone(), p).map_err(|e| VgInitError::Failed(e.to_string())))
    {
        Ok(lvm) => lvm,
        Err(e) => return report_failure(&vg, e),
    };
    lvm.programs().log_absent();
    lvm.set_timeout(cli.command_timeout);
    let inventory = match read_inventory(cli.inventory.as_deref()) {
        Ok(i) => i,
        Err(e) => return report_failure(&vg, e),
    };
    match run_with(
        &cli,
        inventory.as_deref(),
        &lvm,
        runner.as_ref(),
        &SystemHost,
    )
    .await
    {
        Ok((result, code)) => {
            println!(
                "{}",
                serde_json::to_string(&result).expect("result serialises")
            );
            code
        }
        Err(e) => report_failure(&vg, e),
    }
}

/// The exact argv of every command the plan would run: the same code path as a real run, with a
/// runner that records each command and runs nothing. Its log lines ("volume group created")
/// would be untrue here, so they are not emitted.
async fn dry_run_commands(
    req: &Request,
    plan: &plan::Plan,
    lvm: &Lvm,
) -> Result<Vec<Vec<String>>, VgInitError> {
    use tracing::instrument::WithSubscriber;
    let recorder = vglet_runner::FakeRunner::new();
    let dry = Lvm::new(Arc::new(recorder.clone()), lvm.programs().clone())
        .map_err(|e| VgInitError::Failed(e.to_string()))?;
    exec::execute(req, plan, &dry, &recorder)
        .with_subscriber(tracing::subscriber::NoSubscriber::default())
        .await?;
    Ok(recorder
        .calls()
        .iter()
        .map(|c| {
            std::iter::once(c.program.to_string_lossy().into_owned())
                .chain(c.arg_strings())
                .collect()
        })
        .collect())
}

/// An argv as a shell line for people to read or paste (single quotes where needed).
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn report_failure(vg: &str, e: VgInitError) -> i32 {
    eprintln!("vg-init: {}: {e}", e.kind());
    let failure = output::Failure {
        vg,
        action: e.kind(),
        error: e.to_string(),
    };
    println!(
        "{}",
        serde_json::to_string(&failure).expect("failure serialises")
    );
    e.exit_code()
}

fn read_inventory(path: Option<&str>) -> Result<Option<String>, VgInitError> {
    let Some(path) = path else { return Ok(None) };
    let mut text = String::new();
    let read = if path == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| VgInitError::Failed(format!("--inventory {path}: {e}")))?;
    Ok(Some(text))
}

/// Everything after flag parsing, with the side doors (lvm, runner, host) injected.
pub async fn run_with(
    cli: &Cli,
    inventory: Option<&str>,
    lvm: &Lvm,
    runner: &dyn Runner,
    host: &dyn Host,
) -> Result<(output::Result, i32), VgInitError> {
    let req = Request::from_cli(cli, inventory)?;
    let before = state::gather(&req, lvm, runner, host).await?;
    let plan = plan::plan(&req, &before)?;
    let mut result = output::Result::new(&req, &plan);
    for line in &result.plan {
        if req.dry_run {
            eprintln!("vg-init: plan: {line}");
        } else {
            tracing::info!(vg = %req.vg, "plan: {line}");
        }
    }
    let nothing = plan.outcome == Outcome::Unchanged;
    if nothing {
        tracing::info!(vg = %req.vg, "volume group already has the requested shape; nothing to do");
    }
    if req.dry_run {
        if let Some(vg) = &before.vg {
            result.pvs = vg.pvs.clone();
        }
        let argvs = dry_run_commands(&req, &plan, lvm).await?;
        for argv in &argvs {
            eprintln!("vg-init: would run: {}", shell_words(argv));
        }
        result.would_run = Some(argvs);
        return Ok((
            result,
            if nothing {
                req.nothing_to_do_exit_code
            } else {
                0
            },
        ));
    }
    exec::execute(&req, &plan, lvm, runner).await?;

    let after = lvm
        .report(Some(&req.vg))
        .await
        .map_err(|e| VgInitError::lvm("reading the VG after the changes", e))?;
    let vg = after
        .vg(&req.vg)
        .ok_or_else(|| VgInitError::Failed(format!("VG {} is not there after the run", req.vg)))?;
    result.tags = vg.tags.clone();
    result.pvs = after.pvs_in(&req.vg).map(|p| p.name.clone()).collect();
    let fast_tag = vglet_lvm::tags::FAST_PV_TAG;
    let fast: Vec<&vglet_lvm::Pv> = after
        .pvs_in(&req.vg)
        .filter(|p| p.tags.iter().any(|t| t == fast_tag))
        .collect();
    result.fast_pvs = fast.iter().map(|p| p.name.clone()).collect();
    result.shared = vg.is_shared();
    result.lock_type = vg.is_shared().then(|| vg.lock_type.clone());
    result.system_id = Some(vg.system_id.clone()).filter(|s| !s.is_empty());
    // Devices added must now be PVs of the VG: trust lvm's answer, not the plan.
    let pvs: Vec<String> = result
        .pvs
        .iter()
        .map(|p| host.canonical(p).unwrap_or_else(|_| p.clone()))
        .collect();
    for d in &plan.added {
        let c = host.canonical(d).unwrap_or_else(|_| d.clone());
        if !pvs.contains(&c) {
            return Err(VgInitError::Failed(format!(
                "{d} is not a PV of {} after vgextend/vgcreate reported success",
                req.vg
            )));
        }
    }
    // Each fast device must now carry the tag: lvm's answer again, not the plan's.
    let fast_canonical: Vec<String> = fast
        .iter()
        .map(|p| host.canonical(&p.name).unwrap_or_else(|_| p.name.clone()))
        .collect();
    for d in &req.fast_devices {
        let c = host.canonical(d).unwrap_or_else(|_| d.clone());
        if !fast_canonical.contains(&c) {
            return Err(VgInitError::Failed(format!(
                "{d} is not a PV of {} tagged {fast_tag} after the run",
                req.vg
            )));
        }
    }
    Ok((
        result,
        if nothing {
            req.nothing_to_do_exit_code
        } else {
            0
        },
    ))
}
