//! One connection to one Stratum V2 pool: Noise handshake against the
//! pinned key, `SetupConnection` for the mining protocol, one extended
//! channel (hashrig rolls its own extranonce, so every device gets disjoint
//! work, as with V1), then jobs in and shares out until the link is lost,
//! the pool closes the channel or redirects, a better pool is healthy again,
//! or the miner stops. It ends with the same [`End`] as a V1 session, so the
//! failover loop treats both alike.
//!
//! Jobs: `NewExtendedMiningJob` without `min_ntime` is a future job, mined
//! once a `SetNewPrevHash` names it; with one, it is mined on the current
//! previous block at once. Shares: `SubmitSharesExtended` with a sequence
//! number; the pool acknowledges in batches (`SubmitShares.Success` covers
//! every sequence number up to its last that no `SubmitShares.Error` named).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::{Target, TxMerkleNode};
use stratum_core::binary_sv2::{Str0255, B032, U256};
use stratum_core::common_messages_sv2::{Protocol, SetupConnection};
use stratum_core::mining_sv2::{
    OpenExtendedMiningChannel, OpenStandardMiningChannel, SubmitSharesExtended,
    SubmitSharesStandard, UpdateChannel,
};
use stratum_core::parsers_sv2::{AnyMessage, CommonMessages, Mining};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::messages::{ExtendedJob, NewPrevHash, OpenedChannel, PoolMessage, StandardJob};
use super::transport::{Link, LinkError};
use crate::found::Found;
use crate::job::source::SourceContext;
use crate::job::stratum::options::{PoolConfig, StratumOptions, Sv2Channel};
use crate::job::stratum::session::{count_stale, record_answer, Carry, End, InFlight, Optional};
use crate::job::{Job, Origin, SourceKind};
use crate::pow::target::{share_target, target_difficulty};
use crate::stats::ShareResult;

/// `SetupConnection` flag (mining protocol): the miner understands only
/// standard jobs on standard channels (no group channels).
const REQUIRES_STANDARD_JOBS: u32 = 1;
/// `SetupConnection` flag (mining protocol): the miner rolls version bits.
const REQUIRES_VERSION_ROLLING: u32 = 1 << 2;
/// BIP 320's general-purpose version bits, which an extended job that
/// allows version rolling lets the miner change.
const BIP320_MASK: u32 = 0x1fff_e000;
/// Bytes of extranonce asked for: 2^32 extranonces × 2^32 nonces per job
/// outlasts any rig between jobs.
const MIN_EXTRANONCE: u16 = 4;
/// The most extranonce bytes the rest of the rig rolls; a pool granting more
/// gets the leading ones as zeros.
const MAX_ROLLED: usize = 8;
/// Jobs kept per connection for share checks.
const MAX_JOBS: usize = 32;
/// Future jobs kept while waiting for their `SetNewPrevHash`.
const MAX_FUTURE_JOBS: usize = 8;
/// Shares awaiting an answer at most; past it the oldest is given up on.
const MAX_IN_FLIGHT: usize = 1000;
/// Bad frames logged per connection at warning level; the rest are counted.
const BAD_FRAMES_LOGGED: u32 = 5;
/// How often the channel's nominal hashrate is checked against the rig's.
const UPDATE_EVERY: Duration = Duration::from_secs(30);
/// A change of this fraction in the rig's hashrate is sent to the pool.
const UPDATE_FRACTION: f64 = 0.1;
/// The request ids of the channel a connection opens: extended first, or
/// standard (asked for, or after the pool refused an extended one).
const OPEN_EXTENDED: u32 = 1;
const OPEN_STANDARD: u32 = 2;

/// Whether a Stratum V2 pool completes the handshake and the connection
/// setup: the fail-back probe of a better pool.
pub async fn probe(pool: &PoolConfig, options: &StratumOptions) -> bool {
    let timeout = options.timeouts.connect;
    let attempt = async {
        let mut link = connect(pool, &pool.url.host, pool.url.port, timeout)
            .await
            .ok()?;
        let setup = setup_connection(&pool.url.host, pool.url.port, 0).ok()?;
        link.send(setup).await.ok()?;
        while let Some(Ok(frame)) = link.incoming.recv().await {
            match PoolMessage::try_from(frame) {
                Ok(PoolMessage::SetupConnectionSuccess { .. }) => return Some(true),
                Ok(PoolMessage::SetupConnectionError { .. }) => return Some(false),
                _ => {}
            }
        }
        None
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

async fn connect(
    pool: &PoolConfig,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Link, LinkError> {
    let peer = pool.url.to_string();
    let io = |detail: String| LinkError::Io {
        peer: peer.clone(),
        detail,
    };
    let Some(key) = pool.url.authority_key else {
        return Err(io("not a Stratum V2 pool".into()));
    };
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| io(format!("connect to {host}:{port} timed out")))?
        .map_err(|e| io(format!("connect to {host}:{port} failed: {e}")))?;
    let _ = stream.set_nodelay(true);
    Link::connect(stream, key, &peer, timeout).await
}

fn setup_connection(host: &str, port: u16, flags: u32) -> Result<AnyMessage<'_>, String> {
    Ok(AnyMessage::Common(CommonMessages::SetupConnection(
        SetupConnection {
            protocol: Protocol::MiningProtocol,
            min_version: 2,
            max_version: 2,
            flags,
            endpoint_host: str0255(host)?,
            endpoint_port: port,
            vendor: str0255("hashrig")?,
            hardware_version: str0255("GPU rig")?,
            firmware: str0255(env!("CARGO_PKG_VERSION"))?,
            device_id: str0255("")?,
        },
    )))
}

/// A string field, cut to its 255 bytes at a character boundary.
fn str0255(text: &str) -> Result<Str0255<'_>, String> {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Str0255::try_from(&text[..end]).map_err(|e| format!("could not encode {text:?}: {e:?}"))
}

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
) -> Result<End, String> {
    let link = match connect(pool, host, port, options.timeouts.connect).await {
        Ok(link) => link,
        // A pool that cannot prove the pinned key is not one to retry.
        Err(e @ LinkError::Certificate { .. }) => {
            ctx.stats.record_pool_error(pool_index, &e.to_string());
            return Ok(End::Refused(e.to_string()));
        }
        Err(e) => return Err(format!("{}: {e}", pool.url)),
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

/// A job the pool sent, before it is published.
#[derive(Debug, Clone)]
enum Template {
    Extended(ExtendedJob),
    Standard(StandardJob),
}

impl Template {
    fn id(&self) -> u32 {
        match self {
            Template::Extended(job) => job.job_id,
            Template::Standard(job) => job.job_id,
        }
    }

    fn min_ntime(&self) -> Option<u32> {
        match self {
            Template::Extended(job) => job.min_ntime,
            Template::Standard(job) => job.min_ntime,
        }
    }
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
    setup: bool,
    channel: Option<Channel>,
    share_target: Target,
    /// Jobs by id: future ones and the recent ones, for `SetNewPrevHash`
    /// to activate.
    templates: HashMap<u32, Template>,
    template_order: VecDeque<u32>,
    prev_hash: Option<NewPrevHash>,
    /// Jobs published from this connection, oldest first.
    jobs: VecDeque<Arc<Job>>,
    force_clean: bool,
    next_sequence: u32,
    submits: BTreeMap<u32, InFlight>,
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
            setup: false,
            channel: None,
            share_target: Target::MAX,
            templates: HashMap::new(),
            template_order: VecDeque::new(),
            prev_hash: None,
            jobs: VecDeque::new(),
            force_clean: true,
            next_sequence: 0,
            submits: BTreeMap::new(),
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
        self.options.version_rolling && !self.carry.leaves_out(self.pool_index, Optional::Configure)
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
            Err(e) => Err(self.lost(e.to_string())),
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
            Err(e) => Err(End::Refused(e)),
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
                            self.bad_frame(e.to_string());
                            Ok(())
                        }
                    },
                    Some(Err(e)) => Err(self.lost(e.to_string())),
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
        self.expire_submits();
        if self.channel.is_none() && self.connected_at.elapsed() > timeouts.connect {
            return Err(self.lost(format!(
                "no channel opened in {:?} (SetupConnection, OpenExtendedMiningChannel)",
                timeouts.connect
            )));
        }
        if self.last_job.elapsed() > timeouts.silence {
            return Err(self.lost(format!("no job for {:?}", timeouts.silence)));
        }
        if self.last_update.elapsed() >= UPDATE_EVERY {
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

    async fn on_message(&mut self, message: PoolMessage) -> Result<(), End> {
        match message {
            PoolMessage::SetupConnectionSuccess {
                used_version,
                flags,
            } => {
                tracing::info!(
                    "{}: connection set up (protocol version {used_version}, flags {flags:#x})",
                    self.url()
                );
                self.setup = true;
                self.ctx.stats.record_pool_answered(self.pool_index);
                self.open_channel().await?;
            }
            PoolMessage::SetupConnectionError { flags, error_code } => {
                if flags & REQUIRES_VERSION_ROLLING != 0
                    && !self.carry.leaves_out(self.pool_index, Optional::Configure)
                {
                    let url = self.url();
                    let why = "the pool refused SetupConnection's version-rolling flag";
                    self.carry
                        .leave_out(self.pool_index, &url, Optional::Configure, why);
                    return Err(End::Fallback(Optional::Configure));
                }
                return Err(End::Refused(format!(
                    "SetupConnection refused: {error_code}"
                )));
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
            PoolMessage::Reconnect { host, port } => return Err(self.on_reconnect(host, port)),
            PoolMessage::Ignored(what) => {
                tracing::debug!("{}: ignored {what}", self.url());
            }
        }
        Ok(())
    }

    async fn open_channel(&mut self) -> Result<(), End> {
        if self.options.sv2_channel == Sv2Channel::Standard {
            return self.open_standard_channel().await;
        }
        let user_identity = str0255(&self.pool.user).map_err(End::Refused)?;
        let message = OpenExtendedMiningChannel {
            request_id: OPEN_EXTENDED,
            user_identity,
            nominal_hash_rate: self.rig_hashrate() as f32,
            max_target: U256::from(&[0xff; 32]),
            min_extranonce_size: MIN_EXTRANONCE,
        };
        self.nominal_hashrate = self.rig_hashrate();
        self.last_update = Instant::now();
        self.send(AnyMessage::Mining(Mining::OpenExtendedMiningChannel(
            message,
        )))
        .await
    }

    async fn open_standard_channel(&mut self) -> Result<(), End> {
        let user_identity = str0255(&self.pool.user).map_err(End::Refused)?;
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

    fn on_channel_opened(&mut self, opened: OpenedChannel) {
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
    fn set_target(&mut self, target: Target) {
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

    fn on_extranonce_prefix(&mut self, prefix: Vec<u8>) {
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

    fn on_job(&mut self, template: Template) {
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

    fn remember(&mut self, template: Template) {
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

    async fn on_new_prev_hash(&mut self, prev: NewPrevHash) -> Result<(), End> {
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

    fn publish(&mut self, template: &Template, prev: &NewPrevHash, new_block: bool) {
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
        let job = self.ctx.work.publish(job);
        self.ctx
            .stats
            .set_share_difficulty(Some(target_difficulty(&job.share_target)));
        if clean {
            self.jobs.clear();
        }
        self.jobs.push_back(job.clone());
        while self.jobs.len() > MAX_JOBS {
            self.jobs.pop_front();
        }
        tracing::debug!(
            "{}: job {} (generation {}, clean {clean}, difficulty {:.4})",
            self.url(),
            job.id,
            job.generation,
            target_difficulty(&job.share_target)
        );
    }

    /// Shares found while disconnected, still worth sending?
    async fn send_backlog(&mut self) -> Result<(), End> {
        let Some(job) = self.jobs.back().cloned() else {
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

    fn on_reconnect(&self, host: String, port: u16) -> End {
        let same = self.pool.url.host.clone();
        let host = if host.is_empty() {
            same
        } else if !host.eq_ignore_ascii_case(&same) && !self.options.allow_redirect {
            tracing::warn!(
                "{}: asked to reconnect to {host}; staying on {same} (redirects to other hosts need --allow-redirect)",
                self.url()
            );
            same
        } else {
            host
        };
        End::Redirect {
            host,
            port: if port == 0 { self.pool.url.port } else { port },
            wait: Duration::ZERO,
        }
    }

    async fn on_found(&mut self, found: Found) -> Result<(), End> {
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
        let active = self.jobs.iter().any(|j| j.generation == job.generation);
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

    async fn submit(&mut self, found: Found) -> Result<(), End> {
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
        let difficulty = target_difficulty(&work.job.share_target);
        if self.submits.len() >= MAX_IN_FLIGHT {
            if let Some((_, oldest)) = self.submits.pop_first() {
                self.give_up(&oldest, "too many awaiting an answer");
            }
        }
        self.submits.insert(
            sequence_number,
            InFlight {
                found: Box::new(found),
                sent: Instant::now(),
                difficulty,
            },
        );
        self.send(AnyMessage::Mining(message)).await
    }

    /// `SubmitShares.Success`: every share up to `last` still waiting was
    /// accepted (the rejected ones were answered one by one).
    fn on_accepted(&mut self, last: u32) {
        let answered: Vec<u32> = self
            .submits
            .keys()
            .copied()
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

    fn on_share_error(&mut self, sequence_number: u32, error_code: String) {
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

    fn expire_submits(&mut self) {
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
            let mut devices_done = false;
            while !(devices_done && self.submits.is_empty()) {
                let step = tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => break,
                    found = sink.next(), if !devices_done => match found {
                        Some(found) => self.on_found(found).await,
                        None => { devices_done = true; Ok(()) }
                    },
                    frame = self.link.incoming.recv() => match frame {
                        Some(Ok(frame)) => match PoolMessage::try_from(frame) {
                            Ok(message) => self.on_message(message).await,
                            Err(_) => Ok(()),
                        },
                        _ => Err(End::Shutdown),
                    },
                };
                if step.is_err() {
                    break;
                }
            }
        }
        for (_, in_flight) in std::mem::take(&mut self.submits) {
            if matches!(end, End::Shutdown) {
                self.ctx.stats.record_unanswered(self.pool_index);
            } else {
                self.carry
                    .keep(self.pool_index, *in_flight.found, &self.ctx.stats);
            }
        }
        end
    }
}

/// A job's SV2 id, from the string the rest of the rig carries.
fn job_id(job: &Job) -> u32 {
    job.id.parse().unwrap_or(u32::MAX)
}

async fn wait_failback(failback: &mut Option<oneshot::Receiver<usize>>) -> usize {
    match failback {
        Some(rx) => match rx.await {
            Ok(index) => index,
            Err(_) => {
                *failback = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}
