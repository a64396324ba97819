//! The HTTP API end to end on loopback: a real rig (two CPU devices mining
//! on two loopback pools) behind API keys, driven over HTTP.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use hashrig::api::keys::{new_key, revoke_key, Scope};
use hashrig::api::{ApiConfig, ApiServer};
use hashrig::backend::cpu::{self, CpuDevice};
use hashrig::backend::Device;
use hashrig::control::RigControl;
use hashrig::job::stratum::{PoolConfig, StratumOptions, StratumSource, StratumTimeouts};
use hashrig::scheduler::{Scheduler, SchedulerConfig};
use hashrig::shutdown::Shutdown;
use hashrig::stats::Stats;
use hashrig::work::WorkSource;
use serde_json::Value;

use crate::common::{wait_until, PATIENCE};
use crate::testpool::TestPool;

struct Rig {
    api: Option<ApiServer>,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    scheduler: Option<Scheduler>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(s) = self.scheduler.take() {
            s.join();
        }
        if let Some(api) = self.api.take() {
            api.join();
        }
    }
}

fn start_rig(pools: &[&TestPool], keys: &std::path::Path) -> Rig {
    let configs: Vec<PoolConfig> = pools
        .iter()
        .map(|p| PoolConfig {
            url: p.url().parse().unwrap(),
            user: "wallet.api".into(),
            password: "x".into(),
            cert_fingerprint: None,
        })
        .collect();
    let mut options = StratumOptions::new(configs);
    options.timeouts = StratumTimeouts {
        connect: Duration::from_secs(3),
        backoff_max: Duration::from_millis(500),
        ..StratumTimeouts::default()
    };
    let stats = Arc::new(
        Stats::new(vec!["cpu0".into(), "cpu1".into()])
            .with_pools(pools.iter().map(|p| p.url()).collect()),
    );
    let control = Arc::new(RigControl::new(2, pools.len()));
    let shutdown = Shutdown::new();
    let devices: Vec<Box<dyn Device>> = (0..2)
        .map(|_| Box::new(CpuDevice::new(cpu::info(), 1)) as Box<dyn Device>)
        .collect();
    let (scheduler, _source) = Scheduler::start_with_source(
        Box::new(StratumSource::new(options)),
        devices,
        Arc::new(WorkSource::new()),
        stats.clone(),
        shutdown.clone(),
        SchedulerConfig {
            batch_time: Duration::from_millis(50),
            control: control.clone(),
            ..SchedulerConfig::default()
        },
    );
    let api = hashrig::api::start(
        ApiConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            keys: Arc::new(hashrig::api::keys::KeyStore::load(keys).unwrap()),
            power_watts: Some(300.0),
            kwh_price: Some(0.2),
        },
        stats.clone(),
        control,
        shutdown.clone(),
    )
    .unwrap();
    Rig {
        api: Some(api),
        stats,
        shutdown,
        scheduler: Some(scheduler),
    }
}

/// One request: the status and the body as text.
fn call(method: &str, url: &str, key: Option<&str>, body: Option<&str>) -> (u16, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let mut request = agent.request(method, url);
    if let Some(k) = key {
        request = request.set("Authorization", &format!("Bearer {k}"));
    }
    let result = match body {
        Some(b) => request.send_string(b),
        None => request.call(),
    };
    match result {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn keys_scopes_control_metrics_rotation_and_bad_requests() {
    let first = TestPool::start(0.0003);
    let second = TestPool::start(0.0003);
    let dir = std::env::temp_dir().join(format!("hashrig-api-{}", std::process::id()));
    let keys = dir.join("keys.toml");
    let read = new_key(&keys, "grafana", Scope::Read, None).unwrap();
    let control = new_key(&keys, "ops", Scope::Control, Some("2999-01-01")).unwrap();
    let rig = start_rig(&[&first, &second], &keys);
    let base = format!("http://{}", rig.api.as_ref().unwrap().addr);
    let url = |path: &str| format!("{base}{path}");
    first.wait_for("shares on the first pool", Duration::from_secs(60), |t| {
        !t.accepted.is_empty()
    });

    // Who may do what.
    assert_eq!(call("GET", &url("/v1/summary"), None, None).0, 401);
    assert_eq!(
        call("GET", &url("/v1/summary"), Some("hrk_wrong"), None).0,
        401
    );
    let (status, body) = call("GET", &url("/v1/summary"), Some(&read), None);
    assert_eq!(status, 200, "{body}");
    let summary = json_of(&body);
    assert!(summary["hashrate_5s"].as_f64().unwrap() > 0.0, "{summary}");
    assert!(summary["accepted"].as_u64().unwrap() >= 1);
    assert_eq!(summary["devices_mining"], 2);
    assert!(summary["estimates"]["cost_per_day"].as_f64().is_some());
    assert!(summary["estimates"]["seconds_to_share"].as_f64().is_some());
    let devices = json_of(&call("GET", &url("/v1/devices"), Some(&read), None).1);
    assert_eq!(devices.as_array().unwrap().len(), 2);
    let pools = json_of(&call("GET", &url("/v1/pools"), Some(&read), None).1);
    assert_eq!(pools[0]["active"], true);
    assert_eq!(
        call("POST", &url("/v1/devices/1/disable"), Some(&read), None).0,
        403
    );

    // Disabling a device really stops it; the other keeps hashing.
    let (status, body) = call(
        "POST",
        &url("/v1/devices/1/disable"),
        Some(&control),
        Some(r#"{"reason":"test"}"#),
    );
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(500));
    let nonces = |i: usize| rig.stats.snapshot().devices[i].nonces;
    let (stopped, running) = (nonces(1), nonces(0));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(nonces(1), stopped, "a disabled device hashed");
    assert!(nonces(0) > running, "the other device stopped too");
    let devices = json_of(&call("GET", &url("/v1/devices"), Some(&read), None).1);
    assert_eq!(devices[1]["state"], "disabled");
    assert_eq!(
        call("POST", &url("/v1/devices/1/enable"), Some(&control), None).0,
        200
    );
    wait_until("the device to hash again", PATIENCE, || nonces(1) > stopped);

    // Switching pools.
    let (status, body) = call("POST", &url("/v1/pools/1/switch"), Some(&control), None);
    assert_eq!(status, 202, "{body}");
    second.wait_for("shares on the second pool", Duration::from_secs(60), |t| {
        !t.accepted.is_empty()
    });
    let pools = json_of(&call("GET", &url("/v1/pools"), Some(&read), None).1);
    assert_eq!(pools[1]["active"], true, "{pools}");

    // Prometheus text, parsed by an independent parser.
    let (status, text) = call("GET", &url("/metrics"), Some(&read), None);
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    let names: Vec<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for wanted in [
        "hashrig_device_hashrate",
        "hashrig_shares_total",
        "hashrig_hardware_errors_total",
        "hashrig_pool_connected",
        // The parser folds _bucket, _sum and _count into one histogram.
        "hashrig_job_switch_seconds",
    ] {
        assert!(
            names.contains(&wanted),
            "{wanted} missing from /metrics:\n{text}"
        );
    }

    // Server-Sent Events: the first event is a status.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let response = agent
        .get(&url("/v1/events"))
        .set("Authorization", &format!("Bearer {read}"))
        .call()
        .unwrap();
    let mut reader = response.into_reader();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("\n\n") {
        let n = reader.read(&mut chunk).unwrap();
        assert!(n > 0, "the event stream ended");
        seen.extend_from_slice(&chunk[..n]);
    }
    let first_event = String::from_utf8_lossy(&seen);
    assert!(
        first_event.starts_with("event: status\ndata: {"),
        "{first_event}"
    );
    drop(reader);

    // Bad requests: clear errors.
    assert_eq!(
        call("POST", &url("/v1/devices/7/disable"), Some(&control), None).0,
        404
    );
    assert_eq!(
        call("POST", &url("/v1/devices/x/disable"), Some(&control), None).0,
        400
    );
    assert_eq!(
        call("POST", &url("/v1/devices/0/reboot"), Some(&control), None).0,
        404
    );
    assert_eq!(
        call("POST", &url("/v1/pools/9/switch"), Some(&control), None).0,
        404
    );
    let (status, body) = call(
        "POST",
        &url("/v1/devices/0/enable"),
        Some(&control),
        Some("{not json"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(json_of(&body)["error"].is_string());
    let huge = format!("{{\"reason\":\"{}\"}}", "x".repeat(8_000));
    assert_eq!(
        call(
            "POST",
            &url("/v1/devices/0/enable"),
            Some(&control),
            Some(&huge)
        )
        .0,
        413
    );
    assert_eq!(call("GET", &url("/v2/anything"), Some(&read), None).0, 404);

    // Rotation without a restart: a new key works, the revoked one fails.
    let fresh = new_key(&keys, "grafana-2", Scope::Read, None).unwrap();
    revoke_key(&keys, "grafana").unwrap();
    // The file is watched every 500 ms; each failed try counts against
    // this address, so wait rather than poll.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(call("GET", &url("/v1/summary"), Some(&read), None).0, 401);
    assert_eq!(call("GET", &url("/v1/summary"), Some(&fresh), None).0, 200);

    // Repeated failures from one address are refused for a while.
    for _ in 0..12 {
        call("GET", &url("/v1/summary"), Some("hrk_guess"), None);
    }
    assert_eq!(call("GET", &url("/v1/summary"), Some(&fresh), None).0, 429);
    drop(rig);
    let _ = std::fs::remove_dir_all(dir);
}
