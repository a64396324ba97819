//! The Stratum job source: keeps one pool connection alive out of an
//! ordered failover list, reconnecting with exponential backoff and jitter,
//! failing over after repeated failures and back to a better pool once it
//! has been healthy for a while.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;

use super::carry::Carry;
use super::end::End;
use super::options::{PoolConfig, StratumOptions};
use super::replies::{request_line, subscribe_params, Incoming};
use super::session::Connection;
use super::transport::{connect, ConnectError};
use super::v2;
use super::v2::LinkError;
use crate::control::RigControl;
use crate::error_chain::Chain;
use crate::job::source::{JobSource, JobSourceError, SourceContext};

/// Consecutive failures of one pool before the next is tried.
const FAILOVER_AFTER: u32 = 2;
/// Disconnected this long, devices stop mining the old job.
const WITHDRAW_AFTER: Duration = Duration::from_secs(120);
/// The pause before reconnecting without a request the pool did not take.
const FALLBACK_PAUSE: Duration = Duration::from_millis(100);
/// A pool's reconnect request after a connection this long is followed at
/// once; one after a shorter connection is a repeat, backed off and counted
/// as a failure: a pool that answers every login with `client.reconnect`
/// would otherwise get dozens of connections a second.
const REDIRECT_CALM: Duration = Duration::from_secs(60);

/// The Stratum V1 job source.
pub struct StratumSource {
    options: StratumOptions,
}

impl StratumSource {
    /// Mining the pools of `options`, first to last.
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
        if self.options.pools.is_empty() {
            return Err(JobSourceError::failed(self.name(), StartError::NoPool));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| JobSourceError::failed(self.name(), StartError::Runtime(e)))?;
        runtime.block_on(mine(&self.options, &ctx));
        Ok(())
    }
}

/// Where the failover list stands between connections.
struct Failover {
    /// The pool being used.
    index: usize,
    /// Its consecutive failures.
    failures: u32,
    backoff: Duration,
    /// `client.reconnect`'s host and port, for the next connection only.
    redirect: Option<(String, u16)>,
    /// Reconnect requests in a row, each after a connection shorter than
    /// [`REDIRECT_CALM`].
    redirects: u32,
}

/// What to do after a connection.
enum Next {
    Stop,
    /// Connect again now (to another pool).
    Now,
    /// Connect again after this pause.
    After(Duration),
    /// Connect again after the backoff, and not sooner than this.
    Backoff {
        at_least: Duration,
    },
}

impl Failover {
    fn new() -> Self {
        Failover {
            index: 0,
            failures: 0,
            backoff: Duration::from_secs(1),
            redirect: None,
            redirects: 0,
        }
    }

    fn switch_to(&mut self, index: usize) {
        self.index = index;
        self.failures = 0;
        self.backoff = Duration::from_secs(1);
        self.redirect = None;
        self.redirects = 0;
    }

    /// Reads how a connection that lasted `connected_for` ended.
    fn after(&mut self, end: End, options: &StratumOptions, connected_for: Duration) -> Next {
        let pools = &options.pools;
        let url = &pools[self.index].url;
        match end {
            End::Shutdown => return Next::Stop,
            End::Lost { reason, healthy } => {
                tracing::warn!("{url}: connection lost: {reason}");
                if healthy {
                    self.switch_to(self.index);
                } else {
                    self.failures += 1;
                }
            }
            End::Fallback(left_out) => {
                tracing::info!("{url}: reconnecting without {}", left_out.method());
                return Next::After(FALLBACK_PAUSE);
            }
            End::Refused(reason) => {
                tracing::error!("{url}: {reason}");
                self.failures = FAILOVER_AFTER;
            }
            End::Redirect { host, port, wait } => {
                if connected_for >= REDIRECT_CALM {
                    self.redirects = 0;
                }
                self.redirects += 1;
                self.redirect = Some((host.clone(), port));
                if self.redirects == 1 {
                    tracing::info!("{url}: reconnecting to {host}:{port} in {wait:?}");
                    return Next::After(wait);
                }
                // Asked again and again: a pool failing, backed off and
                // failed over like one.
                tracing::warn!(
                    "{url}: asked to reconnect {} times in a row, each time within {REDIRECT_CALM:?} of connecting: backing off",
                    self.redirects
                );
                self.failures += 1;
                return Next::Backoff { at_least: wait };
            }
            End::Switch(chosen) => {
                tracing::warn!("switching to {} as asked", pools[chosen].url);
                self.switch_to(chosen);
                return Next::Now;
            }
            End::FailBack(better) => {
                tracing::info!(
                    "{} has been healthy for {:?}: switching back to it",
                    pools[better].url,
                    options.timeouts.failback_after
                );
                self.switch_to(better);
                return Next::Now;
            }
        }
        Next::Backoff {
            at_least: Duration::ZERO,
        }
    }

    /// The pause before the next attempt (`After` or `Backoff`): after
    /// repeated failures, a short one before the next pool instead.
    fn pause(&mut self, next: Next, options: &StratumOptions, control: &RigControl) -> Duration {
        let pools = &options.pools;
        if self.failures >= FAILOVER_AFTER && pools.len() > 1 {
            self.switch_to(control.next_enabled_pool(self.index, pools.len()));
            tracing::warn!("failing over to {}", pools[self.index].url);
            if let Next::Backoff { .. } = next {
                return Duration::from_millis(200);
            }
        }
        match next {
            Next::After(pause) => pause,
            Next::Backoff { at_least } => {
                let jittered = self.backoff.mul_f64(0.75 + 0.5 * fastrand::f64());
                self.backoff = (self.backoff * 2).min(options.timeouts.backoff_max);
                jittered.max(at_least)
            }
            Next::Stop | Next::Now => Duration::ZERO,
        }
    }
}

async fn mine(options: &StratumOptions, ctx: &SourceContext) {
    let pools = &options.pools;
    let mut carry = Carry::new(pools.len(), options.max_submit_rate);
    let mut failover = Failover::new();
    let mut disconnected_since = Instant::now();
    while !ctx.shutdown.is_triggered() {
        if !ctx.control.is_pool_enabled(failover.index) {
            let next = ctx.control.next_enabled_pool(failover.index, pools.len());
            tracing::warn!(
                "{} is disabled: using {}",
                pools[failover.index].url,
                pools[next].url
            );
            failover.switch_to(next);
        }
        let index = failover.index;
        let pool = &pools[index];
        let address = failover
            .redirect
            .take()
            .unwrap_or_else(|| (pool.url.host.clone(), pool.url.port));
        ctx.stats.set_active_pool(Some(index));
        let started = Instant::now();
        let next = match mine_one(index, address, options, ctx, &mut carry).await {
            Ok(end) => {
                disconnected_since = Instant::now();
                failover.after(end, options, started.elapsed())
            }
            Err(e) => {
                let error = Chain(&e).to_string();
                tracing::warn!("{error}");
                ctx.stats.record_pool_error(index, &error);
                failover.failures += 1;
                Next::Backoff {
                    at_least: Duration::ZERO,
                }
            }
        };
        let pause = match next {
            Next::Stop => break,
            Next::Now => continue,
            next => failover.pause(next, options, &ctx.control),
        };
        let index = failover.index;
        if let Some(chosen) = idle(ctx, &mut carry, index, pause, disconnected_since).await {
            tracing::warn!("switching to {} as asked", pools[chosen].url);
            failover.switch_to(chosen);
        }
    }
    ctx.stats.set_active_pool(None);
    let unanswered = carry.take_backlog();
    if !unanswered.is_empty() {
        tracing::warn!(
            "{} shares found while no pool was connected were never sent",
            unanswered.len()
        );
    }
}

/// Why the Stratum source could not start at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// An empty pool list.
    #[error("no pool given")]
    NoPool,
    /// The network runtime (threads, an event loop) did not start.
    #[error("could not start the network runtime")]
    Runtime(#[source] std::io::Error),
}

/// Why a connection to a pool could not start: counted as a failed
/// connect, and the failover loop backs off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The TCP or TLS connection to a V1 pool (its message names the pool).
    #[error(transparent)]
    V1(#[from] ConnectError),
    /// The Noise link to a V2 pool.
    #[error("{pool}")]
    V2 {
        /// The pool.
        pool: String,
        /// Why the link could not be set up.
        #[source]
        source: LinkError,
    },
}

/// One connection to pool `index` at `address` (its own, or where it
/// redirected us), V1 or V2 by its URL, while better pools are probed:
/// how it ended, or why it could not start.
async fn mine_one(
    index: usize,
    (host, port): (String, u16),
    options: &StratumOptions,
    ctx: &SourceContext,
    carry: &mut Carry,
) -> Result<End, ConnectionError> {
    let pool = &options.pools[index];
    if pool.url.is_v2() {
        let (probe, failback) = probe_better_pools(index, options, &ctx.control);
        let ended =
            v2::run_connection(index, pool, options, ctx, carry, (&host, port), failback).await;
        if let Some(task) = probe {
            task.abort();
        }
        return ended.map_err(|source| ConnectionError::V2 {
            pool: pool.url.to_string(),
            source,
        });
    }
    let lines = connect(
        &pool.url,
        &host,
        port,
        pool.cert_fingerprint,
        options.timeouts.connect,
    )
    .await?;
    tracing::info!("connected to {} ({host}:{port})", pool.url);
    ctx.stats.set_pool_connected(index, true);
    let (probe, failback) = probe_better_pools(index, options, &ctx.control);
    let end = Connection::new(index, pool, options, ctx, carry, lines)
        .run(failback)
        .await;
    if let Some(task) = probe {
        task.abort();
    }
    ctx.stats.set_pool_connected(index, false);
    Ok(end)
}

/// While mining a pool below the first, probes the better ones; the
/// receiver learns which one has been healthy long enough to go back to.
fn probe_better_pools(
    index: usize,
    options: &StratumOptions,
    control: &RigControl,
) -> (
    Option<tokio::task::JoinHandle<()>>,
    Option<oneshot::Receiver<usize>>,
) {
    if index == 0 {
        return (None, None);
    }
    let (tx, rx) = oneshot::channel();
    let better: Vec<(usize, PoolConfig)> = options.pools[..index]
        .iter()
        .cloned()
        .enumerate()
        .filter(|(i, _)| control.is_pool_enabled(*i))
        .collect();
    if better.is_empty() {
        return (None, None);
    }
    let probe_options = options.clone();
    let task = tokio::spawn(async move {
        if let Some(i) = probe_better(better, &probe_options).await {
            let _ = tx.send(i);
        }
    });
    (Some(task), Some(rx))
}

/// Waits between connections, keeping what the devices find; returns early
/// with the pool the operator asked for, if they do.
async fn idle(
    ctx: &SourceContext,
    carry: &mut Carry,
    pool: usize,
    wait: Duration,
    disconnected_since: Instant,
) -> Option<usize> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut devices_done = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return None,
            found = ctx.found.next(), if !devices_done => match found {
                // Blocks are in the found-blocks file already.
                Some(found) => carry.keep(pool, found, &ctx.stats),
                None => devices_done = true,
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
    if pool.url.is_v2() {
        return v2::probe(pool, options).await;
    }
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
