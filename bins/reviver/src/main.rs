//! Brings every staged/published vglet volume back after a reboot
//!
//! Not implemented yet (tracked in issue #6). It refuses to run rather than pretend.

use clap::Parser;

/// Brings every staged/published vglet volume back after a reboot
///
/// NOT IMPLEMENTED YET: this stage is planned (reactivate the LVs recorded by the node service, repair staging and publish mounts, and report per volume); running it exits with status 2 and
/// changes nothing on the host.
#[derive(Parser, Debug)]
#[command(version = vglet_common::VERSION)]
struct Args {
    #[command(flatten)]
    log: vglet_common::logging::LogArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init();
    eprintln!(
        "reviver: not implemented yet. When done it will: reactivate the LVs recorded by the node service, repair staging and publish mounts, and report per volume."
    );
    std::process::exit(2);
}
