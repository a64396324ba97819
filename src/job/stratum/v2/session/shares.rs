//! Shares out and answers in: `SubmitSharesExtended` / `SubmitSharesStandard`
//! with a sequence number, batched `SubmitShares.Success` and per-share
//! `SubmitShares.Error`, and the backlog from the last connection.

use stratum_core::binary_sv2::B032;
use stratum_core::mining_sv2::{SubmitSharesExtended, SubmitSharesStandard};
use stratum_core::parsers_sv2::{AnyMessage, Mining};

use super::{job_id, Session};
use crate::found::Found;
use crate::job::stratum::end::End;
use crate::job::stratum::tracking::{count_stale, record_answer};
use crate::stats::ShareResult;

impl Session<'_> {
    /// Shares found while disconnected, still worth sending?
    pub(super) async fn send_backlog(&mut self) -> Result<(), End> {
        let Some(job) = self.jobs.last().cloned() else {
            return Ok(());
        };
        for found in self.carry.take_backlog() {
            let found_job = &found.work.job;
            let same_session = found_job.origin.index == self.pool_index
                && found_job.extranonce1 == job.extranonce1
                && found_job.prev_hash == job.prev_hash
                && self.templates.contains_key(&job_id(found_job));
            if same_session && (found.is_block || self.carry.may_submit(self.pool_index)) {
                self.submit(found).await?;
            } else {
                count_stale(
                    self.ctx,
                    self.pool_index,
                    &self.url(),
                    &found,
                    "its job ended with the old connection",
                );
            }
        }
        Ok(())
    }

    pub(super) async fn on_found(&mut self, found: Found) -> Result<(), End> {
        let job = &found.work.job;
        let url = self.url();
        if job.origin.index != self.pool_index {
            count_stale(
                self.ctx,
                self.pool_index,
                &url,
                &found,
                "its job came from another pool",
            );
            return Ok(());
        }
        let active = self.jobs.holds(job.generation);
        if !active && !found.is_block {
            let why = "its job was dropped before it was found";
            count_stale(self.ctx, self.pool_index, &url, &found, why);
            return Ok(());
        }
        if !found.is_block && !self.carry.may_submit(self.pool_index) {
            self.ctx.stats.record_throttled(self.pool_index);
            return Ok(());
        }
        self.submit(found).await
    }

    pub(super) async fn submit(&mut self, found: Found) -> Result<(), End> {
        let Some(channel) = self.channel.as_ref() else {
            self.carry.keep(self.pool_index, found, &self.ctx.stats);
            return Ok(());
        };
        let work = &found.work;
        let sequence_number = self.next_sequence;
        let mut extranonce = vec![0u8; channel.padding];
        extranonce.extend_from_slice(&work.extranonce2);
        let message = if channel.extended {
            let Ok(extranonce) = B032::new(&extranonce) else {
                tracing::error!(
                    "{}: an extranonce of {} bytes does not fit a share",
                    self.url(),
                    extranonce.len()
                );
                return Ok(());
            };
            Mining::SubmitSharesExtended(SubmitSharesExtended {
                channel_id: channel.id,
                sequence_number,
                job_id: job_id(&work.job),
                nonce: found.nonce,
                ntime: work.time,
                version: work.version as u32,
                extranonce,
            })
        } else {
            Mining::SubmitSharesStandard(SubmitSharesStandard {
                channel_id: channel.id,
                sequence_number,
                job_id: job_id(&work.job),
                nonce: found.nonce,
                ntime: work.time,
                version: work.version as u32,
            })
        };
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.submits
            .insert(sequence_number, found, self.ctx, self.pool_index);
        self.send(AnyMessage::Mining(message)).await
    }

    /// `SubmitShares.Success`: every share up to `last` still waiting was
    /// accepted (the rejected ones were answered one by one).
    pub(super) fn on_accepted(&mut self, last: u32) {
        let answered: Vec<u32> = self
            .submits
            .keys()
            .filter(|seq| seq.wrapping_sub(last) > u32::MAX / 2 || *seq == last)
            .collect();
        for seq in answered {
            if let Some(in_flight) = self.submits.remove(&seq) {
                let url = self.url();
                record_answer(
                    self.ctx,
                    self.pool_index,
                    &url,
                    in_flight,
                    ShareResult::Accepted,
                    None,
                );
            }
        }
    }

    pub(super) fn on_share_error(&mut self, sequence_number: u32, error_code: String) {
        let Some(in_flight) = self.submits.remove(&sequence_number) else {
            tracing::debug!(
                "{}: error for share {sequence_number}, which is not waiting: {error_code}",
                self.url()
            );
            return;
        };
        let result = if error_code.contains("stale") {
            ShareResult::Stale
        } else {
            ShareResult::Rejected
        };
        let url = self.url();
        record_answer(
            self.ctx,
            self.pool_index,
            &url,
            in_flight,
            result,
            Some(error_code),
        );
    }
}
