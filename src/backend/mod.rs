//! Where hashing happens: every device, whatever its API, is a [`Device`]
//! with a blocking `scan` over a nonce range of one [`KernelWork`].

pub mod cpu;
pub mod opencl;
pub mod pci;
pub mod selftest;
#[cfg(target_arch = "x86_64")]
pub mod tuning;
pub mod variant;
pub mod vulkan;

pub use variant::{
    check_nonces, check_vectors, check_worksize, CpuPath, KernelVariant, Shape, ShapeError,
};

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::pow::KernelWork;

/// The API a device is driven through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The host CPU, hashed by hashrig itself (SHA-NI or portable code).
    Cpu,
    /// OpenCL kernels from `kernels/`, through the ICD loader.
    #[value(name = "opencl")]
    #[serde(rename = "opencl")]
    OpenCl,
    /// WGSL compute shaders from `shaders/`, through wgpu on Vulkan.
    Vulkan,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::OpenCl => "opencl",
            Backend::Vulkan => "vulkan",
        })
    }
}

/// What kind of silicon a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A discrete, integrated or virtual GPU.
    Gpu,
    /// A CPU (the CPU backend, or a CPU OpenCL/Vulkan driver such as PoCL or lavapipe).
    Cpu,
    /// Anything else a driver reports (an accelerator, an unknown type).
    Other,
}

/// How a backend finds a device again when it is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// The CPU backend.
    Cpu,
    /// An OpenCL device, by its platform and its index on that platform.
    OpenCl {
        /// Index of the OpenCL platform, in the order the ICD loader lists them.
        platform: usize,
        /// The device's label (`opencl#0 NVIDIA H100`).
        device: usize,
    },
    /// A Vulkan adapter, by its index in the enumeration.
    Vulkan {
        /// Index of the adapter in wgpu's Vulkan enumeration.
        adapter: usize,
    },
}

/// A device as listed by `hashrig devices`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceInfo {
    /// Position in the listing: what `--device` selects.
    pub index: usize,
    /// Which backend drives it.
    pub backend: Backend,
    /// The name its driver reports.
    pub name: String,
    /// What kind of device the driver says it is.
    pub kind: DeviceKind,
    /// Compute units (OpenCL), CPU threads (CPU); 0 where the backend cannot tell.
    pub compute_units: u32,
    /// Global memory in bytes; 0 where the backend cannot tell.
    pub memory_bytes: u64,
    /// The OpenCL platform or the Vulkan API, as the driver names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The vendor, as the driver names it (a PCI vendor id on Vulkan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// The driver and its version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// `domain:bus:device.function`, where the API tells it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// Where the backend finds it again to open it.
    #[serde(skip)]
    pub locator: Locator,
}

impl DeviceInfo {
    /// `opencl#2 NVIDIA H100`: how logs name a device.
    pub fn label(&self) -> String {
        format!("{}#{} {}", self.backend, self.index, self.name)
    }
}

/// A device failure. The scheduler takes the device out of rotation; the
/// process and the other devices go on.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A driver call failed.
    #[error("{device}: {operation} failed")]
    Driver {
        /// The device's label (`opencl#0 NVIDIA H100`).
        device: String,
        /// The driver call or step that failed.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// The kernel or shader did not compile.
    #[error("{device}: kernel build failed:\n{log}")]
    Build {
        /// The device's label (`opencl#0 NVIDIA H100`).
        device: String,
        /// The compiler's build log.
        log: String,
    },
    /// The device hashed a known header wrong: it must not mine.
    #[error("{device}: self-test failed: {detail}")]
    SelfTest {
        /// The device's label (`opencl#0 NVIDIA H100`).
        device: String,
        /// Which known header or nonce came out wrong.
        detail: String,
    },
    /// The device cannot run what it was asked to (a CPU path whose
    /// instructions this CPU lacks).
    #[error("{device}: {detail}")]
    Unsupported {
        /// The device's label (`cpu#0 AMD EPYC 9654`).
        device: String,
        /// What it lacks.
        detail: String,
    },
    /// A scan asked for nonces past 2^32 − 1.
    #[error("nonce range start {start} count {count} goes past 2^32")]
    Range {
        /// The first nonce asked for.
        start: u32,
        /// How many nonces were asked for.
        count: u64,
    },
}

/// What went wrong under a [`DeviceError::Driver`]: the driver's own error
/// kept whole, or what hashrig found wrong itself. Shared (`Arc`) so a
/// `DeviceError` stays `Clone`: the scheduler reports one failure twice
/// (log and stats).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The error the driver returned (an OpenCL status, a wgpu error).
    #[error(transparent)]
    Reported(Arc<dyn std::error::Error + Send + Sync>),
    /// Something the driver did not report but hashrig noticed: a device
    /// gone since it was listed, a hashing thread that panicked.
    #[error("{0}")]
    Noticed(&'static str),
}

impl DriverError {
    /// Keeps a driver's error whole.
    pub fn reported(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        DriverError::Reported(Arc::new(error))
    }
}

/// A device that scans nonces. Implementations own their driver state
/// (context, queue, buffers) and are driven by one worker thread.
pub trait Device: Send {
    /// What the device is and where it was found.
    fn info(&self) -> &DeviceInfo;

    /// Scans are most efficient at counts that are multiples of this
    /// (work-group size × nonces per work-item); other counts still work.
    fn granularity(&self) -> u64;

    /// Scans nonces `start .. start + count` of `work` and returns every one
    /// whose hash passes the kernel's top-word test, none dropped. `count`
    /// may reach 2^32 − `start`, no further. Candidates are unverified.
    fn scan(&mut self, work: &KernelWork, start: u32, count: u64) -> Result<Vec<u32>, DeviceError>;

    /// How long the last `scan` kept the device itself busy, measured on
    /// the device (GPU timestamps), where the backend can tell.
    fn busy_time(&self) -> Option<std::time::Duration> {
        None
    }

    /// Brings a misbehaving device back to a known state (the watchdog's
    /// one reset). Backends that keep no state between scans need nothing;
    /// the scheduler re-runs the self-test afterwards either way.
    fn reset(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }

    /// The kernel build and launch shape it runs (for the CPU, its path).
    fn shape(&self) -> Option<Shape> {
        None
    }
}

/// Where backends keep what they compile (`HASHRIG_CACHE_DIR`, else
/// `~/.cache/hashrig`); `None` when the platform has no cache directory.
pub(crate) fn cache_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("HASHRIG_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("hashrig")))
}

/// Checks a range before a backend touches it.
pub fn check_range(start: u32, count: u64) -> Result<(), DeviceError> {
    if u64::from(start) + count > 1 << 32 {
        return Err(DeviceError::Range { start, count });
    }
    Ok(())
}

/// The largest range one launch covers: nonce offsets inside a launch are
/// 32-bit, and rounding the last work-group up must not wrap them.
const MAX_LAUNCH: u64 = 1 << 31;

/// Scans a range with `launch`, which returns whether its found-buffer
/// overflowed and the candidates it holds. Overflowed ranges are re-scanned
/// in halves, so no candidate is ever dropped.
pub(crate) fn scan_complete<E>(
    start: u32,
    count: u64,
    launch: &mut dyn FnMut(u32, u64) -> Result<(bool, Vec<u32>), E>,
) -> Result<Vec<u32>, E> {
    if count <= MAX_LAUNCH {
        let (overflowed, nonces) = launch(start, count)?;
        if !overflowed || count == 1 {
            return Ok(nonces);
        }
        tracing::debug!("found-buffer overflow in {start}+{count}: re-scanning in halves");
    }
    let half = count / 2;
    let mut nonces = scan_complete(start, half, launch)?;
    nonces.extend(scan_complete(start + half as u32, count - half, launch)?);
    Ok(nonces)
}

/// Which devices `enumerate` lists and `open` builds, and how.
#[derive(Debug, Clone, Default)]
pub struct DeviceOptions {
    /// CPU hashing threads; 0 means the CPU backend is left out.
    pub cpu_threads: usize,
    /// The CPU path; `None` picks the CPU's default ([`cpu::default_path`]).
    pub cpu_path: Option<CpuPath>,
    /// OpenCL work-group size override.
    pub worksize: Option<usize>,
    /// OpenCL nonces per work-item (vector width) override.
    pub vectors: Option<u32>,
    /// Vulkan nonces per invocation override.
    pub vulkan_nonces: Option<u32>,
    /// The kernel build; `None` picks by the device's vendor.
    pub kernel_variant: Option<KernelVariant>,
    /// Where compiled kernels are kept (default: [`cache_dir`]).
    pub cache_dir: Option<std::path::PathBuf>,
}

/// Why a backend lists no device at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The OpenCL ICD loader found no platform, or is not installed.
    #[error("OpenCL: no runtime or no platform")]
    NoOpenClPlatform(#[source] DriverError),
    /// wgpu found no Vulkan adapter.
    #[error("Vulkan: no adapters (no Vulkan loader, or no driver installed)")]
    NoVulkanAdapter,
}

/// Everything found on this machine, and why a backend found nothing.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Every device found, numbered in order.
    pub devices: Vec<DeviceInfo>,
    /// One line per backend that could not list devices (no runtime, …).
    pub notes: Vec<String>,
}

/// Lists every device of the given backends: CPU first, then OpenCL, then
/// Vulkan, numbered in that order.
pub fn enumerate(backends: &[Backend]) -> Inventory {
    let mut inventory = Inventory::default();
    let push = |found: Result<Vec<DeviceInfo>, ListError>, inventory: &mut Inventory| match found {
        Ok(list) => inventory.devices.extend(list),
        Err(e) => inventory
            .notes
            .push(crate::error_chain::Chain(&e).to_string()),
    };
    for backend in [Backend::Cpu, Backend::OpenCl, Backend::Vulkan] {
        if !backends.contains(&backend) {
            continue;
        }
        let mut found = match backend {
            Backend::Cpu => Ok(vec![cpu::info()]),
            Backend::OpenCl => opencl::list(),
            Backend::Vulkan => vulkan::list(),
        };
        // A rig's cards in slot order: the same numbers after a driver
        // update or a card added, and the order a farm tool shows them.
        if let Ok(list) = &mut found {
            pci::sort_by_bus(list, |d| d.pci_bus_id.as_deref());
        }
        push(found, &mut inventory);
    }
    for (index, device) in inventory.devices.iter_mut().enumerate() {
        device.index = index;
    }
    inventory
}

/// Opens a listed device for hashing.
pub fn open(info: &DeviceInfo, options: &DeviceOptions) -> Result<Box<dyn Device>, DeviceError> {
    Ok(match info.locator {
        Locator::Cpu => Box::new(cpu::CpuDevice::new(
            info.clone(),
            options.cpu_threads.max(1),
            options.cpu_path.unwrap_or_else(cpu::default_path),
        )?),
        Locator::OpenCl { .. } => Box::new(opencl::OpenClDevice::open(info.clone(), options)?),
        Locator::Vulkan { .. } => Box::new(vulkan::VulkanDevice::open(info.clone(), options)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overflow path re-scans until every candidate is back.
    #[test]
    fn scan_complete_rescans_overflows() {
        let capacity = 4;
        let truth: Vec<u32> = (100..200).filter(|n| n % 3 == 0).collect();
        let mut launches = 0;
        let mut launch = |s: u32, c: u64| -> Result<(bool, Vec<u32>), ()> {
            launches += 1;
            let hits: Vec<u32> = truth
                .iter()
                .copied()
                .filter(|n| u64::from(*n) >= u64::from(s) && u64::from(*n) < u64::from(s) + c)
                .collect();
            let stored = hits.iter().copied().take(capacity).collect();
            Ok((hits.len() > capacity, stored))
        };
        let mut got = scan_complete(100, 100, &mut launch).unwrap();
        got.sort_unstable();
        assert_eq!(got, truth);
        assert!(launches > 1);
    }
}
