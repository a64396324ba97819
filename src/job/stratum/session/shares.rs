//! Shares in and out of one connection: what the devices found, checked
//! against the jobs this connection still has, held to the pool's
//! submission budget, submitted, and the pool's answer counted per pool and
//! per device, blocks apart from shares.

use std::time::Instant;

use super::super::messages::submit_params;
use super::super::replies::Reply;
use super::{Connection, End};
use crate::found::journal::{answer_record, BlockOutcome};
use crate::found::Found;
use crate::job::source::SourceContext;
use crate::pow::target::target_difficulty;
use crate::stats::ShareResult;

/// Shares awaiting an answer at most; past it the oldest is given up on.
const MAX_IN_FLIGHT: usize = 1000;

/// A share sent and not yet answered.
#[derive(Debug)]
pub(in crate::job::stratum) struct InFlight {
    pub found: Box<Found>,
    pub sent: Instant,
    /// The share difficulty of its job, what the pool credits.
    pub difficulty: f64,
}

impl Connection<'_> {
    /// The pool's answer to a submitted share or block.
    pub(super) fn on_submit_reply(&mut self, in_flight: InFlight, reply: &Reply) {
        let (result, reason) = if reply.is_true() {
            (ShareResult::Accepted, None)
        } else if reply.error.as_ref().is_some_and(|e| e.is_stale()) {
            (ShareResult::Stale, Some(reply.reason()))
        } else {
            (ShareResult::Rejected, Some(reply.reason()))
        };
        record_answer(
            self.ctx,
            self.pool_index,
            &self.url(),
            in_flight,
            result,
            reason,
        );
    }

    pub(super) async fn on_found(&mut self, found: Found) -> Result<(), End> {
        let job = &found.work.job;
        if job.origin.index != self.pool_index {
            self.count_stale(&found, "its job came from another pool");
            return Ok(());
        }
        let active = self.jobs.iter().any(|j| j.generation == job.generation);
        // A block on a dropped job of this pool is still worth asking about.
        if !active && !found.is_block {
            self.count_stale(&found, "its job was dropped before it was found");
            return Ok(());
        }
        self.submit_within_budget(found).await
    }

    /// Submits, unless the pool's budget is spent: then the share is
    /// counted as throttled. Blocks are never held back.
    pub(super) async fn submit_within_budget(&mut self, found: Found) -> Result<(), End> {
        if !found.is_block && !self.carry.may_submit(self.pool_index) {
            self.ctx.stats.record_throttled(self.pool_index);
            return Ok(());
        }
        self.submit(found).await
    }

    pub(super) fn count_stale(&self, found: &Found, why: &str) {
        count_stale(self.ctx, self.pool_index, &self.url(), found, why);
    }

    /// Gives up on shares the pool has not answered in time.
    pub(super) fn expire_submits(&mut self) {
        let wait = self.options.timeouts.submit_answer;
        while let Some(entry) = self.submits.first_entry() {
            if entry.get().sent.elapsed() <= wait {
                break;
            }
            let in_flight = entry.remove();
            self.give_up(&in_flight, "no answer in time");
        }
    }

    fn give_up(&self, in_flight: &InFlight, why: &str) {
        self.ctx.stats.record_unanswered(self.pool_index);
        tracing::debug!(
            "{}: share of job {} unanswered: {why}",
            self.url(),
            in_flight.found.work.job.id
        );
    }

    pub(super) async fn submit(&mut self, found: Found) -> Result<(), End> {
        let work = &found.work;
        let params = submit_params(
            &self.pool.user,
            &work.job,
            &work.extranonce2,
            work.time,
            found.nonce,
            work.version,
        );
        let difficulty = target_difficulty(&work.job.share_target);
        if self.submits.len() >= MAX_IN_FLIGHT {
            if let Some((_, oldest)) = self.submits.pop_first() {
                self.give_up(&oldest, "too many awaiting an answer");
            }
        }
        let id = self.take_id();
        self.submits.insert(
            id,
            InFlight {
                found: Box::new(found),
                sent: Instant::now(),
                difficulty,
            },
        );
        self.send(super::request_line(id, "mining.submit", params))
            .await
    }
}

/// Counts the pool's answer to a share or block, per pool and per device,
/// and appends a block's answer to the found-blocks file. Stratum V1 and V2
/// alike.
pub(in crate::job::stratum) fn record_answer(
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
pub(in crate::job::stratum) fn count_stale(
    ctx: &SourceContext,
    pool_index: usize,
    url: &str,
    found: &Found,
    why: &str,
) {
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
