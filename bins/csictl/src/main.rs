use clap::Parser;

fn main() -> std::process::ExitCode {
    csictl::run(csictl::cli::Cli::parse())
}
