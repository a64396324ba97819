//! What a pool connection keeps track of, Stratum V1 and V2 alike: the
//! shares awaiting the pool's answer, the jobs still worth a share, and how
//! an answer (or a share that will not be sent) is counted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::found::journal::{answer_record, BlockOutcome};
use crate::found::Found;
use crate::job::source::SourceContext;
use crate::job::Job;
use crate::pow::target::target_difficulty;
use crate::stats::ShareResult;

/// Shares awaiting an answer at most; past it the oldest is given up on.
const MAX_IN_FLIGHT: usize = 1000;
/// Jobs kept per connection for share checks: pools send one every 30-60 s
/// between clean jobs.
const MAX_JOBS: usize = 32;

/// A share sent and not yet answered.
#[derive(Debug)]
pub struct InFlight {
    pub found: Box<Found>,
    pub sent: Instant,
    /// The share difficulty of its job, what the pool credits.
    pub difficulty: f64,
}

/// Shares sent and not yet answered, by request id (V1) or sequence
/// number (V2): oldest first.
#[derive(Debug)]
pub struct Awaiting<K> {
    shares: BTreeMap<K, InFlight>,
}

impl<K: Ord + Copy> Awaiting<K> {
    pub fn new() -> Self {
        Awaiting {
            shares: BTreeMap::new(),
        }
    }

    /// Records a share as sent; past [`MAX_IN_FLIGHT`] the oldest is given
    /// up on.
    pub fn insert(&mut self, key: K, found: Found, ctx: &SourceContext, pool_index: usize) {
        if self.shares.len() >= MAX_IN_FLIGHT {
            if let Some((_, oldest)) = self.shares.pop_first() {
                give_up(ctx, pool_index, &oldest, "too many awaiting an answer");
            }
        }
        let difficulty = target_difficulty(&found.work.job.share_target);
        self.shares.insert(
            key,
            InFlight {
                found: Box::new(found),
                sent: Instant::now(),
                difficulty,
            },
        );
    }

    pub fn remove(&mut self, key: &K) -> Option<InFlight> {
        self.shares.remove(key)
    }

    /// The keys waiting, oldest first.
    pub fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.shares.keys().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.shares.is_empty()
    }

    /// Gives up on shares unanswered for longer than `wait`.
    pub fn expire(&mut self, wait: Duration, ctx: &SourceContext, pool_index: usize) {
        while let Some(entry) = self.shares.first_entry() {
            if entry.get().sent.elapsed() <= wait {
                break;
            }
            give_up(ctx, pool_index, &entry.remove(), "no answer in time");
        }
    }

    /// When a connection ends: on shutdown the unanswered are counted as
    /// such; otherwise they are kept for the next connection.
    pub fn settle(
        &mut self,
        shutdown: bool,
        ctx: &SourceContext,
        pool_index: usize,
        carry: &mut super::carry::Carry,
    ) {
        for (_, in_flight) in std::mem::take(&mut self.shares) {
            if shutdown {
                ctx.stats.record_unanswered(pool_index);
            } else {
                carry.keep(pool_index, *in_flight.found, &ctx.stats);
            }
        }
    }
}

fn give_up(ctx: &SourceContext, pool_index: usize, in_flight: &InFlight, why: &str) {
    ctx.stats.record_unanswered(pool_index);
    tracing::debug!(
        "pool {pool_index}: share of job {} unanswered: {why}",
        in_flight.found.work.job.id
    );
}

/// The jobs of one connection still worth a share, oldest first.
#[derive(Debug, Default)]
pub struct RecentJobs {
    jobs: VecDeque<Arc<Job>>,
}

impl RecentJobs {
    /// Publishes `job` to the devices and keeps it; a clean job drops the
    /// rest.
    pub fn publish(&mut self, job: Job, ctx: &SourceContext, url: &str) -> Arc<Job> {
        let clean = job.clean;
        let job = ctx.work.publish(job);
        ctx.stats
            .set_share_difficulty(Some(target_difficulty(&job.share_target)));
        if clean {
            self.jobs.clear();
        }
        self.jobs.push_back(job.clone());
        while self.jobs.len() > MAX_JOBS {
            self.jobs.pop_front();
        }
        tracing::debug!(
            "{url}: job {} (generation {}, clean {clean}, difficulty {:.4})",
            job.id,
            job.generation,
            target_difficulty(&job.share_target)
        );
        job
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn last(&self) -> Option<&Arc<Job>> {
        self.jobs.back()
    }

    /// Whether the job of `generation` is still kept.
    pub fn holds(&self, generation: u64) -> bool {
        self.jobs.iter().any(|j| j.generation == generation)
    }
}

/// Counts the pool's answer to a share or block, per pool and per device,
/// and appends a block's answer to the found-blocks file. Stratum V1 and V2
/// alike.
pub fn record_answer(
    ctx: &SourceContext,
    pool_index: usize,
    url: &str,
    in_flight: InFlight,
    result: ShareResult,
    reason: Option<String>,
) {
    let InFlight {
        found,
        sent,
        difficulty,
    } = in_flight;
    let stats = &ctx.stats;
    stats.record_pool_latency(pool_index, sent.elapsed());
    if found.is_share {
        stats.record_pool_result(
            pool_index,
            found.device,
            result,
            difficulty,
            reason.as_deref(),
        );
    }
    if found.is_block {
        stats.record_block_result(pool_index, result, reason.as_deref());
        record_block_answer(ctx, url, &found, result, reason.as_deref());
    }
    let what = if found.is_block { "BLOCK" } else { "share" };
    match (result, reason) {
        (ShareResult::Accepted, _) => tracing::info!(
            "{url}: {what} accepted (difficulty {:.4}, job {}, {:.2} ms)",
            found.difficulty,
            found.work.job.id,
            sent.elapsed().as_secs_f64() * 1e3
        ),
        (result, reason) => tracing::warn!(
            "{url}: {what} {} (job {}): {}",
            if result == ShareResult::Stale {
                "stale"
            } else {
                "rejected"
            },
            found.work.job.id,
            reason.unwrap_or_default()
        ),
    }
}

/// Appends the pool's answer about a block to the found-blocks file, on a
/// blocking thread (it syncs to disk).
fn record_block_answer(
    ctx: &SourceContext,
    url: &str,
    found: &Found,
    result: ShareResult,
    reason: Option<&str>,
) {
    let Some(journal) = ctx.found.journal().cloned() else {
        return;
    };
    let record = answer_record(
        &found.hash.to_string(),
        url,
        BlockOutcome::from(result),
        reason,
    );
    tokio::task::spawn_blocking(move || journal.append_or_log(&record));
}

/// Counts a share that will not be sent: its job is gone.
pub fn count_stale(ctx: &SourceContext, pool_index: usize, url: &str, found: &Found, why: &str) {
    tracing::info!(
        "{url}: stale share not sent (job {}): {why}",
        found.work.job.id
    );
    if found.is_block {
        tracing::error!(
            "a block-solving share could not be submitted ({why}); it is in the found-blocks file"
        );
    }
    if found.is_share {
        ctx.stats
            .record_pool_result(pool_index, found.device, ShareResult::Stale, 0.0, None);
    }
}
