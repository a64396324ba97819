//! The Stratum job source: keeps one pool connection alive out of an
//! ordered failover list, reconnecting with exponential backoff and jitter,
//! failing over after repeated failures and back to a better pool once it
//! has been healthy for a while.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::replies::{request_line, subscribe_params, Incoming};
use super::session::{Connection, End};
use super::transport::connect;
use super::url::PoolUrl;
use crate::job::found_blocks::{unix_now, FoundBlockLog};
use crate::job::{Found, JobSource, JobSourceError, SourceContext};
use crate::pow::header::header_bytes;
use crate::stats::{ShareResult, Stats};

/// One entry of the failover list.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub url: PoolUrl,
    pub user: String,
    pub password: String,
    /// SHA-256 of the pool's TLS certificate, to pin it.
    pub cert_fingerprint: Option<[u8; 32]>,
}

/// How patient the client is.
#[derive(Debug, Clone)]
pub struct StratumTimeouts {
    /// For TCP/TLS connect, and again for the subscribe/authorize answers.
    pub connect: Duration,
    /// No job for this long: reconnect.
    pub silence: Duration,
    /// A better pool must answer probes this long before it is used again.
    pub failback_after: Duration,
    /// The longest pause between reconnect attempts.
    pub backoff_max: Duration,
}

impl Default for StratumTimeouts {
    fn default() -> Self {
        StratumTimeouts {
            connect: Duration::from_secs(10),
            silence: Duration::from_secs(180),
            failback_after: Duration::from_secs(120),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// Everything the Stratum source is told.
#[derive(Debug, Clone)]
pub struct StratumOptions {
    /// Failover order: the first is preferred.
    pub pools: Vec<PoolConfig>,
    /// What `mining.subscribe` and `client.get_version` say.
    pub agent: String,
    pub suggest_difficulty: Option<f64>,
    /// Follow `client.reconnect` to another host.
    pub allow_redirect: bool,
    /// Ask for BIP 310 version rolling.
    pub version_rolling: bool,
    pub timeouts: StratumTimeouts,
    /// Where found blocks are written before submission.
    pub found_blocks: Option<Arc<FoundBlockLog>>,
}

impl StratumOptions {
    pub fn new(pools: Vec<PoolConfig>) -> Self {
        StratumOptions {
            pools,
            agent: format!("hashrig/{}", env!("CARGO_PKG_VERSION")),
            suggest_difficulty: None,
            allow_redirect: false,
            version_rolling: true,
            timeouts: StratumTimeouts::default(),
            found_blocks: None,
        }
    }
}

/// Shares unanswered when a connection ended, kept for the next one.
const MAX_BACKLOG: usize = 1024;
/// Consecutive failures of one pool before the next is tried.
const FAILOVER_AFTER: u32 = 2;
/// Disconnected this long, devices stop mining the old job.
const WITHDRAW_AFTER: Duration = Duration::from_secs(120);

/// What outlives one connection.
#[derive(Debug, Default)]
pub struct Carry {
    /// Per pool: the session id and extranonce1 to resume.
    pub session_ids: Vec<Option<String>>,
    pub extranonce1s: Vec<Option<Vec<u8>>>,
    backlog: VecDeque<Found>,
    /// Which pool issued each recent job generation.
    issued_by: HashMap<u64, usize>,
    issued_order: VecDeque<u64>,
}

impl Carry {
    fn new(pools: usize) -> Self {
        Carry {
            session_ids: vec![None; pools],
            extranonce1s: vec![None; pools],
            ..Carry::default()
        }
    }

    pub fn issued(&mut self, generation: u64, pool: usize) {
        self.issued_by.insert(generation, pool);
        self.issued_order.push_back(generation);
        while self.issued_order.len() > 4096 {
            if let Some(old) = self.issued_order.pop_front() {
                self.issued_by.remove(&old);
            }
        }
    }

    pub fn pool_of(&self, generation: u64) -> Option<usize> {
        self.issued_by.get(&generation).copied()
    }

    /// Keeps a share for the next connection; the oldest is counted stale
    /// when the backlog is full.
    pub fn keep(&mut self, pool: usize, found: Found, stats: &Stats) {
        if self.backlog.len() >= MAX_BACKLOG {
            if let Some(old) = self.backlog.pop_front() {
                stats.record_pool_result(pool, old.device, ShareResult::Stale, 0.0, None);
            }
        }
        self.backlog.push_back(found);
    }

    pub fn take_backlog(&mut self) -> Vec<Found> {
        self.backlog.drain(..).collect()
    }
}

/// Counts a found block and appends it to the found-blocks file before it
/// is submitted.
pub fn record_block(options: &StratumOptions, stats: &Stats, pool: &str, found: &Found) {
    stats.record_block(found.device);
    let header = found.header();
    tracing::warn!(
        "BLOCK found by device {}: {} (job {})",
        found.device,
        found.hash,
        found.work.job.id
    );
    let Some(log) = &options.found_blocks else {
        return;
    };
    let work = &found.work;
    let coinbase = work.job.coinbase(&work.extranonce2);
    let record = serde_json::json!({
        "found_at": unix_now(),
        "source": "stratum",
        "pool": pool,
        "hash": found.hash.to_string(),
        "header": hex::encode(header_bytes(&header)),
        "job_id": work.job.id,
        "extranonce2": hex::encode(&work.extranonce2),
        "ntime": format!("{:08x}", work.time),
        "nonce": format!("{:08x}", found.nonce),
        "version": format!("{:08x}", work.version as u32),
        "coinbase": hex::encode(coinbase),
    });
    if let Err(e) = log.append(&record) {
        tracing::error!(
            "could not write the found block to {}: {e}; record: {record}",
            log.path().display()
        );
    }
}

/// The Stratum V1 job source.
pub struct StratumSource {
    options: StratumOptions,
}

impl StratumSource {
    pub fn new(options: StratumOptions) -> Self {
        StratumSource { options }
    }
}

impl JobSource for StratumSource {
    fn name(&self) -> String {
        self.options
            .pools
            .first()
            .map_or_else(|| "stratum".into(), |p| p.url.to_string())
    }

    fn run(&mut self, ctx: SourceContext) -> Result<(), JobSourceError> {
        let failed = |message: String| JobSourceError::Failed {
            source_name: self.name(),
            message,
        };
        if self.options.pools.is_empty() {
            return Err(failed("no pool given".into()));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failed(format!("could not start the network runtime: {e}")))?;
        // The scheduler sends on a std channel; one thread forwards it into
        // the runtime and ends when every device worker has dropped its end.
        let (tx, mut found_rx) = mpsc::unbounded_channel();
        let SourceContext {
            work,
            found,
            stats,
            shutdown,
            control,
        } = ctx;
        let bridge = std::thread::Builder::new()
            .name("stratum-found".into())
            .spawn(move || {
                while let Ok(f) = found.recv() {
                    if tx.send(f).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| failed(format!("could not start a thread: {e}")))?;
        let (_, dead_end) = std::sync::mpsc::channel();
        let ctx = SourceContext {
            work,
            found: dead_end,
            stats,
            shutdown,
            control,
        };
        runtime.block_on(mine(&self.options, &ctx, &mut found_rx));
        let _ = bridge.join();
        Ok(())
    }
}

async fn mine(
    options: &StratumOptions,
    ctx: &SourceContext,
    found_rx: &mut mpsc::UnboundedReceiver<Found>,
) {
    let pools = &options.pools;
    let mut carry = Carry::new(pools.len());
    let mut index = 0usize;
    let mut failures = 0u32;
    let mut backoff = Duration::from_secs(1);
    let mut redirect: Option<(String, u16)> = None;
    let mut disconnected_since = Instant::now();
    while !ctx.shutdown.is_triggered() {
        let pool = &pools[index];
        let (host, port) = redirect
            .take()
            .unwrap_or_else(|| (pool.url.host.clone(), pool.url.port));
        ctx.stats.set_active_pool(Some(index));
        let mut pause = None;
        match connect(
            &pool.url,
            &host,
            port,
            pool.cert_fingerprint,
            options.timeouts.connect,
        )
        .await
        {
            Ok(lines) => {
                tracing::info!("connected to {} ({host}:{port})", pool.url);
                ctx.stats.set_pool_connected(index, true);
                let (probe, failback) = if index > 0 {
                    let (tx, rx) = oneshot::channel();
                    let better: Vec<(usize, PoolConfig)> =
                        pools[..index].iter().cloned().enumerate().collect();
                    let probe_options = options.clone();
                    let task = tokio::spawn(async move {
                        if let Some(i) = probe_better(better, &probe_options).await {
                            let _ = tx.send(i);
                        }
                    });
                    (Some(task), Some(rx))
                } else {
                    (None, None)
                };
                let connection = Connection::new(index, pool, options, ctx, &mut carry, lines);
                let end = connection.run(found_rx, failback).await;
                if let Some(task) = probe {
                    task.abort();
                }
                ctx.stats.set_pool_connected(index, false);
                disconnected_since = Instant::now();
                match end {
                    End::Shutdown => break,
                    End::Lost { reason, healthy } => {
                        tracing::warn!("{}: connection lost: {reason}", pool.url);
                        if healthy {
                            failures = 0;
                            backoff = Duration::from_secs(1);
                        } else {
                            failures += 1;
                        }
                    }
                    End::Refused(reason) => {
                        tracing::error!("{}: {reason}", pool.url);
                        failures = FAILOVER_AFTER;
                    }
                    End::Redirect { host, port, wait } => {
                        tracing::info!("{}: reconnecting to {host}:{port} in {wait:?}", pool.url);
                        redirect = Some((host, port));
                        pause = Some(wait);
                    }
                    End::Switch(chosen) => {
                        tracing::warn!("switching to {} as asked", pools[chosen].url);
                        index = chosen;
                        failures = 0;
                        backoff = Duration::from_secs(1);
                        continue;
                    }
                    End::FailBack(better) => {
                        tracing::info!(
                            "{} has been healthy for {:?}: switching back to it",
                            pools[better].url,
                            options.timeouts.failback_after
                        );
                        index = better;
                        failures = 0;
                        backoff = Duration::from_secs(1);
                        continue;
                    }
                }
            }
            Err(e) => {
                tracing::warn!("{e}");
                failures += 1;
            }
        }
        if failures >= FAILOVER_AFTER && pools.len() > 1 {
            index = (index + 1) % pools.len();
            failures = 0;
            backoff = Duration::from_secs(1);
            tracing::warn!("failing over to {}", pools[index].url);
            pause.get_or_insert(Duration::from_millis(200));
        }
        let wait = pause.unwrap_or_else(|| {
            let jittered = backoff.mul_f64(0.75 + 0.5 * fastrand::f64());
            backoff = (backoff * 2).min(options.timeouts.backoff_max);
            jittered
        });
        let asked = idle(
            options,
            ctx,
            &mut carry,
            found_rx,
            index,
            wait,
            disconnected_since,
        )
        .await;
        if let Some(chosen) = asked {
            tracing::warn!("switching to {} as asked", pools[chosen].url);
            index = chosen;
            failures = 0;
            backoff = Duration::from_secs(1);
        }
    }
    ctx.stats.set_active_pool(None);
    let unanswered = carry.take_backlog();
    if !unanswered.is_empty() {
        tracing::warn!(
            "{} shares found near the end were never answered by a pool",
            unanswered.len()
        );
    }
}

/// Waits between connections, keeping what the devices find; returns early
/// with the pool the operator asked for, if they do.
async fn idle(
    options: &StratumOptions,
    ctx: &SourceContext,
    carry: &mut Carry,
    found_rx: &mut mpsc::UnboundedReceiver<Found>,
    pool: usize,
    wait: Duration,
    disconnected_since: Instant,
) -> Option<usize> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return None,
            found = found_rx.recv() => match found {
                Some(found) => {
                    if found.is_block {
                        record_block(options, &ctx.stats, &options.pools[pool].url.to_string(), &found);
                    }
                    carry.keep(pool, found, &ctx.stats);
                }
                None => return None,
            },
            _ = tick.tick() => {
                if ctx.shutdown.is_triggered() {
                    return None;
                }
                if let Some(chosen) = ctx.control.take_pool_request() {
                    return Some(chosen);
                }
                if disconnected_since.elapsed() > WITHDRAW_AFTER && ctx.work.generation() != 0 {
                    tracing::warn!("no pool for {WITHDRAW_AFTER:?}: devices pause");
                    ctx.work.withdraw();
                }
            }
        }
    }
}

/// Probes the better pools in turn; returns the first that has answered
/// every probe for `failback_after`.
async fn probe_better(better: Vec<(usize, PoolConfig)>, options: &StratumOptions) -> Option<usize> {
    let after = options.timeouts.failback_after;
    let interval = (after / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    let mut healthy_since: Vec<Option<Instant>> = vec![None; better.len()];
    loop {
        for (slot, (index, pool)) in better.iter().enumerate() {
            if probe_once(pool, options).await {
                let since = *healthy_since[slot].get_or_insert_with(Instant::now);
                if since.elapsed() >= after {
                    return Some(*index);
                }
            } else {
                healthy_since[slot] = None;
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Whether a pool accepts a connection and answers a subscribe.
async fn probe_once(pool: &PoolConfig, options: &StratumOptions) -> bool {
    let timeout = options.timeouts.connect;
    let attempt = async {
        let mut lines = connect(
            &pool.url,
            &pool.url.host,
            pool.url.port,
            pool.cert_fingerprint,
            timeout,
        )
        .await
        .ok()?;
        let line = request_line(
            1,
            "mining.subscribe",
            subscribe_params(&options.agent, None),
        );
        lines.send(line).await.ok()?;
        while let Some(Ok(super::transport::Line::Text(text))) = lines.next().await {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if let Ok(Incoming::Reply(reply)) = Incoming::try_from(&value) {
                if reply.id == 1 {
                    return Some(reply.error.is_none());
                }
            }
        }
        None
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}
