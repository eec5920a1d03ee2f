//! reviver: after a reboot or crash, brings back every volume the node service recorded.
//! See `reviver --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = reviver::Args::parse();
    args.log.init();
    reviver::main(args)
}
