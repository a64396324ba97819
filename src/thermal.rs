//! Thermal limits: temperature, power and fan from NVML for NVIDIA cards
//! (loaded at run time: no NVML, no readings, no crash) and from hwmon in
//! sysfs for AMD cards. Above `temp_target` a device is throttled by longer
//! pauses between batches; at `temp_cutoff` it stops; it resumes once it
//! is back below the target by the hysteresis.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::DeviceInfo;
use crate::control::{Readings, RigControl};
use crate::shutdown::Shutdown;

/// Reads one device's temperature, power and fan.
pub trait Sensor: Send {
    /// Readings of the device at scheduler index `device`, if known.
    fn read(&mut self, device: usize) -> Option<Readings>;
}

/// The temperatures the operator set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThermalLimits {
    /// Throttle above this temperature, °C.
    pub target_c: Option<f64>,
    /// Stop the device above this temperature, °C.
    pub cutoff_c: Option<f64>,
    /// How far below the target a device must cool to speed up or resume.
    pub hysteresis_c: f64,
}

impl Default for ThermalLimits {
    fn default() -> Self {
        ThermalLimits {
            target_c: None,
            cutoff_c: None,
            hysteresis_c: 5.0,
        }
    }
}

/// One control step for one device: adjusts its pause and cutoff from a
/// temperature. `unit` is the pause step (a fraction of a batch); the pause
/// never exceeds 20 steps.
pub fn step(
    control: &RigControl,
    index: usize,
    temperature: f64,
    limits: &ThermalLimits,
    unit: Duration,
    name: &str,
) {
    let resume_below = limits
        .target_c
        .or(limits.cutoff_c)
        .map(|t| t - limits.hysteresis_c);
    if let Some(cutoff) = limits.cutoff_c {
        if temperature >= cutoff && !control.is_cut_off(index) {
            tracing::error!(
                "{name}: {temperature:.0} °C, at or over the {cutoff:.0} °C cutoff: stopped"
            );
            control.set_cut_off(index, true);
        }
    }
    if control.is_cut_off(index) && resume_below.is_some_and(|r| temperature < r) {
        tracing::warn!("{name}: cooled to {temperature:.0} °C: mining again");
        control.set_cut_off(index, false);
    }
    let Some(target) = limits.target_c else {
        return;
    };
    let pause = control.pause(index);
    if temperature > target {
        let next = (pause + unit).min(unit * 20);
        if pause.is_zero() {
            tracing::warn!(
                "{name}: {temperature:.0} °C over the {target:.0} °C target: throttling"
            );
        }
        control.set_pause(index, next);
    } else if temperature < target - limits.hysteresis_c && !pause.is_zero() {
        let next = if pause <= unit {
            Duration::ZERO
        } else {
            pause - unit
        };
        if next.is_zero() {
            tracing::info!("{name}: {temperature:.0} °C: full speed again");
        }
        control.set_pause(index, next);
    }
}

/// Reads every device every `interval`, publishes the readings to
/// `control` and applies the limits.
pub fn spawn(
    control: Arc<RigControl>,
    mut sensor: Box<dyn Sensor>,
    limits: ThermalLimits,
    names: Vec<String>,
    batch_time: Duration,
    interval: Duration,
    shutdown: Shutdown,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("thermal".into())
        .spawn(move || {
            let unit = (batch_time / 2).max(Duration::from_millis(5));
            loop {
                for (index, name) in names.iter().enumerate() {
                    let readings = sensor.read(index).unwrap_or_default();
                    control.set_readings(index, readings);
                    if let Some(t) = readings.temperature_c {
                        step(&control, index, t, &limits, unit, name);
                    }
                }
                if shutdown.wait_timeout(interval) {
                    break;
                }
            }
        })
}

/// NVIDIA cards through NVML, matched to devices by PCI bus id (by name,
/// in order, for a device whose API gave none).
struct NvmlSensor {
    nvml: nvml_wrapper::Nvml,
    /// Scheduler index -> NVML index.
    map: Vec<Option<u32>>,
}

impl Sensor for NvmlSensor {
    fn read(&mut self, device: usize) -> Option<Readings> {
        use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
        let index = (*self.map.get(device)?)?;
        let d = self.nvml.device_by_index(index).ok()?;
        Some(Readings {
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
            power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
            fan_percent: d.fan_speed(0).ok().map(f64::from),
        })
    }
}

/// AMD cards through hwmon (`/sys/class/drm/card*/device/hwmon/hwmon*`),
/// matched to devices by the PCI slot the card's sysfs device is.
struct HwmonSensor {
    dirs: Vec<Option<PathBuf>>,
}

fn read_number(path: &Path) -> Option<f64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Sensor for HwmonSensor {
    fn read(&mut self, device: usize) -> Option<Readings> {
        let dir = self.dirs.get(device)?.as_ref()?;
        let fan = match (
            read_number(&dir.join("pwm1")),
            read_number(&dir.join("pwm1_max")),
        ) {
            (Some(pwm), Some(max)) if max > 0.0 => Some(100.0 * pwm / max),
            _ => None,
        };
        Some(Readings {
            temperature_c: read_number(&dir.join("temp1_input")).map(|m| m / 1000.0),
            power_w: read_number(&dir.join("power1_average"))
                .or_else(|| read_number(&dir.join("power1_input")))
                .map(|uw| uw / 1e6),
            fan_percent: fan,
        })
    }
}

/// Sensors of both kinds, each device read from the one that knows it.
struct Combined {
    nvml: Option<NvmlSensor>,
    hwmon: HwmonSensor,
}

impl Sensor for Combined {
    fn read(&mut self, device: usize) -> Option<Readings> {
        self.nvml
            .as_mut()
            .and_then(|n| n.read(device))
            .or_else(|| self.hwmon.read(device))
    }
}

fn is_vendor(info: &DeviceInfo, vendor: &str) -> bool {
    let vendor = vendor.to_lowercase();
    info.name.to_lowercase().contains(&vendor)
        || info
            .vendor
            .as_ref()
            .is_some_and(|v| v.to_lowercase().contains(&vendor))
}

fn is_amd(info: &DeviceInfo) -> bool {
    is_vendor(info, "amd") || is_vendor(info, "advanced micro")
}

/// An AMD card's hwmon folder and PCI slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwmonCard {
    pub(crate) hwmon: PathBuf,
    /// Its PCI bus id, which matches a sensor to a device.
    pub pci_bus_id: Option<String>,
}

/// The AMD cards under `drm` (`/sys/class/drm`), in card order: each
/// `cardN` whose device's vendor is 0x1002 and which has a hwmon folder.
/// The slot is the name of the PCI device its `device` link points to.
pub fn amd_hwmon_cards(drm: &Path) -> Vec<HwmonCard> {
    let mut cards: Vec<PathBuf> = std::fs::read_dir(drm)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("card")
                && !name.contains('-')
                && std::fs::read_to_string(p.join("device/vendor"))
                    .is_ok_and(|v| v.trim() == "0x1002")
        })
        .collect();
    // card10 after card9.
    cards.sort_by_key(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        (name.len(), name.to_owned())
    });
    cards
        .into_iter()
        .filter_map(|card| {
            let hwmon = std::fs::read_dir(card.join("device/hwmon"))
                .ok()?
                .flatten()
                .map(|e| e.path())
                .min()?;
            let pci_bus_id = std::fs::canonicalize(card.join("device"))
                .ok()
                .and_then(|d| {
                    d.file_name()?
                        .to_str()
                        .and_then(crate::backend::pci::normalize)
                });
            Some(HwmonCard { hwmon, pci_bus_id })
        })
        .collect()
}

/// hwmon folders per device: by slot, or, for an AMD device its API gave
/// no slot, the next AMD card in card order.
fn hwmon_dirs(devices: &[DeviceInfo], cards: &[HwmonCard]) -> Vec<Option<PathBuf>> {
    let amd: Vec<bool> = devices.iter().map(is_amd).collect();
    crate::backend::pci::match_devices(
        &devices.iter().enumerate().collect::<Vec<_>>(),
        |(_, d)| d.pci_bus_id.clone(),
        cards,
        |c| c.pci_bus_id.clone(),
        |(i, _), _| amd[*i],
    )
    .into_iter()
    .map(|slot| slot.map(|s| cards[s].hwmon.clone()))
    .collect()
}

/// NVML's cards, matched to `devices`.
fn nvml_sensor(devices: &[DeviceInfo]) -> Option<NvmlSensor> {
    if !devices.iter().any(|d| is_vendor(d, "nvidia")) {
        return None;
    }
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(nvml) => nvml,
        Err(e) => {
            tracing::info!("no NVML ({e}): no temperatures for NVIDIA cards");
            return None;
        }
    };
    let cards: Vec<(String, Option<String>)> = (0..nvml.device_count().unwrap_or(0))
        .map(|i| match nvml.device_by_index(i) {
            Ok(d) => (
                d.name().unwrap_or_default(),
                d.pci_info().ok().map(|p| p.bus_id),
            ),
            Err(_) => (String::new(), None),
        })
        .collect();
    let map = crate::backend::pci::match_devices(
        devices,
        |d| d.pci_bus_id.clone(),
        &cards,
        |c| c.1.clone(),
        |d, c| c.0.eq_ignore_ascii_case(&d.name),
    )
    .into_iter()
    .map(|slot| slot.and_then(|s| u32::try_from(s).ok()))
    .collect();
    Some(NvmlSensor { nvml, map })
}

/// The sensors this machine has for `devices`; `None` when it has none.
pub fn system_sensor(devices: &[DeviceInfo]) -> Option<Box<dyn Sensor>> {
    let nvml = nvml_sensor(devices);
    let dirs = hwmon_dirs(devices, &amd_hwmon_cards(Path::new("/sys/class/drm")));
    let any_hwmon = dirs.iter().any(Option::is_some);
    if nvml.is_none() && !any_hwmon {
        return None;
    }
    Some(Box::new(Combined {
        nvml,
        hwmon: HwmonSensor { dirs },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, DeviceKind, Locator};

    fn amd_gpu(index: usize, bus: Option<&str>) -> DeviceInfo {
        DeviceInfo {
            index,
            backend: Backend::OpenCl,
            name: "gfx1030".into(),
            kind: DeviceKind::Gpu,
            compute_units: 40,
            memory_bytes: 1 << 34,
            platform: None,
            vendor: Some("Advanced Micro Devices, Inc.".into()),
            driver: None,
            pci_bus_id: bus.map(str::to_owned),
            locator: Locator::Cpu,
        }
    }

    /// A sysfs tree as amdgpu lays it out: /sys/class/drm/cardN is a link
    /// into the PCI device, which has the vendor and a hwmon folder.
    fn fake_sysfs(root: &Path, cards: &[(&str, &str, u32)]) -> PathBuf {
        let drm = root.join("class/drm");
        std::fs::create_dir_all(&drm).unwrap();
        for (card, slot, millidegrees) in cards {
            let device = root.join("devices/pci0000:00").join(slot);
            let hwmon = device.join("hwmon/hwmon3");
            std::fs::create_dir_all(&hwmon).unwrap();
            std::fs::write(device.join("vendor"), "0x1002\n").unwrap();
            std::fs::write(hwmon.join("temp1_input"), format!("{millidegrees}\n")).unwrap();
            let card_dir = drm.join(card);
            std::fs::create_dir_all(&card_dir).unwrap();
            std::os::unix::fs::symlink(&device, card_dir.join("device")).unwrap();
        }
        drm
    }

    #[test]
    fn amd_cards_are_read_by_slot_not_card_order() {
        let root = std::env::temp_dir().join(format!("hashrig-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // card0 sits in the later slot: order alone would swap them.
        let drm = fake_sysfs(
            &root,
            &[
                ("card0", "0000:41:00.0", 71000),
                ("card1", "0000:0a:00.0", 55000),
            ],
        );
        let cards = amd_hwmon_cards(&drm);
        assert_eq!(cards.len(), 2);
        assert_eq!(cards[0].pci_bus_id.as_deref(), Some("0000:41:00.0"));
        let devices = [
            amd_gpu(0, Some("0000:0a:00.0")),
            amd_gpu(1, Some("0000:41:00.0")),
        ];
        let mut sensor = HwmonSensor {
            dirs: hwmon_dirs(&devices, &cards),
        };
        assert_eq!(sensor.read(0).unwrap().temperature_c, Some(55.0));
        assert_eq!(sensor.read(1).unwrap().temperature_c, Some(71.0));
        // Without slots from the API: card order, AMD devices only.
        let mut cpu = amd_gpu(0, None);
        cpu.vendor = Some("GenuineIntel".into());
        cpu.name = "Xeon".into();
        let devices = [cpu, amd_gpu(1, None), amd_gpu(2, Some("0000:99:00.0"))];
        let dirs = hwmon_dirs(&devices, &cards);
        assert_eq!(dirs[0], None);
        assert_eq!(dirs[1], Some(cards[0].hwmon.clone()));
        assert_eq!(dirs[2], None, "a slot no card is in reads nothing");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn throttles_cuts_off_and_resumes_with_hysteresis() {
        let control = RigControl::new(1, 0);
        let limits = ThermalLimits {
            target_c: Some(80.0),
            cutoff_c: Some(90.0),
            hysteresis_c: 5.0,
        };
        let unit = Duration::from_millis(50);
        step(&control, 0, 82.0, &limits, unit, "gpu");
        assert_eq!(control.pause(0), unit);
        step(&control, 0, 85.0, &limits, unit, "gpu");
        assert_eq!(control.pause(0), unit * 2);
        step(&control, 0, 91.0, &limits, unit, "gpu");
        assert!(control.is_cut_off(0) && !control.may_run(0));
        step(&control, 0, 78.0, &limits, unit, "gpu");
        assert!(
            control.is_cut_off(0),
            "inside the hysteresis band: still off"
        );
        step(&control, 0, 74.0, &limits, unit, "gpu");
        assert!(!control.is_cut_off(0));
        step(&control, 0, 70.0, &limits, unit, "gpu");
        step(&control, 0, 70.0, &limits, unit, "gpu");
        assert!(control.pause(0).is_zero());
        for _ in 0..100 {
            step(&control, 0, 85.0, &limits, unit, "gpu");
        }
        assert_eq!(control.pause(0), unit * 20);
    }
}
