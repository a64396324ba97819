//! The scheduler joins work to devices: one worker thread per device, each
//! taking its own [`Work`] from the shared [`WorkSource`], scanning it in
//! batches sized to take about `batch_time`, re-hashing every candidate on
//! the CPU and passing verified shares and blocks to the job source.
//!
//! A worker checks the job generation before every batch, so a new job
//! reaches every device within one batch: `batch_time` bounds the lag.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::Device;
use crate::job::Found;
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
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            batch_time: Duration::from_millis(100),
        }
    }
}

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
}

impl Scheduler {
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
                    batch_time: config.batch_time,
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
        Scheduler { workers }
    }

    /// Waits for every worker to finish (after the shutdown signal).
    pub fn join(self) {
        for worker in self.workers {
            let _ = worker.join();
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
        while !self.shutdown.is_triggered() {
            let stale = current.as_ref().is_none_or(|w| {
                w.job.generation != self.work.generation() || next_nonce >= NONCE_SPACE
            });
            if stale {
                current = self
                    .work
                    .wait_for_work(&self.shutdown, Duration::from_millis(500));
                next_nonce = 0;
                continue;
            }
            let Some(work) = current.clone() else {
                continue;
            };
            let count = batch.min(NONCE_SPACE - next_nonce);
            let started = Instant::now();
            let candidates = match self.device.scan(&work.kernel, next_nonce as u32, count) {
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
                        self.stats.record_hw_error(self.index);
                        tracing::warn!(
                            "{label}: hardware error: nonce {nonce} reported, but its hash's top word is {top_word:#010x} > {:#010x}",
                            work.kernel.target_top
                        );
                    }
                }
            }
            if count == batch {
                batch = tune_batch(batch, elapsed, self.batch_time, granularity);
            }
        }
    }
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
