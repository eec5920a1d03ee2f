//! Creates, extends and tags vglet's LVM volume groups from an inventory
//!
//! Not implemented yet (tracked in issue #3). It refuses to run rather than pretend.

use clap::Parser;

/// Creates, extends and tags vglet's LVM volume groups from an inventory
///
/// NOT IMPLEMENTED YET: this stage is planned (create or extend the local or lvmlockd-shared VG from the inventory, tag it, start its lockspace, optionally create a thin pool; idempotent); running it exits with status 2 and
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
        "vg-init: not implemented yet. When done it will: create or extend the local or lvmlockd-shared VG from the inventory, tag it, start its lockspace, optionally create a thin pool; idempotent."
    );
    std::process::exit(2);
}
