//! One device's counters and meters, and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::meter::{Meter, LONGEST_WINDOW};
use super::unix_time;

/// Counters of one device.
#[derive(Debug)]
pub(super) struct DeviceStats {
    pub(super) name: String,
    /// `domain:bus:device.function`, where the device's API tells it.
    pub(super) pci_bus_id: Option<String>,
    /// Unix seconds of the last accepted share; 0 before the first.
    pub(super) last_share_unix: AtomicU64,
    pub(super) meter: Mutex<Meter>,
    pub(super) nonces: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) stale: AtomicU64,
    pub(super) hw_errors: AtomicU64,
    pub(super) blocks: AtomicU64,
    /// Shares the sink had no room for.
    pub(super) dropped: AtomicU64,
    /// Device-measured busy time and the wall time of the same scans.
    pub(super) busy_ns: AtomicU64,
    pub(super) timed_scan_ns: AtomicU64,
}

impl DeviceStats {
    pub(super) fn new(name: String, origin: Instant) -> Self {
        DeviceStats {
            name,
            pci_bus_id: None,
            last_share_unix: AtomicU64::new(0),
            meter: Mutex::new(Meter::new(origin)),
            nonces: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            hw_errors: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            timed_scan_ns: AtomicU64::new(0),
        }
    }
}

/// A point-in-time copy of one device's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceSnapshot {
    /// The device's label.
    pub name: String,
    /// Its PCI bus id, where known.
    pub pci_bus_id: Option<String>,
    /// When it last found a share the pool accepted (Unix seconds).
    pub last_share_unix: Option<u64>,
    /// Hashes per second over the last 5 seconds.
    pub hashrate_5s: f64,
    /// Hashes per second over the last minute.
    pub hashrate_1m: f64,
    /// Hashes per second over the last 15 minutes.
    pub hashrate_15m: f64,
    /// Over the whole run.
    pub hashrate_avg: f64,
    /// Nonces scanned since the start.
    pub nonces: u64,
    /// Shares the pool accepted.
    pub accepted: u64,
    /// Shares the pool rejected.
    pub rejected: u64,
    /// Shares found too late for their job.
    pub stale: u64,
    /// Candidates the CPU found wrong.
    pub hw_errors: u64,
    /// Blocks found: the first hash on each parent, written to the
    /// found-blocks file.
    pub blocks: u64,
    /// Shares dropped because the job source was not taking them.
    pub dropped: u64,
    /// Fraction of scan time the device itself computed (GPU timestamps or
    /// OpenCL profiling), where the backend measures it.
    pub device_busy: Option<f64>,
}

impl DeviceStats {
    /// Its figures now; rates over windows that end at `now`.
    pub(super) fn snapshot(&self, now: Instant, started: Instant) -> DeviceSnapshot {
        let uptime = now.duration_since(started);
        let meter = self.meter.lock().unwrap_or_else(|e| e.into_inner());
        let nonces = self.nonces.load(Ordering::Relaxed);
        DeviceSnapshot {
            name: self.name.clone(),
            pci_bus_id: self.pci_bus_id.clone(),
            last_share_unix: unix_time(&self.last_share_unix),
            hashrate_5s: meter.rate(now, Duration::from_secs(5), started),
            hashrate_1m: meter.rate(now, Duration::from_secs(60), started),
            hashrate_15m: meter.rate(now, LONGEST_WINDOW, started),
            hashrate_avg: if uptime.is_zero() {
                0.0
            } else {
                nonces as f64 / uptime.as_secs_f64()
            },
            nonces,
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            hw_errors: self.hw_errors.load(Ordering::Relaxed),
            blocks: self.blocks.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            device_busy: match self.timed_scan_ns.load(Ordering::Relaxed) {
                0 => None,
                wall => Some(self.busy_ns.load(Ordering::Relaxed) as f64 / wall as f64),
            },
        }
    }
}
