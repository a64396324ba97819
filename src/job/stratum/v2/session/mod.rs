//! One connection to one Stratum V2 pool: Noise handshake against the
//! pinned key, `SetupConnection` for the mining protocol, one channel
//! (extended: hashrig rolls its own extranonce, so every device gets
//! disjoint work, as with V1; or standard: header-only, disjoint work from
//! the version bits and ntime), then jobs in and shares out until the link is lost,
//! the pool closes the channel or redirects, a better pool is healthy again,
//! or the miner stops. It ends with the same [`End`] as a V1 session, so the
//! failover loop treats both alike.
//!
//! Jobs: `NewExtendedMiningJob` without `min_ntime` is a future job, mined
//! once a `SetNewPrevHash` names it; with one, it is mined on the current
//! previous block at once. Shares: `SubmitSharesExtended` (or `Standard`) with a sequence
//! number; the pool acknowledges in batches (`SubmitShares.Success` covers
//! every sequence number up to its last that no `SubmitShares.Error` named).

mod jobs;
mod shares;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bitcoin::Target;
use stratum_core::binary_sv2::U256;
use stratum_core::mining_sv2::UpdateChannel;
use stratum_core::parsers_sv2::{AnyMessage, Mining};
use tokio::sync::oneshot;

use super::connect::{connect, setup_connection};
use super::messages::{NewPrevHash, PoolMessage};
use super::transport::{Frame, Link, LinkError};
use crate::error_chain::Chain;
use crate::found::Found;
use crate::job::source::SourceContext;
use crate::job::stratum::carry::{Carry, Optional};
use crate::job::stratum::drain::{drain, Draining};
use crate::job::stratum::end::{redirect, wait_failback, End};
use crate::job::stratum::options::{PoolConfig, StratumOptions, Sv2Channel};
use crate::job::stratum::tracking::{Awaiting, RecentJobs};
use crate::job::{Job, Origin, SourceKind};
use jobs::Template;

/// `SetupConnection` flag (mining protocol): the miner understands only
/// standard jobs on standard channels (no group channels).
const REQUIRES_STANDARD_JOBS: u32 = 1;
/// `SetupConnection` flag (mining protocol): the miner rolls version bits.
const REQUIRES_VERSION_ROLLING: u32 = 1 << 2;
/// `SetupConnection.Success` flag: the pool allows no version rolling.
const POOL_REQUIRES_FIXED_VERSION: u32 = 1;
/// `SetupConnection.Success` flag: the pool takes only extended channels.
const POOL_REQUIRES_EXTENDED_CHANNELS: u32 = 1 << 1;
/// BIP 320's general-purpose version bits, which an extended job that
/// allows version rolling lets the miner change.
const BIP320_MASK: u32 = 0x1fff_e000;
/// Bytes of extranonce asked for: 2^32 extranonces × 2^32 nonces per job
/// outlasts any rig between jobs.
const MIN_EXTRANONCE: u16 = 4;
/// The most extranonce bytes the rest of the rig rolls; a pool granting more
/// gets the leading ones as zeros.
const MAX_ROLLED: usize = 8;
/// Jobs kept per connection for share checks and to activate.
const MAX_JOBS: usize = 32;
/// Future jobs kept while waiting for their `SetNewPrevHash`.
const MAX_FUTURE_JOBS: usize = 8;
/// Bad frames logged per connection at warning level; the rest are counted.
const BAD_FRAMES_LOGGED: u32 = 5;
/// How often the channel's nominal hashrate is checked against the rig's.
const UPDATE_EVERY: Duration = Duration::from_secs(30);
/// The same while the pool knows no hashrate: a channel opened as the rig
/// starts was opened at 0 H/s, and the pool's target follows the first
/// real figure.
const UPDATE_UNKNOWN_EVERY: Duration = Duration::from_secs(5);
/// A change of this fraction in the rig's hashrate is sent to the pool.
const UPDATE_FRACTION: f64 = 0.1;
/// The request ids of the channel a connection opens: extended first, or
/// standard (asked for, or after the pool refused an extended one).
const OPEN_EXTENDED: u32 = 1;
const OPEN_STANDARD: u32 = 2;
/// Connects to a Stratum V2 pool and mines until the connection ends.
/// `Err` when no link could be set up (counted as a failed connect).
pub async fn run_connection(
    pool_index: usize,
    pool: &PoolConfig,
    options: &StratumOptions,
    ctx: &SourceContext,
    carry: &mut Carry,
    (host, port): (&str, u16),
    failback: Option<oneshot::Receiver<usize>>,
) -> Result<End, LinkError> {
    let link = match connect(pool, host, port, options.timeouts.connect).await {
        Ok(link) => link,
        // A pool that cannot prove the pinned key is not one to retry.
        Err(e @ LinkError::Certificate { .. }) => {
            ctx.stats.record_pool_error(pool_index, &e.to_string());
            return Ok(End::Refused(e.to_string()));
        }
        Err(e) => return Err(e),
    };
    tracing::info!(
        "connected to {} ({host}:{port}), Noise handshake done",
        pool.url
    );
    ctx.stats.set_pool_connected(pool_index, true);
    let session = Session::new(pool_index, pool, options, ctx, carry, link);
    let end = session.run((host, port), failback).await;
    ctx.stats.set_pool_connected(pool_index, false);
    Ok(end)
}

/// The open channel's state.
struct Channel {
    id: u32,
    /// Extended (coinbase rolled here) or standard (header-only).
    extended: bool,
    /// What goes into the coinbase before the rolled part: the pool's
    /// prefix, and zeros for any extranonce bytes past [`MAX_ROLLED`].
    extranonce1: Vec<u8>,
    /// The zeros added to `extranonce1`, sent back in every share.
    padding: usize,
    rolled: usize,
}

struct Session<'a> {
    pool_index: usize,
    pool: &'a PoolConfig,
    options: &'a StratumOptions,
    ctx: &'a SourceContext,
    carry: &'a mut Carry,
    link: Link,
    origin: Origin,
    /// `SetupConnection.Success` flags: what the pool requires.
    pool_flags: u32,
    channel: Option<Channel>,
    share_target: Target,
    /// Jobs by id: future ones and the recent ones, for `SetNewPrevHash`
    /// to activate.
    templates: HashMap<u32, Template>,
    template_order: VecDeque<u32>,
    prev_hash: Option<NewPrevHash>,
    /// Jobs published from this connection.
    jobs: RecentJobs,
    force_clean: bool,
    next_sequence: u32,
    submits: Awaiting<u32>,
    nominal_hashrate: f64,
    last_update: Instant,
    connected_at: Instant,
    last_job: Instant,
    bad_frames: u32,
    floor_warned: bool,
}

impl<'a> Session<'a> {
    fn new(
        pool_index: usize,
        pool: &'a PoolConfig,
        options: &'a StratumOptions,
        ctx: &'a SourceContext,
        carry: &'a mut Carry,
        link: Link,
    ) -> Self {
        let now = Instant::now();
        Session {
            pool_index,
            pool,
            options,
            ctx,
            carry,
            link,
            origin: Origin::new(SourceKind::Pool, pool_index, &pool.url.to_string()),
            pool_flags: 0,
            channel: None,
            share_target: Target::MAX,
            templates: HashMap::new(),
            template_order: VecDeque::new(),
            prev_hash: None,
            jobs: RecentJobs::default(),
            force_clean: true,
            next_sequence: 0,
            submits: Awaiting::new(),
            nominal_hashrate: 0.0,
            last_update: now,
            connected_at: now,
            last_job: now,
            bad_frames: 0,
            floor_warned: false,
        }
    }

    fn url(&self) -> String {
        self.pool.url.to_string()
    }

    /// Whether version rolling is asked for (and not refused by this pool).
    fn rolls_version(&self) -> bool {
        self.options.version_rolling
            && !self.carry.leaves_out(self.pool_index, Optional::Configure)
            && self.pool_flags & POOL_REQUIRES_FIXED_VERSION == 0
    }

    fn lost(&self, reason: String) -> End {
        End::Lost {
            reason,
            healthy: self.channel.is_some() && !self.jobs.is_empty(),
        }
    }

    async fn send(&mut self, message: AnyMessage<'_>) -> Result<(), End> {
        match self.link.send(message).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.lost(Chain(&e).to_string())),
        }
    }

    async fn run(
        mut self,
        (host, port): (&str, u16),
        mut failback: Option<oneshot::Receiver<usize>>,
    ) -> End {
        let mut flags = if self.rolls_version() {
            REQUIRES_VERSION_ROLLING
        } else {
            0
        };
        if self.options.sv2_channel == Sv2Channel::Standard {
            flags |= REQUIRES_STANDARD_JOBS;
        }
        let sent = match setup_connection(host, port, flags) {
            Ok(setup) => self.send(setup).await,
            Err(e) => Err(End::Refused(Chain(&e).to_string())),
        };
        let end = match sent {
            Ok(()) => self.serve(&mut failback).await,
            Err(end) => end,
        };
        if let End::Lost { reason, .. } | End::Refused(reason) = &end {
            self.ctx.stats.record_pool_error(self.pool_index, reason);
        }
        self.finish(end).await
    }

    async fn serve(&mut self, failback: &mut Option<oneshot::Receiver<usize>>) -> End {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let sink = self.ctx.found.clone();
        loop {
            let result = tokio::select! {
                frame = self.link.incoming.recv() => match frame {
                    Some(Ok(frame)) => match PoolMessage::try_from(frame) {
                        Ok(message) => self.on_message(message).await,
                        Err(e) => {
                            self.bad_frame(Chain(&e).to_string());
                            Ok(())
                        }
                    },
                    Some(Err(e)) => Err(self.lost(Chain(&e).to_string())),
                    None => Err(self.lost("the link closed".into())),
                },
                found = sink.next() => match found {
                    Some(found) => self.on_found(found).await,
                    None => Err(End::Shutdown),
                },
                better = wait_failback(failback) => Err(End::FailBack(better)),
                _ = tick.tick() => self.on_tick().await,
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    fn bad_frame(&mut self, why: String) {
        self.bad_frames += 1;
        self.ctx.stats.record_bad_message(self.pool_index);
        if self.bad_frames <= BAD_FRAMES_LOGGED {
            tracing::warn!("{}: ignored a bad message: {why}", self.url());
        } else {
            tracing::debug!("{}: ignored a bad message: {why}", self.url());
        }
    }

    /// Timers: stopping, operator switches, silence, unanswered shares,
    /// the nominal hashrate.
    async fn on_tick(&mut self) -> Result<(), End> {
        let timeouts = &self.options.timeouts;
        if self.ctx.shutdown.is_triggered() {
            return Err(End::Shutdown);
        }
        let control = &self.ctx.control;
        if let Some(pool) = control
            .take_pool_request()
            .filter(|p| *p != self.pool_index)
        {
            return Err(End::Switch(pool));
        }
        if !control.is_pool_enabled(self.pool_index) {
            let next = control.next_enabled_pool(self.pool_index, self.options.pools.len());
            if next != self.pool_index {
                return Err(End::Switch(next));
            }
        }
        let wait = timeouts.submit_answer;
        self.submits.expire(wait, self.ctx, self.pool_index);
        if self.channel.is_none() && self.connected_at.elapsed() > timeouts.connect {
            return Err(self.lost(format!(
                "no channel opened in {:?} (SetupConnection, OpenExtendedMiningChannel)",
                timeouts.connect
            )));
        }
        if self.last_job.elapsed() > timeouts.silence {
            return Err(self.lost(format!("no job for {:?}", timeouts.silence)));
        }
        let every = if self.nominal_hashrate > 0.0 {
            UPDATE_EVERY
        } else {
            UPDATE_UNKNOWN_EVERY
        };
        if self.last_update.elapsed() >= every {
            self.last_update = Instant::now();
            self.update_channel().await?;
        }
        Ok(())
    }

    fn rig_hashrate(&self) -> f64 {
        self.ctx.stats.snapshot().total(|d| d.hashrate_1m)
    }

    /// `UpdateChannel` when the rig's hashrate moved by a tenth or more:
    /// the pool sets the share target from it.
    async fn update_channel(&mut self) -> Result<(), End> {
        let Some(channel_id) = self.channel.as_ref().map(|c| c.id) else {
            return Ok(());
        };
        let rate = self.rig_hashrate();
        let moved = (rate - self.nominal_hashrate).abs();
        if rate <= 0.0 || moved < UPDATE_FRACTION * self.nominal_hashrate {
            return Ok(());
        }
        tracing::info!(
            "{}: nominal hashrate {}",
            self.url(),
            crate::stats::format_hashrate(rate)
        );
        self.nominal_hashrate = rate;
        let message = UpdateChannel {
            channel_id,
            nominal_hash_rate: rate as f32,
            maximum_target: U256::from(&[0xff; 32]),
        };
        self.send(AnyMessage::Mining(Mining::UpdateChannel(message)))
            .await
    }

    /// The connection is set up: the channel is asked for next.
    async fn on_setup(&mut self, used_version: u16, flags: u32) -> Result<(), End> {
        tracing::info!(
            "{}: connection set up (protocol version {used_version}, flags {flags:#x})",
            self.url()
        );
        self.pool_flags = flags;
        self.ctx.stats.record_pool_answered(self.pool_index);
        self.open_channel().await
    }

    /// A pool that refuses the version-rolling flag is asked again
    /// without it (and remembered); any other refusal ends the session.
    fn on_setup_refused(&mut self, flags: u32, error_code: String) -> End {
        if flags & REQUIRES_VERSION_ROLLING != 0
            && !self.carry.leaves_out(self.pool_index, Optional::Configure)
        {
            let url = self.url();
            let why = "the pool refused SetupConnection's version-rolling flag";
            self.carry
                .leave_out(self.pool_index, &url, Optional::Configure, why);
            return End::Fallback(Optional::Configure);
        }
        End::Refused(format!("SetupConnection refused: {error_code}"))
    }

    async fn on_message(&mut self, message: PoolMessage) -> Result<(), End> {
        match message {
            PoolMessage::SetupConnectionSuccess {
                used_version,
                flags,
            } => self.on_setup(used_version, flags).await?,
            PoolMessage::SetupConnectionError { flags, error_code } => {
                return Err(self.on_setup_refused(flags, error_code));
            }
            PoolMessage::ChannelOpened(opened) => self.on_channel_opened(opened),
            PoolMessage::OpenChannelError {
                request_id: OPEN_EXTENDED,
                error_code,
            } => {
                tracing::warn!(
                    "{}: extended channel refused ({error_code}): opening a standard channel",
                    self.url()
                );
                self.open_standard_channel().await?;
            }
            PoolMessage::OpenChannelError { error_code, .. } => {
                return Err(End::Refused(format!(
                    "channel for {:?} refused: {error_code}",
                    self.pool.user
                )));
            }
            PoolMessage::ExtendedJob(job) => self.on_job(Template::Extended(job)),
            PoolMessage::StandardJob(job) => self.on_job(Template::Standard(job)),
            PoolMessage::SetNewPrevHash(prev) => self.on_new_prev_hash(prev).await?,
            PoolMessage::SetTarget { target, .. } => {
                self.set_target(target);
            }
            PoolMessage::SetExtranoncePrefix { prefix, .. } => self.on_extranonce_prefix(prefix),
            PoolMessage::SubmitSharesSuccess {
                last_sequence_number,
                ..
            } => self.on_accepted(last_sequence_number),
            PoolMessage::SubmitSharesError {
                sequence_number,
                error_code,
                ..
            } => self.on_share_error(sequence_number, error_code),
            PoolMessage::UpdateChannelError { error_code, .. } => {
                tracing::warn!("{}: UpdateChannel refused: {error_code}", self.url());
            }
            PoolMessage::CloseChannel { reason, .. } => {
                return Err(self.lost(format!("the pool closed the channel: {reason}")));
            }
            PoolMessage::Reconnect { host, port } => {
                let end = redirect(
                    self.pool,
                    self.options,
                    Some(host),
                    Some(port),
                    Duration::ZERO,
                );
                return Err(end);
            }
            PoolMessage::Ignored(what) => {
                tracing::debug!("{}: ignored {what}", self.url());
            }
        }
        Ok(())
    }

    /// As a V1 session: on shutdown, submits what the devices still find
    /// and waits for answers within the grace period; on any end, keeps
    /// unanswered shares for the next connection.
    async fn finish(mut self, end: End) -> End {
        if matches!(end, End::Shutdown) && self.channel.is_some() {
            let deadline = self
                .ctx
                .stop_deadline()
                .unwrap_or_else(|| Instant::now() + self.ctx.grace);
            let sink = self.ctx.found.clone();
            drain(&mut self, &sink, deadline).await;
        }
        let shutdown = matches!(end, End::Shutdown);
        self.submits
            .settle(shutdown, self.ctx, self.pool_index, self.carry);
        end
    }
}

impl Draining for Session<'_> {
    type Incoming = Option<Result<Frame, LinkError>>;

    async fn next_incoming(&mut self) -> Self::Incoming {
        // mpsc::Receiver::recv is cancel-safe.
        self.link.incoming.recv().await
    }

    async fn handle_incoming(&mut self, frame: Self::Incoming) -> Result<(), End> {
        match frame {
            Some(Ok(frame)) => match PoolMessage::try_from(frame) {
                Ok(message) => self.on_message(message).await,
                // Past shutdown, a bad frame is not worth a count.
                Err(_) => Ok(()),
            },
            // The link is gone: nothing more will be answered.
            _ => Err(End::Shutdown),
        }
    }

    async fn submit_found(&mut self, found: Found) -> Result<(), End> {
        self.on_found(found).await
    }

    fn awaiting_answers(&self) -> bool {
        !self.submits.is_empty()
    }
}

/// A job's SV2 id, from the string the rest of the rig carries.
fn job_id(job: &Job) -> u32 {
    job.id.parse().unwrap_or(u32::MAX)
}
