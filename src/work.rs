//! WorkSource: turns the current [`Job`] into disjoint [`Work`] units.
//!
//! Every call to [`WorkSource::next_work`] hands out a header no one else
//! has: extranonce2 is rolled first, then the BIP 310 version bits the job
//! allows, then ntime up to the job's limit. A device owns the whole 2^32
//! nonce range of its work unit, so two devices never hash the same header
//! and nonce.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::job::Job;
use crate::pow::header::header_bytes;
use crate::pow::merkle::merkle_root_from_branch;
use crate::pow::KernelWork;
use crate::shutdown::Shutdown;
use bitcoin::block::{Header, Version};

/// One concrete header with the nonce left open, and what built it.
#[derive(Debug, Clone)]
pub struct Work {
    pub(crate) job: Arc<Job>,
    /// The extranonce this device rolls.
    pub extranonce2: Vec<u8>,
    /// The block time.
    pub time: u32,
    /// The block version, rolled bits included.
    pub version: i32,
    /// The header with nonce 0.
    pub header: Header,
    /// When the job was published: job-switch latency is measured from it.
    pub published_at: Instant,
    /// What the kernels need. Its target is the easier of the share and the
    /// block target, so a hash that solves a block but misses the share
    /// target is still found.
    pub kernel: KernelWork,
    /// The kernel's target is the block target, easier than the share
    /// target (regtest, a test network's minimum difficulty).
    hunts_block: bool,
}

impl Work {
    /// Builds the header for one extranonce2 / version / ntime choice.
    pub fn new(job: Arc<Job>, extranonce2: Vec<u8>, version: i32, time: u32) -> Self {
        let merkle_root = job.merkle_root.unwrap_or_else(|| {
            merkle_root_from_branch(&job.coinbase(&extranonce2), &job.merkle_branch)
        });
        let header = Header {
            version: Version::from_consensus(version),
            prev_blockhash: job.prev_hash,
            merkle_root,
            time,
            bits: job.bits,
            nonce: 0,
        };
        let hunts_block = job.block_target() > job.share_target;
        let target = if hunts_block {
            job.block_target()
        } else {
            job.share_target
        };
        let kernel = KernelWork::new(&header_bytes(&header), &target);
        Work {
            job,
            extranonce2,
            time,
            version,
            header,
            published_at: Instant::now(),
            kernel,
            hunts_block,
        }
    }

    /// Whether the kernel looks for the block target, easier than shares.
    pub fn hunts_block(&self) -> bool {
        self.hunts_block
    }

    /// The same header, looking for shares only: once its parent has its
    /// block, a block target easier than the share target would only bury
    /// the device in candidates worth nothing.
    pub fn shares_only(&self) -> Work {
        Work {
            kernel: KernelWork::new(&header_bytes(&self.header), &self.job.share_target),
            hunts_block: false,
            ..self.clone()
        }
    }
}

/// Scatters the low bits of `index` into the set bits of `mask` (the bit
/// positions a BIP 310 version mask lets the miner change).
fn deposit_bits(mut index: u64, mask: u32) -> u32 {
    let mut out = 0u32;
    for bit in 0..32 {
        if mask & (1 << bit) != 0 {
            out |= ((index & 1) as u32) << bit;
            index >>= 1;
        }
    }
    out
}

#[derive(Debug, Default)]
struct Current {
    job: Option<Arc<Job>>,
    /// Work units handed out for this job.
    handed_out: u64,
    /// Where this job's extranonce2 count starts: the running total of work
    /// units over every job. A pool that resumes a session re-sends the same
    /// job, and a failover can come back to it; starting each job where the
    /// last left off keeps those from being mined (and submitted) twice.
    extranonce2_base: u64,
    total_handed_out: u64,
    published_at: Option<Instant>,
    next_generation: u64,
}

/// The shared source of work for every device worker.
#[derive(Debug, Default)]
pub struct WorkSource {
    current: Mutex<Current>,
    /// Generation of the current job; 0 while there is none. Read by
    /// workers before each batch, without the lock.
    generation: AtomicU64,
    /// Generation of the newest clean job.
    clean_generation: AtomicU64,
    published: Condvar,
}

impl WorkSource {
    /// An empty source: no job yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `job` the current job and returns it as published, with its
    /// generation set. Devices switch to it before their next batch.
    pub fn publish(&self, mut job: Job) -> Arc<Job> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.next_generation += 1;
        job.generation = current.next_generation;
        let job = Arc::new(job);
        current.job = Some(job.clone());
        current.handed_out = 0;
        current.extranonce2_base = current.total_handed_out;
        current.published_at = Some(Instant::now());
        if job.clean {
            self.clean_generation
                .store(job.generation, Ordering::SeqCst);
        }
        self.generation.store(job.generation, Ordering::SeqCst);
        self.published.notify_all();
        job
    }

    /// Withdraws the current job (a pool connection lost, a block found on
    /// this template): devices stop after their current batch and wait.
    pub fn withdraw(&self) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.job = None;
        current.next_generation += 1;
        self.clean_generation
            .store(current.next_generation, Ordering::SeqCst);
        self.generation.store(0, Ordering::SeqCst);
    }

    /// Generation of the current job, 0 if none.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether work of `generation` must be dropped now rather than finished.
    pub fn is_stale(&self, generation: u64) -> bool {
        generation < self.clean_generation.load(Ordering::SeqCst)
    }

    /// A work unit no one else has, or `None` when there is no job or its
    /// search space is used up.
    pub fn next_work(&self) -> Option<Arc<Work>> {
        let (job, index, base, published_at) = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            let job = current.job.clone()?;
            let index = current.handed_out;
            current.handed_out += 1;
            current.total_handed_out += 1;
            (
                job,
                index,
                current.extranonce2_base,
                current.published_at.unwrap_or_else(Instant::now),
            )
        };
        // extranonce2 first, then version bits, then ntime.
        let en2_bits = 8 * job.extranonce2_size.min(8) as u32;
        let en2_space = 1u128 << en2_bits;
        let version_space = 1u128 << job.version_mask.count_ones();
        let index = u128::from(index);
        let en2 = ((index + u128::from(base)) % en2_space) as u64;
        let rest = index / en2_space;
        let version_index = (rest % version_space) as u64;
        let time_offset = rest / version_space;
        if time_offset > u128::from(job.max_time_roll) {
            return None;
        }
        let extranonce2 = en2.to_be_bytes()[8 - job.extranonce2_size.min(8)..].to_vec();
        let version = ((job.version as u32 & !job.version_mask)
            | deposit_bits(version_index, job.version_mask)) as i32;
        let time = job.time.wrapping_add(time_offset as u32);
        let mut work = Work::new(job, extranonce2, version, time);
        work.published_at = published_at;
        Some(Arc::new(work))
    }

    /// Like [`Self::next_work`], but waits for a job to be published. Returns
    /// `None` if `shutdown` fires first or `timeout` passes.
    pub fn wait_for_work(&self, shutdown: &Shutdown, timeout: Duration) -> Option<Arc<Work>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(work) = self.next_work() {
                return Some(work);
            }
            if shutdown.is_triggered() {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            // Short waits: the shutdown signal has its own condvar.
            let guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
            let wait = (deadline - now).min(Duration::from_millis(50));
            let _ = self
                .published
                .wait_timeout(guard, wait)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::synthetic::synthetic_job;
    use std::collections::HashSet;

    #[test]
    fn work_units_are_distinct_headers() {
        let ws = WorkSource::new();
        ws.publish(synthetic_job());
        let mut seen = HashSet::new();
        for _ in 0..500 {
            let w = ws.next_work().unwrap();
            assert!(seen.insert(w.header.merkle_root), "repeated header");
        }
    }

    #[test]
    fn rolls_version_then_time_when_extranonce2_is_exhausted() {
        let ws = WorkSource::new();
        let mut job = synthetic_job();
        job.extranonce2_size = 1;
        job.version_mask = 0x0000_6000; // two bits: four versions
        job.max_time_roll = 2;
        ws.publish(job);
        let mut headers = HashSet::new();
        let mut count = 0;
        while let Some(w) = ws.next_work() {
            assert_eq!(w.version as u32 & !0x6000, 0x2000_0000);
            assert!(headers.insert(crate::pow::header::header_bytes(&w.header)));
            count += 1;
        }
        assert_eq!(count, 256 * 4 * 3);
    }

    #[test]
    fn clean_jobs_make_old_work_stale() {
        let ws = WorkSource::new();
        let first = ws.publish(synthetic_job());
        let mut not_clean = synthetic_job();
        not_clean.clean = false;
        ws.publish(not_clean);
        assert!(!ws.is_stale(first.generation));
        ws.publish(synthetic_job());
        assert!(ws.is_stale(first.generation));
        assert_eq!(ws.generation(), 3);
    }

    #[test]
    fn a_job_published_again_continues_the_extranonce2_count() {
        let ws = WorkSource::new();
        ws.publish(synthetic_job());
        let first: Vec<_> = (0..10).map(|_| ws.next_work().unwrap()).collect();
        ws.publish(synthetic_job());
        let again = ws.next_work().unwrap();
        assert!(first.iter().all(|w| w.header != again.header));
    }

    #[test]
    fn an_easy_block_target_is_hunted_until_dropped() {
        let ws = WorkSource::new();
        let mut job = synthetic_job();
        job.bits = bitcoin::CompactTarget::from_consensus(0x207f_ffff); // regtest
        ws.publish(job);
        let work = ws.next_work().unwrap();
        assert!(work.hunts_block());
        assert_eq!(work.kernel.target_top, 0x7fff_ff00);
        let shares = work.shares_only();
        assert!(!shares.hunts_block());
        assert_eq!(shares.kernel.target_top, 0); // difficulty 1
        assert_eq!(shares.header, work.header);
        ws.publish(synthetic_job());
        assert!(!ws.next_work().unwrap().hunts_block());
    }

    #[test]
    fn deposit_bits_fills_mask_positions() {
        assert_eq!(deposit_bits(0b11, 0x1fffe000), 0x6000);
        assert_eq!(deposit_bits(0, 0x1fffe000), 0);
    }
}
