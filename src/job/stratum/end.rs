//! How a pool connection ends, V1 and V2 alike, and the two decisions both
//! sessions make about it: where a pool's reconnect request leads, and
//! when a better pool is healthy again.

use std::time::Duration;

use tokio::sync::oneshot;

use super::carry::Optional;
use super::options::{PoolConfig, StratumOptions};

/// How a connection ended.
#[derive(Debug)]
pub enum End {
    /// The miner is stopping; shares in flight were answered or recorded.
    Shutdown,
    /// The link broke, the pool went silent or sent nonsense. `healthy`
    /// when the connection had been mining: then it is simply retried.
    Lost { reason: String, healthy: bool },
    /// The pool did not take an optional request: reconnect at once,
    /// without it.
    Fallback(Optional),
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

/// Where a pool's reconnect request (V1 `client.reconnect`, V2 `Reconnect`)
/// leads: its host only if it is this pool's or `--allow-redirect` is on;
/// no host or port means this pool's.
pub fn redirect(
    pool: &PoolConfig,
    options: &StratumOptions,
    host: Option<String>,
    port: Option<u16>,
    wait: Duration,
) -> End {
    let same = pool.url.host.clone();
    let host = match host {
        Some(h) if h.is_empty() || h.eq_ignore_ascii_case(&same) => same,
        Some(h) if options.allow_redirect => h,
        Some(h) => {
            tracing::warn!(
                "{}: asked to reconnect to {h}; staying on {same} (redirects to other hosts need --allow-redirect)",
                pool.url
            );
            same
        }
        None => same,
    };
    End::Redirect {
        host,
        port: port.filter(|p| *p != 0).unwrap_or(pool.url.port),
        wait,
    }
}

/// Which better pool the fail-back probe found healthy; pending forever
/// without a probe.
pub async fn wait_failback(failback: &mut Option<oneshot::Receiver<usize>>) -> usize {
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
