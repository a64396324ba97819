//! `hashrig mine`: mine on a Stratum V1 pool until stopped.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use hashrig::backend::enumerate;
use hashrig::job::stratum::StratumSource;
use hashrig::stats::Stats;

use super::bench::open_and_prove;
use super::miner::{self, Run};
use crate::cli::{select_devices, MineArgs};

pub fn run(args: &MineArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let inventory = enumerate(&args.devices.backend.backends());
    for note in &inventory.notes {
        tracing::info!("{note}");
    }
    let selected = select_devices(&args.devices, &inventory)?;
    let devices = open_and_prove(&selected.devices, &selected.options);
    if devices.is_empty() {
        bail!("every selected device failed to open or failed its self-test");
    }
    tracing::info!(
        "found blocks are written to {} before submission",
        settings.run.found_blocks.path().display()
    );
    let stats = Arc::new(
        Stats::new(devices.iter().map(|d| d.info().label()).collect()).with_pools(
            settings
                .stratum
                .pools
                .iter()
                .map(|p| p.url.to_string())
                .collect(),
        ),
    );
    let outcome = miner::run(Run {
        devices,
        source: Box::new(StratumSource::new(settings.stratum.clone())),
        stats,
        duration: settings.run.duration,
        batch_time: settings.run.batch_time,
        rig: settings.rig.clone(),
        quiet,
        json_events: settings.run.json,
        goal: None,
    })?;
    if settings.run.json {
        println!("{}", miner::summary_json(&outcome));
    }
    if !quiet {
        miner::print_summary(&outcome);
    }
    if let Some(e) = outcome.source_error {
        bail!("{e}");
    }
    Ok(ExitCode::SUCCESS)
}
