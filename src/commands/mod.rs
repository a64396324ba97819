//! What each subcommand does. The library does the work; this is the glue.

mod bench;
mod devices;
mod mine;
mod miner;
mod scan;
mod solo;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_logging(cli.quiet, cli.log.as_deref());
    match cli.command {
        Command::Devices { json } => devices::run(json),
        Command::Bench(args) => bench::run(&args, cli.quiet),
        Command::Scan(args) => scan::run(&args, cli.quiet),
        Command::Mine(args) => mine::run(&args, cli.quiet),
        Command::Solo(args) => solo::run(&args, cli.quiet),
    }
}

fn init_logging(quiet: bool, filter: Option<&str>) {
    // wgpu and naga narrate adapter setup at info level: keep them to warnings.
    let default = if quiet {
        "warn"
    } else {
        "info,wgpu=warn,wgpu_core=warn,wgpu_hal=warn,naga=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
