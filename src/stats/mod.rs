//! Meters and counters, per device and in total: read by the status line,
//! the `bench` report, the HTTP API and its metrics, the cgminer API.

mod device;
mod estimates;
mod histogram;
mod history;
mod meter;
mod pool;

pub use estimates::{estimate, expected_seconds, Estimates};

pub use histogram::{Histogram, BUCKETS};
pub use history::{History, HistoryPoint, HISTORY_POINTS, HISTORY_STEP_SECONDS};

pub use device::DeviceSnapshot;
pub use pool::PoolSnapshot;

use device::DeviceStats;
use pool::PoolStats;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seconds since the Unix epoch, now (0 on a clock before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_time(cell: &AtomicU64) -> Option<u64> {
    Some(cell.load(Ordering::Relaxed)).filter(|t| *t != 0)
}

/// How a job source's peer answered a submitted share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareResult {
    /// Accepted by the pool or node.
    Accepted,
    /// Rejected by the pool or node.
    Rejected,
    /// The job was gone (a new block, a dropped job) by the time it arrived.
    Stale,
}

/// A point-in-time copy of every figure.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    /// Seconds since the start.
    pub uptime_s: f64,
    /// Every device.
    pub devices: Vec<DeviceSnapshot>,
    /// Every pool, or the node.
    pub pools: Vec<PoolSnapshot>,
    /// The best share difficulty found.
    pub best_share: f64,
    /// The network's difficulty, where known.
    pub network_difficulty: Option<f64>,
    /// The share difficulty in force, where known.
    pub share_difficulty: Option<f64>,
    /// How long devices took to start on a newly published job, in seconds.
    pub job_switch: Histogram,
}

impl Snapshot {
    /// A counter summed over every device.
    pub fn count(&self, field: impl Fn(&DeviceSnapshot) -> u64) -> u64 {
        self.devices.iter().map(field).sum()
    }

    /// The totals every summary shows (the API's, `--json`'s): shares by
    /// answer, errors, drops, blocks, and the best share.
    pub fn totals(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        [
            ("accepted", json!(self.count(|d| d.accepted))),
            ("rejected", json!(self.count(|d| d.rejected))),
            ("stale", json!(self.count(|d| d.stale))),
            ("hw_errors", json!(self.count(|d| d.hw_errors))),
            ("dropped", json!(self.count(|d| d.dropped))),
            ("throttled", json!(self.pool_count(|p| p.throttled))),
            ("unanswered", json!(self.pool_count(|p| p.unanswered))),
            ("blocks", json!(self.count(|d| d.blocks))),
            (
                "blocks_accepted",
                json!(self.pool_count(|p| p.blocks_accepted)),
            ),
            (
                "blocks_rejected",
                json!(self.pool_count(|p| p.blocks_rejected + p.blocks_stale)),
            ),
            ("best_share", json!(self.best_share)),
            (
                "pool_hashrate",
                json!(self
                    .pools
                    .iter()
                    .map(|p| p.effective_hashrate)
                    .fold(0.0, |a, b| a + b)),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }

    /// A counter summed over every pool.
    pub fn pool_count(&self, field: impl Fn(&PoolSnapshot) -> u64) -> u64 {
        self.pools.iter().map(field).sum()
    }

    /// The sum of `field` over every device.
    pub fn total(&self, field: impl Fn(&DeviceSnapshot) -> f64) -> f64 {
        // A fold from +0.0: an empty float sum is -0.0, which JSON shows.
        self.devices.iter().map(field).fold(0.0, |a, b| a + b)
    }
}

/// Every meter and counter of a run.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    devices: Vec<DeviceStats>,
    pools: Vec<PoolStats>,
    /// Index of the pool being mined, `usize::MAX` when none.
    active_pool: AtomicUsize,
    best_share: Mutex<f64>,
    /// The block difficulty of the job being mined (solo).
    network_difficulty: Mutex<Option<f64>>,
    /// The pool's share difficulty of the newest job.
    share_difficulty: Mutex<Option<f64>>,
    /// From a job's publication to each device's first batch of it.
    job_switch: Mutex<Histogram>,
}

impl Stats {
    /// One set of counters per device, in the scheduler's device order.
    pub fn new(device_names: Vec<String>) -> Self {
        let started = Instant::now();
        Stats {
            started,
            devices: device_names
                .into_iter()
                .map(|name| DeviceStats::new(name, started))
                .collect(),
            pools: Vec::new(),
            active_pool: AtomicUsize::new(usize::MAX),
            best_share: Mutex::new(0.0),
            network_difficulty: Mutex::new(None),
            share_difficulty: Mutex::new(None),
            job_switch: Mutex::new(Histogram::default()),
        }
    }

    /// Names each device's PCI slot, in device order (the cgminer API,
    /// the metrics' labels and farm tools know cards by it).
    pub fn with_bus_ids(mut self, bus_ids: Vec<Option<String>>) -> Self {
        for (device, bus_id) in self.devices.iter_mut().zip(bus_ids) {
            device.pci_bus_id = bus_id;
        }
        self
    }

    /// Adds one set of pool counters per entry of the failover list.
    pub fn with_pools(mut self, pool_names: Vec<String>) -> Self {
        self.pools = pool_names.into_iter().map(PoolStats::new).collect();
        self
    }

    /// Counts a pool's answer to a share against the pool and the device.
    /// `difficulty` is the share difficulty the job was issued with.
    pub fn record_pool_result(
        &self,
        pool: usize,
        device: usize,
        result: ShareResult,
        difficulty: f64,
        reason: Option<&str>,
    ) {
        self.record_result(device, result);
        let Some(p) = self.pools.get(pool) else {
            return;
        };
        match result {
            ShareResult::Accepted => {
                p.accepted.fetch_add(1, Ordering::Relaxed);
                p.last_share_unix.store(unix_now(), Ordering::Relaxed);
                *p.accepted_difficulty
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) += difficulty;
            }
            ShareResult::Rejected => {
                p.rejected.fetch_add(1, Ordering::Relaxed);
            }
            ShareResult::Stale => {
                p.stale.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(reason) = reason {
            *p.last_reject.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
        }
    }

    /// Counts a block submission to a pool or node, and its answer.
    pub fn record_block_result(&self, pool: usize, result: ShareResult, reason: Option<&str>) {
        let Some(p) = self.pools.get(pool) else {
            return;
        };
        p.blocks_submitted.fetch_add(1, Ordering::Relaxed);
        let counter = match result {
            ShareResult::Accepted => &p.blocks_accepted,
            ShareResult::Rejected => &p.blocks_rejected,
            ShareResult::Stale => &p.blocks_stale,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(reason) = reason.filter(|_| result != ShareResult::Accepted) {
            *p.last_reject.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
        }
    }

    /// A share not sent to `pool`: over its submission cap.
    pub fn record_throttled(&self, pool: usize) {
        if let Some(p) = self.pools.get(pool) {
            p.throttled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A share `pool` never answered.
    pub fn record_unanswered(&self, pool: usize) {
        if let Some(p) = self.pools.get(pool) {
            p.unanswered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A line from `pool` that was not a valid message.
    pub fn record_bad_message(&self, pool: usize) {
        if let Some(p) = self.pools.get(pool) {
            p.bad_messages.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A share the sink had no room for.
    pub fn record_dropped(&self, device: usize) {
        if let Some(d) = self.device(device) {
            d.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `pool` answered: its handshake went through, or the node its first
    /// call.
    pub fn record_pool_answered(&self, pool: usize) {
        if let Some(p) = self.pools.get(pool) {
            p.answered.store(true, Ordering::Relaxed);
        }
    }

    /// Why reaching `pool` failed, for the summary of a run none answered.
    pub fn record_pool_error(&self, pool: usize, error: &str) {
        if let Some(p) = self.pools.get(pool) {
            let bounded: String = error.chars().take(300).collect();
            *p.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(bounded);
        }
    }

    pub(crate) fn set_pool_connected(&self, pool: usize, connected: bool) {
        if let Some(p) = self.pools.get(pool) {
            p.connected.store(connected, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_pool_latency(&self, pool: usize, latency: Duration) {
        if let Some(p) = self.pools.get(pool) {
            p.latency_us
                .store(latency.as_micros().max(1) as u64, Ordering::Relaxed);
        }
    }

    /// How long a device took to start on a newly published job.
    pub fn record_job_switch(&self, latency: Duration) {
        self.job_switch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(latency.as_secs_f64());
    }

    pub(crate) fn set_share_difficulty(&self, difficulty: Option<f64>) {
        *self
            .share_difficulty
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = difficulty;
    }

    pub(crate) fn set_network_difficulty(&self, difficulty: Option<f64>) {
        *self
            .network_difficulty
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = difficulty;
    }

    /// The pool now being mined, if any.
    pub fn set_active_pool(&self, pool: Option<usize>) {
        self.active_pool
            .store(pool.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    fn device(&self, index: usize) -> Option<&DeviceStats> {
        self.devices.get(index)
    }

    pub(crate) fn record_hashes(&self, device: usize, nonces: u64, at: Instant) {
        if let Some(d) = self.device(device) {
            d.nonces.fetch_add(nonces, Ordering::Relaxed);
            d.meter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(at, nonces);
        }
    }

    /// Records a scan's device-measured busy time against its wall time.
    pub fn record_busy(&self, device: usize, busy: Duration, wall: Duration) {
        if let Some(d) = self.device(device) {
            d.busy_ns
                .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
            d.timed_scan_ns
                .fetch_add(wall.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_result(&self, device: usize, result: ShareResult) {
        if let Some(d) = self.device(device) {
            let counter = match result {
                ShareResult::Accepted => &d.accepted,
                ShareResult::Rejected => &d.rejected,
                ShareResult::Stale => &d.stale,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if result == ShareResult::Accepted {
                d.last_share_unix.store(unix_now(), Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn record_hw_error(&self, device: usize) {
        if let Some(d) = self.device(device) {
            d.hw_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_block(&self, device: usize) {
        if let Some(d) = self.device(device) {
            d.blocks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps the highest share difficulty seen.
    pub fn record_share_difficulty(&self, difficulty: f64) {
        let mut best = self.best_share.lock().unwrap_or_else(|e| e.into_inner());
        if difficulty > *best {
            *best = difficulty;
        }
    }

    /// Every counter now, consistent enough for a report.
    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let uptime = now.duration_since(self.started);
        let devices = self
            .devices
            .iter()
            .map(|d| d.snapshot(now, self.started))
            .collect();
        let active = self.active_pool.load(Ordering::Relaxed);
        let pools = self
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| p.snapshot(i == active, uptime))
            .collect();
        Snapshot {
            uptime_s: uptime.as_secs_f64(),
            devices,
            pools,
            best_share: *self.best_share.lock().unwrap_or_else(|e| e.into_inner()),
            network_difficulty: *self
                .network_difficulty
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            share_difficulty: *self
                .share_difficulty
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            job_switch: self
                .job_switch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// A difficulty for people: `0.000488`-style small values in scientific
/// notation, large ones with an SI prefix (`91.35 T`).
pub fn format_difficulty(difficulty: f64) -> String {
    const UNITS: [&str; 7] = ["", " k", " M", " G", " T", " P", " E"];
    if difficulty < 0.01 {
        return format!("{difficulty:.3e}");
    }
    let mut value = difficulty;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// Hashrate with an SI prefix: `12.34 MH/s`.
pub fn format_hashrate(rate: f64) -> String {
    const UNITS: [&str; 6] = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"];
    let mut value = rate;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_best_share() {
        let s = Stats::new(vec!["a".into(), "b".into()]);
        s.record_result(1, ShareResult::Rejected);
        s.record_result(0, ShareResult::Accepted);
        s.record_result(7, ShareResult::Accepted); // out of range: ignored
        s.record_hw_error(0);
        s.record_share_difficulty(3.0);
        s.record_share_difficulty(2.0);
        s.record_busy(1, Duration::from_millis(90), Duration::from_millis(100));
        let snap = s.snapshot();
        assert_eq!(snap.devices[0].device_busy, None);
        assert!((snap.devices[1].device_busy.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(snap.devices[0].accepted, 1);
        assert_eq!(snap.devices[1].rejected, 1);
        assert_eq!(snap.devices[0].hw_errors, 1);
        assert_eq!(snap.best_share, 3.0);
    }

    #[test]
    fn pool_counters_and_effective_hashrate() {
        let s = Stats::new(vec!["a".into()]).with_pools(vec!["p0".into(), "p1".into()]);
        s.record_pool_result(1, 0, ShareResult::Accepted, 2.0, None);
        s.record_pool_result(1, 0, ShareResult::Rejected, 2.0, Some("low difficulty"));
        s.record_pool_result(9, 0, ShareResult::Stale, 2.0, None);
        s.set_active_pool(Some(1));
        let snap = s.snapshot();
        assert_eq!(snap.devices[0].accepted, 1);
        assert_eq!(snap.devices[0].stale, 1);
        assert!(snap.pools[1].active && !snap.pools[0].active);
        assert_eq!(snap.pools[1].accepted_difficulty, 2.0);
        assert_eq!(snap.pools[1].last_reject.as_deref(), Some("low difficulty"));
        assert!(snap.pools[1].effective_hashrate > 0.0);
    }

    #[test]
    fn hashrate_units() {
        assert_eq!(format_hashrate(12_340_000.0), "12.34 MH/s");
        assert_eq!(format_hashrate(5.0), "5.00 H/s");
        assert_eq!(format_difficulty(91.35e12), "91.35 T");
        assert_eq!(format_difficulty(4.656e-10), "4.656e-10");
        assert_eq!(format_difficulty(1.0), "1.00");
    }
}
