//! The scheduler joins work to devices: one worker thread per device, each
//! taking its own [`Work`] from the shared [`WorkSource`], scanning it in
//! batches sized to take about `batch_time`, re-hashing every candidate on
//! the CPU and passing verified shares and blocks to the job source.
//!
//! A worker checks the job generation before every batch, so a new job
//! reaches every device within one batch: `batch_time` bounds the lag.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::{selftest, Device};
use crate::control::{Health, RigControl};
use crate::job::{Found, JobSource, JobSourceError, SourceContext};
use crate::pow::header::with_nonce;
use crate::pow::target::{hash_difficulty, meets};
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::work::{Work, WorkSource};

/// How the scheduler runs devices.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Target duration of one batch: the bound on job-switch lag.
    pub batch_time: Duration,
    /// Per device, by scheduler index: its own batch time, if configured.
    pub device_batch_times: Vec<Option<Duration>>,
    /// Enable/disable, thermal pauses and cutoffs, watchdog health.
    pub control: Arc<RigControl>,
    pub watchdog: WatchdogConfig,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            batch_time: Duration::from_millis(100),
            device_batch_times: Vec::new(),
            control: Arc::new(RigControl::default()),
            watchdog: WatchdogConfig::default(),
        }
    }
}

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

/// Batches over which hardware errors are counted.
pub const HW_WINDOW: usize = 64;

/// What the CPU made of a device's candidate nonce.
#[derive(Debug)]
pub enum Verdict {
    /// Meets the share target, the block target, or both.
    Found(Found),
    /// Passes the kernel's top-word test but not the full 256-bit target:
    /// correct, and worth nothing.
    Miss,
    /// Does not even pass the top-word test: the device computed wrong.
    HardwareError { top_word: u32 },
}

/// Re-hashes a candidate on the CPU with rust-bitcoin, independent of every
/// backend, and classifies it.
pub fn verify(work: &Arc<Work>, nonce: u32, device: usize) -> Verdict {
    use bitcoin::hashes::Hash;
    let hash = with_nonce(&work.header, nonce).block_hash();
    let bytes = hash.to_byte_array();
    let top_word = u32::from_le_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]);
    if top_word > work.kernel.target_top {
        return Verdict::HardwareError { top_word };
    }
    let is_share = meets(&hash, &work.job.share_target);
    let is_block = meets(&hash, &work.job.block_target());
    if !is_share && !is_block {
        return Verdict::Miss;
    }
    Verdict::Found(Found {
        work: work.clone(),
        nonce,
        hash,
        is_share,
        is_block,
        difficulty: hash_difficulty(&hash),
        device,
    })
}

/// The running device workers.
pub struct Scheduler {
    workers: Vec<JoinHandle<()>>,
    watchdog: Option<JoinHandle<()>>,
}

/// What a worker shows the watchdog thread: when its current batch began
/// (nanoseconds since the scheduler started, 0 when idle) and how long it
/// should take.
#[derive(Debug, Default)]
struct Beat {
    batch_started_ns: AtomicU64,
    expected_ns: AtomicU64,
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

/// Marks a device sick and says so.
fn mark_sick(control: &RigControl, hook: &Option<String>, index: usize, name: &str, why: &str) {
    let health = control.mark_sick(index);
    match health {
        Health::Failed => {
            tracing::error!("{name}: {why} again after a reset: taken out of rotation")
        }
        _ => tracing::warn!("{name}: {why}: sick, will be reset"),
    }
    run_hook(hook, index, name, health);
}

impl Scheduler {
    /// Starts `source` on its own thread and the devices on its work, joined
    /// by the channel that carries what they find back to the source (which
    /// submits it). The source sees the same `RigControl` as the devices.
    pub fn start_with_source(
        mut source: Box<dyn JobSource>,
        devices: Vec<Box<dyn Device>>,
        work: Arc<WorkSource>,
        stats: Arc<Stats>,
        shutdown: Shutdown,
        config: SchedulerConfig,
    ) -> (Self, JoinHandle<Result<(), JobSourceError>>) {
        let (found_tx, found_rx) = std::sync::mpsc::channel();
        let ctx = SourceContext {
            work: work.clone(),
            found: found_rx,
            stats: stats.clone(),
            shutdown: shutdown.clone(),
            control: config.control.clone(),
        };
        let source = std::thread::spawn(move || source.run(ctx));
        let scheduler = Scheduler::start(devices, work, stats, found_tx, shutdown, config);
        (scheduler, source)
    }

    /// Starts one worker per device. Device `i` is counted in `stats` as
    /// device `i`.
    pub fn start(
        devices: Vec<Box<dyn Device>>,
        work: Arc<WorkSource>,
        stats: Arc<Stats>,
        found: Sender<Found>,
        shutdown: Shutdown,
        config: SchedulerConfig,
    ) -> Self {
        let origin = Instant::now();
        let beats: Arc<Vec<Beat>> = Arc::new((0..devices.len()).map(|_| Beat::default()).collect());
        let names: Vec<String> = devices.iter().map(|d| d.info().label()).collect();
        let workers = devices
            .into_iter()
            .enumerate()
            .map(|(index, device)| {
                let worker = Worker {
                    index,
                    device,
                    work: work.clone(),
                    stats: stats.clone(),
                    found: found.clone(),
                    shutdown: shutdown.clone(),
                    batch_time: config
                        .device_batch_times
                        .get(index)
                        .copied()
                        .flatten()
                        .unwrap_or(config.batch_time),
                    control: config.control.clone(),
                    watchdog: config.watchdog.clone(),
                    beats: beats.clone(),
                    origin,
                };
                std::thread::Builder::new()
                    .name(format!("device-{index}"))
                    .spawn(move || worker.run())
            })
            .filter_map(|spawned| match spawned {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::error!("could not start a device thread: {e}");
                    None
                }
            })
            .collect();
        let watchdog = {
            let (control, shutdown, dog) =
                (config.control.clone(), shutdown.clone(), config.watchdog);
            std::thread::Builder::new()
                .name("watchdog".into())
                .spawn(move || watch_batches(&beats, &names, &control, &dog, &shutdown, origin))
                .ok()
        };
        Scheduler { workers, watchdog }
    }

    /// Waits for every worker to finish (after the shutdown signal). A
    /// worker stuck in a hung device is given up on after a while, so the
    /// miner still exits.
    pub fn join(self) {
        for worker in self.workers {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !worker.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if worker.is_finished() {
                let _ = worker.join();
            } else {
                tracing::error!("a device did not finish its batch within 30 s; leaving it");
            }
        }
        if let Some(dog) = self.watchdog {
            let _ = dog.join();
        }
    }
}

/// The watchdog thread: a batch running far past its expected length makes
/// its device sick while it is still stuck, without waiting for it.
fn watch_batches(
    beats: &[Beat],
    names: &[String],
    control: &RigControl,
    dog: &WatchdogConfig,
    shutdown: &Shutdown,
    origin: Instant,
) {
    let mut flagged = vec![0u64; beats.len()];
    while !shutdown.wait_timeout(Duration::from_millis(100)) {
        let now = origin.elapsed().as_nanos() as u64;
        for (index, beat) in beats.iter().enumerate() {
            let started = beat.batch_started_ns.load(Ordering::SeqCst);
            if started == 0 || flagged[index] == started {
                continue;
            }
            let expected = Duration::from_nanos(beat.expected_ns.load(Ordering::SeqCst));
            let limit = (expected * dog.slow_factor).max(dog.slow_floor);
            let running = Duration::from_nanos(now.saturating_sub(started));
            if running > limit {
                flagged[index] = started;
                let why = format!("a batch has run {running:.1?}, over its {limit:.1?} limit");
                mark_sick(control, &dog.on_sick, index, &names[index], &why);
            }
        }
    }
}

struct Worker {
    index: usize,
    device: Box<dyn Device>,
    work: Arc<WorkSource>,
    stats: Arc<Stats>,
    found: Sender<Found>,
    shutdown: Shutdown,
    batch_time: Duration,
    control: Arc<RigControl>,
    watchdog: WatchdogConfig,
    beats: Arc<Vec<Beat>>,
    origin: Instant,
}

/// The nonce range is 2^32.
const NONCE_SPACE: u64 = 1 << 32;

impl Worker {
    fn run(mut self) {
        let label = self.device.info().label();
        let granularity = self.device.granularity().max(1);
        // Start small; the first batches grow it to the batch time.
        let mut batch = granularity.max(1 << 16).div_ceil(granularity) * granularity;
        let mut current: Option<Arc<Work>> = None;
        let mut next_nonce: u64 = 0;
        let mut last_generation = 0;
        let mut hw_window: VecDeque<u32> = VecDeque::with_capacity(HW_WINDOW);
        while !self.shutdown.is_triggered() {
            if !self.control.may_run(self.index) {
                self.shutdown.wait_timeout(Duration::from_millis(100));
                continue;
            }
            let stale = current.as_ref().is_none_or(|w| {
                w.job.generation != self.work.generation() || next_nonce >= NONCE_SPACE
            });
            if stale {
                current = self
                    .work
                    .wait_for_work(&self.shutdown, Duration::from_millis(500));
                if let Some(w) = &current {
                    if w.job.generation != last_generation {
                        last_generation = w.job.generation;
                        self.stats.record_job_switch(w.published_at.elapsed());
                    }
                }
                next_nonce = 0;
                continue;
            }
            let Some(work) = current.clone() else {
                continue;
            };
            let count = batch
                .min(candidate_cap(work.kernel.target_top, granularity))
                .min(NONCE_SPACE - next_nonce);
            let started = Instant::now();
            let beat = &self.beats[self.index];
            let expected = self.batch_time.mul_f64(count as f64 / batch as f64);
            beat.expected_ns
                .store(expected.as_nanos() as u64, Ordering::SeqCst);
            beat.batch_started_ns.store(
                (started.duration_since(self.origin).as_nanos() as u64).max(1),
                Ordering::SeqCst,
            );
            let scanned = self.device.scan(&work.kernel, next_nonce as u32, count);
            beat.batch_started_ns.store(0, Ordering::SeqCst);
            let candidates = match scanned {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{label}: taken out of rotation: {e}");
                    return;
                }
            };
            let elapsed = started.elapsed();
            // Batches are sized on wall time, which is what bounds the lag
            // of a job switch; the device's own measure of its busy time
            // shows how much of that wall time is host overhead.
            let busy = self.device.busy_time();
            if let Some(busy) = busy {
                self.stats.record_busy(self.index, busy, elapsed);
            }
            tracing::trace!("{label}: {count} nonces in {elapsed:?} (device busy {busy:?})");
            self.stats.record_hashes(self.index, count, Instant::now());
            next_nonce += count;
            let mut hw_errors = 0u32;
            for nonce in candidates {
                match verify(&work, nonce, self.index) {
                    Verdict::Found(found) => {
                        // Blocks are counted by the job source, which knows
                        // whether a block is new (on regtest every other
                        // nonce solves the same parent).
                        self.stats.record_share_difficulty(found.difficulty);
                        if self.found.send(found).is_err() {
                            tracing::debug!("{label}: job source gone; stopping");
                            return;
                        }
                    }
                    Verdict::Miss => {}
                    Verdict::HardwareError { top_word } => {
                        hw_errors += 1;
                        self.stats.record_hw_error(self.index);
                        tracing::warn!(
                            "{label}: hardware error: nonce {nonce} reported, but its hash's top word is {top_word:#010x} > {:#010x}",
                            work.kernel.target_top
                        );
                    }
                }
            }
            if hw_window.len() == HW_WINDOW {
                hw_window.pop_front();
            }
            hw_window.push_back(hw_errors);
            if hw_window.iter().sum::<u32>() >= self.watchdog.hw_errors {
                hw_window.clear();
                let why = format!(
                    "{} hardware errors in {HW_WINDOW} batches",
                    self.watchdog.hw_errors
                );
                mark_sick(
                    &self.control,
                    &self.watchdog.on_sick,
                    self.index,
                    &label,
                    &why,
                );
            }
            if self.control.health(self.index) == Health::Sick {
                self.reset(&label);
                current = None;
                continue;
            }
            if count == batch {
                batch = tune_batch(batch, elapsed, self.batch_time, granularity);
            }
            let pause = self.control.pause(self.index);
            if !pause.is_zero() {
                self.shutdown.wait_timeout(pause);
            }
        }
    }

    /// The watchdog's one reset: the backend's own, then the self-test.
    fn reset(&mut self, label: &str) {
        let result = self
            .device
            .reset()
            .map_err(|e| e.to_string())
            .and_then(|()| selftest::run(self.device.as_mut()).map_err(|e| e.to_string()));
        self.control.record_reset(self.index);
        match result {
            Ok(()) => tracing::info!("{label}: reset and passed its self-test"),
            Err(e) => {
                let why = format!("reset failed ({e})");
                mark_sick(
                    &self.control,
                    &self.watchdog.on_sick,
                    self.index,
                    label,
                    &why,
                );
            }
        }
    }
}

/// Candidates a batch should expect at most: GPU found-buffers hold a few
/// hundred, and an overflowing range is re-scanned in halves.
const EXPECTED_CANDIDATES: f64 = 32.0;

/// The largest batch whose expected candidates stay within
/// [`EXPECTED_CANDIDATES`] for a kernel target top word. Without it, a very
/// easy target (regtest's nBits: every other nonce) would overflow every
/// launch and send the device into ever smaller re-scans; with it, a batch
/// returns quickly with what it found. Real share and block targets are
/// far below the cap.
pub fn candidate_cap(target_top: u32, granularity: u64) -> u64 {
    let per_nonce = (f64::from(target_top) + 1.0) / NONCE_SPACE as f64;
    let cap = (EXPECTED_CANDIDATES / per_nonce) as u64;
    (cap / granularity).max(1) * granularity
}

/// The next batch size: scaled toward `target` duration, at most doubling or
/// halving per step (one slow batch must not collapse it), a multiple of
/// `granularity`, within `granularity ..= 2^32`.
pub fn tune_batch(batch: u64, elapsed: Duration, target: Duration, granularity: u64) -> u64 {
    let ratio = if elapsed.is_zero() {
        2.0
    } else {
        (target.as_secs_f64() / elapsed.as_secs_f64()).clamp(0.5, 2.0)
    };
    let wanted = (batch as f64 * ratio) as u64;
    let rounded = (wanted / granularity).max(1) * granularity;
    rounded
        .min(NONCE_SPACE / granularity * granularity)
        .max(granularity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn easy_targets_cap_the_batch() {
        // Regtest: half the nonces are candidates.
        assert_eq!(candidate_cap(0x7fff_ffff, 1), 64);
        assert_eq!(candidate_cap(0x7fff_ffff, 256), 256);
        // Difficulty 1 (top word 0): no practical cap.
        assert!(candidate_cap(0, 256) >= 1 << 37);
    }

    #[test]
    fn batch_tuning_converges_and_is_bounded() {
        let g = 256;
        let target = Duration::from_millis(100);
        assert_eq!(tune_batch(1024, Duration::from_millis(10), target, g), 2048);
        assert_eq!(
            tune_batch(1024, Duration::from_millis(1000), target, g),
            512
        );
        assert_eq!(
            tune_batch(1024, Duration::from_millis(100), target, g),
            1024
        );
        assert_eq!(tune_batch(256, Duration::from_secs(10), target, g), 256);
        assert_eq!(tune_batch(1 << 32, Duration::ZERO, target, g), 1 << 32);
    }
}
