//! `hashrig bench`: mine the synthetic job on every selected device and
//! report each one's hashrate.

use std::process::ExitCode;
use std::sync::Arc;

use hashrig::backend::Shape;
use hashrig::job::bench::BenchSource;
use hashrig::stats::format_hashrate;

use super::miner::{self, Run};
use crate::cli::BenchArgs;

pub fn run(
    args: &BenchArgs,
    quiet: bool,
    signals: &super::signals::Signals,
) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let tunings = miner::load_tunings(args.devices.tuning_path().as_deref());
    let devices = miner::open_devices_tuned(&args.devices, tunings.as_ref())?;

    // The devices that passed their self-test, in scheduler order, with
    // the shape each runs and whether it is the stored tuning.
    let proven: Vec<hashrig::backend::DeviceInfo> =
        devices.iter().map(|d| d.info().clone()).collect();
    let shapes: Vec<(Option<Shape>, bool)> = devices
        .iter()
        .map(|d| {
            let shape = d.shape();
            let stored = tunings
                .as_ref()
                .and_then(|t| t.find(d.info()))
                .map(|t| t.shape);
            (shape, shape.is_some() && shape == stored)
        })
        .collect();
    let stats = Arc::new(miner::stats_for(&devices));
    let outcome = miner::run(Run {
        devices,
        source: Box::new(BenchSource),
        stats,
        duration: Some(settings.duration),
        batch_time: settings.batch_time,
        rig: settings.rig.clone(),
        quiet,
        json_events: false,
        found_blocks: None,
        shutdown_grace: hashrig::scheduler::DEFAULT_SHUTDOWN_GRACE,
        signals: signals.clone(),
        source_kind: hashrig::api::cgminer::SourceKind::Bench,
    })?;
    outcome.result()?;
    let seconds = outcome.seconds;
    let snapshot = outcome.snapshot;
    let mut total = 0.0;
    for (i, device) in snapshot.devices.iter().enumerate() {
        let hashrate = device.nonces as f64 / seconds;
        total += hashrate;
        let info = &proven[i];
        let (backend, name) = (info.backend.to_string(), &info.name);
        let (shape, tuned) = shapes[i];
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "backend": backend,
                    "device": name,
                    "index": info.index,
                    "hashrate": hashrate,
                    "nonces": device.nonces,
                    "seconds": seconds,
                    "hw_errors": device.hw_errors,
                    "shares": device.accepted,
                    "device_busy": device.device_busy,
                    "shape": shape,
                    "tuned": tuned,
                })
            );
        } else {
            let busy = device
                .device_busy
                .map(|b| format!(", device busy {:.0}%", 100.0 * b))
                .unwrap_or_default();
            let shape = shape
                .map(|s| {
                    let source = if tuned { "tuned" } else { "untuned" };
                    format!(", {} ({source})", s.describe(info.backend))
                })
                .unwrap_or_default();
            println!(
                "{:<7} {:<48} {:>14}  {} nonces in {:.1} s, {} shares, {} hardware errors{busy}{shape}",
                backend,
                name,
                format_hashrate(hashrate),
                device.nonces,
                seconds,
                device.accepted,
                device.hw_errors
            );
        }
    }
    if !args.json && snapshot.devices.len() > 1 {
        println!("{:<7} {:<48} {:>14}", "total", "", format_hashrate(total));
    }
    Ok(ExitCode::SUCCESS)
}
