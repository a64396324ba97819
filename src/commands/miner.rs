//! The long-running part shared by `bench`, `mine` and `solo`: devices,
//! scheduler and job source started together, a status line every few
//! seconds, and a clean stop on the deadline, on Ctrl-C / SIGTERM, when the
//! job source gives up, or when every device has failed.
//!
//! Stopping goes in one order, within one grace period from the signal:
//! devices finish their batch, the job source drains what they found and
//! submits what it can, then the process exits, whatever the pool or node
//! does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::process::ExitCode;

use anyhow::{bail, Context};
use hashrig::backend::{enumerate, open, selftest, Device, DeviceInfo};
use hashrig::control::RigControl;
use hashrig::found::journal::FoundBlockLog;
use hashrig::job::source::JobSource;
use hashrig::scheduler::{Scheduler, SchedulerConfig, WatchdogConfig};
use hashrig::shutdown::Shutdown;
use hashrig::stats::{format_difficulty, format_hashrate, Snapshot, Stats};
use hashrig::work::WorkSource;

use crate::cli::{select_devices, DeviceArgs, RunSettings};

/// How often the status line is printed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// One mining run.
pub struct Run {
    pub devices: Vec<Box<dyn Device>>,
    pub source: Box<dyn JobSource>,
    pub stats: Arc<Stats>,
    pub duration: Option<Duration>,
    pub batch_time: Duration,
    /// API, thermal limits, watchdog hook, per-device overrides.
    pub rig: crate::cli::RigSettings,
    pub quiet: bool,
    /// Status events as JSON lines on standard output (`--json`).
    pub json_events: bool,
    /// Where blocks are written the moment they are verified.
    pub found_blocks: Option<Arc<FoundBlockLog>>,
    pub shutdown_grace: Duration,
}

/// What a run leaves.
pub struct Outcome {
    pub snapshot: Snapshot,
    /// Time to a share and to a block, energy and cost, at the end.
    pub estimates: hashrig::stats::Estimates,
    pub seconds: f64,
    /// Why the job source stopped on its own, if it did.
    pub source_error: Option<String>,
    /// Every device failed: which, and why.
    pub devices_failed: Option<String>,
}

/// Enumerates, selects, opens and proves the devices the flags ask for.
pub fn open_devices(args: &DeviceArgs) -> anyhow::Result<Vec<Box<dyn Device>>> {
    let inventory = enumerate(&args.backend.backends());
    for note in &inventory.notes {
        tracing::info!("{note}");
    }
    let selected = select_devices(args, &inventory)?;
    let devices = open_and_prove(&selected.devices, &selected.options);
    if devices.is_empty() {
        bail!("every selected device failed to open or failed its self-test");
    }
    Ok(devices)
}

/// Opens each device and runs its self-test; a device that fails either is
/// left out with a clear message, the rest go on.
fn open_and_prove(
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

/// `mine` and `solo`: mines from `source` on the flags' devices until the
/// run ends, then prints the summary. `pools` names the source's pools (or
/// node) for the per-pool counters.
pub fn mine_from(
    source: Box<dyn JobSource>,
    pools: Vec<String>,
    devices: &DeviceArgs,
    run: &RunSettings,
    rig: &crate::cli::RigSettings,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let devices = open_devices(devices)?;
    tracing::info!(
        "found blocks are written to {} before submission",
        run.found_blocks.path().display()
    );
    let stats =
        Arc::new(Stats::new(devices.iter().map(|d| d.info().label()).collect()).with_pools(pools));
    let outcome = self::run(Run {
        devices,
        source,
        stats,
        duration: run.duration,
        batch_time: run.batch_time,
        rig: rig.clone(),
        quiet,
        json_events: run.json,
        found_blocks: Some(run.found_blocks.clone()),
        shutdown_grace: run.shutdown_grace,
    })?;
    if run.json {
        println!("{}", summary_json(&outcome));
    }
    if !quiet {
        print_summary(&outcome);
    }
    outcome.result()
}

impl Outcome {
    /// Failure if every device failed or the job source gave up.
    pub fn result(&self) -> anyhow::Result<ExitCode> {
        if let Some(failed) = &self.devices_failed {
            bail!("every device failed: {failed}");
        }
        if let Some(e) = &self.source_error {
            bail!("{e}");
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Installs the Ctrl-C / SIGTERM handler once per process.
fn stop_on_signal(shutdown: &Shutdown) {
    let shutdown = shutdown.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        eprintln!("stopping…");
        shutdown.trigger();
    }) {
        tracing::debug!("no signal handler: {e}");
    }
}

/// The scheduler's settings for these devices: controls (with the config
/// file's per-device overrides applied), batch times, watchdog.
fn scheduler_config(infos: &[DeviceInfo], pools: usize, run: &Run) -> SchedulerConfig {
    let rig = &run.rig;
    let control = Arc::new(RigControl::new(infos.len(), pools));
    let mut device_batch_times = vec![None; infos.len()];
    for o in &rig.device_overrides {
        for (i, info) in infos.iter().enumerate().filter(|(_, d)| d.index == o.index) {
            if o.enabled == Some(false) {
                tracing::info!("{}: disabled by the config file", info.label());
                let _ = control.set_enabled(i, false);
            }
            device_batch_times[i] = o.batch_ms.map(Duration::from_millis);
        }
    }
    SchedulerConfig {
        batch_time: run.batch_time,
        device_batch_times,
        control,
        watchdog: WatchdogConfig {
            on_sick: rig.on_sick.clone(),
            ..WatchdogConfig::default()
        },
        found_blocks: run.found_blocks.clone(),
        shutdown_grace: run.shutdown_grace,
    }
}

/// Which devices failed, and why, for the exit message.
fn failed_devices(infos: &[DeviceInfo], control: &RigControl) -> String {
    infos
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let why = control
                .health_reason(i)
                .unwrap_or_else(|| "no reason given".into());
            format!("{} ({why})", info.label())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn run(mut run: Run) -> anyhow::Result<Outcome> {
    let devices = std::mem::take(&mut run.devices);
    let infos: Vec<DeviceInfo> = devices.iter().map(|d| d.info().clone()).collect();
    let scheduler = scheduler_config(&infos, run.stats.snapshot().pools.len(), &run);
    let Run {
        source,
        stats,
        duration,
        batch_time,
        rig,
        quiet,
        json_events,
        shutdown_grace,
        ..
    } = run;
    let control = scheduler.control.clone();
    let work = Arc::new(WorkSource::new());
    let shutdown = Shutdown::new();
    stop_on_signal(&shutdown);
    let api = match rig.api.clone() {
        Some(config) => {
            let bind = config.bind;
            Some(
                hashrig::api::start(config, stats.clone(), control.clone(), shutdown.clone())
                    .with_context(|| format!("--api-bind {bind}"))?,
            )
        }
        None => None,
    };
    watch_temperatures(&infos, &control, &rig, batch_time, &shutdown);
    let started = Instant::now();
    let (scheduler, source_thread) = Scheduler::start_with_source(
        source,
        devices,
        work,
        stats.clone(),
        shutdown.clone(),
        scheduler,
    );

    let devices_failed = wait_for_the_end(
        &Watched {
            infos: &infos,
            stats: &stats,
            control: &control,
            source: &source_thread,
            shutdown: &shutdown,
        },
        duration.map(|d| started + d),
        json_events,
        quiet,
    );
    // Devices first; the source drains what they found, within the grace
    // period from this moment; then the process goes, whatever is left.
    shutdown.trigger();
    let stop_deadline = shutdown.triggered_at().unwrap_or_else(Instant::now) + shutdown_grace;
    scheduler.join();
    let seconds = started.elapsed().as_secs_f64();
    let source_error = join_until(source_thread, stop_deadline + Duration::from_secs(1))
        .map_err(|()| {
            tracing::error!(
                "the job source did not stop within the {shutdown_grace:?} grace period; leaving it"
            );
        })
        .ok()
        .and_then(|joined| match joined {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("the job source crashed".into()),
        });
    if let Some(api) = api {
        if !api.join_until(stop_deadline + Duration::from_secs(2)) {
            tracing::warn!("the API server did not stop in time; leaving it");
        }
    }
    let snapshot = stats.snapshot();
    let estimates = hashrig::stats::estimate(
        &snapshot,
        rig.power_watts,
        control.measured_power(),
        rig.kwh_price,
    );
    Ok(Outcome {
        snapshot,
        estimates,
        seconds,
        source_error,
        devices_failed,
    })
}

/// Starts the thermal controller when the devices have sensors.
fn watch_temperatures(
    infos: &[DeviceInfo],
    control: &Arc<RigControl>,
    rig: &crate::cli::RigSettings,
    batch_time: Duration,
    shutdown: &Shutdown,
) {
    let limits = rig.thermal;
    match hashrig::thermal::system_sensor(infos) {
        Some(sensor) => {
            let names = infos.iter().map(DeviceInfo::label).collect();
            let _ = hashrig::thermal::spawn(
                control.clone(),
                sensor,
                limits,
                names,
                batch_time,
                Duration::from_secs(2),
                shutdown.clone(),
            );
        }
        None if limits.target_c.is_some() || limits.cutoff_c.is_some() => {
            tracing::warn!("no temperature sensors for these devices: --temp-target/--temp-cutoff have no effect");
        }
        None => {}
    }
}

/// What the main thread watches while the rig runs.
struct Watched<'a> {
    infos: &'a [DeviceInfo],
    stats: &'a Stats,
    control: &'a RigControl,
    source: &'a std::thread::JoinHandle<Result<(), hashrig::job::source::JobSourceError>>,
    shutdown: &'a Shutdown,
}

/// Prints the status every few seconds until the deadline, a stop signal,
/// the source's end, or every device failed (then returns which, and why).
fn wait_for_the_end(
    rig: &Watched<'_>,
    deadline: Option<Instant>,
    json_events: bool,
    quiet: bool,
) -> Option<String> {
    let mut next_status = Instant::now() + STATUS_EVERY;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) || rig.shutdown.is_triggered() {
            return None;
        }
        if rig.source.is_finished() {
            return None;
        }
        if rig.control.all_failed() {
            let failed = failed_devices(rig.infos, rig.control);
            tracing::error!("every device failed: {failed}; stopping");
            return Some(failed);
        }
        let now = Instant::now();
        let mut wake = (now + Duration::from_millis(100)).min(next_status);
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        rig.shutdown
            .wait_timeout(wake.saturating_duration_since(now));
        if Instant::now() >= next_status && deadline.is_none_or(|d| Instant::now() < d) {
            let snapshot = rig.stats.snapshot();
            if json_events {
                println!("{}", status_json(&snapshot, rig.control));
            }
            if !quiet {
                print_status(&snapshot, rig.control);
            }
            next_status += STATUS_EVERY;
        }
    }
}

/// Joins `thread` if it finishes by `deadline`; `Err(())` if it does not.
fn join_until<T>(
    thread: std::thread::JoinHandle<T>,
    deadline: Instant,
) -> Result<std::thread::Result<T>, ()> {
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(thread.join())
}

fn print_status(snap: &Snapshot, control: &RigControl) {
    let parts: Vec<String> = snap
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let temperature = control
                .readings(i)
                .temperature_c
                .map(|t| format!(" {t:.0}°C"))
                .unwrap_or_default();
            let state = match control.state(i) {
                "mining" => String::new(),
                other => format!(" [{other}]"),
            };
            format!(
                "{}: {} (avg {}) A{} R{} S{} HW{}{temperature}{state}",
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
    let pool = snap
        .pools
        .iter()
        .find(|p| p.active)
        .map(|p| {
            let latency = p
                .latency_ms
                .map(|ms| format!(", {ms:.0} ms"))
                .unwrap_or_default();
            format!(
                " | {} {}{latency}, pool sees {}",
                p.name,
                if p.connected { "up" } else { "DOWN" },
                format_hashrate(p.effective_hashrate)
            )
        })
        .unwrap_or_default();
    let rate_1m = snap.total(|d| d.hashrate_1m);
    let share = match (snap.share_difficulty, snap.network_difficulty) {
        (Some(d), None) => hashrig::stats::expected_seconds(d, rate_1m)
            .map(|s| {
                format!(
                    " | difficulty {}, a share every ~{}",
                    format_difficulty(d),
                    format_duration(s)
                )
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    let network = snap
        .network_difficulty
        .map(|d| {
            let eta = hashrig::stats::expected_seconds(d, snap.total(|d| d.hashrate_1m))
                .map(format_duration)
                .unwrap_or_else(|| "-".into());
            format!(
                " | network difficulty {}, a block every ~{eta}",
                format_difficulty(d)
            )
        })
        .unwrap_or_default();
    eprintln!(
        "[{:>6.0}s] total {}{pool}{share}{network} | {}",
        snap.uptime_s,
        format_hashrate(snap.total(|d| d.hashrate_5s)),
        parts.join(" | ")
    );
}

/// Seconds as the largest sensible unit: `42 s`, `3.5 h`, `12.0 days`.
fn format_duration(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.1} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s if s < 63_072_000.0 => format!("{:.1} days", s / 86_400.0),
        s => format!("{:.1} years", s / 31_557_600.0),
    }
}

/// A status event for `--json`: totals, the pool, and each device.
fn status_json(snap: &Snapshot, control: &RigControl) -> serde_json::Value {
    let devices: Vec<serde_json::Value> = snap
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            serde_json::json!({
                "name": d.name,
                "state": control.state(i),
                "hashrate_5s": d.hashrate_5s,
                "hashrate_avg": d.hashrate_avg,
                "accepted": d.accepted,
                "rejected": d.rejected,
                "stale": d.stale,
                "hw_errors": d.hw_errors,
                "sensors": control.readings(i),
            })
        })
        .collect();
    let pool = snap.pools.iter().find(|p| p.active);
    serde_json::json!({
        "event": "status",
        "uptime_s": snap.uptime_s,
        "hashrate_5s": snap.total(|d| d.hashrate_5s),
        "pool": pool.map(|p| &p.name),
        "pool_connected": pool.map(|p| p.connected),
        "pool_latency_ms": pool.and_then(|p| p.latency_ms),
        "network_difficulty": snap.network_difficulty,
        "devices": devices,
    })
}

/// The final summary of a `mine` or `solo` run, as one JSON object.
pub fn summary_json(outcome: &Outcome) -> serde_json::Value {
    let snap = &outcome.snapshot;
    serde_json::json!({
        "event": "summary",
        "seconds": outcome.seconds,
        "hashrate": snap.total(|d| d.nonces as f64) / outcome.seconds.max(1e-9),
        "pool_hashrate": snap.pools.iter().map(|p| p.effective_hashrate).fold(0.0, |a, b| a + b),
        "accepted": snap.count(|d| d.accepted),
        "rejected": snap.count(|d| d.rejected),
        "stale": snap.count(|d| d.stale),
        "hw_errors": snap.count(|d| d.hw_errors),
        "dropped": snap.count(|d| d.dropped),
        "throttled": snap.pool_count(|p| p.throttled),
        "unanswered": snap.pool_count(|p| p.unanswered),
        "blocks": snap.count(|d| d.blocks),
        "blocks_accepted": snap.pool_count(|p| p.blocks_accepted),
        "blocks_rejected": snap.pool_count(|p| p.blocks_rejected + p.blocks_stale),
        "best_share": snap.best_share,
        "devices": snap.devices,
        "pools": snap.pools,
        "estimates": outcome.estimates,
        "error": outcome.devices_failed.as_ref().map(|f| format!("every device failed: {f}")).or(outcome.source_error.clone()),
    })
}

/// The final summary for people.
pub fn print_summary(outcome: &Outcome) {
    let snap = &outcome.snapshot;
    let total: f64 = snap.total(|d| d.nonces as f64) / outcome.seconds.max(1e-9);
    eprintln!(
        "mined {:.0} s at {} on average; best share difficulty {}",
        outcome.seconds,
        format_hashrate(total),
        format_difficulty(snap.best_share)
    );
    let e = &outcome.estimates;
    if let Some(s) = e.seconds_to_share {
        eprintln!(
            "  a share every ~{} at the last minute's hashrate",
            format_duration(s)
        );
    }
    if let Some(s) = e.seconds_to_block {
        eprintln!(
            "  a block every ~{} at the last minute's hashrate",
            format_duration(s)
        );
    }
    if let (Some(kwh), Some(cost)) = (e.kwh_per_day, e.cost_per_day) {
        eprintln!("  energy {kwh:.1} kWh a day, costing {cost:.2} a day");
    }
    for d in &snap.devices {
        let dropped = match d.dropped {
            0 => String::new(),
            n => format!(", {n} shares dropped (the job source fell behind)"),
        };
        eprintln!(
            "  {}: {} avg, accepted {}, rejected {}, stale {}, hardware errors {}, blocks {}{dropped}",
            d.name,
            format_hashrate(d.hashrate_avg),
            d.accepted,
            d.rejected,
            d.stale,
            d.hw_errors,
            d.blocks
        );
    }
    for p in &snap.pools {
        let mut extra = String::new();
        if p.blocks_submitted > 0 {
            extra += &format!(
                ", blocks accepted {} of {}",
                p.blocks_accepted, p.blocks_submitted
            );
        }
        for (n, what) in [
            (p.throttled, "over the submission cap"),
            (p.unanswered, "never answered"),
            (p.bad_messages, "bad messages skipped"),
        ] {
            if n > 0 {
                extra += &format!(", {n} {what}");
            }
        }
        eprintln!(
            "  {}: accepted {}, rejected {}, stale {}{extra}, pool-effective {}{}",
            p.name,
            p.accepted,
            p.rejected,
            p.stale,
            format_hashrate(p.effective_hashrate),
            p.last_reject
                .as_ref()
                .map(|r| format!(", last rejection: {r}"))
                .unwrap_or_default()
        );
    }
}
