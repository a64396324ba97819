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
    pub target_c: Option<f64>,
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

/// NVIDIA cards through NVML, matched to devices by name, in order.
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

/// AMD cards through hwmon: `/sys/class/drm/card*/device/hwmon/hwmon*`,
/// matched to AMD devices in card order.
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

/// The sensors this machine has for `devices`; `None` when it has none.
pub fn system_sensor(devices: &[DeviceInfo]) -> Option<Box<dyn Sensor>> {
    let nvml = if devices.iter().any(|d| is_vendor(d, "nvidia")) {
        match nvml_wrapper::Nvml::init() {
            Ok(nvml) => {
                let names: Vec<String> = (0..nvml.device_count().unwrap_or(0))
                    .map(|i| {
                        nvml.device_by_index(i)
                            .and_then(|d| d.name())
                            .unwrap_or_default()
                    })
                    .collect();
                let mut used = vec![false; names.len()];
                let map = devices
                    .iter()
                    .map(|d| {
                        let slot = names
                            .iter()
                            .enumerate()
                            .position(|(i, n)| !used[i] && n.eq_ignore_ascii_case(&d.name))?;
                        used[slot] = true;
                        Some(slot as u32)
                    })
                    .collect();
                Some(NvmlSensor { nvml, map })
            }
            Err(e) => {
                tracing::info!("no NVML ({e}): no temperatures for NVIDIA cards");
                None
            }
        }
    } else {
        None
    };
    let mut cards: Vec<PathBuf> = std::fs::read_dir("/sys/class/drm")
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
    cards.sort();
    let mut amd_cards = cards.into_iter().filter_map(|card| {
        std::fs::read_dir(card.join("device/hwmon"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .next()
    });
    let dirs: Vec<Option<PathBuf>> = devices
        .iter()
        .map(|d| {
            if is_vendor(d, "amd") || is_vendor(d, "advanced micro") {
                amd_cards.next()
            } else {
                None
            }
        })
        .collect();
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
