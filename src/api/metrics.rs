//! `/metrics` in the Prometheus text exposition format (version 0.0.4), so
//! a farm's Prometheus and Grafana watch every rig.

use std::fmt::Write;

use crate::control::{Readings, RigControl};
use crate::stats::{DeviceSnapshot, PoolSnapshot, Snapshot};

/// Escapes a label value: backslash, double quote and newline.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        // An empty value is no label in Prometheus: left out (a device
        // without a PCI slot keeps the series it had).
        let labels: Vec<String> = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        let value = if value.is_finite() {
            format!("{value}")
        } else if value.is_nan() {
            "NaN".into()
        } else if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }
}

/// A label that tells a family's series of one device or pool apart
/// (`result="accepted"`), or none.
type Split = Option<(&'static str, &'static str)>;

/// One family of per-device series: what Prometheus is told of it, and
/// the values it takes from a device.
struct DeviceFamily {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    /// Whether its series carry the device's name too (the ones a
    /// dashboard lists cards by).
    named: bool,
    values: fn(&DeviceSnapshot) -> Vec<(Split, f64)>,
}

/// The per-device families, in the order they are rendered.
const DEVICE_FAMILIES: &[DeviceFamily] = &[
    DeviceFamily {
        name: "hashrig_device_hashrate",
        kind: "gauge",
        help: "Hashes per second over a window.",
        named: true,
        values: |d| {
            vec![
                (Some(("window", "5s")), d.hashrate_5s),
                (Some(("window", "1m")), d.hashrate_1m),
                (Some(("window", "15m")), d.hashrate_15m),
            ]
        },
    },
    DeviceFamily {
        name: "hashrig_device_hashes_total",
        kind: "counter",
        help: "Nonces hashed.",
        named: true,
        values: |d| vec![(None, d.nonces as f64)],
    },
    DeviceFamily {
        name: "hashrig_shares_total",
        kind: "counter",
        help: "Shares by the pool's answer.",
        named: false,
        values: |d| by_result(d.accepted, d.rejected, d.stale),
    },
    DeviceFamily {
        name: "hashrig_hardware_errors_total",
        kind: "counter",
        help: "Candidates the CPU found wrong.",
        named: false,
        values: |d| vec![(None, d.hw_errors as f64)],
    },
    DeviceFamily {
        name: "hashrig_blocks_total",
        kind: "counter",
        help: "Blocks found: the first hash on each parent, written to the found-blocks file.",
        named: false,
        values: |d| vec![(None, d.blocks as f64)],
    },
    DeviceFamily {
        name: "hashrig_shares_dropped_total",
        kind: "counter",
        help: "Shares dropped because the job source was not taking them.",
        named: false,
        values: |d| vec![(None, d.dropped as f64)],
    },
];

/// One family of per-pool series, as [`DeviceFamily`] is per device.
struct PoolFamily {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    values: fn(&PoolSnapshot) -> Vec<(Split, f64)>,
}

/// The per-pool families, in the order they are rendered.
const POOL_FAMILIES: &[PoolFamily] = &[
    PoolFamily {
        name: "hashrig_pool_connected",
        kind: "gauge",
        help: "1 while connected.",
        values: |p| vec![(None, f64::from(u8::from(p.connected)))],
    },
    PoolFamily {
        name: "hashrig_pool_active",
        kind: "gauge",
        help: "1 for the pool being mined.",
        values: |p| vec![(None, f64::from(u8::from(p.active)))],
    },
    PoolFamily {
        name: "hashrig_pool_shares_total",
        kind: "counter",
        help: "Shares per pool by answer.",
        values: |p| by_result(p.accepted, p.rejected, p.stale),
    },
    PoolFamily {
        name: "hashrig_pool_shares_unsent_total",
        kind: "counter",
        help: "Shares per pool not sent (over the submission cap) or never answered.",
        values: |p| {
            vec![
                (Some(("reason", "throttled")), p.throttled as f64),
                (Some(("reason", "unanswered")), p.unanswered as f64),
            ]
        },
    },
    PoolFamily {
        name: "hashrig_pool_blocks_total",
        kind: "counter",
        help: "Block submissions per pool or node by answer, apart from shares.",
        values: |p| by_result(p.blocks_accepted, p.blocks_rejected, p.blocks_stale),
    },
    PoolFamily {
        name: "hashrig_pool_bad_messages_total",
        kind: "counter",
        help: "Lines from the pool that were not valid messages, skipped.",
        values: |p| vec![(None, p.bad_messages as f64)],
    },
    PoolFamily {
        name: "hashrig_pool_effective_hashrate",
        kind: "gauge",
        help: "Hashrate credited by accepted share difficulty.",
        values: |p| vec![(None, p.effective_hashrate)],
    },
    PoolFamily {
        name: "hashrig_pool_latency_seconds",
        kind: "gauge",
        help: "Round trip of the last answered submission.",
        // No sample before the first answer: 0 would read as instant.
        values: |p| {
            p.latency_ms
                .map(|ms| (None, ms / 1000.0))
                .into_iter()
                .collect()
        },
    },
];

/// Counts split by the pool's answer.
fn by_result(accepted: u64, rejected: u64, stale: u64) -> Vec<(Split, f64)> {
    vec![
        (Some(("result", "accepted")), accepted as f64),
        (Some(("result", "rejected")), rejected as f64),
        (Some(("result", "stale")), stale as f64),
    ]
}

/// Renders every metric of a rig.
pub fn render(snap: &Snapshot, control: &RigControl) -> String {
    let mut out = Out(String::new());
    out.family(
        "hashrig_uptime_seconds",
        "gauge",
        "Seconds since the miner started.",
    );
    out.sample("hashrig_uptime_seconds", &[], snap.uptime_s);
    // Every device series carries the card's PCI slot: on a rig of
    // identical cards, the label that says which one is hot or slow.
    let buses: Vec<&str> = snap
        .devices
        .iter()
        .map(|d| d.pci_bus_id.as_deref().unwrap_or_default())
        .collect();
    render_devices(&mut out, &snap.devices, &buses);
    render_device_control(&mut out, control, &buses);
    // A solo rig has its node in the list; a benchmark has no pool.
    if !snap.pools.is_empty() {
        for family in POOL_FAMILIES {
            out.family(family.name, family.kind, family.help);
            for p in &snap.pools {
                for (split, value) in (family.values)(p) {
                    let mut labels = vec![("pool", p.name.as_str())];
                    labels.extend(split);
                    out.sample(family.name, &labels, value);
                }
            }
        }
    }
    render_job(&mut out, snap);
    out.0
}

fn render_devices(out: &mut Out, devices: &[DeviceSnapshot], buses: &[&str]) {
    for family in DEVICE_FAMILIES {
        out.family(family.name, family.kind, family.help);
        for (i, d) in devices.iter().enumerate() {
            let index = i.to_string();
            for (split, value) in (family.values)(d) {
                let mut labels = vec![("device", index.as_str()), ("pci_bus_id", buses[i])];
                if family.named {
                    labels.push(("name", &d.name));
                }
                labels.extend(split);
                out.sample(family.name, &labels, value);
            }
        }
    }
}

/// Reads one sensor from a device's readings.
type Sensor = fn(&Readings) -> Option<f64>;

/// What the rig's control knows of each device: whether it may mine, and
/// its sensors.
fn render_device_control(out: &mut Out, control: &RigControl, buses: &[&str]) {
    out.family(
        "hashrig_device_enabled",
        "gauge",
        "1 if the device may mine (not disabled, cut off or failed).",
    );
    for (i, bus) in buses.iter().enumerate() {
        out.sample(
            "hashrig_device_enabled",
            &[
                ("device", &i.to_string()),
                ("pci_bus_id", bus),
                ("state", control.state(i)),
            ],
            if control.may_run(i) { 1.0 } else { 0.0 },
        );
    }
    let readings: Vec<_> = (0..buses.len()).map(|i| control.readings(i)).collect();
    let sensors: [(&str, &str, Sensor); 3] = [
        (
            "hashrig_device_temperature_celsius",
            "GPU temperature.",
            |r| r.temperature_c,
        ),
        ("hashrig_device_power_watts", "Board power.", |r| r.power_w),
        ("hashrig_device_fan_percent", "Fan speed.", |r| {
            r.fan_percent
        }),
    ];
    for (name, help, reading) in sensors {
        // Declared even without sensors: dashboards query it on every rig.
        out.family(name, "gauge", help);
        for (i, r) in readings.iter().enumerate() {
            if let Some(value) = reading(r) {
                out.sample(
                    name,
                    &[("device", &i.to_string()), ("pci_bus_id", buses[i])],
                    value,
                );
            }
        }
    }
}

/// The job being mined: how fast devices switch to a new one, and its
/// difficulties.
fn render_job(out: &mut Out, snap: &Snapshot) {
    out.family(
        "hashrig_job_switch_seconds",
        "histogram",
        "From a job's publication to each device's first batch of it.",
    );
    for (le, n) in snap.job_switch.cumulative() {
        out.sample(
            "hashrig_job_switch_seconds_bucket",
            &[("le", &le)],
            n as f64,
        );
    }
    out.sample("hashrig_job_switch_seconds_sum", &[], snap.job_switch.sum);
    out.sample(
        "hashrig_job_switch_seconds_count",
        &[],
        snap.job_switch.count as f64,
    );
    // Declared even while unknown, as the sensors are.
    for (name, help, value) in [
        (
            "hashrig_network_difficulty",
            "Difficulty of the block target being mined.",
            snap.network_difficulty,
        ),
        (
            "hashrig_share_difficulty",
            "The pool's share difficulty.",
            snap.share_difficulty,
        ),
    ] {
        out.family(name, "gauge", help);
        if let Some(value) = value {
            out.sample(name, &[], value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    /// A rig of two devices (one in a PCI slot) on two pools, every
    /// counter distinct, so a series that reads the wrong field shows.
    fn busy_rig() -> (Snapshot, RigControl) {
        let stats = Stats::new(vec!["gpu \"a\"".into(), "cpu".into()])
            .with_pools(vec!["pool-a".into(), "pool-b".into()]);
        let mut snap = stats.snapshot();
        for (i, d) in snap.devices.iter_mut().enumerate() {
            let k = i as u64 * 100;
            d.pci_bus_id = (i == 0).then(|| "0000:01:00.0".to_owned());
            (d.hashrate_5s, d.hashrate_1m, d.hashrate_15m) = (1.5, 2.5, 3.5);
            (d.nonces, d.accepted, d.rejected, d.stale) = (k + 1, k + 2, k + 3, k + 4);
            (d.hw_errors, d.blocks, d.dropped) = (k + 5, k + 6, k + 7);
        }
        for (i, p) in snap.pools.iter_mut().enumerate() {
            let k = i as u64 * 100 + 10;
            (p.connected, p.active) = (true, i == 0);
            (p.accepted, p.rejected, p.stale) = (k + 1, k + 2, k + 3);
            (p.throttled, p.unanswered, p.bad_messages) = (k + 4, k + 5, k + 6);
            (p.blocks_accepted, p.blocks_rejected, p.blocks_stale) = (k + 7, k + 8, k + 9);
            p.effective_hashrate = 1e12;
            p.latency_ms = (i == 0).then_some(42.0);
        }
        snap.network_difficulty = Some(1.25);
        snap.uptime_s = 7.0;
        (snap, RigControl::new(2, 2))
    }

    /// The whole exposition, pinned: a refactor that moves, renames or
    /// mislabels a series fails here before a farm's dashboard goes blank.
    /// A deliberate change rewrites tests/data/metrics-busy-rig.prom.
    #[test]
    fn a_busy_rig_renders_the_pinned_exposition() {
        let (snap, control) = busy_rig();
        let expected = include_str!("../../tests/data/metrics-busy-rig.prom");
        assert_eq!(render(&snap, &control), expected);
    }

    #[test]
    fn every_sample_belongs_to_a_family_declared_once_before_it() {
        let (snap, control) = busy_rig();
        let text = render(&snap, &control);
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(declared.insert(name.to_owned()), "{name} declared twice");
            } else if !line.starts_with('#') {
                let series = line.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| series.strip_suffix(suffix))
                    .filter(|f| declared.contains(*f))
                    .unwrap_or(series);
                assert!(declared.contains(family), "{series} before its # TYPE");
            }
        }
    }
}
