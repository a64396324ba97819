//! The long-running part shared by `bench`, `mine` and `solo`: devices,
//! scheduler and job source started together, a status line every few
//! seconds, and a clean stop on the deadline, on Ctrl-C / SIGTERM, when the
//! job source gives up, or when every device has failed.
//!
//! Stopping goes in one order, within one grace period from the signal:
//! devices finish their batch, the job source drains what they found and
//! submits what it can, then the process exits, whatever the pool or node
//! does.

use hashrig::error_chain::Chain;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::process::ExitCode;

use anyhow::Context;
use hashrig::api::cgminer::{self, SourceKind};
use hashrig::backend::tuning::TuningFile;
use hashrig::backend::{open, selftest, Device, DeviceInfo, DeviceOptions};
use hashrig::control::RigControl;
use hashrig::found::journal::FoundBlockLog;
use hashrig::job::source::{JobSource, JobSourceError};
use hashrig::scheduler::{Scheduler, SchedulerConfig, WatchdogConfig};
use hashrig::shutdown::Shutdown;
use hashrig::stats::Stats;
use hashrig::work::WorkSource;

use super::outcome::Outcome;
use super::report::{print_status, print_summary, status_json, summary_json};
use super::signals::Signals;
use crate::cli::{select_devices, DeviceChoice, RunSettings};
use crate::failure::Failure;

/// How often the status line is printed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// One mining run.
pub struct RigRun {
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
    /// SIGINT/SIGTERM stop it; SIGHUP re-reads its API keys.
    pub signals: Signals,
    /// Where jobs come from, as the cgminer API reports pools.
    pub source_kind: SourceKind,
}

/// Enumerates, selects, opens and proves the devices the settings ask
/// for, in their stored tunings.
pub fn open_devices(args: &DeviceChoice) -> anyhow::Result<Vec<Box<dyn Device>>> {
    open_devices_tuned(args, load_tunings(args.tuning_file.as_deref()).as_ref())
}

/// [`open_devices`] with tunings already read (`bench` reports them too).
pub fn open_devices_tuned(
    args: &DeviceChoice,
    tunings: Option<&TuningFile>,
) -> anyhow::Result<Vec<Box<dyn Device>>> {
    let inventory = crate::cli::inventory(args);
    for note in &inventory.notes {
        tracing::info!("{note}");
    }
    let selected = select_devices(args, &inventory)?;
    let devices = open_and_prove(&selected.devices, &selected.options, tunings);
    if devices.is_empty() {
        return Err(Failure::Devices(
            "every selected device failed to open or failed its self-test".into(),
        )
        .into());
    }
    Ok(devices)
}

/// Opens each device and runs its self-test; a device that fails either is
/// left out with a clear message, the rest go on.
fn open_and_prove(
    devices: &[hashrig::backend::DeviceInfo],
    options: &hashrig::backend::DeviceOptions,
    tunings: Option<&TuningFile>,
) -> Vec<Box<dyn Device>> {
    let mut out = Vec::new();
    for info in devices {
        let options = tuned_options(info, options, tunings);
        let mut device = match open(info, &options) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("{} disabled: {}", info.label(), Chain(&e));
                continue;
            }
        };
        match selftest::run(device.as_mut()) {
            Ok(()) => {
                tracing::info!("{}: self-test passed", info.label());
                out.push(device);
            }
            Err(e) => tracing::error!("{} disabled: {}", info.label(), Chain(&e)),
        }
    }
    out
}

/// The stored tunings, or none (with the reason logged): a damaged tuning
/// file costs speed, never the run.
pub fn load_tunings(path: Option<&std::path::Path>) -> Option<TuningFile> {
    let path = path?;
    match TuningFile::load(path) {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::warn!(
                "{}; mining on default shapes (`hashrig tune --reset` clears it)",
                Chain(&e)
            );
            None
        }
    }
}

/// A device's options with its stored tuning filling what the flags left
/// open; says when a GPU-backend device has none.
fn tuned_options(
    info: &DeviceInfo,
    options: &DeviceOptions,
    tunings: Option<&TuningFile>,
) -> DeviceOptions {
    let Some(tuning) = tunings.and_then(|t| t.find(info)) else {
        tracing::info!(
            "{}: no stored tuning for this device, driver and kernel; default shape (`hashrig tune` measures the best one)",
            info.label()
        );
        return options.clone();
    };
    let shape = &tuning.shape;
    tracing::info!(
        "{}: tuned shape {} (measured {})",
        info.label(),
        shape.describe(info.backend),
        hashrig::stats::format_hashrate(tuning.hashrate)
    );
    DeviceOptions {
        cpu_path: options.cpu_path.or(shape.cpu_path),
        kernel_variant: options.kernel_variant.or(Some(shape.variant)),
        worksize: options.worksize.or(Some(shape.worksize as usize)),
        vectors: options.vectors.or(Some(shape.vectors)),
        vulkan_nonces: options.vulkan_nonces.or(Some(shape.nonces)),
        ..options.clone()
    }
}

/// Where a `mine` or `solo` run's jobs come from.
pub struct Feed {
    pub source: Box<dyn JobSource>,
    /// What the cgminer API reports its pools to be.
    pub kind: SourceKind,
    /// The source's pools (or node), for the per-pool counters.
    pub pools: Vec<String>,
}

/// `mine` and `solo`: mines from `feed` on the chosen devices until the
/// run ends, then prints the summary.
pub fn mine_from(
    feed: Feed,
    devices: &DeviceChoice,
    run: &RunSettings,
    rig: &crate::cli::RigSettings,
    quiet: bool,
    signals: &Signals,
) -> anyhow::Result<ExitCode> {
    let Feed {
        source,
        kind: source_kind,
        pools,
    } = feed;
    let found_blocks = FoundBlockLog::open(&run.found_blocks).with_context(|| {
        format!(
            "found-blocks file {}: cannot open for appending",
            run.found_blocks.display()
        )
    })?;
    let devices = open_devices(devices)?;
    tracing::info!(
        "found blocks are written to {} before submission",
        run.found_blocks.display()
    );
    let stats = Arc::new(stats_for(&devices).with_pools(pools));
    let outcome = self::run(RigRun {
        devices,
        source,
        stats,
        duration: run.duration,
        batch_time: run.batch_time,
        rig: rig.clone(),
        quiet,
        json_events: run.json,
        found_blocks: Some(Arc::new(found_blocks)),
        shutdown_grace: run.shutdown_grace,
        signals: signals.clone(),
        source_kind,
    })?;
    if run.json {
        println!("{}", summary_json(&outcome));
    }
    if !quiet {
        print_summary(&outcome);
    }
    outcome.result()
}

/// Counters for these devices, which know their PCI slots.
pub fn stats_for(devices: &[Box<dyn Device>]) -> Stats {
    Stats::new(devices.iter().map(|d| d.info().label()).collect()).with_bus_ids(
        devices
            .iter()
            .map(|d| d.info().pci_bus_id.clone())
            .collect(),
    )
}

/// What the cgminer API's `devdetails` says of each device.
fn device_details(devices: &[Box<dyn Device>]) -> Vec<cgminer::DeviceDetails> {
    devices
        .iter()
        .map(|d| {
            let info = d.info();
            cgminer::DeviceDetails {
                name: info.name.clone(),
                driver: info.backend.to_string(),
                kernel: d
                    .shape()
                    .map_or_else(|| "cpu".to_owned(), |s| s.describe(info.backend)),
                pci_bus_id: info.pci_bus_id.clone(),
            }
        })
        .collect()
}

/// The scheduler's settings for these devices: controls (with the config
/// file's per-device overrides applied), batch times, watchdog.
fn scheduler_config(infos: &[DeviceInfo], pools: usize, run: &RigRun) -> SchedulerConfig {
    let rig = &run.rig;
    let control = Arc::new(RigControl::new(infos.len(), pools));
    let mut device_batch_times = vec![None; infos.len()];
    for o in &rig.device_overrides {
        if !infos.iter().any(|d| d.index == o.index) {
            tracing::warn!(
                "config [[device]] index {}: not among the devices mining; ignored",
                o.index
            );
        }
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

pub fn run(mut run: RigRun) -> anyhow::Result<Outcome> {
    let devices = std::mem::take(&mut run.devices);
    let infos: Vec<DeviceInfo> = devices.iter().map(|d| d.info().clone()).collect();
    let details = device_details(&devices);
    let scheduler = scheduler_config(&infos, run.stats.snapshot().pools.len(), &run);
    let RigRun {
        source,
        stats,
        duration,
        batch_time,
        rig,
        quiet,
        json_events,
        shutdown_grace,
        signals,
        source_kind,
        ..
    } = run;
    let control = scheduler.control.clone();
    let shutdown = signals.shutdown.clone();
    let servers = Servers::start(&rig, &stats, &control, details, source_kind, &signals)?;
    watch_temperatures(&infos, &control, &rig, batch_time, &shutdown);
    let started = Instant::now();
    let (scheduler, source_thread) = Scheduler::start_with_source(
        source,
        devices,
        Arc::new(WorkSource::new()),
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
    let source_error = join_source(source_thread, stop_deadline, shutdown_grace);
    servers.join_until(stop_deadline + Duration::from_secs(2));
    if control.restart_requested() {
        super::request_restart();
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

/// Why the job source ended, if it failed; `None` too when it outlives
/// the grace period (it is left behind, and says so).
fn join_source(
    source_thread: std::thread::JoinHandle<Result<(), JobSourceError>>,
    stop_deadline: Instant,
    grace: Duration,
) -> Option<String> {
    match join_until(source_thread, stop_deadline + Duration::from_secs(1)) {
        Err(()) => {
            tracing::error!(
                "the job source did not stop within the {grace:?} grace period; leaving it"
            );
            None
        }
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(e))) => Some(Chain(&e).to_string()),
        Ok(Err(_)) => Some("the job source crashed".into()),
    }
}

/// The rig's API servers, each started when the settings ask for it.
struct Servers {
    api: Option<hashrig::api::ApiServer>,
    cgminer: Option<cgminer::CgminerApi>,
}

impl Servers {
    fn start(
        rig: &crate::cli::RigSettings,
        stats: &Arc<Stats>,
        control: &Arc<RigControl>,
        devices: Vec<cgminer::DeviceDetails>,
        source: SourceKind,
        signals: &Signals,
    ) -> anyhow::Result<Self> {
        let shutdown = &signals.shutdown;
        let api = match rig.api.clone() {
            Some(config) => {
                let bind = config.bind;
                signals.reload_on_hangup(config.keys.clone());
                Some(
                    hashrig::api::start(config, stats.clone(), control.clone(), shutdown.clone())
                        .with_context(|| format!("--api-bind {bind}"))?,
                )
            }
            None => None,
        };
        let cgminer = match rig.cgminer_api.clone() {
            Some(config) => {
                let bind = config.bind;
                let context = cgminer::Context {
                    stats: stats.clone(),
                    control: control.clone(),
                    devices,
                    source,
                    description: format!("hashrig {}", env!("CARGO_PKG_VERSION")),
                };
                Some(
                    cgminer::start(config, context, shutdown.clone())
                        .with_context(|| format!("--cgminer-api {bind}"))?,
                )
            }
            None => None,
        };
        Ok(Servers { api, cgminer })
    }

    /// Waits for both to stop, each until `deadline`; one that does not is
    /// left behind.
    fn join_until(self, deadline: Instant) {
        if let Some(api) = self.api {
            if !api.join_until(deadline) {
                tracing::warn!("the API server did not stop in time; leaving it");
            }
        }
        if let Some(api) = self.cgminer {
            if !api.join_until(deadline) {
                tracing::warn!("the cgminer API did not stop in time; leaving it");
            }
        }
    }
}

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
