//! The HTTP API end to end on loopback: a real rig (two CPU devices mining
//! on two loopback pools) behind API keys, driven over HTTP.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashrig::api::keys::{new_key, revoke_key, KeyStore, Scope};
use hashrig::api::{ApiConfig, ApiServer, ConnectionLimits};
use hashrig::control::RigControl;
use hashrig::shutdown::Shutdown;
use hashrig::stats::Stats;
use serde_json::Value;

use hashrig::found::journal::unix_now;

use crate::common::{connect_from, wait_until, wait_until_unchanged, CpuRig, PATIENCE};
use crate::testpool::TestPool;

/// A rig with the HTTP API on it.
pub struct Rig {
    pub api: Option<ApiServer>,
    pub cpu: CpuRig,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.cpu.shutdown.trigger();
        if let Some(api) = self.api.take() {
            api.join();
        }
    }
}

pub fn start_rig(pools: &[&TestPool], keys: &std::path::Path) -> Rig {
    start_rig_with(pools, keys, |_| {})
}

/// A rig whose API settings `adjust` changes first.
pub fn start_rig_with(
    pools: &[&TestPool],
    keys: &std::path::Path,
    adjust: impl FnOnce(&mut ApiConfig),
) -> Rig {
    let cpu = CpuRig::start(pools, "wallet.api");
    let mut config = ApiConfig {
        power_watts: Some(300.0),
        kwh_price: Some(0.2),
        ..ApiConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(hashrig::api::keys::KeyStore::load(keys).unwrap()),
        )
    };
    adjust(&mut config);
    let api = hashrig::api::start(
        config,
        cpu.stats.clone(),
        cpu.control.clone(),
        cpu.shutdown.clone(),
    )
    .unwrap();
    Rig {
        api: Some(api),
        cpu,
    }
}

/// One request: the status and the body as text.
pub fn call(method: &str, url: &str, key: Option<&str>, body: Option<&str>) -> (u16, String) {
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
    let read = new_key(&keys, "grafana", Scope::Read, None, unix_now()).unwrap();
    let control = new_key(&keys, "ops", Scope::Control, Some("2999-01-01"), unix_now()).unwrap();
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
    assert_eq!(devices[0]["pci_bus_id"], "0000:0a:00.0");
    assert_eq!(devices[1]["pci_bus_id"], Value::Null);
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
    let nonces = |i: usize| rig.cpu.stats.snapshot().devices[i].nonces;
    let stopped = wait_until_unchanged("device 1's last batch", Duration::from_millis(300), || {
        nonces(1)
    });
    let running = nonces(0);
    // Then, over a while: nothing more from it.
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
    let fresh = new_key(&keys, "grafana-2", Scope::Read, None, unix_now()).unwrap();
    revoke_key(&keys, "grafana").unwrap();
    // The file is watched every 500 ms; the new key working is the sign
    // it was read again (a success counts against no one).
    wait_until("the new key", PATIENCE, || {
        call("GET", &url("/v1/summary"), Some(&fresh), None).0 == 200
    });
    // Refused: 401, or 429 once this address has failed too often.
    let (status, _) = call("GET", &url("/v1/summary"), Some(&read), None);
    assert!(matches!(status, 401 | 429), "the revoked key got {status}");
    drop(rig);
    let _ = std::fs::remove_dir_all(dir);
}

/// An API with no rig behind it (the routes read empty figures), on
/// `limits`, with one read key and one control key.
struct BareApi {
    server: Option<ApiServer>,
    shutdown: Shutdown,
    keys: std::path::PathBuf,
    read: String,
    control: String,
    dir: std::path::PathBuf,
}

impl BareApi {
    fn start(name: &str, limits: ConnectionLimits) -> BareApi {
        let dir = std::env::temp_dir().join(format!("hashrig-api-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let keys = dir.join("keys.toml");
        let read = new_key(&keys, "prometheus", Scope::Read, None, unix_now()).unwrap();
        let control = new_key(&keys, "ops", Scope::Control, None, unix_now()).unwrap();
        let shutdown = Shutdown::new();
        let server = hashrig::api::start(
            ApiConfig {
                limits,
                ..ApiConfig::new(
                    "127.0.0.1:0".parse().unwrap(),
                    Arc::new(KeyStore::load(&keys).unwrap()),
                )
            },
            Arc::new(Stats::new(vec!["cpu0".into()])),
            Arc::new(RigControl::new(1, 0)),
            shutdown.clone(),
        )
        .unwrap();
        BareApi {
            server: Some(server),
            shutdown,
            keys,
            read,
            control,
            dir,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().addr
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// A connection from `local` (any 127.0.0.0/8 address is this host).
    fn connect_from(&self, local: [u8; 4]) -> TcpStream {
        let stream = connect_from(local, self.addr());
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }
}

impl Drop for BareApi {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(s) = self.server.take() {
            s.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Connects to `to` from the loopback address `local`: the standard
/// library cannot bind a socket before connecting, tokio's can.
/// Whether the server closed `stream` (an end of file, or a reset) before
/// `deadline`, rather than leaving it open.
fn closed_by_server(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut byte = [0u8; 256];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn slow_silent_and_idle_connections_are_closed() {
    let api = BareApi::start(
        "slow",
        ConnectionLimits {
            header_timeout: Duration::from_secs(1),
            ..ConnectionLimits::default()
        },
    );
    // Silent: connects and says nothing.
    let mut silent = api.connect_from([127, 0, 0, 1]);
    // Slow: one header byte every 300 ms, forever.
    let mut slow = api.connect_from([127, 0, 0, 1]);
    let slow_writer = {
        let mut w = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for b in b"GET /v1/summary HTTP/1.1\r\nHost: x\r\nX-Pad: "
                .iter()
                .chain([b'a'; 200].iter())
            {
                if w.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    // Idle: one request answered, then nothing on the kept-alive connection.
    let mut idle = api.connect_from([127, 0, 0, 1]);
    write!(
        idle,
        "GET /v1/summary HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        api.read
    )
    .unwrap();
    let mut answer = [0u8; 64];
    let n = idle.read(&mut answer).unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    assert!(
        closed_by_server(&mut silent, deadline),
        "a silent connection was kept"
    );
    assert!(
        closed_by_server(&mut slow, deadline),
        "a slow-header connection was kept"
    );
    assert!(
        closed_by_server(&mut idle, deadline),
        "an idle connection was kept"
    );
    let _ = slow_writer.join();
}

#[test]
fn a_flood_of_connections_does_not_keep_the_operator_out() {
    // A header timeout far beyond the test: only the caps make room.
    let api = BareApi::start(
        "flood",
        ConnectionLimits {
            max_connections: 16,
            max_per_address: 8,
            header_timeout: Duration::from_secs(600),
            ..ConnectionLimits::default()
        },
    );
    // Another address fills its share, then tries for more.
    let flood: Vec<TcpStream> = (0..40).map(|_| api.connect_from([127, 0, 0, 2])).collect();
    // A third fills the rest of the total.
    let more: Vec<TcpStream> = (0..8).map(|_| api.connect_from([127, 0, 0, 3])).collect();
    // The operator, from elsewhere, and from a flooding address itself.
    for local in [[127, 0, 0, 1], [127, 0, 0, 2]] {
        let mut operator = api.connect_from(local);
        write!(
            operator,
            "GET /v1/summary HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            api.read
        )
        .unwrap();
        let mut answer = String::new();
        operator.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{local:?}: {answer}");
    }
    drop((flood, more));
}

#[test]
fn a_revoked_key_ends_its_event_stream() {
    let api = BareApi::start("revoke", ConnectionLimits::default());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let response = agent
        .get(&api.url("/v1/events"))
        .set("Authorization", &format!("Bearer {}", api.read))
        .call()
        .unwrap();
    let mut reader = std::io::BufReader::new(response.into_reader());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "event: status\n");
    revoke_key(&api.keys, "prometheus").unwrap();
    let revoked = Instant::now();
    let mut rest = String::new();
    // Ends (with an end event) rather than timing out with status events.
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("event: end"), "{rest}");
    assert!(revoked.elapsed() < Duration::from_secs(20));
}

/// A request with this `Authorization` value: the status and Retry-After.
fn call_auth(url: &str, authorization: &str) -> (u16, Option<String>) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    match agent.get(url).set("Authorization", authorization).call() {
        Ok(r) => (r.status(), r.header("Retry-After").map(str::to_owned)),
        Err(ureq::Error::Status(code, r)) => (code, r.header("Retry-After").map(str::to_owned)),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

#[test]
fn bad_keys_are_limited_not_the_address_and_the_scheme_is_any_case() {
    let api = BareApi::start("limit", ConnectionLimits::default());
    let summary = api.url("/v1/summary");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        assert_eq!(
            call_auth(&summary, &format!("{scheme} {}", api.read)).0,
            200,
            "{scheme}"
        );
    }
    for _ in 0..11 {
        call_auth(&summary, "Bearer hrk_guess");
    }
    let (status, retry_after) = call_auth(&summary, "Bearer hrk_guess");
    assert_eq!(status, 429);
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&seconds), "{seconds}");
    // The valid keys of the same address are served all the same.
    assert_eq!(call_auth(&summary, &format!("Bearer {}", api.read)).0, 200);
    assert_eq!(
        call_auth(&api.url("/metrics"), &format!("Bearer {}", api.read)).0,
        200
    );
    let (status, body) = call(
        "POST",
        &api.url("/v1/devices/0/disable"),
        Some(&api.control),
        Some("{\"reason\":\"maintenance\\nINFO forged line\"}"),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn history_whoami_and_change_events() {
    let first = TestPool::start(0.0003);
    let second = TestPool::start(0.0003);
    let dir = std::env::temp_dir().join(format!("hashrig-history-{}", std::process::id()));
    let keys = dir.join("keys.toml");
    let read = new_key(&keys, "wall", Scope::Read, None, unix_now()).unwrap();
    let control = new_key(&keys, "ops", Scope::Control, None, unix_now()).unwrap();
    let rig = start_rig_with(&[&first, &second], &keys, |c| {
        c.history_step = Duration::from_millis(200);
        c.history_points = 5;
    });
    let base = format!("http://{}", rig.api.as_ref().unwrap().addr);
    let url = |path: &str| format!("{base}{path}");

    // Who the key is.
    let me = json_of(&call("GET", &url("/v1/whoami"), Some(&read), None).1);
    assert_eq!(me, serde_json::json!({"name": "wall", "scope": "read"}));
    let me = json_of(&call("GET", &url("/v1/whoami"), Some(&control), None).1);
    assert_eq!(me["scope"], "control");
    assert_eq!(call("GET", &url("/v1/whoami"), None, None).0, 401);

    // The history: a bounded ring of points, per device and in total.
    assert_eq!(call("GET", &url("/v1/history"), None, None).0, 401);
    let history = || json_of(&call("GET", &url("/v1/history"), Some(&read), None).1);
    wait_until("a full history", PATIENCE, || {
        history()["points"].as_array().is_some_and(|p| {
            p.len() == 5 && p.iter().all(|p| p["total"].as_f64().unwrap_or(0.0) > 0.0)
        })
    });
    let h = history();
    assert_eq!(h["capacity"], 5);
    assert_eq!(h["step_s"], 0.2);
    assert_eq!(h["devices"][0]["pci_bus_id"], "0000:0a:00.0");
    let points = h["points"].as_array().unwrap();
    for p in points {
        let devices: Vec<f64> = p["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_f64().unwrap())
            .collect();
        assert_eq!(devices.len(), 2, "{p}");
        let total = p["total"].as_f64().unwrap();
        assert!(
            (devices.iter().sum::<f64>() - total).abs() < 1e-6 * total.max(1.0),
            "{p}"
        );
    }
    let times: Vec<u64> = points.iter().map(|p| p["t"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let newest = times[times.len() - 1];
    let newer = json_of(
        &call(
            "GET",
            &url(&format!("/v1/history?since={newest}")),
            Some(&read),
            None,
        )
        .1,
    );
    assert!(newer["points"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["t"].as_u64().unwrap() > newest));
    assert_eq!(
        call(
            "GET",
            &url("/v1/history?since=yesterday"),
            Some(&read),
            None
        )
        .0,
        400
    );

    // Change events: a device disabled, the pool switched.
    // The agent's timeout bounds the whole stream, not one read.
    let response = ureq::AgentBuilder::new()
        .timeout(PATIENCE)
        .build()
        .get(&url("/v1/events"))
        .set("Authorization", &format!("Bearer {read}"))
        .call()
        .unwrap();
    let mut reader = std::io::BufReader::new(response.into_reader());
    let (status, body) = call(
        "POST",
        &url("/v1/devices/1/disable"),
        Some(&control),
        Some(r#"{"reason":"history test"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = call("POST", &url("/v1/pools/1/switch"), Some(&control), None);
    assert_eq!(status, 202, "{body}");
    let mut seen = String::new();
    let deadline = Instant::now() + PATIENCE;
    while !(seen
        .contains("event: device\ndata: {\"device\":1,\"from\":\"mining\",\"state\":\"disabled\"}")
        && seen.contains(&format!(
            "event: pool\ndata: {{\"connected\":true,\"pool\":\"{}\"}}",
            second.url()
        )))
    {
        assert!(Instant::now() < deadline, "no change events in:\n{seen}");
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => panic!("the event stream ended:\n{seen}"),
            Ok(_) => {}
            Err(e) => panic!("{e}:\n{seen}"),
        }
        seen.push_str(&line);
    }
    drop(reader);
    drop(rig);
    let _ = std::fs::remove_dir_all(&dir);
}
