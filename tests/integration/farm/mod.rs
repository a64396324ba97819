//! Farm tools' view of a rig: the cgminer API driven with raw sockets as
//! farm managers and farm OS agents drive it (text and JSON, single and
//! joined commands, allowed and other addresses), on a real rig (two CPU
//! devices mining on two loopback pools) and on the binary.

mod cgminer_api;
mod grafana;
mod packages;
mod service;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashrig::api::cgminer::{self, AllowList, CgminerApi, CgminerApiConfig, SourceKind};
use hashrig::control::RigControl;
use hashrig::shutdown::Shutdown;
use hashrig::stats::Stats;
use serde_json::Value;

use crate::common::{connect_from, CpuRig, PATIENCE};
use crate::testpool::TestPool;

/// Sends `request` from `local` and reads the reply to the end: it must
/// end in one NUL byte, which is taken off.
pub fn ask_from(local: [u8; 4], api: SocketAddr, request: &str) -> String {
    let mut stream = connect_from(local, api);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(reply.pop(), Some(0), "{request}: no NUL at the end");
    assert!(!reply.contains(&0), "{request}: a NUL inside");
    String::from_utf8(reply).unwrap()
}

pub fn ask(api: SocketAddr, request: &str) -> String {
    ask_from([127, 0, 0, 1], api, request)
}

pub fn ask_json(local: [u8; 4], api: SocketAddr, request: &str) -> Value {
    let reply = ask_from(local, api, request);
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{request}: not JSON ({e}): {reply}"))
}

/// A text reply's sections: each `|`-ended part as its fields, in order
/// (`\`-escapes kept).
pub fn text_sections(reply: &str) -> Vec<Vec<(String, String)>> {
    let mut sections = Vec::new();
    let mut current = String::new();
    let mut chars = reply.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                current.extend(chars.next());
            }
            '|' => sections.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    assert!(current.is_empty(), "text reply not |-ended: {reply}");
    sections
        .iter()
        .map(|s| {
            s.split(',')
                .map(|f| match f.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (f.to_owned(), String::new()),
                })
                .collect()
        })
        .collect()
}

pub fn field<'a>(section: &'a [(String, String)], name: &str) -> &'a str {
    section
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {section:?}"))
}

pub fn status_code(v: &Value) -> i64 {
    v["STATUS"][0]["Code"].as_i64().unwrap_or(-1)
}

/// A rig with the cgminer API on it.
pub struct Rig {
    api: Option<CgminerApi>,
    pub stats: Arc<Stats>,
    pub control: Arc<RigControl>,
    pub shutdown: Shutdown,
    _cpu: CpuRig,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(api) = self.api.take() {
            api.join_until(Instant::now() + Duration::from_secs(10));
        }
    }
}

pub fn start_rig(pools: &[&TestPool], allow: &str) -> Rig {
    let cpu = CpuRig::start(pools, "wallet.farm");
    let mut config = CgminerApiConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        allow.parse::<AllowList>().unwrap(),
    );
    config.read_timeout = Duration::from_secs(1);
    config.max_connections = 4;
    let context = cgminer::Context {
        stats: cpu.stats.clone(),
        control: cpu.control.clone(),
        devices: (0..2)
            .map(|i| cgminer::DeviceDetails {
                name: format!("cpu{i}"),
                driver: "cpu".into(),
                kernel: "cpu".into(),
                pci_bus_id: (i == 0).then(|| "0000:0a:00.0".into()),
            })
            .collect(),
        source: SourceKind::Stratum,
        description: "hashrig test".into(),
    };
    let api = cgminer::start(config, context, cpu.shutdown.clone()).unwrap();
    Rig {
        api: Some(api),
        stats: cpu.stats.clone(),
        control: cpu.control.clone(),
        shutdown: cpu.shutdown.clone(),
        _cpu: cpu,
    }
}

impl Rig {
    pub fn addr(&self) -> SocketAddr {
        self.api.as_ref().unwrap().addr
    }
}

/// `hashrig bench` (or `mine`) with `--cgminer-api 127.0.0.1:0`, and the
/// address it printed; the rest of its standard error is drained on a thread.
pub struct RunningHashrig {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
}

impl RunningHashrig {
    /// `hashrig bench` on the CPU with the API and `extra` flags.
    pub fn start(extra: &[&str]) -> RunningHashrig {
        let mut args = vec!["bench", "--backend", "cpu", "--cpu-threads", "1"];
        args.extend_from_slice(extra);
        RunningHashrig::run(&args)
    }

    /// `hashrig ARGS --cgminer-api 127.0.0.1:0`.
    pub fn run(args: &[&str]) -> RunningHashrig {
        let mut child = crate::common::hashrig_command()
            .args(args)
            .args(["--cgminer-api", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut bench = RunningHashrig {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            lines,
        };
        bench.addr = bench.next_api_addr();
        bench
    }

    /// Waits for the next "cgminer API on ADDR" line.
    pub fn next_api_addr(&mut self) -> SocketAddr {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("bench printed no cgminer API address");
            if let Some(addr) = line.split("cgminer API on ").nth(1) {
                return addr.trim().parse().unwrap();
            }
        }
    }

    pub fn wait(mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("bench did not exit in {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RunningHashrig {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
