//! Command-line definitions (clap), and their conversion into validated
//! settings in one place.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgMatches, Args, Parser, Subcommand, ValueEnum};

use hashrig::backend::{Backend, DeviceInfo, DeviceKind, DeviceOptions, Inventory, KernelVariant};

pub mod config;
mod mine;
mod rig;
mod solo;

pub use mine::{MineArgs, RunSettings};
pub use rig::{RigArgs, RigSettings};
pub use solo::{NodeArgs, SoloArgs};

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
        scope: String,
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

/// Which backends to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Cpu,
    #[value(name = "opencl")]
    OpenCl,
    Vulkan,
    /// Every GPU, through OpenCL and Vulkan; the CPU only when no GPU is found.
    All,
}

#[derive(Debug, Args)]
pub struct DeviceArgs {
    #[arg(long, value_enum, default_value = "all")]
    pub backend: BackendChoice,
    /// Comma-separated device indexes, as `hashrig devices` numbers them,
    /// or PCI bus ids (`pci:0000:0a:00.0`).
    #[arg(long, value_name = "SEL")]
    pub device: Option<String>,
    /// CPU hashing threads (default: all cores when the CPU is the only
    /// device; none when GPUs are mining).
    #[arg(long, value_name = "N")]
    pub cpu_threads: Option<usize>,
    /// Use CPU-type OpenCL devices (PoCL, …) with `--backend all`.
    #[arg(long)]
    pub opencl_cpu: bool,
    /// Use software Vulkan adapters (lavapipe, …) with `--backend all`.
    #[arg(long)]
    pub vulkan_cpu: bool,
    /// Work-group size for GPU kernels (default per device).
    #[arg(long, value_name = "N")]
    pub worksize: Option<usize>,
    /// OpenCL nonces per work-item, as vector lanes: 1, 2, 4, 8 or 16.
    #[arg(long, value_name = "N")]
    pub vectors: Option<u32>,
    /// Vulkan nonces per shader invocation.
    #[arg(long, value_name = "N")]
    pub vulkan_nonces: Option<u32>,
    /// Kernel build (default auto: by the device's vendor, or a stored
    /// tuning).
    #[arg(long, value_enum, value_name = "VARIANT")]
    pub kernel_variant: Option<VariantChoice>,
    /// The tuning file `tune` writes and every command reads (default:
    /// $XDG_DATA_HOME/hashrig/tuning.json).
    #[arg(long, value_name = "FILE")]
    pub tuning_file: Option<std::path::PathBuf>,
}

impl DeviceArgs {
    /// The tuning file: the flag's (or config key's), else the default.
    pub fn tuning_path(&self) -> Option<std::path::PathBuf> {
        tuning_path(self.tuning_file.clone())
    }
}

/// The tuning file `given` (by flag or config key), else the default.
pub fn tuning_path(given: Option<std::path::PathBuf>) -> Option<std::path::PathBuf> {
    given.or_else(hashrig::backend::tuning::TuningFile::default_path)
}

/// `--kernel-variant`: a build of the kernel, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VariantChoice {
    /// The device vendor's build for NVIDIA and AMD GPUs, else generic.
    Auto,
    /// Plain additions and logic.
    Generic,
    /// Additions as multiply-adds, on NVIDIA's FMA pipe.
    Nvidia,
    /// nvidia, and two of Σ0's rotations as wide multiplies (OpenCL, 1 lane).
    NvidiaWide,
    /// Maj through the previous round's a ^ b.
    Amd,
}

impl VariantChoice {
    /// The build asked for; `None` for auto.
    pub fn variant(self) -> Option<KernelVariant> {
        match self {
            VariantChoice::Auto => None,
            VariantChoice::Generic => Some(KernelVariant::Generic),
            VariantChoice::Nvidia => Some(KernelVariant::Nvidia),
            VariantChoice::NvidiaWide => Some(KernelVariant::NvidiaWide),
            VariantChoice::Amd => Some(KernelVariant::Amd),
        }
    }
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

impl TuneArgs {
    pub fn seconds(&self) -> anyhow::Result<f64> {
        if !(self.seconds.is_finite() && (1.0..=86_400.0).contains(&self.seconds)) {
            bail!("--seconds {}: must be between 1 and 86400", self.seconds);
        }
        Ok(self.seconds)
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
    // Not `DeviceArgs` flattened: a scan runs one device, the CPU by
    // default, software OpenCL and Vulkan devices included.
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
    /// Work-group size for GPU kernels (default per device).
    #[arg(long, value_name = "N")]
    pub worksize: Option<usize>,
    /// OpenCL nonces per work-item, as vector lanes: 1, 2, 4, 8 or 16.
    #[arg(long, value_name = "N")]
    pub vectors: Option<u32>,
    /// Vulkan nonces per shader invocation.
    #[arg(long, value_name = "N")]
    pub vulkan_nonces: Option<u32>,
    /// Kernel build (default auto: by the device's vendor).
    #[arg(long, value_enum, value_name = "VARIANT")]
    pub kernel_variant: Option<VariantChoice>,
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

impl BackendChoice {
    pub fn backends(self) -> Vec<Backend> {
        match self {
            BackendChoice::Cpu => vec![Backend::Cpu],
            BackendChoice::OpenCl => vec![Backend::OpenCl],
            BackendChoice::Vulkan => vec![Backend::Vulkan],
            BackendChoice::All => vec![Backend::Cpu, Backend::OpenCl, Backend::Vulkan],
        }
    }
}

/// Validated device choices.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    pub devices: Vec<DeviceInfo>,
    pub options: DeviceOptions,
}

/// The highest device index taken: far above any rig, far below
/// anything that would overflow.
pub const MAX_DEVICE_INDEX: usize = 1023;

/// One entry of `--device`: an index as `hashrig devices` numbers them, or
/// a card's PCI bus id (which stays put when cards are added or removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSelector {
    Index(usize),
    /// `domain:bus:device.function`, lower-case, domain filled in.
    Pci(String),
}

/// Parses `pci:0000:0a:00.0` (or `pci:0a:00.0`, domain 0) into the form
/// `hashrig devices` prints.
fn parse_pci(text: &str) -> Option<String> {
    hashrig::backend::pci::normalize(text.strip_prefix("pci:")?)
}

/// Parses `--device 0,2,pci:0000:0a:00.0`.
fn parse_selection(text: &str) -> anyhow::Result<Vec<DeviceSelector>> {
    text.split(',')
        .map(|part| {
            let part = part.trim();
            if let Some(id) = parse_pci(part) {
                return Ok(DeviceSelector::Pci(id));
            }
            match part.parse::<usize>() {
                Ok(i) if i <= MAX_DEVICE_INDEX => Ok(DeviceSelector::Index(i)),
                _ => bail!(
                    "--device {text:?}: {part:?} is not a device index (0 to {MAX_DEVICE_INDEX}, as `hashrig devices` numbers them) or a PCI bus id (pci:0000:0a:00.0)"
                ),
            }
        })
        .collect()
}

/// The inventory indexes a selection names, each checked against the
/// backends asked for. A PCI bus id names a card: with `--backend all` it
/// is mined through OpenCL when both APIs list it (one card, one API).
fn resolve_selection(
    selection: &[DeviceSelector],
    inventory: &Inventory,
    backend: BackendChoice,
) -> anyhow::Result<Vec<usize>> {
    let wanted = backend.backends();
    let backend_name = backend
        .to_possible_value()
        .map_or("?".into(), |v| v.get_name().to_owned());
    let mut indexes = Vec::new();
    for selector in selection {
        match selector {
            DeviceSelector::Index(i) => match inventory.devices.iter().find(|d| d.index == *i) {
                None => bail!("--device {i}: no such device (see `hashrig devices`)"),
                Some(d) if !wanted.contains(&d.backend) => bail!(
                    "--device {i}: {} is not a device of --backend {backend_name}",
                    d.label()
                ),
                Some(_) => indexes.push(*i),
            },
            DeviceSelector::Pci(id) => {
                let on_bus: Vec<&DeviceInfo> = inventory
                    .devices
                    .iter()
                    .filter(|d| d.pci_bus_id.as_deref() == Some(id.as_str()))
                    .collect();
                if on_bus.is_empty() {
                    bail!("--device pci:{id}: no device with that PCI bus id (`hashrig devices --json` shows them)");
                }
                let mut matched: Vec<&DeviceInfo> = on_bus
                    .into_iter()
                    .filter(|d| wanted.contains(&d.backend))
                    .collect();
                if matched.is_empty() {
                    bail!("--device pci:{id}: not a device of --backend {backend_name}");
                }
                if matched.iter().any(|d| d.backend == Backend::OpenCl) {
                    matched.retain(|d| d.backend != Backend::Vulkan);
                }
                indexes.extend(matched.iter().map(|d| d.index));
            }
        }
    }
    Ok(indexes)
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

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl DeviceArgs {
    /// Every check that needs no device: the selection, in order.
    pub fn check(&self) -> anyhow::Result<Option<Vec<DeviceSelector>>> {
        use hashrig::backend::{check_nonces, check_vectors, check_worksize};
        if let Some(v) = self.vectors {
            check_vectors(v).context("--vectors")?;
        }
        if let Some(w) = self.worksize {
            check_worksize(w as u64).context("--worksize")?;
        }
        if let Some(n) = self.vulkan_nonces {
            check_nonces(n).context("--vulkan-nonces")?;
        }
        match self.cpu_threads {
            Some(0) => bail!(
                "--cpu-threads 0: must be at least 1 (to mine without the CPU, leave it out: it is off when GPUs mine)"
            ),
            Some(n) if n > 4 * cores() => {
                bail!("--cpu-threads {n}: more than 4× the {} cores here", cores())
            }
            _ => {}
        }
        self.device.as_deref().map(parse_selection).transpose()
    }
}

/// What is installed, as the selection needs it: indexes given with
/// `--device` are the ones `hashrig devices` prints, which number every
/// backend's devices, so then every backend is listed (and `select_devices`
/// keeps the asked-for backend's); without, only the asked-for backends.
pub fn inventory(args: &DeviceArgs) -> Inventory {
    if args.device.is_some() {
        hashrig::backend::enumerate(&BackendChoice::All.backends())
    } else {
        hashrig::backend::enumerate(&args.backend.backends())
    }
}

/// Chooses the devices to run from what is installed.
pub fn select_devices(args: &DeviceArgs, inventory: &Inventory) -> anyhow::Result<DeviceSettings> {
    let selection = args.check()?;
    let wanted = args.backend.backends();
    let mut chosen: Vec<DeviceInfo> = inventory
        .devices
        .iter()
        .filter(|d| wanted.contains(&d.backend))
        .cloned()
        .collect();
    if let Some(selection) = selection {
        let indexes = resolve_selection(&selection, inventory, args.backend)?;
        chosen.retain(|d| indexes.contains(&d.index));
    } else if args.backend == BackendChoice::All {
        // Software devices would fight the CPU backend for cores.
        chosen.retain(|d| match (d.backend, d.kind) {
            (Backend::OpenCl, DeviceKind::Cpu) => args.opencl_cpu,
            (Backend::Vulkan, DeviceKind::Cpu) => args.vulkan_cpu,
            _ => true,
        });
        // One card, one API: a GPU seen through OpenCL is not mined again
        // through Vulkan.
        let opencl_gpus: Vec<String> = chosen
            .iter()
            .filter(|d| d.backend == Backend::OpenCl && d.kind == DeviceKind::Gpu)
            .map(|d| d.name.to_lowercase())
            .collect();
        chosen.retain(|d| {
            !(d.backend == Backend::Vulkan
                && d.kind == DeviceKind::Gpu
                && opencl_gpus.iter().any(|n| n == &d.name.to_lowercase()))
        });
    }
    let others = chosen.iter().any(|d| d.backend != Backend::Cpu);
    let cpu_threads = match args.cpu_threads {
        Some(n) => n,
        None if others => 0,
        None => cores(),
    };
    if cpu_threads == 0 {
        chosen.retain(|d| d.backend != Backend::Cpu);
    }
    if chosen.is_empty() {
        let notes = if inventory.notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", inventory.notes.join("; "))
        };
        let message = format!("no device selected{notes}; `hashrig devices` lists what was found");
        // None installed (a missing driver or runtime) is the rig's
        // failure, not the command line's.
        if !inventory
            .devices
            .iter()
            .any(|d| wanted.contains(&d.backend))
        {
            return Err(crate::failure::Failure::Devices(message).into());
        }
        bail!(message);
    }
    Ok(DeviceSettings {
        devices: chosen,
        options: DeviceOptions {
            cpu_threads,
            worksize: args.worksize,
            vectors: args.vectors,
            vulkan_nonces: args.vulkan_nonces,
            kernel_variant: args.kernel_variant.and_then(VariantChoice::variant),
            cache_dir: None,
        },
    })
}

/// Validated `bench` settings.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    pub duration: Duration,
    pub batch_time: Duration,
    pub rig: RigSettings,
}

impl BenchArgs {
    pub fn settings(&self) -> anyhow::Result<BenchSettings> {
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 86_400.0 * 365.0) {
            bail!(
                "--seconds {}: must be a positive number of seconds",
                self.seconds
            );
        }
        if !(1..=60_000).contains(&self.batch_ms) {
            bail!("--batch-ms {}: must be between 1 and 60000", self.batch_ms);
        }
        Ok(BenchSettings {
            duration: Duration::from_secs_f64(self.seconds),
            batch_time: Duration::from_millis(self.batch_ms),
            rig: self.rig.settings()?,
        })
    }
}

/// Validated `scan` settings.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    pub header: bitcoin::block::Header,
    pub start: u32,
    pub count: u64,
    pub target: bitcoin::Target,
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
        Ok(ScanSettings {
            header,
            start: start as u32,
            count,
            target,
        })
    }

    pub fn device_args(&self) -> DeviceArgs {
        DeviceArgs {
            backend: self.backend,
            device: self.device.clone(),
            cpu_threads: self.cpu_threads,
            opencl_cpu: true,
            vulkan_cpu: true,
            worksize: self.worksize,
            vectors: self.vectors,
            vulkan_nonces: self.vulkan_nonces,
            kernel_variant: self.kernel_variant,
            tuning_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashrig::backend::Locator;

    fn device(index: usize, backend: Backend, bus: Option<&str>) -> DeviceInfo {
        DeviceInfo {
            index,
            backend,
            name: format!("card {index}"),
            kind: DeviceKind::Gpu,
            compute_units: 1,
            memory_bytes: 0,
            platform: None,
            vendor: None,
            driver: None,
            pci_bus_id: bus.map(str::to_owned),
            locator: Locator::Cpu,
        }
    }

    #[test]
    fn pci_bus_ids_parse_to_the_listed_form() {
        assert_eq!(
            parse_pci("pci:0000:0a:00.0").as_deref(),
            Some("0000:0a:00.0")
        );
        assert_eq!(parse_pci("pci:0A:00.1").as_deref(), Some("0000:0a:00.1"));
        assert_eq!(parse_pci("pci:1:41:1f.7").as_deref(), Some("0001:41:1f.7"));
        for bad in [
            "0000:0a:00.0",
            "pci:",
            "pci:0a",
            "pci:0a:00",
            "pci:0a:20.0",
            "pci:0a:00.8",
            "pci:zz:00.0",
            "pci:100:00.0",
        ] {
            assert_eq!(parse_pci(bad), None, "{bad}");
        }
        let err = parse_selection("0,pci:0a:00").unwrap_err().to_string();
        assert!(
            err.contains("\"pci:0a:00\"") && err.contains("PCI bus id"),
            "{err}"
        );
    }

    /// A bus id names a card wherever it sits in the listing; through one
    /// API when both list it; an unknown id, or one of another backend, is
    /// refused naming it.
    #[test]
    fn a_pci_bus_id_selects_its_card() {
        let inventory = Inventory {
            devices: vec![
                device(0, Backend::Cpu, None),
                device(1, Backend::OpenCl, Some("0000:41:00.0")),
                device(2, Backend::OpenCl, Some("0000:0a:00.0")),
                device(3, Backend::Vulkan, Some("0000:41:00.0")),
                device(4, Backend::Vulkan, Some("0000:0a:00.0")),
            ],
            notes: Vec::new(),
        };
        let pick = |text: &str, backend| {
            resolve_selection(&parse_selection(text).unwrap(), &inventory, backend)
        };
        assert_eq!(pick("pci:0a:00.0", BackendChoice::All).unwrap(), [2]);
        assert_eq!(
            pick("pci:0000:0a:00.0,pci:41:00.0", BackendChoice::All).unwrap(),
            [2, 1]
        );
        assert_eq!(pick("pci:0a:00.0", BackendChoice::Vulkan).unwrap(), [4]);
        assert_eq!(
            pick("pci:0a:00.0,1", BackendChoice::OpenCl).unwrap(),
            [2, 1]
        );
        let err = pick("pci:0b:00.0", BackendChoice::All)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pci:0000:0b:00.0") && err.contains("no device"),
            "{err}"
        );
        let err = pick("pci:0a:00.0", BackendChoice::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a device of --backend cpu"), "{err}");
    }
}
