//! What the Stratum source is told: the failover list, timeouts and the
//! bounds on what a pool may drive.

use std::time::Duration;

use super::url::PoolUrl;

/// One entry of the failover list.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The pool's address.
    pub url: PoolUrl,
    /// The worker name.
    pub user: String,
    /// Its password.
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
    /// How long an optional request (`mining.configure`,
    /// `mining.suggest_difficulty`) may go unanswered while the pool has not
    /// authorized the miner, before it is blamed and left out.
    pub optional_answer: Duration,
    /// A submitted share unanswered this long is counted as unanswered.
    pub submit_answer: Duration,
}

impl Default for StratumTimeouts {
    fn default() -> Self {
        StratumTimeouts {
            connect: Duration::from_secs(10),
            silence: Duration::from_secs(180),
            failback_after: Duration::from_secs(120),
            backoff_max: Duration::from_secs(60),
            optional_answer: Duration::from_secs(3),
            submit_answer: Duration::from_secs(30),
        }
    }
}

/// The default `--min-difficulty`: a pool asking for less gets shares of
/// this difficulty. Far below any pool's honest setting for a GPU; far above
/// the 1e-9 that would make every hash a share.
pub const DEFAULT_MIN_DIFFICULTY: f64 = 1e-4;
/// The default `--max-submit-rate`, shares per second per pool.
pub const DEFAULT_MAX_SUBMIT_RATE: f64 = 50.0;

/// Which Stratum V2 channel to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Sv2Channel {
    /// hashrig rolls its own extranonce in the coinbase (as with V1); if the
    /// pool refuses, a standard channel on the same connection.
    #[default]
    Extended,
    /// Header-only mining: the pool fixes the merkle root; disjoint work
    /// comes from the version bits and ntime.
    Standard,
}

/// Everything the Stratum source is told.
#[derive(Debug, Clone)]
pub struct StratumOptions {
    /// Failover order: the first is preferred.
    pub pools: Vec<PoolConfig>,
    /// What `mining.subscribe` and `client.get_version` say.
    pub agent: String,
    /// A difficulty to suggest to the pool (`mining.suggest_difficulty`).
    pub suggest_difficulty: Option<f64>,
    /// Follow `client.reconnect` to another host.
    pub allow_redirect: bool,
    /// Ask for BIP 310 version rolling.
    pub version_rolling: bool,
    /// How long to wait for the pool.
    pub timeouts: StratumTimeouts,
    /// The lowest share difficulty taken from a pool.
    pub min_difficulty: f64,
    /// Shares sent per second per pool at most; blocks are never held back.
    pub max_submit_rate: f64,
    /// The channel opened on Stratum V2 pools.
    pub sv2_channel: Sv2Channel,
}

impl StratumOptions {
    /// Default options for `pools`.
    pub fn new(pools: Vec<PoolConfig>) -> Self {
        StratumOptions {
            pools,
            agent: format!("hashrig/{}", env!("CARGO_PKG_VERSION")),
            suggest_difficulty: None,
            allow_redirect: false,
            version_rolling: true,
            timeouts: StratumTimeouts::default(),
            min_difficulty: DEFAULT_MIN_DIFFICULTY,
            max_submit_rate: DEFAULT_MAX_SUBMIT_RATE,
            sv2_channel: Sv2Channel::Extended,
        }
    }
}
