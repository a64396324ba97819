//! `hashrig bench`: mine the synthetic job on every selected device and
//! report each one's hashrate.

use std::process::ExitCode;
use std::sync::Arc;

use hashrig::backend::{DeviceInfo, Shape};
use hashrig::job::synthetic::SyntheticSource;
use hashrig::stats::{format_hashrate, DeviceSnapshot};

use super::rig_run::{self, RigRun};
use crate::cli::BenchSettings;

pub fn run(
    settings: &BenchSettings,
    quiet: bool,
    signals: &super::signals::Signals,
) -> anyhow::Result<ExitCode> {
    let tunings = rig_run::load_tunings(settings.devices.tuning_file.as_deref());
    let devices = rig_run::open_devices_tuned(&settings.devices, tunings.as_ref())?;
    // The devices that passed their self-test, in scheduler order.
    let benched: Vec<Benched> = devices
        .iter()
        .map(|d| {
            let shape = d.shape();
            let stored = tunings
                .as_ref()
                .and_then(|t| t.find(d.info()))
                .map(|t| t.shape);
            Benched {
                info: d.info().clone(),
                shape,
                tuned: shape.is_some() && shape == stored,
            }
        })
        .collect();
    let stats = Arc::new(rig_run::stats_for(&devices));
    let outcome = rig_run::run(RigRun {
        devices,
        source: Box::new(SyntheticSource),
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
    let mut total = 0.0;
    for (device, counted) in benched.iter().zip(&outcome.snapshot.devices) {
        let hashrate = counted.nonces as f64 / seconds;
        total += hashrate;
        if settings.json {
            println!("{}", device.json(counted, hashrate, seconds));
        } else {
            println!("{}", device.line(counted, hashrate, seconds));
        }
    }
    if !settings.json && benched.len() > 1 {
        println!("{:<7} {:<48} {:>14}", "total", "", format_hashrate(total));
    }
    Ok(ExitCode::SUCCESS)
}

/// A device that passed its self-test, with the shape it runs and whether
/// that is its stored tuning.
struct Benched {
    info: DeviceInfo,
    shape: Option<Shape>,
    tuned: bool,
}

impl Benched {
    /// `--json`'s object for it.
    fn json(&self, counted: &DeviceSnapshot, hashrate: f64, seconds: f64) -> serde_json::Value {
        serde_json::json!({
            "backend": self.info.backend.to_string(),
            "device": self.info.name,
            "index": self.info.index,
            "hashrate": hashrate,
            "nonces": counted.nonces,
            "seconds": seconds,
            "hw_errors": counted.hw_errors,
            "shares": counted.accepted,
            "device_busy": counted.device_busy,
            "shape": self.shape,
            "tuned": self.tuned,
        })
    }

    /// Its line of the table.
    fn line(&self, counted: &DeviceSnapshot, hashrate: f64, seconds: f64) -> String {
        let busy = counted
            .device_busy
            .map(|b| format!(", device busy {:.0}%", 100.0 * b))
            .unwrap_or_default();
        let shape = self
            .shape
            .map(|s| {
                let source = if self.tuned { "tuned" } else { "untuned" };
                format!(", {} ({source})", s.describe(self.info.backend))
            })
            .unwrap_or_default();
        format!(
            "{:<7} {:<48} {:>14}  {} nonces in {:.1} s, {} shares, {} hardware errors{busy}{shape}",
            self.info.backend.to_string(),
            self.info.name,
            format_hashrate(hashrate),
            counted.nonces,
            seconds,
            counted.accepted,
            counted.hw_errors
        )
    }
}
