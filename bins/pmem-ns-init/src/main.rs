//! Carves NVDIMM regions into fsdax/sector namespaces for vglet
//!
//! Not implemented yet (tracked in issue #4). It refuses to run rather than pretend.

use clap::Parser;

/// Carves NVDIMM regions into fsdax/sector namespaces for vglet
///
/// NOT IMPLEMENTED YET: this stage is planned (carve each NVDIMM region into fsdax and sector namespaces named by vglet, idempotently, and write a JSON result for disk-discover); running it exits with status 2 and
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
        "pmem-ns-init: not implemented yet. When done it will: carve each NVDIMM region into fsdax and sector namespaces named by vglet, idempotently, and write a JSON result for disk-discover."
    );
    std::process::exit(2);
}
