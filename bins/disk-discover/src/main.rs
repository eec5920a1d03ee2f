//! disk-discover: finds the block devices vglet may use and writes a JSON inventory. See
//! `disk-discover --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = disk_discover::Args::parse();
    args.log.init();
    disk_discover::main(args.cli)
}
