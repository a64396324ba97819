//! Channels and jobs: opening the channel, the share target, the
//! extranonce prefix, and jobs from `NewExtendedMiningJob` / `NewMiningJob`
//! and `SetNewPrevHash` published to the devices.

use std::time::Instant;

use bitcoin::hashes::Hash;
use bitcoin::{Target, TxMerkleNode};
use stratum_core::binary_sv2::U256;
use stratum_core::mining_sv2::{OpenExtendedMiningChannel, OpenStandardMiningChannel};
use stratum_core::parsers_sv2::{AnyMessage, Mining};

use super::super::connect::str0255;
use super::super::messages::{ExtendedJob, NewPrevHash, OpenedChannel, StandardJob};
use super::{
    Channel, Session, BIP320_MASK, MAX_FUTURE_JOBS, MAX_JOBS, MAX_ROLLED, MIN_EXTRANONCE,
    OPEN_EXTENDED, OPEN_STANDARD, POOL_REQUIRES_EXTENDED_CHANNELS,
};
use crate::error_chain::Chain;
use crate::job::stratum::end::End;
use crate::job::stratum::options::Sv2Channel;
use crate::job::Job;
use crate::pow::target::{share_target, target_difficulty};

/// A job the pool sent, before it is published.
#[derive(Debug, Clone)]
pub(super) enum Template {
    Extended(ExtendedJob),
    Standard(StandardJob),
}

impl Template {
    pub(super) fn id(&self) -> u32 {
        match self {
            Template::Extended(job) => job.job_id,
            Template::Standard(job) => job.job_id,
        }
    }

    pub(super) fn min_ntime(&self) -> Option<u32> {
        match self {
            Template::Extended(job) => job.min_ntime,
            Template::Standard(job) => job.min_ntime,
        }
    }
}

impl Session<'_> {
    pub(super) async fn open_channel(&mut self) -> Result<(), End> {
        if self.options.sv2_channel == Sv2Channel::Standard {
            if self.pool_flags & POOL_REQUIRES_EXTENDED_CHANNELS == 0 {
                return self.open_standard_channel().await;
            }
            tracing::warn!(
                "{}: the pool takes only extended channels: opening one instead of a standard channel",
                self.url()
            );
        }
        let user_identity =
            str0255(&self.pool.user).map_err(|e| End::Refused(Chain(&e).to_string()))?;
        self.nominal_hashrate = self.rig_hashrate();
        self.last_update = Instant::now();
        let message = OpenExtendedMiningChannel {
            request_id: OPEN_EXTENDED,
            user_identity,
            nominal_hash_rate: self.nominal_hashrate as f32,
            max_target: U256::from(&[0xff; 32]),
            min_extranonce_size: MIN_EXTRANONCE,
        };
        self.send(AnyMessage::Mining(Mining::OpenExtendedMiningChannel(
            message,
        )))
        .await
    }

    pub(super) async fn open_standard_channel(&mut self) -> Result<(), End> {
        let user_identity =
            str0255(&self.pool.user).map_err(|e| End::Refused(Chain(&e).to_string()))?;
        self.nominal_hashrate = self.rig_hashrate();
        self.last_update = Instant::now();
        let message = OpenStandardMiningChannel {
            request_id: OPEN_STANDARD,
            user_identity,
            nominal_hash_rate: self.nominal_hashrate as f32,
            max_target: U256::from(&[0xff; 32]),
        };
        self.send(AnyMessage::Mining(Mining::OpenStandardMiningChannel(
            message,
        )))
        .await
    }

    pub(super) fn on_channel_opened(&mut self, opened: OpenedChannel) {
        let padding = opened.extranonce_size.saturating_sub(MAX_ROLLED);
        let mut extranonce1 = opened.extranonce_prefix.clone();
        extranonce1.extend(std::iter::repeat_n(0u8, padding));
        tracing::info!(
            "{}: {} channel {} open, extranonce prefix {} ({} bytes to roll)",
            self.url(),
            if opened.extended {
                "extended"
            } else {
                "standard"
            },
            opened.channel_id,
            hex::encode(&opened.extranonce_prefix),
            opened.extranonce_size
        );
        self.carry.extranonce1s[self.pool_index] = Some(extranonce1.clone());
        self.channel = Some(Channel {
            id: opened.channel_id,
            extended: opened.extended,
            extranonce1,
            padding,
            rolled: opened.extranonce_size.min(MAX_ROLLED),
        });
        self.set_target(opened.target);
    }

    /// The share target from the next job, never easier than the floor.
    pub(super) fn set_target(&mut self, target: Target) {
        let floor = self.options.min_difficulty;
        let difficulty = target_difficulty(&target);
        self.share_target = if difficulty < floor {
            if !std::mem::replace(&mut self.floor_warned, true) {
                tracing::warn!(
                    "{}: difficulty {difficulty} is below the floor {floor} (--min-difficulty): shares are sent at {floor}",
                    self.url()
                );
            }
            share_target(floor).unwrap_or(target)
        } else {
            target
        };
        tracing::info!(
            "{}: difficulty {:.4} from the next job",
            self.url(),
            target_difficulty(&self.share_target)
        );
    }

    pub(super) fn on_extranonce_prefix(&mut self, prefix: Vec<u8>) {
        let Some(channel) = self.channel.as_mut() else {
            return;
        };
        let mut extranonce1 = prefix.clone();
        extranonce1.extend(std::iter::repeat_n(0u8, channel.padding));
        channel.extranonce1 = extranonce1.clone();
        self.carry.extranonce1s[self.pool_index] = Some(extranonce1);
        self.force_clean = true;
        tracing::info!(
            "{}: new extranonce prefix {} from the next job",
            self.url(),
            hex::encode(prefix)
        );
    }

    pub(super) fn on_job(&mut self, template: Template) {
        let future = template.min_ntime().is_none();
        self.remember(template.clone());
        if future {
            return;
        }
        let Some(prev) = self.prev_hash.clone() else {
            tracing::debug!(
                "{}: job {} before any SetNewPrevHash",
                self.url(),
                template.id()
            );
            return;
        };
        self.publish(&template, &prev, false);
    }

    pub(super) fn remember(&mut self, template: Template) {
        let id = template.id();
        if self.templates.insert(id, template).is_none() {
            self.template_order.push_back(id);
        }
        while self.template_order.len() > MAX_JOBS + MAX_FUTURE_JOBS {
            if let Some(old) = self.template_order.pop_front() {
                self.templates.remove(&old);
            }
        }
    }

    pub(super) async fn on_new_prev_hash(&mut self, prev: NewPrevHash) -> Result<(), End> {
        let Some(job) = self.templates.get(&prev.job_id).cloned() else {
            self.bad_frame(format!(
                "SetNewPrevHash names job {}, which the pool never sent",
                prev.job_id
            ));
            return Ok(());
        };
        // Jobs of the old block are worthless now.
        self.templates
            .retain(|id, t| *id == prev.job_id || t.min_ntime().is_none());
        self.template_order
            .retain(|id| self.templates.contains_key(id));
        self.prev_hash = Some(prev.clone());
        let first = self.jobs.is_empty();
        self.publish(&job, &prev, true);
        if first {
            self.send_backlog().await?;
        }
        Ok(())
    }

    pub(super) fn publish(&mut self, template: &Template, prev: &NewPrevHash, new_block: bool) {
        let Some(channel) = self.channel.as_ref() else {
            return;
        };
        self.last_job = Instant::now();
        let clean = new_block || self.force_clean;
        self.force_clean = false;
        let mut job = Job {
            id: template.id().to_string(),
            generation: 0,
            version: 0,
            version_mask: 0,
            prev_hash: prev.prev_hash,
            coinbase1: Vec::new(),
            coinbase2: Vec::new(),
            extranonce1: channel.extranonce1.clone(),
            extranonce2_size: 0,
            merkle_branch: Vec::new(),
            bits: prev.bits,
            time: template
                .min_ntime()
                .unwrap_or(prev.min_ntime)
                .max(prev.min_ntime),
            // Pools accept ntime up to about two hours ahead; roll far less.
            max_time_roll: 600,
            clean,
            share_target: self.share_target,
            origin: self.origin.clone(),
            merkle_root: None,
            block_body: None,
        };
        let rolling = match template {
            Template::Extended(extended) => {
                job.version = extended.version as i32;
                job.coinbase1 = extended.coinbase_prefix.clone();
                job.coinbase2 = extended.coinbase_suffix.clone();
                job.extranonce2_size = channel.rolled;
                job.merkle_branch = extended.merkle_path.clone();
                extended.version_rolling_allowed
            }
            // Header-only: the version bits and ntime are all there is to
            // roll, so devices get disjoint work from them.
            Template::Standard(standard) => {
                job.version = standard.version as i32;
                job.merkle_root = Some(TxMerkleNode::from_byte_array(standard.merkle_root));
                true
            }
        };
        if rolling && self.rolls_version() {
            job.version_mask = BIP320_MASK;
        }
        let url = self.url();
        self.jobs.publish(job, self.ctx, &url);
    }
}
