//! The cgminer API driven with raw sockets in both forms, and by pyasic.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    ask, ask_from, ask_json, field, start_rig, status_code, text_sections, RunningHashrig,
};
use crate::common::{connect_from, wait_until, wait_until_unchanged, PATIENCE};
use crate::testpool::TestPool;

#[test]
fn cgminer_api_reads_a_mining_rig_in_both_forms() {
    let first = TestPool::start(0.0003);
    let second = TestPool::start(0.0003);
    let rig = start_rig(&[&first, &second], "W:127.0.0.1/32");
    let api = rig.addr();
    first.wait_for("shares on the first pool", PATIENCE, |t| {
        t.accepted.len() >= 2
    });

    // Text, one command: STATUS then the named SUMMARY section.
    let summary = text_sections(&ask(api, "summary"));
    assert_eq!(field(&summary[0], "STATUS"), "S");
    assert_eq!(field(&summary[0], "Code"), "11");
    assert_eq!(field(&summary[0], "Description"), "hashrig test");
    assert_eq!(summary[1][0], ("SUMMARY".to_owned(), String::new()));
    assert!(field(&summary[1], "MHS av").parse::<f64>().unwrap() > 0.0);
    assert!(field(&summary[1], "Accepted").parse::<u64>().unwrap() >= 2);
    assert_eq!(field(&summary[1], "Hardware Errors"), "0");

    // JSON, joined: each command in a section of its own, each with its
    // STATUS envelope; the figures are the rig's.
    let v = ask_json([127, 0, 0, 1], api, r#"{"command":"summary+devs+pools"}"#);
    assert_eq!(v["id"], 1);
    let summary = &v["summary"][0];
    assert_eq!(status_code(summary), 11, "{v}");
    let snap = rig.stats.snapshot();
    let accepted = summary["SUMMARY"][0]["Accepted"].as_u64().unwrap();
    assert!(
        accepted >= 2 && accepted <= snap.count(|d| d.accepted) + 5,
        "{v}"
    );
    let devs = v["devs"][0]["DEVS"].as_array().unwrap();
    assert_eq!(devs.len(), 2, "{v}");
    for (i, dev) in devs.iter().enumerate() {
        assert_eq!(dev["GPU"], i);
        assert_eq!(dev["Enabled"], "Y");
        assert_eq!(dev["Status"], "Alive");
        assert!(dev["MHS 5s"].as_f64().unwrap() > 0.0, "{dev}");
        for name in [
            "MHS av",
            "Accepted",
            "Rejected",
            "Hardware Errors",
            "Temperature",
            "Fan Percent",
            "Device Hardware%",
            "Last Share Time",
        ] {
            assert!(dev.get(name).is_some(), "devs has no {name:?}: {dev}");
        }
    }
    assert_eq!(devs[0]["PCI Bus"], "0000:0a:00.0");
    let pools = v["pools"][0]["POOLS"].as_array().unwrap();
    assert_eq!(pools.len(), 2);
    assert_eq!(pools[0]["URL"], first.url());
    assert_eq!(pools[0]["Status"], "Alive");
    assert_eq!(pools[0]["Priority"], 0);
    assert_eq!(pools[0]["Stratum Active"], true);
    assert_eq!(pools[1]["Stratum Active"], false);
    assert!(pools[0]["Accepted"].as_u64().unwrap() >= 2);
    assert!(pools[0]["Last Share Time"].as_u64().unwrap() > 1_700_000_000);

    // Text, joined: CMD= before each.
    let joined = ask(api, "devs+pools");
    assert!(joined.starts_with("CMD=devs|STATUS=S,"), "{joined}");
    assert!(joined.contains("|CMD=pools|STATUS=S,"), "{joined}");
    assert!(joined.contains("|GPU=1,"), "{joined}");
    assert!(joined.contains("|POOL=1,URL="), "{joined}");

    // The other reports answer, and a parameter passes in both forms.
    for (request, code) in [
        ("version", 22),
        ("config", 33),
        ("devdetails", 69),
        ("stats", 70),
        ("coin", 78),
        ("gpucount", 20),
        ("edevs", 9),
        ("estats", 70),
    ] {
        let v = ask_json(
            [127, 0, 0, 1],
            api,
            &format!(r#"{{"command":"{request}"}}"#),
        );
        assert_eq!(status_code(&v), code, "{request}: {v}");
    }
    let gpu = ask_json([127, 0, 0, 1], api, r#"{"command":"gpu","parameter":1}"#);
    assert_eq!(gpu["GPU"][0]["GPU"], 1, "{gpu}");
    let gpu = text_sections(&ask(api, "gpu|0"));
    assert_eq!(field(&gpu[1], "GPU"), "0");
    let check = text_sections(&ask(api, "check|switchpool"));
    assert_eq!(field(&check[1], "Exists"), "Y");
    assert_eq!(field(&check[1], "Access"), "Y");
    let unknown = ask_json(
        [127, 0, 0, 1],
        api,
        r#"{"command":"addpool","parameter":"x"}"#,
    );
    assert_eq!(status_code(&unknown), 14, "{unknown}");
    let bad = ask_json([127, 0, 0, 1], api, r#"{"command":"#);
    assert_eq!(status_code(&bad), 23, "{bad}");
}

#[test]
fn cgminer_api_privileged_commands_only_from_allowed_addresses() {
    let first = TestPool::start(0.0003);
    let second = TestPool::start(0.0003);
    let rig = start_rig(&[&first, &second], "W:127.0.0.1/32");
    let api = rig.addr();
    first.wait_for("shares on the first pool", PATIENCE, |t| {
        !t.accepted.is_empty()
    });

    // Another address reads, and is refused every privileged command.
    let other = [127, 0, 0, 2];
    let v = ask_json(other, api, r#"{"command":"summary"}"#);
    assert_eq!(status_code(&v), 11, "{v}");
    for command in [
        "gpudisable|0",
        "gpuenable|0",
        "switchpool|1",
        "enablepool|1",
        "disablepool|0",
        "privileged",
        "restart",
        "quit",
    ] {
        let reply = text_sections(&ask_from(other, api, command));
        assert_eq!(field(&reply[0], "STATUS"), "E", "{command}");
        assert_eq!(field(&reply[0], "Code"), "45", "{command}");
        let name = command.split('|').next().unwrap();
        assert_eq!(
            field(&reply[0], "Msg"),
            format!("Access denied to '{name}' command")
        );
    }
    let v = ask_json(other, api, r#"{"command":"gpudisable","parameter":"0"}"#);
    assert_eq!(status_code(&v), 45, "{v}");
    assert!(rig.control.is_enabled(0));
    assert!(!rig.shutdown.is_triggered());

    // Allowed: gpudisable|0 stops device 0; device 1 goes on.
    let v = ask_json([127, 0, 0, 1], api, r#"{"command":"privileged"}"#);
    assert_eq!(status_code(&v), 46, "{v}");
    let reply = text_sections(&ask(api, "gpudisable|0"));
    assert_eq!(field(&reply[0], "Code"), "12", "{reply:?}");
    assert_eq!(rig.control.state(0), "disabled");
    let nonces = |i: usize| rig.stats.snapshot().devices[i].nonces;
    let stopped = wait_until_unchanged("device 0's last batch", Duration::from_millis(300), || {
        nonces(0)
    });
    let going = nonces(1);
    // Then, over a while: nothing more from it.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(nonces(0), stopped, "device 0 still hashing");
    assert!(nonces(1) > going, "device 1 stopped too");
    let v = ask_json([127, 0, 0, 1], api, r#"{"command":"gpu","parameter":"0"}"#);
    assert_eq!(v["GPU"][0]["Enabled"], "N", "{v}");
    let v = ask_json(
        [127, 0, 0, 1],
        api,
        r#"{"command":"gpudisable","parameter":"0"}"#,
    );
    assert_eq!(status_code(&v), 3, "{v}");
    let v = ask_json(
        [127, 0, 0, 1],
        api,
        r#"{"command":"gpuenable","parameter":"0"}"#,
    );
    assert_eq!(status_code(&v), 5, "{v}");
    wait_until("device 0 to hash again", PATIENCE, || nonces(0) > stopped);

    // Pools: disabling the one in use moves the rig to the next; the last
    // enabled one stays; switching goes back.
    let v = ask_json(
        [127, 0, 0, 1],
        api,
        r#"{"command":"disablepool","parameter":"0"}"#,
    );
    assert_eq!(status_code(&v), 48, "{v}");
    let before = second.accepted();
    second.wait_for_more_shares("shares on the second pool", 1, PATIENCE);
    assert!(second.accepted() > before);
    let v = ask_json(
        [127, 0, 0, 1],
        api,
        r#"{"command":"disablepool","parameter":"1"}"#,
    );
    assert_eq!(status_code(&v), 51, "{v}");
    let v = ask_json([127, 0, 0, 1], api, r#"{"command":"pools"}"#);
    assert_eq!(v["POOLS"][0]["Status"], "Disabled", "{v}");
    let v = ask_json(
        [127, 0, 0, 1],
        api,
        r#"{"command":"switchpool","parameter":"0"}"#,
    );
    assert_eq!(status_code(&v), 27, "{v}");
    assert_eq!(
        v["STATUS"][0]["Msg"],
        format!("Switching to pool 0:'{}'", first.url())
    );
    let before = first.accepted();
    first.wait_for_more_shares("shares on the first pool again", 1, PATIENCE);
    assert!(first.accepted() > before);

    // quit: the reply, then the rig stops.
    let v = ask_json([127, 0, 0, 1], api, r#"{"command":"quit"}"#);
    assert_eq!(v["STATUS"][0]["Msg"], "BYE", "{v}");
    wait_until("the shutdown", Duration::from_secs(5), || {
        rig.shutdown.is_triggered()
    });
    assert!(!rig.control.restart_requested());
}

#[test]
fn cgminer_api_bounds_requests_connections_and_time() {
    let pool = TestPool::start(1.0);
    // A read-only entry makes the list say who may connect at all.
    let rig = start_rig(&[&pool], "W:127.0.0.1/32,R:127.0.0.3");
    let api = rig.addr();

    // An unlisted address is closed on without a reply.
    let mut stranger = connect_from([127, 0, 0, 4], api);
    stranger
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stranger.write_all(b"summary");
    let mut reply = Vec::new();
    let _ = stranger.read_to_end(&mut reply);
    assert!(reply.is_empty(), "{reply:?}");
    let v = ask_json([127, 0, 0, 3], api, r#"{"command":"version"}"#);
    assert_eq!(v["VERSION"][0]["API"], "3.7", "{v}");
    let v = ask_json([127, 0, 0, 3], api, r#"{"command":"quit"}"#);
    assert_eq!(status_code(&v), 45, "{v}");

    // Too big: an error naming the size, never a read past the bound.
    let huge = format!(
        r#"{{"command":"summary","parameter":"{}"}}"#,
        "x".repeat(10_000)
    );
    let mut stream = connect_from([127, 0, 0, 1], api);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(huge.as_bytes());
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("\"Code\":14") && text.contains("more than 4096"),
        "{text}"
    );

    // Silent clients are cut off after the read timeout (1 s here), and
    // while they hold every slot others wait, then get their answer.
    let silent: Vec<_> = (0..4).map(|_| connect_from([127, 0, 0, 1], api)).collect();
    let started = Instant::now();
    let v = ask_json([127, 0, 0, 1], api, r#"{"command":"summary"}"#);
    assert_eq!(status_code(&v), 11, "{v}");
    assert!(started.elapsed() < Duration::from_secs(10));
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "a silent client got {rest:?}");
    }
    // A line end closes a text request at once.
    let v = ask(api, "pools\n");
    assert!(v.starts_with("STATUS=S,"), "{v}");
}

#[test]
fn the_binary_restarts_and_quits_when_asked() {
    let mut bench =
        RunningHashrig::start(&["--seconds", "120", "--cgminer-api-allow", "W:127.0.0.1"]);
    let v = ask_json([127, 0, 0, 1], bench.addr, r#"{"command":"devs"}"#);
    assert_eq!(v["DEVS"].as_array().map(Vec::len), Some(1), "{v}");
    let v = ask_json([127, 0, 0, 1], bench.addr, r#"{"command":"restart"}"#);
    assert_eq!(v["STATUS"][0]["Msg"], "RESTART", "{v}");
    // The same process starts again: a new API, on a new port (0 again).
    let again = bench.next_api_addr();
    let v = ask_json([127, 0, 0, 1], again, r#"{"command":"summary"}"#);
    assert_eq!(status_code(&v), 11, "{v}");
    assert_eq!(
        ask(again, "quit")
            .split('|')
            .next()
            .map(|s| s.contains("Msg=BYE")),
        Some(true)
    );
    let status = bench.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

/// Where `scripts/farm-tools.sh` put pyasic (`scripts/test.sh` sets it).
fn pyasic_path() -> String {
    std::env::var("HASHRIG_PYASIC_PATH").expect(
        "HASHRIG_PYASIC_PATH is not set: run the tests through scripts/test.sh, \
         or eval \"$(bash scripts/farm-tools.sh)\" first",
    )
}

#[test]
fn pyasic_reads_the_rig_and_is_refused_control() {
    let first = TestPool::start(0.0003);
    let second = TestPool::start(0.0003);
    // Privilege for another address only: pyasic, on 127.0.0.1, reads.
    let rig = start_rig(&[&first, &second], "W:127.0.0.2");
    first.wait_for("shares on the first pool", PATIENCE, |t| {
        !t.accepted.is_empty()
    });
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/pyasic_client.py"
        ))
        .arg(rig.addr().port().to_string())
        .env("PYTHONPATH", pyasic_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pyasic failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    // Its multicommand took the joined reply whole (it falls back to one
    // command at a time only when a joined reply does not validate).
    let multi = &v["multi"];
    assert_eq!(multi["multicommand"], true, "{multi}");
    for command in [
        "summary",
        "devs",
        "pools",
        "version",
        "devdetails",
        "stats",
        "coin",
        "config",
    ] {
        assert_eq!(
            multi[command][0]["STATUS"][0]["STATUS"], "S",
            "{command}: {multi}"
        );
    }
    assert!(
        v["summary"]["SUMMARY"][0]["MHS av"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    assert_eq!(v["devs"]["DEVS"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["pools"]["POOLS"][0]["URL"], first.url());
    assert_eq!(v["check"]["CHECK"][0]["Access"], "N");
    for command in ["gpudisable", "switchpool", "quit"] {
        let said = v[command].as_str().unwrap_or_default();
        assert!(
            said.contains(&format!("Access denied to '{command}' command")),
            "{command}: {said}"
        );
    }
    assert!(rig.control.is_enabled(0));
    assert!(!rig.shutdown.is_triggered());
}

#[test]
fn a_running_hashrig_mine_answers_farm_tools_and_obeys_allowed_control() {
    let pool = TestPool::start(0.0003);
    let url = pool.url();
    let mut args = vec!["mine", "--backend", "cpu", "--cpu-threads", "1"];
    args.extend(["--pool", &url, "--user", "wallet.farm", "--batch-ms", "50"]);
    args.extend(["--cgminer-api-allow", "W:127.0.0.1/32"]);
    let miner = RunningHashrig::run(&args);
    let api = miner.addr;
    pool.wait_for("a share", PATIENCE, |t| !t.accepted.is_empty());

    // Text and JSON, one command and joined: summary, devs and pools.
    let summary = text_sections(&ask(api, "summary"));
    assert_eq!(field(&summary[0], "Code"), "11");
    assert!(field(&summary[1], "Accepted").parse::<u64>().unwrap() >= 1);
    let joined = text_sections(&ask(api, "summary+devs+pools"));
    assert_eq!(joined[0], vec![("CMD".to_owned(), "summary".to_owned())]);
    assert!(joined
        .iter()
        .any(|s| s.first().is_some_and(|f| f.0 == "GPU")));
    let v = ask_json([127, 0, 0, 1], api, r#"{"command":"summary+devs+pools"}"#);
    assert_eq!(v["pools"][0]["POOLS"][0]["URL"], url, "{v}");
    assert_eq!(v["pools"][0]["POOLS"][0]["Stratum Active"], true, "{v}");
    assert_eq!(v["devs"][0]["DEVS"][0]["Enabled"], "Y", "{v}");
    let v = ask_json([127, 0, 0, 1], api, r#"{"command":"pools"}"#);
    assert!(v["POOLS"][0]["Accepted"].as_u64().unwrap() >= 1, "{v}");

    // Not allowed: refused, nothing changes.
    for request in ["gpudisable|0", "quit", "disablepool|0"] {
        let reply = text_sections(&ask_from([127, 0, 0, 2], api, request));
        assert_eq!(field(&reply[0], "Code"), "45", "{request}");
    }

    // Allowed: gpudisable|0 stops device 0 (its total stops growing).
    let v = ask_json(
        [127, 0, 0, 1],
        api,
        r#"{"command":"gpudisable","parameter":"0"}"#,
    );
    assert_eq!(status_code(&v), 12, "{v}");
    let total = || {
        let v = ask_json([127, 0, 0, 1], api, r#"{"command":"devs"}"#);
        assert_eq!(v["DEVS"][0]["Enabled"], "N", "{v}");
        v["DEVS"][0]["Total MH"].as_f64().unwrap()
    };
    let stopped = f64::from_bits(wait_until_unchanged(
        "device 0's last batch",
        Duration::from_millis(500),
        || total().to_bits(),
    ));
    // Then, over a while: nothing more from it.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(total(), stopped, "device 0 still hashing");
    let v = ask_json([127, 0, 0, 1], api, r#"{"command":"quit"}"#);
    assert_eq!(v["STATUS"][0]["Msg"], "BYE", "{v}");
    let status = miner.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

/// Keeps about `count` connections from `local` open, sending nothing:
/// each is replaced as the API closes it, as a flood would.
fn idle_flood(
    local: [u8; 4],
    api: std::net::SocketAddr,
    count: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut open = std::collections::VecDeque::new();
        let mut opened = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            open.push_back(connect_from(local, api));
            opened += 1;
            if open.len() > count {
                open.pop_front();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        opened
    })
}

/// `count` connections from `local` that send a `summary` one byte every
/// 200 ms and never finish it; each reconnects when the API closes it.
fn slow_flood(
    local: [u8; 4],
    api: std::net::SocketAddr,
    count: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut open: Vec<_> = (0..count).map(|_| connect_from(local, api)).collect();
        let mut sent = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let byte = &b"summary"[sent % 7..sent % 7 + 1];
            for stream in &mut open {
                if stream.write_all(byte).is_err() {
                    *stream = connect_from(local, api);
                }
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

#[test]
fn a_farm_agent_is_answered_within_2_s_under_an_idle_and_slow_flood() {
    // The real binary, as a farm runs it; the agent shares 127.0.0.1
    // with the flood, as any local process would.
    let bench = RunningHashrig::start(&[
        "--seconds",
        "300",
        "--cgminer-api-allow",
        "R:127.0.0.1,R:127.0.0.2",
    ]);
    let api = bench.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let idle = idle_flood([127, 0, 0, 1], api, 200, stop.clone());
    let slow = slow_flood([127, 0, 0, 2], api, 100, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let reply = text_sections(&ask(api, "summary"));
        let took = started.elapsed();
        assert_eq!(field(&reply[0], "Code"), "11", "{reply:?}");
        assert!(took < Duration::from_secs(2), "summary took {took:?}");
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = idle.join().unwrap();
    slow.join().unwrap();
    // For BENCHMARKS.md.
    eprintln!("summary under the flood ({opened} idle connections opened): slowest {slowest:?}");
}
