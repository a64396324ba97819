//! Stored tunings: the shape `hashrig tune` measured fastest on a device,
//! kept in one JSON file and keyed by everything that would make the
//! measurement stale: the device (name, PCI bus id), its driver, and the
//! kernel's source. A card swapped into the slot, a driver update or a new
//! kernel each mean a new tuning.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{cpu, opencl, vulkan, Backend, DeviceInfo, Shape};

/// The largest tuning file read: a rig's worth of entries is a few KiB.
const MAX_BYTES: u64 = 1 << 20;
const VERSION: u32 = 1;

/// What a tuning was measured on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceIdentity {
    /// Which backend drives it.
    pub backend: Backend,
    /// The name its driver reports.
    pub name: String,
    /// Its PCI bus id, where known: which of two equal cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// The driver and its version: a new driver is tuned again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The first 8 bytes of the SHA-256 of the kernel source, in hex.
    pub kernel: String,
}

impl DeviceIdentity {
    /// The identity of a listed device. For the CPU, the "driver" is the
    /// list of paths it runs and the "kernel" the CPU code's source.
    pub fn of(info: &DeviceInfo) -> Option<Self> {
        use bitcoin::hashes::{sha256, Hash};
        let source = match info.backend {
            Backend::OpenCl => opencl::KERNEL_SOURCE,
            Backend::Vulkan => vulkan::SHADER_SOURCE,
            Backend::Cpu => cpu::CODE_SOURCE,
        };
        let digest = sha256::Hash::hash(source.as_bytes()).to_byte_array();
        Some(DeviceIdentity {
            backend: info.backend,
            name: info.name.clone(),
            pci_bus_id: info.pci_bus_id.clone(),
            driver: info.driver.clone(),
            kernel: hex::encode(&digest[..8]),
        })
    }
}

/// One device's measured best shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// The device this tuning is for.
    pub device: DeviceIdentity,
    /// The launch shape that measured fastest.
    pub shape: Shape,
    /// The winner's median hashrate in the tuning run, nonces per second.
    pub hashrate: f64,
    /// The generic default shape's median in the same run, for comparison.
    pub default_hashrate: f64,
    /// When it was measured, seconds since the Unix epoch.
    pub tuned_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TuningDocument {
    version: u32,
    #[serde(default)]
    devices: Vec<Tuning>,
}

/// A tuning file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuningError {
    /// The tuning file cannot be read as it is.
    #[error("tuning file")]
    File(#[from] crate::untrusted_files::FileError),
    /// The tuning file is not JSON of the expected shape.
    #[error("tuning file {path}: not a tuning document")]
    Json {
        /// The tuning file.
        path: String,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The tuning file was written by a hashrig of another format version.
    #[error("tuning file {path}: version {version} (this hashrig writes {VERSION})")]
    Version {
        /// The tuning file.
        path: String,
        /// The version it holds.
        version: u32,
    },
    /// A stored launch shape is out of the backend's bounds.
    #[error("tuning file {path}: devices[{device}].{}", source.field())]
    Shape {
        /// The tuning file.
        path: String,
        /// The entry's position in `devices`.
        device: usize,
        /// Which bound it breaks.
        #[source]
        source: super::ShapeError,
    },
    /// The tuning file could not be written.
    #[error("tuning file {path}: could not write it")]
    Write {
        /// The tuning file.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// The tunings of every device measured on this machine.
#[derive(Debug, Default)]
pub struct TuningFile {
    path: PathBuf,
    entries: Vec<Tuning>,
}

impl TuningFile {
    /// `$XDG_DATA_HOME/hashrig/tuning.json`.
    pub fn default_path() -> Option<PathBuf> {
        dirs::data_dir().map(|d| d.join("hashrig").join("tuning.json"))
    }

    /// Reads the file; a missing one is empty. Every entry is checked as a
    /// flag would be: the file is ours, but anything on disk can be edited.
    pub fn load(path: &Path) -> Result<Self, TuningError> {
        let path_text = || path.display().to_string();
        let text = match crate::untrusted_files::read_text(path, MAX_BYTES) {
            Ok(text) => text,
            Err(e) if e.is_not_found() => return Ok(TuningFile::empty(path)),
            Err(e) => return Err(e.into()),
        };
        let document: TuningDocument =
            serde_json::from_str(&text).map_err(|source| TuningError::Json {
                path: path_text(),
                source,
            })?;
        if document.version != VERSION {
            return Err(TuningError::Version {
                path: path_text(),
                version: document.version,
            });
        }
        for (device, tuning) in document.devices.iter().enumerate() {
            tuning.shape.check().map_err(|source| TuningError::Shape {
                path: path_text(),
                device,
                source,
            })?;
        }
        Ok(TuningFile {
            path: path.to_path_buf(),
            entries: document.devices,
        })
    }

    /// No tunings, to be saved at `path`.
    pub fn empty(path: &Path) -> Self {
        TuningFile {
            path: path.to_path_buf(),
            entries: Vec::new(),
        }
    }

    #[cfg(test)]
    fn entries(&self) -> &[Tuning] {
        &self.entries
    }

    /// The stored tuning of this device, driver and kernel, if any.
    pub fn find(&self, info: &DeviceInfo) -> Option<&Tuning> {
        let identity = DeviceIdentity::of(info)?;
        self.entries.iter().find(|t| t.device == identity)
    }

    /// Adds a tuning, replacing any of the same identity.
    pub fn store(&mut self, tuning: Tuning) {
        self.entries.retain(|t| t.device != tuning.device);
        self.entries.push(tuning);
    }

    /// Removes the tunings `remove` picks; returns how many went.
    pub fn remove(&mut self, remove: impl Fn(&Tuning) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|t| !remove(t));
        before - self.entries.len()
    }

    /// Writes the file whole, through a temporary file and a rename.
    pub fn save(&self) -> Result<(), TuningError> {
        let write = |source| TuningError::Write {
            path: self.path.display().to_string(),
            source,
        };
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        let document = TuningDocument {
            version: VERSION,
            devices: self.entries.clone(),
        };
        let mut text =
            serde_json::to_string_pretty(&document).map_err(|source| TuningError::Json {
                path: self.path.display().to_string(),
                source,
            })?;
        text.push('\n');
        crate::untrusted_files::replace(&self.path, text.as_bytes()).map_err(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{DeviceKind, KernelVariant, Locator};

    fn gpu(bus: &str, driver: &str) -> DeviceInfo {
        DeviceInfo {
            index: 3,
            backend: Backend::OpenCl,
            name: "NVIDIA H200".into(),
            kind: DeviceKind::Gpu,
            compute_units: 132,
            memory_bytes: 0,
            platform: Some("NVIDIA CUDA".into()),
            vendor: Some("NVIDIA Corporation".into()),
            driver: Some(driver.into()),
            pci_bus_id: Some(bus.into()),
            locator: Locator::OpenCl {
                platform: 0,
                device: 0,
            },
        }
    }

    fn tuning(info: &DeviceInfo, worksize: u32) -> Tuning {
        Tuning {
            device: DeviceIdentity::of(info).unwrap(),
            shape: Shape {
                variant: KernelVariant::Nvidia,
                worksize,
                vectors: 1,
                nonces: 1,
                cpu_path: None,
            },
            hashrate: 8.1e9,
            default_hashrate: 7.1e9,
            tuned_at: 1_795_000_000,
        }
    }

    fn temp() -> PathBuf {
        std::env::temp_dir()
            .join(format!(
                "hashrig-tuning-{}-{:x}",
                std::process::id(),
                fastrand::u64(..)
            ))
            .join("tuning.json")
    }

    /// A tuning is found for its own card, driver and kernel only: the same
    /// model in another slot, or after a driver update, is untuned.
    #[test]
    fn keyed_by_slot_driver_and_kernel() {
        let path = temp();
        let card = gpu("0000:41:00.0", "560.35");
        let mut file = TuningFile::load(&path).unwrap();
        assert!(file.entries().is_empty());
        file.store(tuning(&card, 128));
        file.store(tuning(&card, 512));
        file.save().unwrap();
        let again = TuningFile::load(&path).unwrap();
        assert_eq!(again.entries().len(), 1, "a retune replaces");
        assert_eq!(again.find(&card).unwrap().shape.worksize, 512);
        assert!(again.find(&gpu("0000:42:00.0", "560.35")).is_none());
        assert!(again.find(&gpu("0000:41:00.0", "565.57")).is_none());
        let mut stale = again.entries()[0].clone();
        stale.device.kernel = "0000000000000000".into();
        let mut edited = TuningFile::load(&path).unwrap();
        edited.remove(|_| true);
        edited.store(stale);
        assert!(edited.find(&card).is_none(), "another kernel's tuning");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// Bad values on disk are refused with the entry and value named, like
    /// the flags that set them.
    #[test]
    fn edited_files_are_checked() {
        let path = temp();
        let card = gpu("0000:41:00.0", "560.35");
        let mut file = TuningFile::load(&path).unwrap();
        file.store(tuning(&card, 256));
        file.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for (from, to, want) in [
            (
                "\"worksize\": 256",
                "\"worksize\": 0",
                "devices[0].worksize: a work-group of 0",
            ),
            (
                "\"vectors\": 1",
                "\"vectors\": 3",
                "devices[0].vectors: 3 lanes",
            ),
            ("\"version\": 1", "\"version\": 9", "version 9"),
            ("\"nvidia\"", "\"cuda\"", "unknown variant"),
        ] {
            std::fs::write(&path, text.replace(from, to)).unwrap();
            let err = crate::error_chain::Chain(&TuningFile::load(&path).unwrap_err()).to_string();
            assert!(err.contains(want) && err.contains("tuning.json"), "{err}");
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
