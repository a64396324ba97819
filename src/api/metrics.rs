//! `/metrics` in the Prometheus text exposition format (version 0.0.4), so
//! a farm's Prometheus and Grafana watch every rig.

use std::fmt::Write;

use crate::control::RigControl;
use crate::stats::Snapshot;

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
    let buses: Vec<String> = snap
        .devices
        .iter()
        .map(|d| d.pci_bus_id.clone().unwrap_or_default())
        .collect();
    let devices: Vec<(String, &str, &crate::stats::DeviceSnapshot)> = snap
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| (i.to_string(), buses[i].as_str(), d))
        .collect();
    out.family(
        "hashrig_device_hashrate",
        "gauge",
        "Hashes per second over a window.",
    );
    for (i, bus, d) in &devices {
        for (window, rate) in [
            ("5s", d.hashrate_5s),
            ("1m", d.hashrate_1m),
            ("15m", d.hashrate_15m),
        ] {
            out.sample(
                "hashrig_device_hashrate",
                &[
                    ("device", i),
                    ("pci_bus_id", bus),
                    ("name", &d.name),
                    ("window", window),
                ],
                rate,
            );
        }
    }
    out.family("hashrig_device_hashes_total", "counter", "Nonces hashed.");
    for (i, bus, d) in &devices {
        out.sample(
            "hashrig_device_hashes_total",
            &[("device", i), ("pci_bus_id", bus), ("name", &d.name)],
            d.nonces as f64,
        );
    }
    out.family(
        "hashrig_shares_total",
        "counter",
        "Shares by the pool's answer.",
    );
    for (i, bus, d) in &devices {
        for (result, n) in [
            ("accepted", d.accepted),
            ("rejected", d.rejected),
            ("stale", d.stale),
        ] {
            out.sample(
                "hashrig_shares_total",
                &[("device", i), ("pci_bus_id", bus), ("result", result)],
                n as f64,
            );
        }
    }
    out.family(
        "hashrig_hardware_errors_total",
        "counter",
        "Candidates the CPU found wrong.",
    );
    for (i, bus, d) in &devices {
        out.sample(
            "hashrig_hardware_errors_total",
            &[("device", i), ("pci_bus_id", bus)],
            d.hw_errors as f64,
        );
    }
    out.family(
        "hashrig_blocks_total",
        "counter",
        "Blocks found: the first hash on each parent, written to the found-blocks file.",
    );
    for (i, bus, d) in &devices {
        out.sample(
            "hashrig_blocks_total",
            &[("device", i), ("pci_bus_id", bus)],
            d.blocks as f64,
        );
    }
    out.family(
        "hashrig_shares_dropped_total",
        "counter",
        "Shares dropped because the job source was not taking them.",
    );
    for (i, bus, d) in &devices {
        out.sample(
            "hashrig_shares_dropped_total",
            &[("device", i), ("pci_bus_id", bus)],
            d.dropped as f64,
        );
    }
    out.family(
        "hashrig_device_enabled",
        "gauge",
        "1 if the device may mine (not disabled, cut off or failed).",
    );
    for (i, bus, _) in &devices {
        let index: usize = i.parse().unwrap_or(0);
        let state = control.state(index);
        out.sample(
            "hashrig_device_enabled",
            &[("device", i), ("pci_bus_id", bus), ("state", state)],
            if control.may_run(index) { 1.0 } else { 0.0 },
        );
    }
    let readings: Vec<_> = (0..devices.len()).map(|i| control.readings(i)).collect();
    for (name, help, pick) in [
        ("hashrig_device_temperature_celsius", "GPU temperature.", 0),
        ("hashrig_device_power_watts", "Board power.", 1),
        ("hashrig_device_fan_percent", "Fan speed.", 2),
    ] {
        let values: Vec<(usize, f64)> = readings
            .iter()
            .enumerate()
            .filter_map(|(i, r)| [r.temperature_c, r.power_w, r.fan_percent][pick].map(|v| (i, v)))
            .collect();
        // Declared even without sensors: dashboards query it on every rig.
        out.family(name, "gauge", help);
        for (i, v) in values {
            out.sample(
                name,
                &[("device", &i.to_string()), ("pci_bus_id", &buses[i])],
                v,
            );
        }
    }
    if !snap.pools.is_empty() {
        out.family("hashrig_pool_connected", "gauge", "1 while connected.");
        for p in &snap.pools {
            out.sample(
                "hashrig_pool_connected",
                &[("pool", &p.name)],
                f64::from(u8::from(p.connected)),
            );
        }
        out.family(
            "hashrig_pool_active",
            "gauge",
            "1 for the pool being mined.",
        );
        for p in &snap.pools {
            out.sample(
                "hashrig_pool_active",
                &[("pool", &p.name)],
                f64::from(u8::from(p.active)),
            );
        }
        out.family(
            "hashrig_pool_shares_total",
            "counter",
            "Shares per pool by answer.",
        );
        for p in &snap.pools {
            for (result, n) in [
                ("accepted", p.accepted),
                ("rejected", p.rejected),
                ("stale", p.stale),
            ] {
                out.sample(
                    "hashrig_pool_shares_total",
                    &[("pool", &p.name), ("result", result)],
                    n as f64,
                );
            }
        }
        out.family(
            "hashrig_pool_shares_unsent_total",
            "counter",
            "Shares per pool not sent (over the submission cap) or never answered.",
        );
        for p in &snap.pools {
            for (reason, n) in [("throttled", p.throttled), ("unanswered", p.unanswered)] {
                out.sample(
                    "hashrig_pool_shares_unsent_total",
                    &[("pool", &p.name), ("reason", reason)],
                    n as f64,
                );
            }
        }
        out.family(
            "hashrig_pool_blocks_total",
            "counter",
            "Block submissions per pool or node by answer, apart from shares.",
        );
        for p in &snap.pools {
            for (result, n) in [
                ("accepted", p.blocks_accepted),
                ("rejected", p.blocks_rejected),
                ("stale", p.blocks_stale),
            ] {
                out.sample(
                    "hashrig_pool_blocks_total",
                    &[("pool", &p.name), ("result", result)],
                    n as f64,
                );
            }
        }
        out.family(
            "hashrig_pool_bad_messages_total",
            "counter",
            "Lines from the pool that were not valid messages, skipped.",
        );
        for p in &snap.pools {
            out.sample(
                "hashrig_pool_bad_messages_total",
                &[("pool", &p.name)],
                p.bad_messages as f64,
            );
        }
        out.family(
            "hashrig_pool_effective_hashrate",
            "gauge",
            "Hashrate credited by accepted share difficulty.",
        );
        for p in &snap.pools {
            out.sample(
                "hashrig_pool_effective_hashrate",
                &[("pool", &p.name)],
                p.effective_hashrate,
            );
        }
        out.family(
            "hashrig_pool_latency_seconds",
            "gauge",
            "Round trip of the last answered submission.",
        );
        for p in &snap.pools {
            if let Some(ms) = p.latency_ms {
                out.sample(
                    "hashrig_pool_latency_seconds",
                    &[("pool", &p.name)],
                    ms / 1000.0,
                );
            }
        }
    }
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
    out.family(
        "hashrig_network_difficulty",
        "gauge",
        "Difficulty of the block target being mined.",
    );
    if let Some(d) = snap.network_difficulty {
        out.sample("hashrig_network_difficulty", &[], d);
    }
    out.family(
        "hashrig_share_difficulty",
        "gauge",
        "The pool's share difficulty.",
    );
    if let Some(d) = snap.share_difficulty {
        out.sample("hashrig_share_difficulty", &[], d);
    }
    out.0
}
