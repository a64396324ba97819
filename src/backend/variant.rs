//! Which build of the kernel a device runs, and the shape it runs in: the
//! choices `hashrig tune` measures between and the tuning file remembers.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Backend, DeviceInfo, DeviceKind};

/// A build of the one generated kernel (`scripts/gen_kernels.py`), selected
/// by a build option in OpenCL and a pipeline constant in WGSL.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum KernelVariant {
    /// Plain additions and logic: what every compiler gets by default.
    #[default]
    Generic,
    /// Additions as multiply-adds by a 1 the compiler cannot fold, so they
    /// run on NVIDIA's FMA pipe beside the integer ALU pipe that rotates and
    /// logic fill.
    Nvidia,
    /// The NVIDIA build with two of Σ0's rotations as 32×32→64 multiplies
    /// (IMAD.WIDE): fewer integer-pipe instructions, more on the FMA pipe.
    /// OpenCL with one nonce per work-item only (elsewhere it is the NVIDIA
    /// build); a candidate for `hashrig tune`, never picked by `auto`.
    #[value(name = "nvidia-wide")]
    #[serde(rename = "nvidia-wide")]
    NvidiaWide,
    /// Maj through the previous round's `a ^ b`, for AMD's `v_bfi_b32`.
    Amd,
}

impl KernelVariant {
    /// Every variant, in the order tuning tries them.
    pub const ALL: [KernelVariant; 4] = [
        KernelVariant::Generic,
        KernelVariant::Nvidia,
        KernelVariant::NvidiaWide,
        KernelVariant::Amd,
    ];

    /// The build `auto` picks: the vendor's own for a GPU of NVIDIA or AMD,
    /// the generic one for everything else. CPU drivers report the CPU's
    /// vendor (PoCL says "AuthenticAMD"), so only GPUs count.
    pub fn for_device(info: &DeviceInfo) -> Self {
        if info.kind != DeviceKind::Gpu {
            return KernelVariant::Generic;
        }
        let vendor = info.vendor.as_deref().unwrap_or("").to_ascii_lowercase();
        let name = info.name.to_ascii_lowercase();
        // OpenCL gives the vendor's name; Vulkan its PCI vendor id.
        let is = |names: &[&str], pci_id: &str| {
            vendor == pci_id || names.iter().any(|n| vendor.contains(n) || name.contains(n))
        };
        if is(&["nvidia"], "0x10de") {
            KernelVariant::Nvidia
        } else if is(&["advanced micro devices", "amd", "radeon"], "0x1002") {
            KernelVariant::Amd
        } else {
            KernelVariant::Generic
        }
    }

    /// The OpenCL build option that selects this build.
    pub fn build_option(self) -> &'static str {
        match self {
            KernelVariant::Generic => "",
            KernelVariant::Nvidia => " -D HASHRIG_VENDOR_NVIDIA=1",
            KernelVariant::NvidiaWide => " -D HASHRIG_VENDOR_NVIDIA=2",
            KernelVariant::Amd => " -D HASHRIG_VENDOR_AMD=1",
        }
    }

    /// The name flags and the tuning file use (`nvidia`, `amd`, …).
    pub fn name(self) -> &'static str {
        match self {
            KernelVariant::Generic => "generic",
            KernelVariant::Nvidia => "nvidia",
            KernelVariant::NvidiaWide => "nvidia-wide",
            KernelVariant::Amd => "amd",
        }
    }
}

/// Whether the device's OpenCL compiler takes inline PTX: NVIDIA's own
/// platform ("NVIDIA CUDA") does, as John the Ripper's and hashcat's NVIDIA
/// kernels rely on; PoCL, even on its CUDA device, is left to plain C. The
/// kernel uses it where LLVM's C lowering costs instructions (the wide
/// rotations of `nvidia-wide`), and the host builds again without it if a
/// driver refuses.
pub fn takes_inline_ptx(info: &DeviceInfo) -> bool {
    info.backend == Backend::OpenCl
        && info.kind == DeviceKind::Gpu
        && info
            .platform
            .as_deref()
            .is_some_and(|p| p.to_ascii_lowercase().contains("nvidia"))
}

impl fmt::Display for KernelVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the CPU backend hashes: one of the instruction sets it has code for.
/// Which is fastest depends on the CPU (SHA-NI beats AVX2 on AMD's Zen, and
/// AVX-512's worth differs by generation), so `hashrig tune --backend cpu`
/// measures them; untuned, [`CpuPath::ALL`]'s order picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum CpuPath {
    /// AVX-512 F and BW: 16 nonces per instruction, with native rotates and
    /// three-input logic.
    #[value(name = "avx512")]
    #[serde(rename = "avx512")]
    Avx512,
    /// The SHA extensions (SHA-NI), two nonces interleaved to keep the SHA
    /// unit busy.
    #[value(name = "sha-ni")]
    #[serde(rename = "sha-ni")]
    ShaNi,
    /// AVX2: 8 nonces per instruction.
    #[value(name = "avx2")]
    #[serde(rename = "avx2")]
    Avx2,
    /// Plain 32-bit arithmetic, one nonce at a time: any CPU.
    #[value(name = "scalar")]
    #[serde(rename = "scalar")]
    Scalar,
}

impl CpuPath {
    /// Every path, in the order an untuned CPU prefers them.
    pub const ALL: [CpuPath; 4] = [
        CpuPath::Avx512,
        CpuPath::ShaNi,
        CpuPath::Avx2,
        CpuPath::Scalar,
    ];

    /// The name flags, logs and the tuning file use.
    pub fn name(self) -> &'static str {
        match self {
            CpuPath::Avx512 => "avx512",
            CpuPath::ShaNi => "sha-ni",
            CpuPath::Avx2 => "avx2",
            CpuPath::Scalar => "scalar",
        }
    }

    /// Nonces hashed side by side.
    pub fn lanes(self) -> u32 {
        match self {
            CpuPath::Avx512 => 16,
            CpuPath::ShaNi => 2,
            CpuPath::Avx2 => 8,
            CpuPath::Scalar => 1,
        }
    }
}

impl fmt::Display for CpuPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a backend runs the kernel on one device. OpenCL uses `vectors`
/// (nonces per work-item as vector lanes) and Vulkan `nonces` (nonces per
/// invocation); the other is 1. The CPU backend uses `cpu_path` alone (its
/// other fields are 1 and the generic variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    /// The kernel variant.
    pub variant: KernelVariant,
    /// Work-items per work-group.
    pub worksize: u32,
    /// Nonces per work-item (OpenCL vector width).
    pub vectors: u32,
    /// Nonces per invocation (Vulkan).
    pub nonces: u32,
    /// The CPU backend's instruction set; absent for GPU backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_path: Option<CpuPath>,
}

impl Shape {
    /// The CPU backend's shape: a path, nothing else to choose.
    pub fn cpu(path: CpuPath) -> Self {
        Shape {
            variant: KernelVariant::Generic,
            worksize: 1,
            vectors: 1,
            nonces: 1,
            cpu_path: Some(path),
        }
    }

    /// `amd, work-group 256, 2 lanes`: how logs and `bench` name a shape.
    pub fn describe(&self, backend: Backend) -> String {
        if let (Backend::Cpu, Some(path)) = (backend, self.cpu_path) {
            return match path.lanes() {
                1 => format!("{path}, 1 nonce a step"),
                lanes => format!("{path}, {lanes} nonces a step"),
            };
        }
        let per_item = match backend {
            Backend::Vulkan => format!("{} nonces per invocation", self.nonces),
            _ => format!("{} lanes", self.vectors),
        };
        format!("{}, work-group {}, {per_item}", self.variant, self.worksize)
    }
}

impl Shape {
    /// Whether every value is one the kernels are built for.
    pub fn check(&self) -> Result<(), ShapeError> {
        check_vectors(self.vectors)?;
        check_worksize(u64::from(self.worksize))?;
        check_nonces(self.nonces)
    }
}

/// A launch-shape value outside what the kernels are built for. The
/// caller names where it came from (a flag, a tuning file's entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// OpenCL lanes per work-item with no vector build of the kernel.
    #[error("{0} lanes: the OpenCL kernel is built for 1, 2, 4, 8 or 16")]
    Vectors(u32),
    /// A work-group size no device takes.
    #[error("a work-group of {0}: must be between 1 and 1024")]
    Worksize(u64),
    /// Vulkan nonces per invocation past the shader's loop bound.
    #[error("{0} nonces per invocation: must be between 1 and 1024")]
    Nonces(u32),
}

impl ShapeError {
    /// The [`Shape`] field that holds the value.
    pub fn field(&self) -> &'static str {
        match self {
            ShapeError::Vectors(_) => "vectors",
            ShapeError::Worksize(_) => "worksize",
            ShapeError::Nonces(_) => "nonces",
        }
    }
}

/// The OpenCL kernel's vector widths (`VECTORS` in `kernels/sha256d.cl`).
pub fn check_vectors(lanes: u32) -> Result<(), ShapeError> {
    match lanes {
        1 | 2 | 4 | 8 | 16 => Ok(()),
        _ => Err(ShapeError::Vectors(lanes)),
    }
}

/// 1 to 1024: every GPU API's floor for the largest work-group.
pub fn check_worksize(size: u64) -> Result<(), ShapeError> {
    match size {
        1..=1024 => Ok(()),
        _ => Err(ShapeError::Worksize(size)),
    }
}

/// 1 to 1024 nonces per Vulkan shader invocation.
pub fn check_nonces(nonces: u32) -> Result<(), ShapeError> {
    match nonces {
        1..=1024 => Ok(()),
        _ => Err(ShapeError::Nonces(nonces)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Locator;

    fn device(kind: DeviceKind, vendor: &str, name: &str) -> DeviceInfo {
        DeviceInfo {
            index: 0,
            backend: Backend::OpenCl,
            name: name.into(),
            kind,
            compute_units: 1,
            memory_bytes: 0,
            platform: None,
            vendor: Some(vendor.into()),
            driver: None,
            pci_bus_id: None,
            locator: Locator::OpenCl {
                platform: 0,
                device: 0,
            },
        }
    }

    #[test]
    fn inline_ptx_on_nvidias_own_platform_only() {
        let on = |platform: &str, vendor: &str, kind: DeviceKind| {
            let mut info = device(kind, vendor, "some device");
            info.platform = Some(platform.into());
            takes_inline_ptx(&info)
        };
        assert!(on("NVIDIA CUDA", "NVIDIA Corporation", DeviceKind::Gpu));
        assert!(!on(
            "Portable Computing Language",
            "NVIDIA Corporation",
            DeviceKind::Gpu
        ));
        assert!(!on(
            "Portable Computing Language",
            "GenuineIntel",
            DeviceKind::Cpu
        ));
        assert!(!on(
            "AMD Accelerated Parallel Processing",
            "Advanced Micro Devices, Inc.",
            DeviceKind::Gpu
        ));
        let mut vulkan = device(DeviceKind::Gpu, "0x10de", "NVIDIA H200");
        vulkan.backend = Backend::Vulkan;
        vulkan.platform = Some("Vulkan NVIDIA".into());
        assert!(!takes_inline_ptx(&vulkan));
    }

    /// Vendor strings as the drivers report them (NVIDIA's OpenCL, ROCm,
    /// Mesa's rusticl, PoCL on an AMD CPU, Vulkan's PCI ids).
    #[test]
    fn auto_picks_by_the_vendor_of_gpus_only() {
        let cases = [
            (
                DeviceKind::Gpu,
                "NVIDIA Corporation",
                "NVIDIA H200",
                KernelVariant::Nvidia,
            ),
            (
                DeviceKind::Gpu,
                "0x10de",
                "NVIDIA GeForce RTX 4090",
                KernelVariant::Nvidia,
            ),
            (
                DeviceKind::Gpu,
                "Advanced Micro Devices, Inc.",
                "gfx1030",
                KernelVariant::Amd,
            ),
            (
                DeviceKind::Gpu,
                "AMD",
                "AMD Radeon RX 6800 (radeonsi, navi21)",
                KernelVariant::Amd,
            ),
            (
                DeviceKind::Gpu,
                "0x1002",
                "AMD Radeon RX 7900 XTX (RADV NAVI31)",
                KernelVariant::Amd,
            ),
            (
                DeviceKind::Gpu,
                "Intel(R) Corporation",
                "Intel(R) Arc(TM) A770",
                KernelVariant::Generic,
            ),
            (
                DeviceKind::Cpu,
                "AuthenticAMD",
                "cpu-haswell-AMD EPYC 7B13",
                KernelVariant::Generic,
            ),
            (
                DeviceKind::Cpu,
                "0x10005",
                "llvmpipe (LLVM 15.0.6, 256 bits)",
                KernelVariant::Generic,
            ),
        ];
        for (kind, vendor, name, want) in cases {
            assert_eq!(
                KernelVariant::for_device(&device(kind, vendor, name)),
                want,
                "{vendor} {name}"
            );
        }
    }
}
