//! Command-line definitions (clap), and their conversion into validated
//! settings in one place.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgMatches, Args, Parser, Subcommand};

pub mod config;
mod devices;
mod invocation;
mod mine;
mod rig_services;
mod solo;
mod terms;

pub use devices::{
    inventory, select_devices, BackendChoice, DeviceArgs, DeviceChoice, KernelShapeArgs,
    VariantChoice,
};
pub use invocation::{DevicesSettings, FoundBlocksSettings, Invocation};
pub use mine::{MineArgs, MineSettings, RunSettings};
pub use rig_services::{RigArgs, RigSettings};
pub use solo::{NodeArgs, SoloArgs, SoloSettings};
use terms::Terms;

#[derive(Debug, Parser)]
#[command(
    name = "hashrig",
    version,
    about = "SHA-256d proof-of-work miner for GPU rigs"
)]
pub struct Cli {
    /// Only warnings and errors on standard error; no status line.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Log filter (tracing's EnvFilter syntax), e.g. `debug` or `hashrig=trace`.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    /// Also write the log to this file (appended).
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<std::path::PathBuf>,
    /// The config file (default: $XDG_CONFIG_HOME/hashrig/config.toml if it
    /// exists). Flags override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every device hashrig can drive.
    Devices {
        /// One JSON object per line, per device.
        #[arg(long)]
        json: bool,
        /// The tuning file whose entries are shown (default:
        /// $XDG_DATA_HOME/hashrig/tuning.json).
        #[arg(long, value_name = "FILE")]
        tuning_file: Option<std::path::PathBuf>,
    },
    /// Mine a synthetic job and report each device's hashrate.
    Bench(BenchArgs),
    /// Scan a nonce range of one header and print every nonce meeting a target.
    Scan(ScanArgs),
    /// Measure each device's kernel shapes side by side and remember the
    /// fastest (used by bench, mine and solo; flags override it).
    Tune(TuneArgs),
    /// Mine on Stratum V1 or V2 pools (with failover to further pools).
    Mine(MineArgs),
    /// Mine blocks straight from a node (getblocktemplate / submitblock).
    Solo(SoloArgs),
    /// Create or revoke HTTP API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Check a config file and print the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The found-blocks file: send blocks no node has answered for.
    #[command(subcommand, name = "found-blocks")]
    FoundBlocks(FoundBlocksCommand),
}

#[derive(Debug, Subcommand)]
pub enum FoundBlocksCommand {
    /// Send every solo block in the file that no node has answered for
    /// (found while the node was down, or left unsubmitted at a stop) to a
    /// node with `submitblock`, and append each answer to the file.
    Submit {
        #[command(flatten)]
        node: NodeArgs,
        /// The found-blocks file (default:
        /// $XDG_DATA_HOME/hashrig/found-blocks.jsonl, or found_blocks in
        /// the config file).
        #[arg(long, value_name = "FILE")]
        found_blocks: Option<std::path::PathBuf>,
        /// List what would be sent; send nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key, print it once, and add its hash to the keys file.
    New {
        #[arg(long, value_name = "FILE")]
        keys_file: std::path::PathBuf,
        #[arg(long, value_name = "NAME")]
        name: String,
        /// read: GET routes and /metrics; control: also switch pools and
        /// enable or disable devices.
        #[arg(long, value_name = "SCOPE")]
        scope: hashrig::api::keys::Scope,
        /// UTC expiry: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ.
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
    },
    /// Remove a key from the keys file (running miners stop accepting it).
    Revoke {
        #[arg(long, value_name = "FILE")]
        keys_file: std::path::PathBuf,
        #[arg(long, value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE and print it as hashrig reads it, secrets masked.
    Check { file: std::path::PathBuf },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub devices: DeviceArgs,
    #[command(flatten)]
    pub rig: RigArgs,
    /// How long to mine.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub seconds: f64,
    /// Target duration of one batch in milliseconds: bounds job-switch lag.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub batch_ms: u64,
    /// One JSON object per line, per device.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub devices: DeviceArgs,
    /// How long to measure each device, all its candidates together.
    #[arg(long, default_value_t = 60.0, value_name = "S")]
    pub seconds: f64,
    /// Forget the stored tunings (of the `--device` selection, else all).
    #[arg(long)]
    pub reset: bool,
}

/// Validated `tune` settings.
#[derive(Debug, Clone)]
pub struct TuneSettings {
    pub devices: DeviceChoice,
    /// The tuning file written.
    pub tuning_file: std::path::PathBuf,
    /// How long each device is measured.
    pub seconds: f64,
    pub reset: bool,
}

impl TuneArgs {
    pub fn settings(&self) -> anyhow::Result<TuneSettings> {
        let terms = Terms::Flags;
        let devices = self.devices.settings(terms)?;
        let tuning_file = devices.tuning_file.clone().with_context(|| {
            format!(
                "no data directory for the tuning file; give {}",
                terms.wanted(terms::TUNING_FILE)
            )
        })?;
        if !(self.seconds.is_finite() && (1.0..=86_400.0).contains(&self.seconds)) {
            bail!("--seconds {}: must be between 1 and 86400", self.seconds);
        }
        Ok(TuneSettings {
            devices,
            tuning_file,
            seconds: self.seconds,
            reset: self.reset,
        })
    }
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The 80-byte header as 160 hex digits; its nonce field is ignored.
    #[arg(long, value_name = "HEX160")]
    pub header: String,
    /// First nonce.
    #[arg(long, value_name = "N")]
    pub start: String,
    /// How many nonces.
    #[arg(long, value_name = "M")]
    pub count: String,
    /// 64 hex digits, most significant first (default: the header's nBits).
    #[arg(long, value_name = "HEX64")]
    pub target: Option<String>,
    // Not all of `DeviceArgs`: a scan runs one device, the CPU by default,
    // software OpenCL and Vulkan devices included. The shape flags are
    // shared.
    /// The backend of the device that scans.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendChoice,
    /// Device index, as `hashrig devices` numbers them (default: the first
    /// device of the backend).
    #[arg(long, value_name = "SEL")]
    pub device: Option<String>,
    /// CPU hashing threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub cpu_threads: Option<usize>,
    #[command(flatten)]
    pub shape: KernelShapeArgs,
    /// One JSON object per line, per nonce found.
    #[arg(long)]
    pub json: bool,
}

/// The parsed command line, with the matches that tell which flags were
/// given (they override the config file).
pub fn parse() -> (Cli, clap::ArgMatches) {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => (cli, matches),
        Err(e) => e.exit(),
    }
}

/// The command line of `hashrig SUBCOMMAND` with no flags: every default,
/// for checking a config file the way a start would.
pub fn defaults(subcommand: &str) -> anyhow::Result<(Command, ArgMatches)> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().try_get_matches_from(["hashrig", subcommand])?;
    let cli = Cli::from_arg_matches(&matches)?;
    let sub = matches
        .subcommand()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    Ok((cli.command, sub))
}

/// Validated `bench` settings.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    pub devices: DeviceChoice,
    pub duration: Duration,
    pub batch_time: Duration,
    pub rig: RigSettings,
    pub json: bool,
}

impl BenchArgs {
    pub fn settings(&self) -> anyhow::Result<BenchSettings> {
        let terms = Terms::Flags;
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 86_400.0 * 365.0) {
            bail!(
                "--seconds {}: must be a positive number of seconds",
                self.seconds
            );
        }
        Ok(BenchSettings {
            devices: self.devices.settings(terms)?,
            duration: Duration::from_secs_f64(self.seconds),
            batch_time: mine::batch_time(self.batch_ms, terms)?,
            rig: self.rig.settings(terms)?,
            json: self.json,
        })
    }
}

/// Validated `scan` settings.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// The one device that scans: the first the choice finds.
    pub device: DeviceChoice,
    pub header: bitcoin::block::Header,
    pub start: u32,
    pub count: u64,
    pub target: bitcoin::Target,
    pub json: bool,
}

/// A decimal or 0x-prefixed hexadecimal integer.
fn parse_number(flag: &str, text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    parsed.with_context(|| format!("{flag} {text:?}: not a non-negative integer"))
}

impl ScanArgs {
    pub fn settings(&self) -> anyhow::Result<ScanSettings> {
        let header = hashrig::pow::header::parse_header_hex(&self.header)?;
        let start = parse_number("--start", &self.start)?;
        let count = parse_number("--count", &self.count)?;
        if start > u64::from(u32::MAX) {
            bail!("--start {start}: a nonce is at most {}", u32::MAX);
        }
        if count == 0 || start + count > 1 << 32 {
            bail!("--start {start} --count {count}: the range must be non-empty and end at or below 2^32");
        }
        let target = match &self.target {
            Some(t) => hashrig::pow::target::parse_target(t)?,
            None => header.target(),
        };
        // A scan's device flags are a subset of the mining commands',
        // checked by the same code; it reads no tuning.
        let device = DeviceArgs {
            backend: self.backend,
            device: self.device.clone(),
            cpu_threads: self.cpu_threads,
            opencl_cpu: true,
            vulkan_cpu: true,
            shape: self.shape.clone(),
            tuning_file: None,
            select_from_config: false,
        }
        .settings(Terms::Flags)?;
        Ok(ScanSettings {
            device: DeviceChoice {
                tuning_file: None,
                ..device
            },
            header,
            start: start as u32,
            count,
            target,
            json: self.json,
        })
    }
}
