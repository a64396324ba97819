//! The device flags every mining command shares, and the selection they
//! make from what is installed.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use hashrig::backend::{
    Backend, CpuPath, DeviceInfo, DeviceKind, DeviceOptions, Inventory, KernelVariant,
};

use super::terms::{self, Terms};

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
    #[command(flatten)]
    pub shape: KernelShapeArgs,
    /// The tuning file `tune` writes and every command reads (default:
    /// $XDG_DATA_HOME/hashrig/tuning.json).
    #[arg(long, value_name = "FILE")]
    pub tuning_file: Option<PathBuf>,
    /// Whether `device` came from the config file (`devices.select`), so
    /// that a selection the installed devices refuse is named as given.
    #[arg(skip)]
    pub select_from_config: bool,
}

/// The tuning file `given` (by flag or config key), else the default.
pub fn tuning_path(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(hashrig::backend::tuning::TuningFile::default_path)
}

/// The launch-shape flags: how a device runs its kernel. Shared by every
/// command that opens devices (`scan` included), so each flag is declared,
/// documented and checked once.
#[derive(Debug, Clone, Default, Args)]
pub struct KernelShapeArgs {
    /// Work-group size for GPU kernels (default per device).
    #[arg(long, value_name = "N")]
    pub worksize: Option<usize>,
    /// OpenCL nonces per work-item, as vector lanes: 1, 2, 4, 8 or 16.
    #[arg(long, value_name = "N")]
    pub vectors: Option<u32>,
    /// Vulkan nonces per shader invocation.
    #[arg(long, value_name = "N")]
    pub vulkan_nonces: Option<u32>,
    /// Kernel build (default auto: a stored tuning where `mine`, `solo` or
    /// `bench` has one, else by the device's vendor).
    #[arg(long, value_enum, value_name = "VARIANT")]
    pub kernel_variant: Option<VariantChoice>,
    /// The CPU backend's instruction set (default: a stored tuning, else
    /// the first of avx512, sha-ni, avx2, scalar this CPU has).
    #[arg(long, value_enum, value_name = "PATH")]
    pub cpu_path: Option<CpuPath>,
}

/// Validated [`KernelShapeArgs`]: what the operator fixed of each
/// device's launch shape (the rest is the device's default or tuning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelShape {
    pub worksize: Option<usize>,
    pub vectors: Option<u32>,
    pub vulkan_nonces: Option<u32>,
    pub kernel_variant: Option<KernelVariant>,
    /// A CPU path this CPU has.
    pub cpu_path: Option<CpuPath>,
}

impl KernelShapeArgs {
    /// Checked against the library's launch-shape bounds.
    pub fn settings(&self, terms: Terms) -> anyhow::Result<KernelShape> {
        use hashrig::backend::{check_nonces, check_vectors, check_worksize};
        if let Some(v) = self.vectors {
            check_vectors(v).context(terms.name(terms::VECTORS))?;
        }
        if let Some(w) = self.worksize {
            check_worksize(w as u64).context(terms.name(terms::WORKSIZE))?;
        }
        if let Some(n) = self.vulkan_nonces {
            check_nonces(n).context(terms.name(terms::VULKAN_NONCES))?;
        }
        if let Some(path) = self.cpu_path {
            let runs = hashrig::backend::cpu::supported_paths();
            if !runs.contains(&path) {
                let runs: Vec<&str> = runs.iter().map(|p| p.name()).collect();
                bail!(
                    "{} {path}: this CPU lacks its instructions (it runs {})",
                    terms.name(terms::CPU_PATH),
                    runs.join(", ")
                );
            }
        }
        Ok(KernelShape {
            worksize: self.worksize,
            vectors: self.vectors,
            vulkan_nonces: self.vulkan_nonces,
            kernel_variant: self.kernel_variant.and_then(VariantChoice::variant),
            cpu_path: self.cpu_path,
        })
    }
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

/// The devices chosen from those installed, and how to open them.
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

/// A checked device selection, and the name it was given under (the flag
/// or the config key), for the errors of matching it to what is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub selectors: Vec<DeviceSelector>,
    named: &'static str,
}

/// Parses `--device 0,2,pci:0000:0a:00.0`.
fn parse_selection(text: &str, named: &'static str) -> anyhow::Result<Selection> {
    let selectors = text
        .split(',')
        .map(|part| {
            let part = part.trim();
            if let Some(id) = parse_pci(part) {
                return Ok(DeviceSelector::Pci(id));
            }
            match part.parse::<usize>() {
                Ok(i) if i <= MAX_DEVICE_INDEX => Ok(DeviceSelector::Index(i)),
                _ => bail!(
                    "{named} {text:?}: {part:?} is not a device index (0 to {MAX_DEVICE_INDEX}, as `hashrig devices` numbers them) or a PCI bus id (pci:0000:0a:00.0)"
                ),
            }
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Selection { selectors, named })
}

/// The inventory indexes a selection names, each checked against the
/// backends asked for. A PCI bus id names a card: with `--backend all` it
/// is mined through OpenCL when both APIs list it (one card, one API).
fn resolve_selection(
    selection: &Selection,
    inventory: &Inventory,
    backend: BackendChoice,
) -> anyhow::Result<Vec<usize>> {
    let named = selection.named;
    let wanted = backend.backends();
    let backend_name = backend
        .to_possible_value()
        .map_or("?".into(), |v| v.get_name().to_owned());
    let mut indexes = Vec::new();
    for selector in &selection.selectors {
        match selector {
            DeviceSelector::Index(i) => match inventory.devices.iter().find(|d| d.index == *i) {
                None => bail!("{named} {i}: no such device (see `hashrig devices`)"),
                Some(d) if !wanted.contains(&d.backend) => bail!(
                    "{named} {i}: {} is not a device of backend {backend_name}",
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
                    bail!("{named} pci:{id}: no device with that PCI bus id (`hashrig devices --json` shows them)");
                }
                let mut matched: Vec<&DeviceInfo> = on_bus
                    .into_iter()
                    .filter(|d| wanted.contains(&d.backend))
                    .collect();
                if matched.is_empty() {
                    bail!("{named} pci:{id}: not a device of backend {backend_name}");
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

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Validated [`DeviceArgs`]: what to look for among the installed
/// devices (which are not looked at until the command runs).
#[derive(Debug, Clone)]
pub struct DeviceChoice {
    pub backend: BackendChoice,
    pub selection: Option<Selection>,
    /// As given; the default depends on what else mines.
    pub cpu_threads: Option<usize>,
    pub opencl_cpu: bool,
    pub vulkan_cpu: bool,
    pub shape: KernelShape,
    /// The tuning file: the one given, else the default (none when there
    /// is no data directory).
    pub tuning_file: Option<PathBuf>,
}

impl DeviceArgs {
    /// Every check that needs no device.
    pub fn settings(&self, terms: Terms) -> anyhow::Result<DeviceChoice> {
        let shape = self.shape.settings(terms)?;
        let threads = terms.name(terms::CPU_THREADS);
        match self.cpu_threads {
            Some(0) => bail!(
                "{threads} 0: must be at least 1 (to mine without the CPU, leave it out: it is off when GPUs mine)"
            ),
            Some(n) if n > 4 * cores() => {
                bail!("{threads} {n}: more than 4× the {} cores here", cores())
            }
            _ => {}
        }
        let select_terms = if self.select_from_config {
            Terms::Config
        } else {
            terms
        };
        let selection = self
            .device
            .as_deref()
            .map(|text| parse_selection(text, select_terms.name(terms::DEVICE)))
            .transpose()?;
        Ok(DeviceChoice {
            backend: self.backend,
            selection,
            cpu_threads: self.cpu_threads,
            opencl_cpu: self.opencl_cpu,
            vulkan_cpu: self.vulkan_cpu,
            shape,
            tuning_file: tuning_path(self.tuning_file.clone()),
        })
    }
}

/// What is installed, as the selection needs it: indexes given with
/// `--device` are the ones `hashrig devices` prints, which number every
/// backend's devices, so then every backend is listed (and `select_devices`
/// keeps the asked-for backend's); without, only the asked-for backends.
pub fn inventory(args: &DeviceChoice) -> Inventory {
    if args.selection.is_some() {
        hashrig::backend::enumerate(&BackendChoice::All.backends())
    } else {
        hashrig::backend::enumerate(&args.backend.backends())
    }
}

/// Chooses the devices to run from what is installed.
pub fn select_devices(
    args: &DeviceChoice,
    inventory: &Inventory,
) -> anyhow::Result<DeviceSettings> {
    let wanted = args.backend.backends();
    let mut chosen: Vec<DeviceInfo> = inventory
        .devices
        .iter()
        .filter(|d| wanted.contains(&d.backend))
        .cloned()
        .collect();
    if let Some(selection) = &args.selection {
        let indexes = resolve_selection(selection, inventory, args.backend)?;
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
            worksize: args.shape.worksize,
            vectors: args.shape.vectors,
            vulkan_nonces: args.shape.vulkan_nonces,
            kernel_variant: args.shape.kernel_variant,
            cpu_path: args.shape.cpu_path,
            cache_dir: None,
        },
    })
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
        let err = parse_selection("0,pci:0a:00", "--device")
            .unwrap_err()
            .to_string();
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
            resolve_selection(
                &parse_selection(text, "devices.select").unwrap(),
                &inventory,
                backend,
            )
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
            err.contains("devices.select pci:0000:0b:00.0") && err.contains("no device"),
            "{err}"
        );
        let err = pick("pci:0a:00.0", BackendChoice::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a device of backend cpu"), "{err}");
    }
}
