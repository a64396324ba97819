//! One pool's (or node's) counters, and their snapshot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::unix_time;

/// Counters of one pool (or node) of the failover list.
#[derive(Debug)]
pub(super) struct PoolStats {
    pub(super) name: String,
    /// Unix seconds of the last accepted share; 0 before the first.
    pub(super) last_share_unix: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) stale: AtomicU64,
    /// Sum of the share difficulty of accepted shares: what the pool pays.
    pub(super) accepted_difficulty: Mutex<f64>,
    pub(super) connected: AtomicBool,
    /// Round trip of the last answered submission, in microseconds; 0 if none.
    pub(super) latency_us: AtomicU64,
    pub(super) last_reject: Mutex<Option<String>>,
    pub(super) answered: AtomicBool,
    pub(super) last_error: Mutex<Option<String>>,
    /// Shares not sent: over the submission cap.
    pub(super) throttled: AtomicU64,
    /// Shares sent and never answered (timed out, or the link broke).
    pub(super) unanswered: AtomicU64,
    /// Lines from the pool that were not valid messages, skipped.
    pub(super) bad_messages: AtomicU64,
    /// Block submissions, counted apart from shares, by answer.
    pub(super) blocks_submitted: AtomicU64,
    pub(super) blocks_accepted: AtomicU64,
    pub(super) blocks_rejected: AtomicU64,
    pub(super) blocks_stale: AtomicU64,
}

/// A point-in-time copy of one pool's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PoolSnapshot {
    /// The pool's URL, password masked.
    pub name: String,
    /// When it last accepted a share (Unix seconds).
    pub last_share_unix: Option<u64>,
    /// Whether it is the pool being mined.
    pub active: bool,
    /// Whether a connection is up.
    pub connected: bool,
    /// Shares it accepted.
    pub accepted: u64,
    /// Shares it rejected.
    pub rejected: u64,
    /// Shares it called stale.
    pub stale: u64,
    /// The sum of the accepted shares' difficulties.
    pub accepted_difficulty: f64,
    /// The hashrate the pool credits: accepted difficulty × 2^32 per second.
    pub effective_hashrate: f64,
    /// Round trip of the last answered submit, in milliseconds.
    pub latency_ms: Option<f64>,
    /// The reason of the last rejection.
    pub last_reject: Option<String>,
    /// Whether it ever answered (a pool's handshake, a node's first call).
    pub answered: bool,
    /// Why the last attempt to reach it failed.
    pub last_error: Option<String>,
    /// Shares held back by the submit rate limit.
    pub throttled: u64,
    /// Shares the pool never answered.
    pub unanswered: u64,
    /// Messages from the pool that did not parse.
    pub bad_messages: u64,
    /// Blocks submitted.
    pub blocks_submitted: u64,
    /// Blocks accepted.
    pub blocks_accepted: u64,
    /// Blocks refused.
    pub blocks_rejected: u64,
    /// Blocks the pool or node called stale.
    pub blocks_stale: u64,
}

impl PoolStats {
    pub(super) fn new(name: String) -> Self {
        PoolStats {
            name,
            last_share_unix: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            accepted_difficulty: Mutex::new(0.0),
            connected: AtomicBool::new(false),
            latency_us: AtomicU64::new(0),
            last_reject: Mutex::new(None),
            answered: AtomicBool::new(false),
            last_error: Mutex::new(None),
            throttled: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
            bad_messages: AtomicU64::new(0),
            blocks_submitted: AtomicU64::new(0),
            blocks_accepted: AtomicU64::new(0),
            blocks_rejected: AtomicU64::new(0),
            blocks_stale: AtomicU64::new(0),
        }
    }

    /// Its figures now: `active` if it is the one being mined, its
    /// effective hashrate over the run's `uptime`.
    pub(super) fn snapshot(&self, active: bool, uptime: Duration) -> PoolSnapshot {
        let accepted_difficulty = *self
            .accepted_difficulty
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        PoolSnapshot {
            name: self.name.clone(),
            last_share_unix: unix_time(&self.last_share_unix),
            active,
            connected: self.connected.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            accepted_difficulty,
            effective_hashrate: if uptime.is_zero() {
                0.0
            } else {
                accepted_difficulty * 4_294_967_296.0 / uptime.as_secs_f64()
            },
            latency_ms: match self.latency_us.load(Ordering::Relaxed) {
                0 => None,
                us => Some(us as f64 / 1000.0),
            },
            last_reject: self
                .last_reject
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            answered: self.answered.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            throttled: self.throttled.load(Ordering::Relaxed),
            unanswered: self.unanswered.load(Ordering::Relaxed),
            bad_messages: self.bad_messages.load(Ordering::Relaxed),
            blocks_submitted: self.blocks_submitted.load(Ordering::Relaxed),
            blocks_accepted: self.blocks_accepted.load(Ordering::Relaxed),
            blocks_rejected: self.blocks_rejected.load(Ordering::Relaxed),
            blocks_stale: self.blocks_stale.load(Ordering::Relaxed),
        }
    }
}
