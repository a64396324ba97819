//! The one way verified results reach the job source: device workers offer
//! what they found without ever waiting for the source, and the source
//! takes it, from a plain thread or from an async runtime.
//!
//! - **Bounded.** At most [`SINK_CAPACITY`] shares wait; a share offered to a
//!   full sink is dropped and counted (`Stats::record_dropped`), so a slow or
//!   silent pool costs shares, never memory, and never stalls a device.
//! - **Blocks are never dropped**, and never repeated: the first hash that
//!   meets the block target on a parent, for one origin (pool or node), is
//!   the block; it is appended to the found-blocks file right here, on the
//!   device's thread, before it is queued. Later hashes on the same parent
//!   and origin are only shares (on regtest or a test network the block
//!   target can be easier than the share target, and every other nonce
//!   would otherwise be "a block"). Devices ask [`FoundProducer::is_solved`]
//!   to stop looking for more.
//! - **Closes** when the last producer (device worker) is gone: a source
//!   that is stopping drains it until then.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bitcoin::BlockHash;

use super::journal::{found_record, FoundBlockLog};
use super::Found;
use crate::job::Job;
use crate::stats::Stats;

/// Shares that may wait for the job source. A pool takes at most its
/// submission cap per second (50 by default): twenty seconds of that.
pub const SINK_CAPACITY: usize = 1024;
/// Parents remembered per origin as solved: a few hours of blocks.
const SOLVED_KEPT: usize = 64;

/// What [`FoundSink::wait`] saw.
#[derive(Debug)]
pub enum Taken {
    /// A verified share or block.
    Found(Box<Found>),
    /// Nothing arrived in time, or [`FoundSink::wake`] was called.
    Empty,
    /// Every producer is gone and nothing is left.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    blocks: VecDeque<Found>,
    shares: VecDeque<Found>,
    /// (origin index, parent) of blocks already found, oldest first.
    solved: VecDeque<(usize, BlockHash)>,
    producers: usize,
    closed: bool,
    /// The consumer was woken for something else (a new template).
    woken: bool,
    dropped: u64,
}

impl State {
    fn pop(&mut self) -> Option<Found> {
        self.blocks.pop_front().or_else(|| self.shares.pop_front())
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
    arrived_async: tokio::sync::Notify,
    capacity: usize,
    journal: Option<Arc<FoundBlockLog>>,
    stats: Arc<Stats>,
}

/// The consumer's end (and the factory of producers). Cloning shares it.
#[derive(Debug, Clone)]
pub struct FoundSink {
    shared: Arc<Shared>,
}

/// A device worker's end: offers results, never blocks on the consumer.
/// The sink closes when the last producer is dropped.
#[derive(Debug)]
pub struct FoundProducer {
    sink: FoundSink,
}

impl FoundSink {
    /// A sink holding at most `capacity` shares, writing blocks to
    /// `journal`, counting blocks and drops in `stats`.
    pub fn new(capacity: usize, journal: Option<Arc<FoundBlockLog>>, stats: Arc<Stats>) -> Self {
        FoundSink {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                arrived: Condvar::new(),
                arrived_async: tokio::sync::Notify::new(),
                capacity,
                journal,
                stats,
            }),
        }
    }

    /// The found-blocks file, for sources to append the answers.
    pub fn journal(&self) -> Option<&Arc<FoundBlockLog>> {
        self.shared.journal.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.shared.arrived.notify_all();
        self.shared.arrived_async.notify_one();
    }

    /// A new producer; the sink stays open while any is alive.
    pub fn producer(&self) -> FoundProducer {
        self.lock().producers += 1;
        FoundProducer { sink: self.clone() }
    }

    /// Closes the sink now (a rig with no devices).
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify();
    }

    /// Whether a block has been found on `parent` for the origin with this
    /// index (a pool's place in the failover list; 0 for a node).
    pub fn is_solved(&self, origin: usize, parent: &BlockHash) -> bool {
        self.lock().solved.contains(&(origin, *parent))
    }

    /// Claims the job's parent for a block; false if it was claimed before.
    fn claim_parent(&self, job: &Job) -> bool {
        let key = (job.origin.index, job.prev_hash);
        let mut state = self.lock();
        if state.solved.contains(&key) {
            return false;
        }
        state.solved.push_back(key);
        while state.solved.len() > SOLVED_KEPT {
            state.solved.pop_front();
        }
        true
    }

    fn offer(&self, mut found: Found) {
        if found.is_block && !self.claim_parent(&found.work.job) {
            tracing::debug!(
                "another hash on parent {} for {}: not a new block",
                found.work.job.prev_hash,
                found.work.job.origin.name
            );
            found.is_block = false;
        }
        if found.is_block {
            self.record_block(&found);
        } else if !found.is_share {
            return;
        }
        let mut state = self.lock();
        if found.is_block {
            state.blocks.push_back(found);
        } else if state.shares.len() >= self.shared.capacity {
            state.dropped += 1;
            let dropped = state.dropped;
            drop(state);
            self.shared.stats.record_dropped(found.device);
            if dropped.is_power_of_two() {
                tracing::warn!(
                    "{dropped} shares dropped so far: the job source is not taking them (at most {} wait)",
                    self.shared.capacity
                );
            }
            return;
        } else {
            state.shares.push_back(found);
        }
        drop(state);
        self.notify();
    }

    /// Counts a block and writes it to the found-blocks file, on the
    /// calling (device) thread, before anything submits it.
    fn record_block(&self, found: &Found) {
        let job = &found.work.job;
        self.shared.stats.record_block(found.device);
        tracing::warn!(
            "BLOCK found by device {} on {} (job {}): {}",
            found.device,
            job.origin.name,
            job.id,
            found.hash
        );
        if let Some(journal) = &self.shared.journal {
            journal.append_or_log(&found_record(found));
        }
    }

    /// The next result, blocks first, if one is waiting.
    pub fn try_take(&self) -> Option<Found> {
        self.lock().pop()
    }

    /// Waits up to `timeout` for a result (for a source on a plain thread).
    pub fn wait(&self, timeout: Duration) -> Taken {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(found) = state.pop() {
                return Taken::Found(Box::new(found));
            }
            if state.closed {
                return Taken::Closed;
            }
            if std::mem::take(&mut state.woken) {
                return Taken::Empty;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Taken::Empty;
            }
            state = self
                .shared
                .arrived
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Ends a [`Self::wait`] early: the consumer has something else to do.
    pub fn wake(&self) {
        self.lock().woken = true;
        self.notify();
    }

    /// The next result (for a source on an async runtime); `None` once the
    /// sink is closed and empty.
    pub async fn next(&self) -> Option<Found> {
        loop {
            let notified = self.shared.arrived_async.notified();
            {
                let mut state = self.lock();
                if let Some(found) = state.pop() {
                    return Some(found);
                }
                if state.closed {
                    return None;
                }
            }
            // notify_one leaves a permit when no one waits yet, so a result
            // offered between the check and this await is not missed.
            notified.await;
        }
    }

    /// Closed, and nothing left in it.
    pub fn is_drained(&self) -> bool {
        let state = self.lock();
        state.closed && state.blocks.is_empty() && state.shares.is_empty()
    }
}

impl FoundProducer {
    /// Offers a verified result. Never blocks on the consumer: a share that
    /// finds the sink full is dropped and counted; a block is written to the
    /// found-blocks file first, then queued.
    pub fn offer(&self, found: Found) {
        self.sink.offer(found);
    }

    /// Whether the job's parent already has its block for this origin.
    pub fn is_solved(&self, job: &Job) -> bool {
        self.sink.is_solved(job.origin.index, &job.prev_hash)
    }
}

impl Drop for FoundProducer {
    fn drop(&mut self) {
        let mut state = self.sink.lock();
        state.producers = state.producers.saturating_sub(1);
        if state.producers == 0 {
            state.closed = true;
        }
        drop(state);
        self.sink.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::synthetic::synthetic_job;
    use crate::work::Work;
    use bitcoin::hashes::Hash;

    fn found(job: &Arc<Job>, nonce: u32, is_share: bool, is_block: bool) -> Found {
        let work = Arc::new(Work::new(job.clone(), vec![0; 8], job.version, job.time));
        Found {
            work,
            nonce,
            hash: BlockHash::all_zeros(),
            is_share,
            is_block,
            difficulty: 1.0,
            device: 0,
        }
    }

    fn sink(capacity: usize) -> (FoundSink, Arc<Stats>) {
        let stats = Arc::new(Stats::new(vec!["d".into()]));
        (FoundSink::new(capacity, None, stats.clone()), stats)
    }

    #[test]
    fn a_full_sink_drops_shares_but_never_blocks() {
        let (sink, stats) = sink(2);
        let producer = sink.producer();
        let job = Arc::new(synthetic_job());
        for nonce in 0..5 {
            producer.offer(found(&job, nonce, true, false));
        }
        let mut other_parent = synthetic_job();
        other_parent.prev_hash = BlockHash::from_byte_array([7; 32]);
        producer.offer(found(&Arc::new(other_parent), 9, false, true));
        assert_eq!(stats.snapshot().devices[0].dropped, 3);
        // The block comes first, then the two shares that fit.
        let taken: Vec<u32> = std::iter::from_fn(|| sink.try_take())
            .map(|f| f.nonce)
            .collect();
        assert_eq!(taken, [9, 0, 1]);
    }

    #[test]
    fn one_block_per_parent_and_origin() {
        let (sink, stats) = sink(16);
        let producer = sink.producer();
        let job = Arc::new(synthetic_job());
        assert!(!producer.is_solved(&job));
        producer.offer(found(&job, 1, false, true));
        assert!(producer.is_solved(&job));
        // Block-only: dropped. Block and share: kept as a share.
        producer.offer(found(&job, 2, false, true));
        producer.offer(found(&job, 3, true, true));
        // The same parent from another pool is another block.
        let mut other_pool = synthetic_job();
        other_pool.origin.index = 1;
        producer.offer(found(&Arc::new(other_pool), 4, false, true));
        let taken: Vec<(u32, bool)> = std::iter::from_fn(|| sink.try_take())
            .map(|f| (f.nonce, f.is_block))
            .collect();
        assert_eq!(taken, [(1, true), (4, true), (3, false)]);
        assert_eq!(stats.snapshot().devices[0].blocks, 2);
    }

    #[test]
    fn closes_when_the_last_producer_goes() {
        let (sink, _) = sink(4);
        let first = sink.producer();
        let second = sink.producer();
        first.offer(found(&Arc::new(synthetic_job()), 1, true, false));
        drop(first);
        assert!(matches!(
            sink.wait(Duration::from_millis(1)),
            Taken::Found(_)
        ));
        assert!(matches!(sink.wait(Duration::from_millis(1)), Taken::Empty));
        drop(second);
        assert!(matches!(sink.wait(Duration::from_secs(5)), Taken::Closed));
        assert!(sink.is_drained());
    }

    #[test]
    fn an_async_consumer_is_woken_by_a_thread() {
        let (sink, _) = sink(4);
        let producer = sink.producer();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let job = Arc::new(synthetic_job());
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            producer.offer(found(&job, 5, true, false));
        });
        let taken = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), sink.next()).await });
        assert_eq!(taken.unwrap().map(|f| f.nonce), Some(5));
        thread.join().unwrap();
        let after = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), sink.next()).await });
        assert!(after.unwrap().is_none(), "closed once the producer is gone");
    }
}
