//! pmem-ns-init: carves NVDIMM regions into fsdax/sector namespaces for vglet. See
//! `pmem-ns-init --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = pmem_ns_init::Args::parse();
    args.log.init();
    pmem_ns_init::main(args.cli)
}
