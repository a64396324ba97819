//! What each subcommand does. The library does the work; this is the glue.

mod bench;
mod devices;
mod found_blocks;
mod mine;
mod outcome;
mod report;
mod rig_run;
mod scan;
mod signals;

pub use signals::hold_hangup;
mod solo;
mod tune;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::ArgMatches;

use crate::cli::config::{self, Config};
use crate::cli::{ApiKeyCommand, Cli, Invocation};

/// Set when the operator asked (cgminer API `restart`) for the process to
/// start again once it has stopped cleanly.
static RESTART: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn request_restart() {
    RESTART.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether `main` should run the same command line again.
pub fn restart_requested() -> bool {
    RESTART.load(std::sync::atomic::Ordering::SeqCst)
}

/// Runs a parsed command line; `matches` tells which flags were given, so
/// that they override the config file. `driver_settings` are the
/// environment variables `main` set for the drivers, for the log.
pub fn run(cli: Cli, matches: &ArgMatches, driver_settings: &[String]) -> anyhow::Result<ExitCode> {
    init_logging(cli.quiet, cli.log.as_deref(), cli.log_file.as_deref())?;
    for setting in driver_settings {
        tracing::debug!("driver setting: {setting}");
    }
    let config = config::load_given_or_default(cli.config.as_deref())?;
    let sub = matches.subcommand().map(|(_, m)| m).unwrap_or(matches);
    let quiet = cli.quiet;
    let invocation = Invocation::new(cli.command, sub, config.as_ref())?;
    // Only the long-running commands handle SIGHUP (`signals::install`);
    // the others get its default back.
    if !matches!(
        invocation,
        Invocation::Bench(_) | Invocation::Mine(_) | Invocation::Solo(_)
    ) {
        signals::release_hangup();
    }
    match invocation {
        Invocation::Devices(settings) => devices::run(&settings),
        Invocation::Bench(settings) => bench::run(&settings, quiet, &signals::install()?),
        Invocation::Scan(settings) => scan::run(&settings, quiet),
        Invocation::Tune(settings) => tune::run(&settings, quiet),
        Invocation::Mine(settings) => mine::run(settings, quiet, &signals::install()?),
        Invocation::Solo(settings) => solo::run(settings, quiet, &signals::install()?),
        Invocation::ApiKey(command) => api_key(command),
        Invocation::CheckConfig(file) => check_config(&file),
        Invocation::FoundBlocks(settings) => found_blocks::submit(&settings),
    }
}

/// `hashrig config check FILE`: the file as a start would take it, shown
/// with its secrets masked.
fn check_config(file: &Path) -> anyhow::Result<ExitCode> {
    let checked: Config = config::load(file)?;
    checked.check_as_start()?;
    print!("{}", checked.masked());
    eprintln!("{}: valid", file.display());
    Ok(ExitCode::SUCCESS)
}

fn api_key(command: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    use hashrig::api::keys::{new_key, revoke_key};
    match command {
        ApiKeyCommand::New {
            keys_file,
            name,
            scope,
            expires,
        } => {
            let now = hashrig::found::journal::unix_now();
            let token = new_key(&keys_file, &name, scope, expires.as_deref(), now)?;
            println!("{token}");
            eprintln!(
                "key {name:?} ({scope:?}) added to {}; this is the only time it is shown",
                keys_file.display()
            );
        }
        ApiKeyCommand::Revoke { keys_file, name } => {
            revoke_key(&keys_file, &name)?;
            eprintln!("key {name:?} removed from {}", keys_file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging(quiet: bool, filter: Option<&str>, file: Option<&Path>) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // wgpu and naga narrate adapter setup at info level: keep them to warnings.
    let default = if quiet {
        "warn"
    } else {
        "info,wgpu=warn,wgpu_core=warn,wgpu_hal=warn,naga=warn"
    };
    let make_filter = || {
        tracing_subscriber::EnvFilter::try_new(filter.unwrap_or(default))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(make_filter());
    let file_layer = match file {
        Some(path) => {
            let log = hashrig::untrusted_files::open_append(path)
                .with_context(|| format!("--log-file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::sync::Mutex::new(log))
                    .with_ansi(false)
                    .with_target(false)
                    .with_filter(make_filter()),
            )
        }
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init();
    Ok(())
}
