//! One connection to one pool, from handshake to disconnect: configure,
//! subscribe, authorize, then jobs in and shares out until the link is
//! lost, the pool redirects, a better pool is healthy again, or the miner
//! stops. What outlives a connection (unanswered shares, the session id to
//! resume, requests the pool does not take) is kept in `Carry` (`carry.rs`,
//! shared with V2); how a connection ends is `End` (`end.rs`). Shares in
//! and out: `shares`.
//!
//! Real pools differ in what they refuse and how. ckpool drops the
//! connection of a client that sends anything before `mining.subscribe`
//! (BIP 310's `mining.configure` included); others answer an optional
//! request with an error, or never. An optional request that is refused,
//! left unanswered while the miner is not yet authorized, or pending when
//! the pool hangs up, is left out for that pool from then on, and the miner
//! reconnects at once without it. A line that is not a valid message is
//! counted and skipped (bytes that are not UTF-8 too); only an oversized one
//! ends the connection.

mod handshake;
mod shares;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::Target;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::carry::{Carry, Optional};
use super::drain::{drain, Draining};
use super::end::{redirect, wait_failback, End};
use super::messages::{Notify, ServerMessage, Session, SubscribeResult};
use super::options::{PoolConfig, StratumOptions};
use super::replies::{request_line, Incoming, Reply};
use super::tracking::{Awaiting, RecentJobs};
use super::transport::{Line, PoolLines, MAX_LINE};
use crate::error_chain::Chain;
use crate::found::Found;
use crate::job::source::SourceContext;
use crate::job::{Origin, SourceKind};
use crate::pow::target::{share_target, DIFF1_TARGET};

/// Bad lines logged per connection at warning level; the rest are counted.
const BAD_LINES_LOGGED: u32 = 5;
/// Longest wait for a write to the pool.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request other than a submit was, to interpret its reply.
#[derive(Debug)]
enum Request {
    Optional { which: Optional, sent: Instant },
    Subscribe,
    Authorize,
}

pub struct Connection<'a> {
    pub pool_index: usize,
    pub pool: &'a PoolConfig,
    pub options: &'a StratumOptions,
    pub ctx: &'a SourceContext,
    pub carry: &'a mut Carry,
    pub lines: PoolLines,
    origin: Origin,
    next_id: u64,
    requests: HashMap<u64, Request>,
    /// Shares sent and not yet answered, by id (so oldest first).
    submits: Awaiting<u64>,
    /// extranonce1 and extranonce2 size, once subscribed.
    extranonce: Option<(Vec<u8>, usize)>,
    authorized: bool,
    /// The share target for the next job (`mining.set_difficulty`).
    share_target: Target,
    /// The BIP 310 mask the pool granted, and the one now in force.
    granted_mask: u32,
    version_mask: u32,
    /// A notify that came before the subscription reply.
    early_notify: Option<Arc<Notify>>,
    /// Jobs of this connection still worth a share.
    jobs: RecentJobs,
    /// The next job must stop old work whatever its clean flag says.
    force_clean: bool,
    connected_at: Instant,
    last_notify: Instant,
    bad_lines: u32,
    /// Said once per connection: the pool's difficulty is under the floor.
    floor_warned: bool,
}

impl<'a> Connection<'a> {
    pub fn new(
        pool_index: usize,
        pool: &'a PoolConfig,
        options: &'a StratumOptions,
        ctx: &'a SourceContext,
        carry: &'a mut Carry,
        lines: PoolLines,
    ) -> Self {
        let now = Instant::now();
        Connection {
            pool_index,
            pool,
            options,
            ctx,
            carry,
            lines,
            origin: Origin::new(SourceKind::Pool, pool_index, &pool.url.to_string()),
            next_id: 1,
            requests: HashMap::new(),
            submits: Awaiting::new(),
            extranonce: None,
            authorized: false,
            share_target: DIFF1_TARGET,
            granted_mask: 0,
            version_mask: 0,
            early_notify: None,
            jobs: RecentJobs::default(),
            // A new session: work of any earlier one is not this pool's.
            force_clean: true,
            connected_at: now,
            last_notify: now,
            bad_lines: 0,
            floor_warned: false,
        }
    }

    fn url(&self) -> String {
        self.pool.url.to_string()
    }

    /// Handshakes and mines until the connection ends.
    pub async fn run(mut self, mut failback: Option<oneshot::Receiver<usize>>) -> End {
        let end = match self.handshake().await {
            Ok(()) => {
                self.ctx.stats.record_pool_answered(self.pool_index);
                self.serve(&mut failback).await
            }
            Err(end) => {
                if let End::Lost { reason, .. } | End::Refused(reason) = &end {
                    self.ctx.stats.record_pool_error(self.pool_index, reason);
                }
                end
            }
        };
        let end = self.blame_optional(end);
        self.finish(end).await
    }

    async fn serve(&mut self, failback: &mut Option<oneshot::Receiver<usize>>) -> End {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let sink = self.ctx.found.clone();
        loop {
            let result = tokio::select! {
                line = self.lines.next() => self.on_line(line).await,
                found = sink.next() => match found {
                    Some(found) => self.on_found(found).await,
                    // Every device is gone: nothing more to mine for.
                    None => Err(End::Shutdown),
                },
                better = wait_failback(failback) => Err(End::FailBack(better)),
                _ = tick.tick() => self.on_tick(),
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    /// Timers: stopping, operator switches, silence, unanswered requests.
    fn on_tick(&mut self) -> Result<(), End> {
        let timeouts = &self.options.timeouts;
        if self.ctx.shutdown.is_triggered() {
            return Err(End::Shutdown);
        }
        if let Some(pool) = self
            .ctx
            .control
            .take_pool_request()
            .filter(|p| *p != self.pool_index)
        {
            return Err(End::Switch(pool));
        }
        let control = &self.ctx.control;
        if !control.is_pool_enabled(self.pool_index) {
            let next = control.next_enabled_pool(self.pool_index, self.options.pools.len());
            if next != self.pool_index {
                return Err(End::Switch(next));
            }
        }
        self.check_optionals()?;
        self.expire_submits();
        if !self.authorized && self.connected_at.elapsed() > timeouts.connect {
            return Err(self.lost(format!(
                "no answer to subscribe/authorize in {:?}",
                timeouts.connect
            )));
        }
        if self.last_notify.elapsed() > timeouts.silence {
            return Err(self.lost(format!("no job for {:?}", timeouts.silence)));
        }
        Ok(())
    }

    /// A lost connection; healthy if it had mined.
    fn lost(&self, reason: String) -> End {
        End::Lost {
            reason,
            healthy: self.authorized && !self.jobs.is_empty(),
        }
    }

    /// On shutdown, submits what the devices still find and waits for
    /// answers until the sink is drained and answered or the grace period
    /// is over; on any end, keeps unanswered shares for the next connection.
    async fn finish(mut self, end: End) -> End {
        if matches!(end, End::Shutdown) && self.authorized {
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

    async fn send(&mut self, line: String) -> Result<(), End> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.lines.send(line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(format!("write failed: {}", Chain(&e)))),
            Err(_) => Err(self.lost("write timed out".into())),
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn request(&mut self, method: &str, params: Value, kind: Request) -> Result<(), End> {
        let id = self.take_id();
        self.requests.insert(id, kind);
        self.send(request_line(id, method, params)).await
    }

    async fn on_line(&mut self, line: Option<Result<Line, std::io::Error>>) -> Result<(), End> {
        let text = match line {
            None => return Err(self.lost("the pool closed the connection".into())),
            Some(Err(e)) => return Err(self.lost(format!("read failed: {}", Chain(&e)))),
            // Bounded memory needs a bound on lines; a pool past it is not
            // one to keep talking to.
            Some(Ok(Line::TooLong)) => {
                self.ctx.stats.record_bad_message(self.pool_index);
                return Err(self.lost(format!("a line longer than {MAX_LINE} bytes")));
            }
            // Not a reason to hang up, nor to blame a request in flight.
            Some(Ok(Line::NotUtf8 { len, valid_up_to })) => {
                self.bad_line(format!(
                    "a line of {len} bytes that is not UTF-8 (from byte {valid_up_to})"
                ));
                return Ok(());
            }
            Some(Ok(Line::Text(text))) => text,
        };
        if text.trim().is_empty() {
            return Ok(());
        }
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                self.bad_line(format!("not JSON ({e})"));
                return Ok(());
            }
        };
        match Incoming::try_from(&value) {
            Ok(Incoming::Reply(reply)) => self.on_reply(reply).await,
            Ok(Incoming::Message(message)) => self.on_message(message).await,
            Ok(Incoming::Unmatched(error)) => {
                tracing::debug!("{}: reply to no request: {error}", self.url());
                Ok(())
            }
            Err(e) => {
                self.bad_line(e.to_string());
                Ok(())
            }
        }
    }

    /// Counts and skips a line that is no valid message.
    fn bad_line(&mut self, why: String) {
        self.bad_lines += 1;
        self.ctx.stats.record_bad_message(self.pool_index);
        if self.bad_lines <= BAD_LINES_LOGGED {
            tracing::warn!("{}: ignored a bad message: {why}", self.url());
        } else {
            tracing::debug!("{}: ignored a bad message: {why}", self.url());
        }
    }

    async fn on_reply(&mut self, reply: Reply) -> Result<(), End> {
        if let Some(in_flight) = self.submits.remove(&reply.id) {
            self.on_submit_reply(in_flight, &reply);
            return Ok(());
        }
        let Some(kind) = self.requests.remove(&reply.id) else {
            tracing::debug!("{}: reply to unknown id {}", self.url(), reply.id);
            return Ok(());
        };
        match kind {
            Request::Optional { which, .. } => self.on_optional_reply(which, &reply),
            Request::Subscribe => {
                if reply.error.is_some() {
                    // Perhaps only the resumed session was refused.
                    self.carry.session_ids[self.pool_index] = None;
                    return Err(End::Refused(format!(
                        "subscribe refused: {}",
                        reply.reason()
                    )));
                }
                let subscribed = SubscribeResult::try_from(&reply.result)
                    .map_err(|e| End::Refused(format!("bad subscribe reply: {}", Chain(&e))))?;
                let resumed = self.carry.extranonce1s[self.pool_index].as_ref()
                    == Some(&subscribed.extranonce1);
                tracing::info!(
                    "{}: subscribed, extranonce1 {} ({} bytes of extranonce2){}",
                    self.url(),
                    hex::encode(&subscribed.extranonce1),
                    subscribed.extranonce2_size,
                    if resumed { ", session resumed" } else { "" }
                );
                self.carry.session_ids[self.pool_index] = subscribed.session_id;
                self.carry.extranonce1s[self.pool_index] = Some(subscribed.extranonce1.clone());
                self.extranonce = Some((subscribed.extranonce1, subscribed.extranonce2_size));
                if let Some(notify) = self.early_notify.take() {
                    self.on_notify(notify).await?;
                }
            }
            Request::Authorize => {
                if !reply.is_true() {
                    return Err(End::Refused(format!(
                        "worker {:?} not authorized: {}",
                        self.pool.user,
                        reply.reason()
                    )));
                }
                self.authorized = true;
                tracing::info!("{}: authorized as {}", self.url(), self.pool.user);
                if !self.leaves_out(Optional::ExtranonceSubscribe) {
                    self.optional(Optional::ExtranonceSubscribe, json!([]))
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn on_message(&mut self, message: ServerMessage) -> Result<(), End> {
        match message {
            ServerMessage::Notify(notify) => {
                if self.extranonce.is_some() {
                    self.on_notify(notify).await?;
                } else {
                    self.early_notify = Some(notify);
                }
            }
            ServerMessage::SetDifficulty(difficulty) => self.on_difficulty(difficulty),
            ServerMessage::SetExtranonce {
                extranonce1,
                extranonce2_size,
            } => {
                tracing::info!(
                    "{}: new extranonce1 {} from the next job",
                    self.url(),
                    hex::encode(&extranonce1)
                );
                self.carry.extranonce1s[self.pool_index] = Some(extranonce1.clone());
                self.extranonce = Some((extranonce1, extranonce2_size));
                self.force_clean = true;
            }
            ServerMessage::SetVersionMask(mask) => {
                let mask = mask & self.granted_mask;
                // Work rolled on bits no longer allowed must stop.
                if self.version_mask & !mask != 0 {
                    self.force_clean = true;
                }
                tracing::info!("{}: version mask {mask:08x} from the next job", self.url());
                self.version_mask = mask;
            }
            ServerMessage::Reconnect { host, port, wait_s } => {
                let wait = Duration::from_secs(wait_s);
                return Err(redirect(self.pool, self.options, host, port, wait));
            }
            ServerMessage::ShowMessage(text) => {
                tracing::info!("{} says: {text}", self.url());
            }
            ServerMessage::GetVersion { id } => {
                let line = json!({"id": id, "result": self.options.agent, "error": null});
                self.send(line.to_string()).await?;
            }
            ServerMessage::Unknown(method) => {
                tracing::debug!("{}: ignored unknown method {method}", self.url());
            }
        }
        Ok(())
    }

    /// `mining.set_difficulty`, from the next job, and never below the
    /// floor: a pool asking for 1e-9 would make every hash a share.
    fn on_difficulty(&mut self, difficulty: f64) {
        let floor = self.options.min_difficulty;
        let used = if difficulty < floor {
            if !std::mem::replace(&mut self.floor_warned, true) {
                tracing::warn!(
                    "{}: difficulty {difficulty} is below the floor {floor} (--min-difficulty): shares are sent at {floor}",
                    self.url()
                );
            }
            floor
        } else {
            difficulty
        };
        match share_target(used) {
            Ok(target) => {
                tracing::info!("{}: difficulty {used} from the next job", self.url());
                self.share_target = target;
            }
            Err(e) => tracing::warn!("{}: ignored: {e}", self.url()),
        }
    }

    async fn on_notify(&mut self, notify: Arc<Notify>) -> Result<(), End> {
        let Some((extranonce1, extranonce2_size)) = self.extranonce.clone() else {
            return Ok(());
        };
        self.last_notify = Instant::now();
        let session = Session {
            extranonce1,
            extranonce2_size,
            share_target: self.share_target,
            version_mask: self.version_mask,
            origin: self.origin.clone(),
        };
        let mut job = notify.to_job(&session);
        // A new previous block makes old work worthless, flag or no flag.
        let new_block = self
            .jobs
            .last()
            .is_some_and(|last| last.prev_hash != job.prev_hash);
        let first = self.jobs.is_empty() && self.force_clean;
        job.clean |= self.force_clean || new_block;
        self.force_clean = false;
        let url = self.url();
        let job = self.jobs.publish(job, self.ctx, &url);
        if first {
            // Shares found while disconnected, still worth sending?
            for found in self.carry.take_backlog() {
                let work_job = &found.work.job;
                let same_session = work_job.origin.index == self.pool_index
                    && work_job.extranonce1 == job.extranonce1
                    && work_job.prev_hash == job.prev_hash;
                if same_session {
                    // A backlog is no reason to flood a pool just back.
                    self.submit_within_budget(found).await?;
                } else {
                    self.count_stale(&found, "its job ended with the old connection");
                }
            }
        }
        Ok(())
    }
}

impl Draining for Connection<'_> {
    type Incoming = Option<Result<Line, std::io::Error>>;

    async fn next_incoming(&mut self) -> Self::Incoming {
        // StreamExt::next on a framed reader is cancel-safe.
        self.lines.next().await
    }

    async fn handle_incoming(&mut self, line: Self::Incoming) -> Result<(), End> {
        self.on_line(line).await
    }

    async fn submit_found(&mut self, found: Found) -> Result<(), End> {
        self.on_found(found).await
    }

    fn awaiting_answers(&self) -> bool {
        !self.submits.is_empty()
    }
}
