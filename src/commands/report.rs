//! What a run says: the status line and status events every few seconds,
//! and the summary at the end, for people and as JSON.

use hashrig::control::RigControl;
use hashrig::stats::{format_difficulty, format_hashrate, Snapshot};

use super::outcome::Outcome;

pub fn print_status(snap: &Snapshot, control: &RigControl) {
    let parts: Vec<String> = snap
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let temperature = control
                .readings(i)
                .temperature_c
                .map(|t| format!(" {t:.0}°C"))
                .unwrap_or_default();
            let state = match control.state(i) {
                "mining" => String::new(),
                other => format!(" [{other}]"),
            };
            format!(
                "{}: {} (avg {}) A{} R{} S{} HW{}{temperature}{state}",
                d.name,
                format_hashrate(d.hashrate_5s),
                format_hashrate(d.hashrate_avg),
                d.accepted,
                d.rejected,
                d.stale,
                d.hw_errors
            )
        })
        .collect();
    let pool = snap
        .pools
        .iter()
        .find(|p| p.active)
        .map(|p| {
            let latency = p
                .latency_ms
                .map(|ms| format!(", {ms:.0} ms"))
                .unwrap_or_default();
            format!(
                " | {} {}{latency}, pool sees {}",
                p.name,
                if p.connected { "up" } else { "DOWN" },
                format_hashrate(p.effective_hashrate)
            )
        })
        .unwrap_or_default();
    let rate_1m = snap.total(|d| d.hashrate_1m);
    let share = match (snap.share_difficulty, snap.network_difficulty) {
        (Some(d), None) => hashrig::stats::expected_seconds(d, rate_1m)
            .map(|s| {
                format!(
                    " | difficulty {}, a share every ~{}",
                    format_difficulty(d),
                    format_duration(s)
                )
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    let network = snap
        .network_difficulty
        .map(|d| {
            let eta = hashrig::stats::expected_seconds(d, snap.total(|d| d.hashrate_1m))
                .map(format_duration)
                .unwrap_or_else(|| "-".into());
            format!(
                " | network difficulty {}, a block every ~{eta}",
                format_difficulty(d)
            )
        })
        .unwrap_or_default();
    eprintln!(
        "[{:>6.0}s] total {}{pool}{share}{network} | {}",
        snap.uptime_s,
        format_hashrate(snap.total(|d| d.hashrate_5s)),
        parts.join(" | ")
    );
}

/// Seconds as the largest sensible unit: `42 s`, `3.5 h`, `12.0 days`.
fn format_duration(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.1} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s if s < 63_072_000.0 => format!("{:.1} days", s / 86_400.0),
        s => format!("{:.1} years", s / 31_557_600.0),
    }
}

/// A status event for `--json`: totals, the pool, and each device.
pub fn status_json(snap: &Snapshot, control: &RigControl) -> serde_json::Value {
    let devices: Vec<serde_json::Value> = snap
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            serde_json::json!({
                "name": d.name,
                "state": control.state(i),
                "hashrate_5s": d.hashrate_5s,
                "hashrate_avg": d.hashrate_avg,
                "accepted": d.accepted,
                "rejected": d.rejected,
                "stale": d.stale,
                "hw_errors": d.hw_errors,
                "sensors": control.readings(i),
            })
        })
        .collect();
    let pool = snap.pools.iter().find(|p| p.active);
    serde_json::json!({
        "event": "status",
        "uptime_s": snap.uptime_s,
        "hashrate_5s": snap.total(|d| d.hashrate_5s),
        "pool": pool.map(|p| &p.name),
        "pool_connected": pool.map(|p| p.connected),
        "pool_latency_ms": pool.and_then(|p| p.latency_ms),
        "network_difficulty": snap.network_difficulty,
        "devices": devices,
    })
}

/// The final summary of a `mine` or `solo` run, as one JSON object.
pub fn summary_json(outcome: &Outcome) -> serde_json::Value {
    let snap = &outcome.snapshot;
    let mut summary = snap.totals();
    let more = serde_json::json!({
        "event": "summary",
        "seconds": outcome.seconds,
        "hashrate": snap.total(|d| d.nonces as f64) / outcome.seconds.max(1e-9),
        "devices": snap.devices,
        "pools": snap.pools,
        "estimates": outcome.estimates,
        "error": outcome.failure().map(|f| f.to_string()),
    });
    if let serde_json::Value::Object(more) = more {
        summary.extend(more);
    }
    serde_json::Value::Object(summary)
}

/// The final summary for people.
pub fn print_summary(outcome: &Outcome) {
    let snap = &outcome.snapshot;
    let total: f64 = snap.total(|d| d.nonces as f64) / outcome.seconds.max(1e-9);
    eprintln!(
        "mined {:.0} s at {} on average; best share difficulty {}",
        outcome.seconds,
        format_hashrate(total),
        format_difficulty(snap.best_share)
    );
    let e = &outcome.estimates;
    if let Some(s) = e.seconds_to_share {
        eprintln!(
            "  a share every ~{} at the last minute's hashrate",
            format_duration(s)
        );
    }
    if let Some(s) = e.seconds_to_block {
        eprintln!(
            "  a block every ~{} at the last minute's hashrate",
            format_duration(s)
        );
    }
    if let (Some(kwh), Some(cost)) = (e.kwh_per_day, e.cost_per_day) {
        eprintln!("  energy {kwh:.1} kWh a day, costing {cost:.2} a day");
    }
    for d in &snap.devices {
        let dropped = match d.dropped {
            0 => String::new(),
            n => format!(", {n} shares dropped (the job source fell behind)"),
        };
        eprintln!(
            "  {}: {} avg, accepted {}, rejected {}, stale {}, hardware errors {}, blocks {}{dropped}",
            d.name,
            format_hashrate(d.hashrate_avg),
            d.accepted,
            d.rejected,
            d.stale,
            d.hw_errors,
            d.blocks
        );
    }
    for p in &snap.pools {
        let mut extra = String::new();
        if p.blocks_submitted > 0 {
            extra += &format!(
                ", blocks accepted {} of {}",
                p.blocks_accepted, p.blocks_submitted
            );
        }
        for (n, what) in [
            (p.throttled, "over the submission cap"),
            (p.unanswered, "never answered"),
            (p.bad_messages, "bad messages skipped"),
        ] {
            if n > 0 {
                extra += &format!(", {n} {what}");
            }
        }
        eprintln!(
            "  {}: accepted {}, rejected {}, stale {}{extra}, pool-effective {}{}",
            p.name,
            p.accepted,
            p.rejected,
            p.stale,
            format_hashrate(p.effective_hashrate),
            p.last_reject
                .as_ref()
                .map(|r| format!(", last rejection: {r}"))
                .unwrap_or_default()
        );
    }
}
