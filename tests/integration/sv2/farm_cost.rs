//! What one rig costs behind the translator, and what the translator sees
//! of three: a benchmark for BENCHMARKS.md, not a test.
//!     cargo test --test integration -- --ignored --nocapture farm_cost
//! `HASHRIG_FARM_SECONDS` sets the run (600 by default).

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::tap::Tap;
use super::translator::Translator;
use super::ReferencePool;
use crate::common::{hashrig_command, peak_rss_kib};
use crate::solo::{node, take_turn};

/// CPU seconds of a process's threads from `/proc`: (all, those not named
/// `name_prefix`), from each thread's utime + stime.
fn cpu_seconds(pid: u32, name_prefix: &str) -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let mut all = 0.0;
    let mut other = 0.0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0.0, 0.0);
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // The name is in parentheses and may hold spaces: fields follow ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let used =
            fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
        all += used / ticks;
        if !name.starts_with(name_prefix) {
            other += used / ticks;
        }
    }
    (all, other)
}

/// Every 5 s until the run's end: the translator's SV1 connections, and
/// the rig's resident memory (`VmRSS`, KiB).
fn sample(
    translator: &Translator,
    rig: u32,
    seconds: u64,
    started: Instant,
) -> (Vec<f64>, Vec<u64>) {
    let mut connections = Vec::new();
    let mut rss_kib = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds.saturating_sub(5)) {
        std::thread::sleep(Duration::from_secs(5));
        connections.push(translator.metric("sv1_clients_total"));
        if let Some(kib) = std::fs::read_to_string(format!("/proc/{rig}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            })
        {
            rss_kib.push(kib);
        }
    }
    (connections, rss_kib)
}

#[test]
#[ignore = "a benchmark: run it by name"]
fn farm_cost_behind_the_translator() {
    let _turn = take_turn();
    let seconds: u64 = std::env::var("HASHRIG_FARM_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let node = node();
    let pool = ReferencePool::start(node.rpc.clone(), 1);
    let translator = Translator::start(&pool, true, 500_000.0);
    let taps: Vec<Tap> = (0..3).map(|_| Tap::start(translator.port)).collect();
    let dir = std::env::temp_dir().join(format!("hashrig-farm-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys.toml");
    let made = hashrig_command()
        .args(["api-key", "new", "--keys-file", keys.to_str().unwrap()])
        .args(["--name", "prometheus", "--scope", "read"])
        .output()
        .unwrap();
    assert!(made.status.success());
    let api_port = super::free_port().to_string();
    let mut rigs: Vec<std::process::Child> = taps
        .iter()
        .enumerate()
        .map(|(i, tap)| {
            let mut command = hashrig_command();
            command
                .args([
                    "--quiet",
                    "mine",
                    "--pool",
                    &tap.url(),
                    "--user",
                    "farm.rig",
                ])
                .args(["--backend", "cpu", "--cpu-threads", "1"])
                .args(["--duration", &seconds.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if i == 0 {
                command.args(["--api-bind", &format!("127.0.0.1:{api_port}")]);
                command.args(["--api-keys", keys.to_str().unwrap()]);
            }
            command.spawn().unwrap()
        })
        .collect();
    let rig = rigs[0].id();
    let started = Instant::now();
    let (connections, mut rss_kib) = sample(&translator, rig, seconds, started);
    let (all, host) = cpu_seconds(rig, "device-");
    let peak = peak_rss_kib(rig).unwrap_or(0);
    let translator_pid = translator.pid();
    let (translator_cpu, _) = cpu_seconds(translator_pid, "");
    let translator_peak = peak_rss_kib(translator_pid).unwrap_or(0);
    let elapsed = started.elapsed().as_secs_f64();
    for rig in &mut rigs {
        let _ = rig.wait();
    }
    let accepted: u64 = taps.iter().map(|t| t.wire.lock().unwrap().answers.0).sum();
    let submits: usize = taps
        .iter()
        .map(|t| t.wire.lock().unwrap().submits.len())
        .sum();
    rss_kib.sort_unstable();
    eprintln!(
        "farm cost over {elapsed:.0} s, 3 rigs (1 CPU thread each) behind translator_sv2 (aggregated):\n\
         rig 0 (API on): CPU {:.1}% of a core in all, {:.2}% outside the hashing thread; RSS median {} KiB, peak {} KiB\n\
         translator: CPU {:.2}% of a core, peak RSS {} KiB; SV1 connections seen {:?}..{:?}\n\
         shares: {submits} submitted, {accepted} accepted ({:.1} a minute for the 3 rigs)",
        100.0 * all / elapsed,
        100.0 * host / elapsed,
        rss_kib.get(rss_kib.len() / 2).copied().unwrap_or(0),
        peak,
        100.0 * translator_cpu / elapsed,
        translator_peak,
        connections.iter().copied().fold(f64::INFINITY, f64::min),
        connections.iter().copied().fold(0.0, f64::max),
        accepted as f64 * 60.0 / elapsed,
    );
    let _ = std::fs::remove_dir_all(dir);
}
