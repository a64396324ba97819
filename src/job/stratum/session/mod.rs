//! One connection to one pool, from handshake to disconnect: configure,
//! subscribe, authorize, then jobs in and shares out until the link is
//! lost, the pool redirects, a better pool is healthy again, or the miner
//! stops. What outlives a connection (unanswered shares, the session id to
//! resume) is kept by the client in [`Carry`]. Shares in and out: `shares`.

mod shares;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::Target;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::LinesCodecError;

use super::transport::Line;

use super::client::{Carry, PoolConfig, StratumOptions};
use super::messages::{Notify, ServerMessage, Session, SubscribeResult};
use super::replies::{
    configure_params, granted_version_mask, request_line, subscribe_params, Incoming, Reply,
};
use super::transport::PoolLines;
use crate::job::{Found, Job, SourceContext};
use crate::pow::target::{share_target, target_difficulty, DIFF1_TARGET};

/// Jobs kept per connection for share checks: pools send one every 30-60 s
/// between clean jobs.
const MAX_JOBS: usize = 32;
/// Malformed lines tolerated before the connection is dropped.
const MAX_BAD_LINES: u32 = 20;
/// Longest wait for a write to the pool.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait, when stopping, for the pool to answer shares in flight.
const FINAL_REPLY_WAIT: Duration = Duration::from_secs(5);

/// How a connection ended.
#[derive(Debug)]
pub enum End {
    /// The miner is stopping; shares in flight were answered or recorded.
    Shutdown,
    /// The link broke, the pool went silent or sent nonsense. `healthy`
    /// when the connection had been mining: then it is simply retried.
    Lost { reason: String, healthy: bool },
    /// The pool refused the miner (authorization, subscription): try the
    /// next pool.
    Refused(String),
    /// `client.reconnect`: connect to `host:port` after `wait`.
    Redirect {
        host: String,
        port: u16,
        wait: Duration,
    },
    /// A higher-priority pool has been healthy long enough: switch to it.
    FailBack(usize),
    /// The operator asked for another pool (API).
    Switch(usize),
}

/// What a request was, to interpret its reply.
#[derive(Debug)]
enum Pending {
    Configure,
    Subscribe,
    Authorize,
    ExtranonceSubscribe,
    SuggestDifficulty,
    Submit {
        found: Box<Found>,
        sent: Instant,
        difficulty: f64,
    },
}

pub struct Connection<'a> {
    pub pool_index: usize,
    pub pool: &'a PoolConfig,
    pub options: &'a StratumOptions,
    pub ctx: &'a SourceContext,
    pub carry: &'a mut Carry,
    pub lines: PoolLines,
    next_id: u64,
    pending: HashMap<u64, Pending>,
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
    /// Jobs of this connection still worth a share, oldest first.
    jobs: VecDeque<Arc<Job>>,
    /// The next job must stop old work whatever its clean flag says.
    force_clean: bool,
    connected_at: Instant,
    last_notify: Instant,
    bad_lines: u32,
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
            next_id: 1,
            pending: HashMap::new(),
            extranonce: None,
            authorized: false,
            share_target: DIFF1_TARGET,
            granted_mask: 0,
            version_mask: 0,
            early_notify: None,
            jobs: VecDeque::new(),
            // A new session: work of any earlier one is not this pool's.
            force_clean: true,
            connected_at: now,
            last_notify: now,
            bad_lines: 0,
        }
    }

    fn url(&self) -> String {
        self.pool.url.to_string()
    }

    /// Handshakes and mines until the connection ends.
    pub async fn run(
        mut self,
        found_rx: &mut mpsc::UnboundedReceiver<Found>,
        mut failback: Option<oneshot::Receiver<usize>>,
    ) -> End {
        let end = match self.handshake().await {
            Ok(()) => self.serve(found_rx, &mut failback).await,
            Err(end) => end,
        };
        self.finish(end, found_rx).await
    }

    async fn handshake(&mut self) -> Result<(), End> {
        if self.options.version_rolling {
            self.request("mining.configure", configure_params(), Pending::Configure)
                .await?;
        }
        let resume = self.carry.session_ids[self.pool_index].clone();
        self.request(
            "mining.subscribe",
            subscribe_params(&self.options.agent, resume.as_deref()),
            Pending::Subscribe,
        )
        .await?;
        if let Some(d) = self.options.suggest_difficulty {
            self.request(
                "mining.suggest_difficulty",
                json!([d]),
                Pending::SuggestDifficulty,
            )
            .await?;
        }
        let params = json!([self.pool.user, self.pool.password]);
        self.request("mining.authorize", params, Pending::Authorize)
            .await
    }

    async fn serve(
        &mut self,
        found_rx: &mut mpsc::UnboundedReceiver<Found>,
        failback: &mut Option<oneshot::Receiver<usize>>,
    ) -> End {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let timeouts = &self.options.timeouts;
        loop {
            let result = tokio::select! {
                line = self.lines.next() => self.on_line(line).await,
                found = found_rx.recv() => match found {
                    Some(found) => self.on_found(found).await,
                    None => Err(End::Shutdown),
                },
                better = wait_failback(failback) => Err(End::FailBack(better)),
                _ = tick.tick() => {
                    if self.ctx.shutdown.is_triggered() {
                        Err(End::Shutdown)
                    } else if let Some(pool) = self.ctx.control.take_pool_request().filter(|p| *p != self.pool_index) {
                        Err(End::Switch(pool))
                    } else if !self.authorized && self.connected_at.elapsed() > timeouts.connect {
                        Err(self.lost(format!("no answer to subscribe/authorize in {:?}", timeouts.connect)))
                    } else if self.last_notify.elapsed() > timeouts.silence {
                        Err(self.lost(format!("no job for {:?}", timeouts.silence)))
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    /// A lost connection; healthy if it had mined.
    fn lost(&self, reason: String) -> End {
        End::Lost {
            reason,
            healthy: self.authorized && !self.jobs.is_empty(),
        }
    }

    /// On shutdown, submits what the devices still send and waits briefly
    /// for answers; on any end, keeps unanswered shares for the next
    /// connection.
    async fn finish(mut self, end: End, found_rx: &mut mpsc::UnboundedReceiver<Found>) -> End {
        if matches!(end, End::Shutdown) && self.authorized {
            let deadline = tokio::time::Instant::now() + FINAL_REPLY_WAIT;
            let mut devices_done = false;
            while !(devices_done && self.pending_submits() == 0) {
                let step = tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    found = found_rx.recv(), if !devices_done => match found {
                        Some(found) => self.on_found(found).await,
                        None => { devices_done = true; Ok(()) }
                    },
                    line = self.lines.next() => self.on_line(line).await,
                };
                if step.is_err() {
                    break;
                }
            }
        }
        for (_, pending) in self.pending.drain() {
            if let Pending::Submit { found, .. } = pending {
                self.carry.keep(self.pool_index, *found, &self.ctx.stats);
            }
        }
        end
    }

    fn pending_submits(&self) -> usize {
        self.pending
            .values()
            .filter(|p| matches!(p, Pending::Submit { .. }))
            .count()
    }

    async fn send(&mut self, line: String) -> Result<(), End> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.lines.send(line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(format!("write failed: {e}"))),
            Err(_) => Err(self.lost("write timed out".into())),
        }
    }

    async fn request(&mut self, method: &str, params: Value, kind: Pending) -> Result<(), End> {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, kind);
        self.send(request_line(id, method, params)).await
    }

    async fn on_line(&mut self, line: Option<Result<Line, LinesCodecError>>) -> Result<(), End> {
        let text = match line {
            None => return Err(self.lost("the pool closed the connection".into())),
            Some(Err(e)) => return Err(self.lost(format!("read failed: {e}"))),
            Some(Ok(Line::TooLong)) => {
                return self.bad_line(format!(
                    "a line longer than {} bytes (discarded)",
                    super::transport::MAX_LINE
                ));
            }
            Some(Ok(Line::Text(text))) => text,
        };
        if text.trim().is_empty() {
            return Ok(());
        }
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return self.bad_line(format!("not JSON ({e})")),
        };
        match Incoming::try_from(&value) {
            Ok(Incoming::Reply(reply)) => self.on_reply(reply).await,
            Ok(Incoming::Message(message)) => self.on_message(message).await,
            Ok(Incoming::Unmatched(error)) => {
                tracing::debug!("{}: reply to no request: {error}", self.url());
                Ok(())
            }
            Err(e) => self.bad_line(e.to_string()),
        }
    }

    fn bad_line(&mut self, why: String) -> Result<(), End> {
        self.bad_lines += 1;
        tracing::warn!("{}: ignored a bad message: {why}", self.url());
        if self.bad_lines > MAX_BAD_LINES {
            return Err(self.lost(format!("{} bad messages", self.bad_lines)));
        }
        Ok(())
    }

    async fn on_reply(&mut self, reply: Reply) -> Result<(), End> {
        let Some(kind) = self.pending.remove(&reply.id) else {
            tracing::debug!("{}: reply to unknown id {}", self.url(), reply.id);
            return Ok(());
        };
        match kind {
            Pending::Configure => {
                self.granted_mask = granted_version_mask(&reply).unwrap_or(0);
                self.version_mask = self.granted_mask;
                match self.granted_mask {
                    0 => tracing::info!("{}: no version rolling", self.url()),
                    m => tracing::info!("{}: version rolling, mask {m:08x}", self.url()),
                }
            }
            Pending::Subscribe => {
                if reply.error.is_some() {
                    // Perhaps only the resumed session was refused.
                    self.carry.session_ids[self.pool_index] = None;
                    return Err(End::Refused(format!(
                        "subscribe refused: {}",
                        reply.reason()
                    )));
                }
                let subscribed = SubscribeResult::try_from(&reply.result)
                    .map_err(|e| End::Refused(format!("bad subscribe reply: {e}")))?;
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
            Pending::Authorize => {
                if !reply.is_true() {
                    return Err(End::Refused(format!(
                        "worker {:?} not authorized: {}",
                        self.pool.user,
                        reply.reason()
                    )));
                }
                self.authorized = true;
                tracing::info!("{}: authorized as {}", self.url(), self.pool.user);
                // Optional: pools that do not know it answer with an error.
                self.request(
                    "mining.extranonce.subscribe",
                    json!([]),
                    Pending::ExtranonceSubscribe,
                )
                .await?;
            }
            Pending::ExtranonceSubscribe | Pending::SuggestDifficulty => {
                if let Some(e) = &reply.error {
                    tracing::debug!("{}: optional request refused: {}", self.url(), e.message);
                }
            }
            Pending::Submit {
                found,
                sent,
                difficulty,
            } => self.on_submit_reply(*found, sent, difficulty, &reply),
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
            ServerMessage::SetDifficulty(difficulty) => match share_target(difficulty) {
                Ok(target) => {
                    tracing::info!("{}: difficulty {difficulty} from the next job", self.url());
                    self.share_target = target;
                }
                Err(e) => tracing::warn!("{}: ignored: {e}", self.url()),
            },
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
                let same = self.pool.url.host.clone();
                let host = match host {
                    Some(h) if !h.eq_ignore_ascii_case(&same) && !self.options.allow_redirect => {
                        tracing::warn!(
                            "{}: asked to reconnect to {h}; staying on {same} (redirects to other hosts need --allow-redirect)",
                            self.url()
                        );
                        same
                    }
                    Some(h) if !h.is_empty() => h,
                    _ => same,
                };
                return Err(End::Redirect {
                    host,
                    port: port.unwrap_or(self.pool.url.port),
                    wait: Duration::from_secs(wait_s),
                });
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
        };
        let mut job = notify.to_job(&session);
        // A new previous block makes old work worthless, flag or no flag.
        let new_block = self
            .jobs
            .back()
            .is_some_and(|last| last.prev_hash != job.prev_hash);
        let first = self.jobs.is_empty() && self.force_clean;
        job.clean |= self.force_clean || new_block;
        self.force_clean = false;
        let clean = job.clean;
        let job = self.ctx.work.publish(job);
        self.ctx
            .stats
            .set_share_difficulty(Some(target_difficulty(&job.share_target)));
        self.carry.issued(job.generation, self.pool_index);
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
        if first {
            // Shares found while disconnected, still worth sending?
            for found in self.carry.take_backlog() {
                let work_job = &found.work.job;
                let same_session = self.carry.pool_of(work_job.generation) == Some(self.pool_index)
                    && work_job.extranonce1 == job.extranonce1
                    && work_job.prev_hash == job.prev_hash;
                if same_session {
                    self.submit(found).await?;
                } else {
                    self.count_stale(&found, "its job ended with the old connection");
                }
            }
        }
        Ok(())
    }
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
