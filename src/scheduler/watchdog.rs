//! The watchdog: a batch running far past its expected length makes its
//! device sick while it is still stuck (the worker resets it once after);
//! one that never ends, a reset or self-test past its limit, or a device
//! misbehaving again after its reset, fails it for good. Other devices are
//! never held up.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::control::{Health, RigControl};
use crate::shutdown::Shutdown;

/// When a device is sick: reset once, then taken out of rotation.
#[derive(Debug, Clone)]
pub struct WatchdogConfig {
    /// A batch this many times longer than its tuned length is sick...
    pub slow_factor: u32,
    /// ...and at least this long (first batches and tiny batch times).
    pub slow_floor: Duration,
    /// Hardware errors within the last [`HW_WINDOW`] batches that make a
    /// device sick.
    pub hw_errors: u32,
    /// Run with `sh -c` when a device turns sick or fails, with
    /// `HASHRIG_DEVICE`, `HASHRIG_DEVICE_NAME` and `HASHRIG_HEALTH` set.
    pub on_sick: Option<String>,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            slow_factor: 20,
            slow_floor: Duration::from_secs(10),
            hw_errors: 8,
            on_sick: None,
        }
    }
}

/// What a worker is busy with, for the watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    Scanning = 0,
    /// Resetting the device and proving it again: a hang here is final.
    Resetting = 1,
}

/// What a worker shows the watchdog thread: when its current batch (or
/// reset) began (nanoseconds since the scheduler started, 0 when idle), how
/// long it should take, and which it is.
#[derive(Debug, Default)]
pub(super) struct Beat {
    batch_started_ns: AtomicU64,
    expected_ns: AtomicU64,
    phase: AtomicU8,
}

impl Beat {
    pub(super) fn begin(&self, origin: Instant, expected: Duration, phase: Phase) {
        self.expected_ns
            .store(expected.as_nanos() as u64, Ordering::SeqCst);
        self.phase.store(phase as u8, Ordering::SeqCst);
        self.batch_started_ns.store(
            (origin.elapsed().as_nanos() as u64).max(1),
            Ordering::SeqCst,
        );
    }

    pub(super) fn end(&self) {
        self.batch_started_ns.store(0, Ordering::SeqCst);
    }
}

/// Runs the operator's hook for a device that turned sick or failed.
fn run_hook(hook: &Option<String>, index: usize, name: &str, health: Health) {
    let Some(command) = hook else {
        return;
    };
    let health = format!("{health:?}").to_lowercase();
    match std::process::Command::new("sh")
        .args(["-c", command])
        .env("HASHRIG_DEVICE", index.to_string())
        .env("HASHRIG_DEVICE_NAME", name)
        .env("HASHRIG_HEALTH", &health)
        .spawn()
    {
        // Reaped on its own thread: a slow hook never blocks mining.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => tracing::error!("--on-sick {command:?}: {e}"),
    }
}

/// Marks a device sick (failed, if it was reset before) and says so.
pub(super) fn mark_sick(
    control: &RigControl,
    hook: &Option<String>,
    index: usize,
    name: &str,
    why: &str,
) {
    let health = control.mark_sick(index);
    control.set_health_reason(index, why);
    match health {
        Health::Failed => {
            tracing::error!("{name}: {why} again after a reset: taken out of rotation")
        }
        _ => tracing::warn!("{name}: {why}: sick, will be reset"),
    }
    run_hook(hook, index, name, health);
}

/// Takes a device out of rotation for good and says so.
pub(super) fn mark_failed(
    control: &RigControl,
    hook: &Option<String>,
    index: usize,
    name: &str,
    why: &str,
) {
    control.mark_failed(index);
    control.set_health_reason(index, why);
    tracing::error!("{name}: {why}: taken out of rotation");
    run_hook(hook, index, name, Health::Failed);
}

/// A batch still running this many times past its limit is given up on:
/// the device is hung, not slow.
const HUNG_FACTOR: u32 = 3;

/// The watchdog thread: a batch running far past its expected length makes
/// its device sick while it is still stuck, without waiting for it; one
/// that never ends, or a reset or self-test past its limit, fails it.
pub(super) fn watch_batches(
    beats: &[Beat],
    names: &[String],
    control: &RigControl,
    dog: &WatchdogConfig,
    shutdown: &Shutdown,
    origin: Instant,
) {
    // Per device: the start of the batch last acted on, and what was done.
    let mut acted: Vec<(u64, Health)> = vec![(0, Health::Healthy); beats.len()];
    while !shutdown.wait_timeout(Duration::from_millis(100)) {
        let now = origin.elapsed().as_nanos() as u64;
        for (index, beat) in beats.iter().enumerate() {
            let started = beat.batch_started_ns.load(Ordering::SeqCst);
            if started == 0 {
                continue;
            }
            let (acted_on, done) = acted[index];
            let done = if acted_on == started {
                done
            } else {
                Health::Healthy
            };
            if done == Health::Failed {
                continue;
            }
            let expected = Duration::from_nanos(beat.expected_ns.load(Ordering::SeqCst));
            let limit = (expected * dog.slow_factor).max(dog.slow_floor);
            let running = Duration::from_nanos(now.saturating_sub(started));
            let resetting = beat.phase.load(Ordering::SeqCst) == Phase::Resetting as u8;
            let name = &names[index];
            if resetting && running > limit {
                let why = format!(
                    "a reset and self-test has run {running:.1?}, over its {limit:.1?} limit"
                );
                mark_failed(control, &dog.on_sick, index, name, &why);
                acted[index] = (started, Health::Failed);
            } else if running > limit * HUNG_FACTOR {
                let why = format!("a batch has hung for {running:.1?}");
                mark_failed(control, &dog.on_sick, index, name, &why);
                acted[index] = (started, Health::Failed);
            } else if running > limit && done == Health::Healthy {
                let why = format!("a batch has run {running:.1?}, over its {limit:.1?} limit");
                mark_sick(control, &dog.on_sick, index, name, &why);
                acted[index] = (started, Health::Sick);
            }
        }
    }
}
