//! Shares in and out of one connection: what the devices found, checked
//! against the jobs this connection still has, submitted, and the pool's
//! answer counted per pool and per device.

use std::time::Instant;

use super::super::client::record_block;
use super::super::messages::submit_params;
use super::super::replies::Reply;
use super::{Connection, End, Pending};
use crate::job::Found;
use crate::pow::target::target_difficulty;
use crate::stats::ShareResult;

impl Connection<'_> {
    /// The pool's answer to a submitted share.
    pub(super) fn on_submit_reply(
        &mut self,
        found: Found,
        sent: Instant,
        difficulty: f64,
        reply: &Reply,
    ) {
        let stats = &self.ctx.stats;
        stats.record_pool_latency(self.pool_index, sent.elapsed());
        let (result, reason) = if reply.is_true() {
            (ShareResult::Accepted, None)
        } else if reply.error.as_ref().is_some_and(|e| e.is_stale()) {
            (ShareResult::Stale, Some(reply.reason()))
        } else {
            (ShareResult::Rejected, Some(reply.reason()))
        };
        stats.record_pool_result(
            self.pool_index,
            found.device,
            result,
            difficulty,
            reason.as_deref(),
        );
        let what = if found.is_block { "BLOCK" } else { "share" };
        match (result, reason) {
            (ShareResult::Accepted, _) => tracing::info!(
                "{}: {what} accepted (difficulty {:.4}, job {}, {} ms)",
                self.url(),
                found.difficulty,
                found.work.job.id,
                sent.elapsed().as_millis()
            ),
            (result, reason) => tracing::warn!(
                "{}: {what} {} (job {}): {}",
                self.url(),
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

    pub(super) async fn on_found(&mut self, found: Found) -> Result<(), End> {
        if found.is_block {
            record_block(self.options, &self.ctx.stats, &self.url(), &found);
        }
        let generation = found.work.job.generation;
        let active = self.jobs.iter().any(|j| j.generation == generation);
        if active {
            return self.submit(found).await;
        }
        if found.is_block && self.carry.pool_of(generation) == Some(self.pool_index) {
            // A dropped job, but a block is always worth asking about.
            return self.submit(found).await;
        }
        self.count_stale(&found, "its job was dropped before it was found");
        Ok(())
    }

    pub(super) fn count_stale(&self, found: &Found, why: &str) {
        tracing::info!(
            "{}: stale share not sent (job {}): {why}",
            self.url(),
            found.work.job.id
        );
        if found.is_block {
            tracing::error!(
                "a block-solving share could not be submitted ({why}); it is in the found-blocks file"
            );
        }
        self.ctx.stats.record_pool_result(
            self.pool_index,
            found.device,
            ShareResult::Stale,
            0.0,
            None,
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
        self.request(
            "mining.submit",
            params,
            Pending::Submit {
                found: Box::new(found),
                sent: Instant::now(),
                difficulty,
            },
        )
        .await
    }
}
