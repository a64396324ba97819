//! The scheduler joins work to devices: one worker thread per device, each
//! taking its own [`Work`] from the shared [`WorkSource`], scanning it in
//! batches sized to take about `batch_time`, re-hashing every candidate on
//! the CPU and offering verified shares and blocks to the [`FoundSink`],
//! which the job source drains.
//!
//! A worker checks the job generation before every batch, so a new job
//! reaches every device within one batch: `batch_time` bounds the lag.

mod watchdog;

pub use watchdog::WatchdogConfig;

use crate::error_chain::Chain;
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::{selftest, Device};
use crate::control::{Health, RigControl};
use crate::found::journal::FoundBlockLog;
use crate::found::{verify, FoundProducer, FoundSink, Verdict, SINK_CAPACITY};
use crate::job::source::{JobSource, JobSourceError, SourceContext};
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::work::{Work, WorkSource};
use watchdog::{mark_sick, watch_batches, Beat, Phase};

/// How the scheduler runs devices.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Target duration of one batch: the bound on job-switch lag.
    pub batch_time: Duration,
    /// Per device, by scheduler index: its own batch time, if configured.
    pub device_batch_times: Vec<Option<Duration>>,
    /// Enable/disable, thermal pauses and cutoffs, watchdog health.
    pub control: Arc<RigControl>,
    /// When a device counts as sick, and what to run when one fails.
    pub watchdog: WatchdogConfig,
    /// Where blocks are written the moment they are verified.
    pub found_blocks: Option<Arc<FoundBlockLog>>,
    /// Once stopping, how long devices may take to finish and the job
    /// source to submit what they found (`--shutdown-grace`).
    pub shutdown_grace: Duration,
}

/// The default `--shutdown-grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            batch_time: Duration::from_millis(100),
            device_batch_times: Vec::new(),
            control: Arc::new(RigControl::default()),
            watchdog: WatchdogConfig::default(),
            found_blocks: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Batches over which hardware errors are counted.
pub const HW_WINDOW: usize = 64;

/// The running device workers.
pub struct Scheduler {
    workers: Vec<JoinHandle<()>>,
    watchdog: Option<JoinHandle<()>>,
    shutdown: Shutdown,
    grace: Duration,
}

impl Scheduler {
    /// Starts `source` on its own thread and the devices on its work, joined
    /// by the sink that carries what they find back to the source (which
    /// submits it). The source sees the same `RigControl` as the devices.
    pub fn start_with_source(
        mut source: Box<dyn JobSource>,
        devices: Vec<Box<dyn Device>>,
        work: Arc<WorkSource>,
        stats: Arc<Stats>,
        shutdown: Shutdown,
        config: SchedulerConfig,
    ) -> (Self, JoinHandle<Result<(), JobSourceError>>) {
        let sink = FoundSink::new(SINK_CAPACITY, config.found_blocks.clone(), stats.clone());
        let ctx = SourceContext {
            work: work.clone(),
            found: sink.clone(),
            stats: stats.clone(),
            shutdown: shutdown.clone(),
            control: config.control.clone(),
            grace: config.shutdown_grace,
        };
        let scheduler = Scheduler::start(devices, work, stats, &sink, shutdown, config);
        let source = std::thread::spawn(move || source.run(ctx));
        (scheduler, source)
    }

    /// Starts one worker per device, each with its own producer of `sink`.
    /// Device `i` is counted in `stats` as device `i`.
    pub fn start(
        devices: Vec<Box<dyn Device>>,
        work: Arc<WorkSource>,
        stats: Arc<Stats>,
        sink: &FoundSink,
        shutdown: Shutdown,
        config: SchedulerConfig,
    ) -> Self {
        let origin = Instant::now();
        let beats: Arc<Vec<Beat>> = Arc::new((0..devices.len()).map(|_| Beat::default()).collect());
        let names: Vec<String> = devices.iter().map(|d| d.info().label()).collect();
        if devices.is_empty() {
            sink.close();
        }
        let workers = devices
            .into_iter()
            .enumerate()
            .map(|(index, device)| {
                let worker = Worker {
                    index,
                    device,
                    work: work.clone(),
                    stats: stats.clone(),
                    found: sink.producer(),
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
            let (control, stop, dog) = (config.control.clone(), shutdown.clone(), config.watchdog);
            std::thread::Builder::new()
                .name("watchdog".into())
                .spawn(move || watch_batches(&beats, &names, &control, &dog, &stop, origin))
                .ok()
        };
        Scheduler {
            workers,
            watchdog,
            shutdown,
            grace: config.shutdown_grace,
        }
    }

    /// Waits for every worker to finish its batch (after the shutdown
    /// signal), until the grace period from the signal is over: a worker
    /// stuck in a hung device is left behind, so the miner still exits.
    pub fn join(self) {
        let deadline = self.shutdown.triggered_at().unwrap_or_else(Instant::now) + self.grace;
        while self.workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut stuck = 0;
        for worker in self.workers {
            if worker.is_finished() {
                let _ = worker.join();
            } else {
                stuck += 1;
            }
        }
        if stuck > 0 {
            tracing::error!(
                "{stuck} device(s) did not finish their batch within {:?}; leaving them",
                self.grace
            );
        }
        if let Some(dog) = self.watchdog {
            let _ = dog.join();
        }
    }
}

struct Worker {
    index: usize,
    device: Box<dyn Device>,
    work: Arc<WorkSource>,
    stats: Arc<Stats>,
    found: FoundProducer,
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
                current = self.fresh_work(&mut last_generation);
                next_nonce = 0;
                continue;
            }
            let Some(mut work) = current.clone() else {
                continue;
            };
            // Its block found, a parent whose block target is easier than
            // the share target (regtest, test networks) has nothing more to
            // give than shares: look for shares only, at full speed.
            if work.hunts_block() && self.found.is_solved(&work.job) {
                work = Arc::new(work.shares_only());
                current = Some(work.clone());
            }
            let count = batch
                .min(candidate_cap(work.kernel.target_top, granularity))
                .min(NONCE_SPACE - next_nonce);
            let started = Instant::now();
            let expected = self.batch_time.mul_f64(count as f64 / batch as f64);
            let candidates = match self.scan(&work, next_nonce, count, expected) {
                Ok(c) => c,
                Err(e) => {
                    // Handed to the watchdog's rule: reset once, then out.
                    self.sick(&label, &format!("scan failed: {}", Chain(&e)));
                    if self.control.health(self.index) == Health::Sick {
                        self.reset(&label);
                    }
                    current = None;
                    continue;
                }
            };
            let elapsed = started.elapsed();
            self.count_batch(&label, count, elapsed);
            next_nonce += count;
            let hw_errors = self.check(&work, candidates, &label);
            self.count_hw_errors(&mut hw_window, hw_errors, &label);
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

    /// The newest work, waited for a while; a new job's switch time is
    /// recorded the first time this device sees it.
    fn fresh_work(&self, last_generation: &mut u64) -> Option<Arc<Work>> {
        let work = self
            .work
            .wait_for_work(&self.shutdown, Duration::from_millis(500))?;
        if work.job.generation != *last_generation {
            *last_generation = work.job.generation;
            self.stats.record_job_switch(work.published_at.elapsed());
        }
        Some(work)
    }

    /// Counts a finished batch's nonces, and its device time where the
    /// device measures it.
    fn count_batch(&self, label: &str, count: u64, elapsed: Duration) {
        // Batches are sized on wall time, which is what bounds the lag
        // of a job switch; the device's own measure of its busy time
        // shows how much of that wall time is host overhead.
        let busy = self.device.busy_time();
        if let Some(busy) = busy {
            self.stats.record_busy(self.index, busy, elapsed);
        }
        tracing::trace!("{label}: {count} nonces in {elapsed:?} (device busy {busy:?})");
        self.stats.record_hashes(self.index, count, Instant::now());
    }

    /// One batch, watched by the watchdog.
    fn scan(
        &mut self,
        work: &Work,
        start: u64,
        count: u64,
        expected: Duration,
    ) -> Result<Vec<u32>, crate::backend::DeviceError> {
        let beat = &self.beats[self.index];
        beat.begin(self.origin, expected, Phase::Scanning);
        let scanned = self.device.scan(&work.kernel, start as u32, count);
        beat.end();
        scanned
    }

    fn sick(&self, label: &str, why: &str) {
        mark_sick(
            &self.control,
            &self.watchdog.on_sick,
            self.index,
            label,
            why,
        );
    }

    /// Too many hardware errors over the last [`HW_WINDOW`] batches make the
    /// device sick.
    fn count_hw_errors(&self, window: &mut VecDeque<u32>, hw_errors: u32, label: &str) {
        if window.len() == HW_WINDOW {
            window.pop_front();
        }
        window.push_back(hw_errors);
        if window.iter().sum::<u32>() >= self.watchdog.hw_errors {
            window.clear();
            let why = format!(
                "{} hardware errors in {HW_WINDOW} batches",
                self.watchdog.hw_errors
            );
            self.sick(label, &why);
        }
    }

    /// Re-hashes a batch's candidates on the CPU and offers what they are
    /// worth to the sink; returns the hardware errors among them.
    fn check(&self, work: &Arc<Work>, candidates: Vec<u32>, label: &str) -> u32 {
        let mut hw_errors = 0;
        for nonce in candidates {
            match verify(work, nonce, self.index) {
                Verdict::Found(found) => {
                    self.stats.record_share_difficulty(found.difficulty);
                    self.found.offer(found);
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
        hw_errors
    }

    /// The watchdog's one reset: the backend's own, then the self-test,
    /// watched like a batch (a hang here fails the device).
    fn reset(&mut self, label: &str) {
        let beat = &self.beats[self.index];
        self.control.begin_reset(self.index);
        beat.begin(self.origin, self.watchdog.slow_floor, Phase::Resetting);
        let result = self
            .device
            .reset()
            .and_then(|()| selftest::run(self.device.as_mut()));
        beat.end();
        match result {
            Ok(()) if self.control.health(self.index) == Health::Failed => {
                tracing::warn!("{label}: reset and passed its self-test, too late: it stays out")
            }
            Ok(()) => {
                self.control.reset_passed(self.index);
                tracing::info!("{label}: reset and passed its self-test");
            }
            Err(e) => self.sick(label, &format!("reset failed ({})", Chain(&e))),
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
