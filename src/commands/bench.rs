//! `hashrig bench`: mine the synthetic job on every selected device and
//! report each one's hashrate.

use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::bail;
use hashrig::backend::{enumerate, open, selftest, Device};
use hashrig::job::bench::BenchSource;
use hashrig::job::{JobSource, SourceContext};
use hashrig::scheduler::{Scheduler, SchedulerConfig};
use hashrig::shutdown::Shutdown;
use hashrig::stats::{format_hashrate, Stats};
use hashrig::work::WorkSource;

use crate::cli::{select_devices, BenchArgs};

/// How often the status line is printed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

pub fn run(args: &BenchArgs, quiet: bool) -> anyhow::Result<ExitCode> {
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

    // The devices that passed their self-test, in scheduler order.
    let proven: Vec<hashrig::backend::DeviceInfo> =
        devices.iter().map(|d| d.info().clone()).collect();
    let stats = Arc::new(Stats::new(
        devices.iter().map(|d| d.info().label()).collect(),
    ));
    let work = Arc::new(WorkSource::new());
    let shutdown = Shutdown::new();
    let (found_tx, found_rx) = mpsc::channel();

    let mut source = BenchSource;
    let source_ctx = SourceContext {
        work: work.clone(),
        found: found_rx,
        stats: stats.clone(),
        shutdown: shutdown.clone(),
    };
    let source_thread = std::thread::spawn(move || source.run(source_ctx));
    let started = Instant::now();
    let scheduler = Scheduler::start(
        devices,
        work,
        stats.clone(),
        found_tx,
        shutdown.clone(),
        SchedulerConfig {
            batch_time: settings.batch_time,
        },
    );

    let deadline = started + settings.duration;
    let mut next_status = started + STATUS_EVERY;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wake = deadline.min(next_status);
        std::thread::sleep(wake - now);
        if !quiet && Instant::now() >= next_status && Instant::now() < deadline {
            print_status(&stats);
            next_status += STATUS_EVERY;
        }
    }
    shutdown.trigger();
    scheduler.join();
    let seconds = started.elapsed().as_secs_f64();
    if let Ok(Err(e)) = source_thread.join() {
        tracing::warn!("{e}");
    }

    let snapshot = stats.snapshot();
    let mut total = 0.0;
    for (i, device) in snapshot.devices.iter().enumerate() {
        let hashrate = device.nonces as f64 / seconds;
        total += hashrate;
        let info = &proven[i];
        let (backend, name) = (info.backend.to_string(), &info.name);
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
                })
            );
        } else {
            let busy = device
                .device_busy
                .map(|b| format!(", device busy {:.0}%", 100.0 * b))
                .unwrap_or_default();
            println!(
                "{:<7} {:<48} {:>14}  {} nonces in {:.1} s, {} shares, {} hardware errors{busy}",
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

/// Opens each device and runs its self-test; a device that fails either is
/// left out with a clear message, the rest go on.
pub fn open_and_prove(
    devices: &[hashrig::backend::DeviceInfo],
    options: &hashrig::backend::DeviceOptions,
) -> Vec<Box<dyn Device>> {
    let mut out = Vec::new();
    for info in devices {
        let mut device = match open(info, options) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("{} disabled: {e}", info.label());
                continue;
            }
        };
        match selftest::run(device.as_mut()) {
            Ok(()) => {
                tracing::info!("{}: self-test passed", info.label());
                out.push(device);
            }
            Err(e) => tracing::error!("{} disabled: {e}", info.label()),
        }
    }
    out
}

fn print_status(stats: &Stats) {
    let snap = stats.snapshot();
    let parts: Vec<String> = snap
        .devices
        .iter()
        .map(|d| {
            format!(
                "{}: {} (avg {}) A{} R{} S{} HW{}",
                d.name,
                format_hashrate(d.hashrate_5s),
                format_hashrate(d.hashrate_avg),
                d.accepted,
                d.rejected,
                d.stale,
                d.hw_errors
            )
        })
        .collect();
    eprintln!(
        "[{:>6.0}s] total {} | {}",
        snap.uptime_s,
        format_hashrate(snap.total(|d| d.hashrate_5s)),
        parts.join(" | ")
    );
}
