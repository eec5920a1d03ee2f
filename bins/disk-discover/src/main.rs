//! Finds the block devices vglet may use and writes a JSON inventory
//!
//! Not implemented yet (tracked in issue #3). It refuses to run rather than pretend.

use clap::Parser;

/// Finds the block devices vglet may use and writes a JSON inventory
///
/// NOT IMPLEMENTED YET: this stage is planned (select block devices by glob/regex, skip every device that is in use or holds data (with the reason), and write a versioned JSON inventory for vg-init); running it exits with status 2 and
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
        "disk-discover: not implemented yet. When done it will: select block devices by glob/regex, skip every device that is in use or holds data (with the reason), and write a versioned JSON inventory for vg-init."
    );
    std::process::exit(2);
}
