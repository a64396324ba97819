//! Shares in and out of one connection: what the devices found, checked
//! against the jobs this connection still has, held to the pool's
//! submission budget, submitted, and the pool's answer counted per pool and
//! per device, blocks apart from shares.

use super::super::messages::submit_params;
use super::super::replies::Reply;
use super::super::tracking::{count_stale, record_answer, InFlight};
use super::{Connection, End};
use crate::found::Found;
use crate::stats::ShareResult;

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
        let active = self.jobs.holds(job.generation);
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
        self.submits.expire(wait, self.ctx, self.pool_index);
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
        let id = self.take_id();
        self.submits.insert(id, found, self.ctx, self.pool_index);
        self.send(super::request_line(id, "mining.submit", params))
            .await
    }
}
