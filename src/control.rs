//! What can steer a running rig from outside the mining loop: the HTTP API
//! (disable / enable a device, switch pool), the thermal controller
//! (pause between batches, cut a device off) and the watchdog (sick,
//! reset, disabled). Device workers read it before every batch.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Health as the watchdog sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Mining normally.
    Healthy,
    /// Misbehaved once: reset after its current batch.
    Sick,
    /// Misbehaved again after a reset: out of rotation.
    Failed,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Sick,
            2 => Health::Failed,
            _ => Health::Healthy,
        }
    }
}

/// The controls of one device.
#[derive(Debug, Default)]
pub struct DeviceControl {
    /// Off by the operator (API or config).
    disabled: AtomicBool,
    /// Above the cutoff temperature: stopped until it cools down.
    cut_off: AtomicBool,
    /// Extra pause after each batch, in microseconds (thermal throttling).
    pause_us: AtomicU64,
    health: AtomicU8,
    /// Why the device last turned sick or failed.
    health_reason: Mutex<Option<String>>,
    resets: AtomicU32,
    /// Last sensor readings, as f64 bits; NaN when unknown.
    temperature: AtomicU64,
    power: AtomicU64,
    fan: AtomicU64,
}

/// A sensor reading of one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Readings {
    /// Temperature in °C.
    pub temperature_c: Option<f64>,
    /// Power draw in watts.
    pub power_w: Option<f64>,
    /// Fan speed in percent.
    pub fan_percent: Option<f64>,
}

fn store(cell: &AtomicU64, value: Option<f64>) {
    cell.store(value.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);
}

fn load(cell: &AtomicU64) -> Option<f64> {
    let v = f64::from_bits(cell.load(Ordering::Relaxed));
    (!v.is_nan()).then_some(v)
}

/// A request naming a device or pool that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// A device index past the last.
    #[error("no device {index} (there are {count})")]
    NoSuchDevice {
        /// The index asked for.
        index: usize,
        /// How many there are.
        count: usize,
    },
    /// A pool index past the last.
    #[error("no pool {index} (there are {count})")]
    NoSuchPool {
        /// The index asked for.
        index: usize,
        /// How many there are.
        count: usize,
    },
    /// Disabling it would leave no pool to mine.
    #[error("pool {index} is the last enabled pool")]
    LastEnabledPool {
        /// The index asked for.
        index: usize,
    },
}

/// Every control of a rig.
#[derive(Debug, Default)]
pub struct RigControl {
    devices: Vec<DeviceControl>,
    pools: usize,
    pool_request: Mutex<Option<usize>>,
    /// Pools the operator took out of the failover list, by index.
    pools_disabled: Vec<AtomicBool>,
    /// The operator asked for the process to start again once stopped.
    restart: AtomicBool,
}

impl RigControl {
    /// `devices` devices, all enabled and healthy, and `pools` pools, all enabled.
    pub fn new(devices: usize, pools: usize) -> Self {
        let control = RigControl {
            devices: (0..devices).map(|_| DeviceControl::default()).collect(),
            pools,
            pool_request: Mutex::new(None),
            pools_disabled: (0..pools).map(|_| AtomicBool::new(false)).collect(),
            restart: AtomicBool::new(false),
        };
        for d in &control.devices {
            store(&d.temperature, None);
            store(&d.power, None);
            store(&d.fan, None);
        }
        control
    }

    fn device(&self, index: usize) -> Result<&DeviceControl, ControlError> {
        self.devices.get(index).ok_or(ControlError::NoSuchDevice {
            index,
            count: self.devices.len(),
        })
    }

    /// Enables or disables device `index` (the API's and cgminer's `gpuenable`/`gpudisable`).
    pub fn set_enabled(&self, index: usize, enabled: bool) -> Result<(), ControlError> {
        self.device(index)?
            .disabled
            .store(!enabled, Ordering::SeqCst);
        Ok(())
    }

    /// Whether device `index` is enabled by the operator.
    pub fn is_enabled(&self, index: usize) -> bool {
        self.device(index)
            .is_ok_and(|d| !d.disabled.load(Ordering::SeqCst))
    }

    /// Whether the device may start a batch now. Devices without controls
    /// (tests, tools) always may.
    pub fn may_run(&self, index: usize) -> bool {
        self.device(index).map_or(true, |d| {
            !d.disabled.load(Ordering::SeqCst)
                && !d.cut_off.load(Ordering::SeqCst)
                && Health::from_u8(d.health.load(Ordering::SeqCst)) != Health::Failed
        })
    }

    pub(crate) fn set_cut_off(&self, index: usize, cut_off: bool) {
        if let Ok(d) = self.device(index) {
            d.cut_off.store(cut_off, Ordering::SeqCst);
        }
    }

    pub(crate) fn is_cut_off(&self, index: usize) -> bool {
        self.device(index)
            .is_ok_and(|d| d.cut_off.load(Ordering::SeqCst))
    }

    pub(crate) fn set_pause(&self, index: usize, pause: Duration) {
        if let Ok(d) = self.device(index) {
            d.pause_us.store(pause.as_micros() as u64, Ordering::SeqCst);
        }
    }

    pub(crate) fn pause(&self, index: usize) -> Duration {
        self.device(index).map_or(Duration::ZERO, |d| {
            Duration::from_micros(d.pause_us.load(Ordering::SeqCst))
        })
    }

    /// Device `index`'s health, as the watchdog last set it.
    pub fn health(&self, index: usize) -> Health {
        self.device(index).map_or(Health::Healthy, |d| {
            Health::from_u8(d.health.load(Ordering::SeqCst))
        })
    }

    /// Marks a device sick; returns the new health (a device already reset
    /// once fails instead).
    pub fn mark_sick(&self, index: usize) -> Health {
        let Ok(d) = self.device(index) else {
            return Health::Healthy;
        };
        let next = if d.resets.load(Ordering::SeqCst) > 0 {
            Health::Failed
        } else {
            Health::Sick
        };
        // Never go back from Failed.
        let _ = d.health.fetch_max(next as u8, Ordering::SeqCst);
        Health::from_u8(d.health.load(Ordering::SeqCst))
    }

    /// Takes a device out of rotation for good (a reset that hung or
    /// failed, a batch hung past every limit).
    pub fn mark_failed(&self, index: usize) {
        if let Ok(d) = self.device(index) {
            d.health.store(Health::Failed as u8, Ordering::SeqCst);
        }
    }

    /// Notes why the device is sick or failed, for the operator.
    pub fn set_health_reason(&self, index: usize, reason: &str) {
        if let Ok(d) = self.device(index) {
            *d.health_reason.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(reason.chars().take(300).collect());
        }
    }

    /// Why the device last turned sick or failed.
    pub fn health_reason(&self, index: usize) -> Option<String> {
        self.device(index).ok().and_then(|d| {
            d.health_reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// Every device has failed (none can recover: failed is final). False
    /// for a rig without devices.
    pub fn all_failed(&self) -> bool {
        !self.devices.is_empty()
            && (0..self.devices.len()).all(|i| self.health(i) == Health::Failed)
    }

    /// A reset begins: the one reset a device gets is used, whatever comes
    /// of it (a reset that hangs must not leave it unused).
    pub fn begin_reset(&self, index: usize) {
        if let Ok(d) = self.device(index) {
            d.resets.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The reset and self-test passed: healthy again, unless the watchdog
    /// failed it meanwhile.
    pub fn reset_passed(&self, index: usize) {
        if let Ok(d) = self.device(index) {
            let _ = d.health.compare_exchange(
                Health::Sick as u8,
                Health::Healthy as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// How many times device `index` has been reset.
    pub fn resets(&self, index: usize) -> u32 {
        self.device(index)
            .map_or(0, |d| d.resets.load(Ordering::SeqCst))
    }

    pub(crate) fn set_readings(&self, index: usize, readings: Readings) {
        if let Ok(d) = self.device(index) {
            store(&d.temperature, readings.temperature_c);
            store(&d.power, readings.power_w);
            store(&d.fan, readings.fan_percent);
        }
    }

    /// Device `index`'s last sensor readings.
    pub fn readings(&self, index: usize) -> Readings {
        self.device(index)
            .map_or(Readings::default(), |d| Readings {
                temperature_c: load(&d.temperature),
                power_w: load(&d.power),
                fan_percent: load(&d.fan),
            })
    }

    /// The sum of the devices' measured power, if any device reports one.
    pub fn measured_power(&self) -> Option<f64> {
        (0..self.devices.len())
            .filter_map(|i| self.readings(i).power_w)
            .reduce(|a, b| a + b)
    }

    fn check_pool(&self, index: usize) -> Result<(), ControlError> {
        if index >= self.pools {
            return Err(ControlError::NoSuchPool {
                index,
                count: self.pools,
            });
        }
        Ok(())
    }

    /// Asks the job source to switch to pool `index`, enabling it if the
    /// operator had disabled it (cgminer's `switchpool` does the same).
    pub fn request_pool(&self, index: usize) -> Result<(), ControlError> {
        self.check_pool(index)?;
        self.pools_disabled[index].store(false, Ordering::SeqCst);
        *self.pool_request.lock().unwrap_or_else(|e| e.into_inner()) = Some(index);
        Ok(())
    }

    /// Puts a pool back in, or takes it out of, the failover list; returns
    /// whether that changed anything. The last enabled pool stays in.
    pub fn set_pool_enabled(&self, index: usize, enabled: bool) -> Result<bool, ControlError> {
        self.check_pool(index)?;
        let cell = &self.pools_disabled[index];
        if !enabled && !cell.load(Ordering::SeqCst) {
            let others = (0..self.pools).any(|i| i != index && self.is_pool_enabled(i));
            if !others {
                return Err(ControlError::LastEnabledPool { index });
            }
        }
        Ok(cell.swap(!enabled, Ordering::SeqCst) == enabled)
    }

    /// Whether pool `index` is in the failover list (pools without
    /// controls always are).
    pub fn is_pool_enabled(&self, index: usize) -> bool {
        self.pools_disabled
            .get(index)
            .is_none_or(|d| !d.load(Ordering::SeqCst))
    }

    /// The first enabled pool after `index` in failover order, wrapping
    /// round; `index` itself if it is the only one.
    pub fn next_enabled_pool(&self, index: usize, count: usize) -> usize {
        (1..=count)
            .map(|step| (index + step) % count.max(1))
            .find(|i| self.is_pool_enabled(*i))
            .unwrap_or(index)
    }

    /// Asks for the process to start again once it has stopped.
    pub fn request_restart(&self) {
        self.restart.store(true, Ordering::SeqCst);
    }

    /// Whether an API client asked the miner to restart.
    pub fn restart_requested(&self) -> bool {
        self.restart.load(Ordering::SeqCst)
    }

    /// The pending pool switch, if any; taking it clears it.
    pub fn take_pool_request(&self) -> Option<usize> {
        self.pool_request
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// What a device is doing, in one word.
    pub fn state(&self, index: usize) -> &'static str {
        if !self.is_enabled(index) {
            "disabled"
        } else if self.health(index) == Health::Failed {
            "failed"
        } else if self.is_cut_off(index) {
            "cut-off"
        } else if self.health(index) == Health::Sick {
            "sick"
        } else if !self.pause(index).is_zero() {
            "throttled"
        } else {
            "mining"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_disable_but_never_the_last_and_switching_enables() {
        let c = RigControl::new(1, 3);
        assert_eq!(c.set_pool_enabled(1, false), Ok(true));
        assert_eq!(c.set_pool_enabled(1, false), Ok(false));
        assert_eq!(c.next_enabled_pool(0, 3), 2);
        assert_eq!(c.set_pool_enabled(0, false), Ok(true));
        assert_eq!(
            c.set_pool_enabled(2, false),
            Err(ControlError::LastEnabledPool { index: 2 })
        );
        assert_eq!(c.next_enabled_pool(2, 3), 2);
        c.request_pool(1).unwrap();
        assert!(c.is_pool_enabled(1));
        assert_eq!(c.take_pool_request(), Some(1));
        assert_eq!(c.set_pool_enabled(0, true), Ok(true));
        assert!(!c.restart_requested());
        c.request_restart();
        assert!(c.restart_requested());
    }

    #[test]
    fn sick_then_reset_then_failed() {
        let c = RigControl::new(2, 1);
        assert_eq!(c.mark_sick(0), Health::Sick);
        assert!(c.may_run(0));
        c.begin_reset(0);
        c.reset_passed(0);
        assert_eq!(c.health(0), Health::Healthy);
        assert_eq!(c.mark_sick(0), Health::Failed);
        assert!(!c.may_run(0));
        assert_eq!(c.state(0), "failed");
        assert!(c.may_run(1));
        assert!(!c.all_failed());
        c.mark_failed(1);
        c.set_health_reason(1, "scan failed: lost the device");
        assert!(c.all_failed());
        assert_eq!(
            c.health_reason(1).as_deref(),
            Some("scan failed: lost the device")
        );
        assert!(!RigControl::new(0, 1).all_failed());
    }

    #[test]
    fn unknown_indexes_are_errors() {
        let c = RigControl::new(1, 2);
        assert!(c.set_enabled(3, false).is_err());
        assert!(c.request_pool(2).is_err());
        c.request_pool(1).unwrap();
        assert_eq!(c.take_pool_request(), Some(1));
        assert_eq!(c.take_pool_request(), None);
        c.set_enabled(0, false).unwrap();
        assert_eq!(c.state(0), "disabled");
        assert_eq!(
            c.set_pool_enabled(5, false),
            Err(ControlError::NoSuchPool { index: 5, count: 2 })
        );
        assert_eq!(c.readings(0).temperature_c, None);
    }
}
