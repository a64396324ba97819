//! `hashrig mine` flags, and their validation into [`MineSettings`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use hashrig::found::journal::FoundBlockLog;
use hashrig::job::stratum::options::{DEFAULT_MAX_SUBMIT_RATE, DEFAULT_MIN_DIFFICULTY};
use hashrig::job::stratum::transport::parse_fingerprint;
use hashrig::job::stratum::{PoolConfig, PoolUrl, StratumOptions, StratumTimeouts, Sv2Channel};
use hashrig::scheduler::DEFAULT_SHUTDOWN_GRACE;

use super::devices::DeviceChoice;
use super::terms::{self, Terms};
use super::DeviceArgs;

/// Flags shared by the long-running mining modes.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stop cleanly after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Target duration of one batch in milliseconds: bounds job-switch lag.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub batch_ms: u64,
    /// Print a final summary as one JSON object on standard output.
    #[arg(long)]
    pub json: bool,
    /// Where found blocks are appended before submission (default:
    /// $XDG_DATA_HOME/hashrig/found-blocks.jsonl).
    #[arg(long, value_name = "FILE")]
    pub found_blocks: Option<PathBuf>,
    /// Once stopping, how long to go on submitting what the devices found
    /// before exiting, whatever the pool or node does.
    #[arg(long, value_name = "S")]
    pub shutdown_grace: Option<f64>,
}

/// Validated [`RunArgs`].
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub duration: Option<Duration>,
    pub batch_time: Duration,
    pub json: bool,
    /// Opened (created) when mining starts, not here: checking settings
    /// writes nothing.
    pub found_blocks: PathBuf,
    pub shutdown_grace: Duration,
}

impl RunArgs {
    pub fn settings(&self, terms: Terms) -> anyhow::Result<RunSettings> {
        let duration = match self.duration {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 * 3650.0 => {
                Some(Duration::from_secs_f64(s))
            }
            Some(s) => bail!("--duration {s}: must be a positive number of seconds"),
        };
        let batch_time = batch_time(self.batch_ms, terms)?;
        let found_blocks = match &self.found_blocks {
            Some(p) => p.clone(),
            None => FoundBlockLog::default_path().with_context(|| {
                format!(
                    "no data directory for the found-blocks file; give {}",
                    terms.wanted(terms::FOUND_BLOCKS)
                )
            })?,
        };
        let shutdown_grace = match self.shutdown_grace {
            None => DEFAULT_SHUTDOWN_GRACE,
            Some(s) => seconds(terms.name(terms::SHUTDOWN_GRACE), s, 600.0)?,
        };
        Ok(RunSettings {
            duration,
            batch_time,
            json: self.json,
            found_blocks,
            shutdown_grace,
        })
    }
}

#[derive(Debug, Args)]
pub struct MineArgs {
    #[command(flatten)]
    pub devices: DeviceArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub rig: super::RigArgs,
    /// Pool address, stratum+tcp://HOST:PORT or stratum+ssl://HOST:PORT.
    /// Repeat for a failover list, most preferred first.
    #[arg(long = "pool", value_name = "URL")]
    pub pools: Vec<String>,
    /// Worker name (usually WALLET.WORKER). Repeat to give each pool its own;
    /// the last one given serves the remaining pools.
    #[arg(long = "user", value_name = "USER")]
    pub users: Vec<String>,
    /// Worker password, paired with pools like --user.
    #[arg(long = "pass", value_name = "PASS")]
    pub passwords: Vec<String>,
    /// SHA-256 fingerprint of a TLS pool's certificate, paired with pools
    /// like --user (`-` for none); pins the certificate.
    #[arg(long = "pool-cert-sha256", value_name = "HEX")]
    pub fingerprints: Vec<String>,
    /// Ask the pool for this share difficulty.
    #[arg(long, value_name = "DIFF")]
    pub suggest_diff: Option<f64>,
    /// Follow `client.reconnect` to a different host (off: a spoofed
    /// redirect is a known attack).
    #[arg(long)]
    pub allow_redirect: bool,
    /// Do not ask for BIP 310 version rolling (on Stratum V2: do not send
    /// SetupConnection's version-rolling flag).
    #[arg(long)]
    pub no_version_rolling: bool,
    /// The channel to open on Stratum V2 pools: `extended` (hashrig rolls
    /// the extranonce; falls back to standard if the pool refuses) or
    /// `standard` (header-only mining).
    #[arg(long, value_enum, default_value_t = Sv2Channel::Extended, value_name = "KIND")]
    pub sv2_channel: Sv2Channel,
    /// Seconds to wait for a connection and the pool's first answers.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub connect_timeout: f64,
    /// Reconnect when the pool sends no job for this many seconds.
    #[arg(long, default_value_t = 180.0, value_name = "S")]
    pub silence_timeout: f64,
    /// Return to a better pool once it has been healthy this many seconds.
    #[arg(long, default_value_t = 120.0, value_name = "S")]
    pub failback_after: f64,
    /// The lowest share difficulty taken from a pool: one asking for less
    /// gets shares of this difficulty [default: 0.0001].
    #[arg(long, value_name = "DIFF")]
    pub min_difficulty: Option<f64>,
    /// Shares sent to a pool per second at most; the rest are counted as
    /// throttled (blocks always go) [default: 50].
    #[arg(long, value_name = "N")]
    pub max_submit_rate: Option<f64>,
}

/// Validated `mine` settings.
#[derive(Debug, Clone)]
pub struct MineSettings {
    pub devices: DeviceChoice,
    pub run: RunSettings,
    pub rig: super::RigSettings,
    pub stratum: StratumOptions,
}

/// `--batch-ms`, checked (bench, mine and solo share it).
pub(super) fn batch_time(ms: u64, terms: Terms) -> anyhow::Result<Duration> {
    if !(1..=60_000).contains(&ms) {
        bail!(
            "{} {ms}: must be between 1 and 60000",
            terms.name(terms::BATCH_MS)
        );
    }
    Ok(Duration::from_millis(ms))
}

fn seconds(flag: &str, value: f64, max: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= max) {
        bail!("{flag} {value}: must be a number of seconds above 0 and at most {max}");
    }
    Ok(Duration::from_secs_f64(value))
}

/// The `index`-th of a paired list, the last one for the rest.
fn paired(list: &[String], index: usize) -> Option<&str> {
    list.get(index).or(list.last()).map(String::as_str)
}

impl MineArgs {
    /// The settings of a start: the flags with the config file under them.
    pub fn settings(&self) -> anyhow::Result<MineSettings> {
        if self.pools.is_empty() {
            bail!("no pool: give --pool URL --user WORKER, or [[pool]] entries in the config file");
        }
        let terms = Terms::Flags;
        let devices = self.devices.settings(terms)?;
        let stratum = self.stratum(terms)?;
        let run = self.run.settings(terms)?;
        let rig = self.rig.settings(terms)?;
        Ok(MineSettings {
            devices,
            run,
            rig,
            stratum,
        })
    }

    /// The pools (none is not an error here) and Stratum options, checked.
    pub fn stratum(&self, terms: Terms) -> anyhow::Result<StratumOptions> {
        let user_named = terms.name(terms::USER);
        if self.users.is_empty() && !self.pools.is_empty() {
            bail!("{user_named}: the worker name is needed (usually WALLET.WORKER)");
        }
        if self.pools.len() > 16 {
            bail!(
                "{}: at most 16 pools, {} given",
                terms.name(terms::POOL),
                self.pools.len()
            );
        }
        let cert_named = terms.name(terms::POOL_CERT);
        let mut pools = Vec::new();
        for (i, text) in self.pools.iter().enumerate() {
            let url: PoolUrl = text.parse().context(terms.name(terms::POOL))?;
            let user = paired(&self.users, i).unwrap_or_default().to_owned();
            if user.is_empty() || user.len() > 256 {
                bail!("{user_named} {user:?}: must be 1 to 256 characters");
            }
            let cert_fingerprint =
                match self.fingerprints.get(i).map(String::as_str) {
                    None | Some("-") => None,
                    Some(hex) => Some(parse_fingerprint(hex).with_context(|| {
                        format!("{cert_named} {hex:?}: not 64 hexadecimal digits")
                    })?),
                };
            if cert_fingerprint.is_some() && !url.tls {
                bail!("{cert_named} for {url}: only stratum+ssl/tls pools have certificates");
            }
            pools.push(PoolConfig {
                url,
                user,
                password: paired(&self.passwords, i).unwrap_or("x").to_owned(),
                cert_fingerprint,
            });
        }
        if let Some(d) = self.suggest_diff {
            if !(d.is_finite() && d > 0.0) {
                bail!("--suggest-diff {d}: must be a positive number");
            }
        }
        let min_difficulty = self.min_difficulty.unwrap_or(DEFAULT_MIN_DIFFICULTY);
        if !(min_difficulty.is_finite() && min_difficulty > 0.0) {
            bail!(
                "{} {min_difficulty}: must be a positive number",
                terms.name(terms::MIN_DIFFICULTY)
            );
        }
        let max_submit_rate = self.max_submit_rate.unwrap_or(DEFAULT_MAX_SUBMIT_RATE);
        if !(max_submit_rate.is_finite() && (0.01..=100_000.0).contains(&max_submit_rate)) {
            bail!(
                "{} {max_submit_rate}: must be between 0.01 and 100000 shares a second",
                terms.name(terms::MAX_SUBMIT_RATE)
            );
        }
        let mut stratum = StratumOptions::new(pools);
        stratum.min_difficulty = min_difficulty;
        stratum.max_submit_rate = max_submit_rate;
        stratum.suggest_difficulty = self.suggest_diff;
        stratum.allow_redirect = self.allow_redirect;
        stratum.version_rolling = !self.no_version_rolling;
        stratum.sv2_channel = self.sv2_channel;
        stratum.timeouts = StratumTimeouts {
            connect: seconds("--connect-timeout", self.connect_timeout, 600.0)?,
            silence: seconds("--silence-timeout", self.silence_timeout, 86_400.0)?,
            failback_after: seconds("--failback-after", self.failback_after, 86_400.0)?,
            ..StratumTimeouts::default()
        };
        Ok(stratum)
    }
}
