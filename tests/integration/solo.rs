//! Solo mining against a real node: two Bitcoin SV regtest nodes started by
//! `scripts/test.sh` (`scripts/regtest-nodes.sh`), whose addresses come in
//! `HASHRIG_REGTEST_*`. Without them these tests fail, never skip.
//! The tests share one chain, so they take turns.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bitcoin::{Address, Block, Network, PublicKey};
use hashrig::backend::cpu::{self, CpuDevice};
use hashrig::backend::{Device, DeviceError, DeviceInfo};
use hashrig::found::journal::FoundBlockLog;
use hashrig::job::gbt::rpc::{NodeRpc, RpcAuth};
use hashrig::job::gbt::{GbtSource, SoloOptions};
use hashrig::pow::KernelWork;
use hashrig::scheduler::{Scheduler, SchedulerConfig};
use hashrig::shutdown::Shutdown;
use hashrig::stats::Stats;
use hashrig::work::WorkSource;
use serde_json::{json, Value};

use crate::common::wait_until;
use crate::relay::Relay;

static CHAIN: Mutex<()> = Mutex::new(());

pub(crate) fn take_turn() -> MutexGuard<'static, ()> {
    CHAIN.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Node {
    url: String,
    user: String,
    pass: String,
    dir: String,
    pub(crate) rpc: NodeRpc,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with scripts/test.sh, or first \
             eval \"$(bash scripts/regtest-nodes.sh start)\""
        )
    })
}

pub(crate) fn node() -> Node {
    let (url, user, pass) = (
        env("HASHRIG_REGTEST_RPC"),
        env("HASHRIG_REGTEST_USER"),
        env("HASHRIG_REGTEST_PASS"),
    );
    let rpc = NodeRpc::new(
        &url,
        RpcAuth::UserPass {
            user: user.clone(),
            password: pass.clone(),
        },
        Duration::from_secs(30),
    );
    Node {
        url,
        user,
        pass,
        dir: env("HASHRIG_REGTEST_DIR"),
        rpc,
    }
}

impl Node {
    pub(crate) fn call(&self, method: &str, params: Value) -> Value {
        // Some calls (generate's friends, stop) answer null.
        self.rpc
            .call_nullable::<Value>(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
            .unwrap_or(Value::Null)
    }

    pub(crate) fn height(&self) -> u64 {
        self.call("getblockcount", json!([])).as_u64().unwrap()
    }

    fn block(&self, height: u64) -> Block {
        let hash = self.call("getblockhash", json!([height]));
        let raw = self.call("getblock", json!([hash, 0]));
        bitcoin::consensus::deserialize(&hex::decode(raw.as_str().unwrap()).unwrap()).unwrap()
    }
}

/// A regtest address of a fixed key (the generator point): not the node's
/// wallet, so the payout is checked on the chain alone.
pub(crate) fn payout_address() -> Address {
    let key =
        PublicKey::from_str("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
            .unwrap();
    Address::p2pkh(key, Network::Regtest)
}

/// BIP 34's height push, written out here independently.
fn height_push(height: u32) -> Vec<u8> {
    match height {
        1..=16 => vec![0x50 + height as u8],
        _ => {
            let mut bytes = height.to_le_bytes().to_vec();
            while bytes.len() > 1
                && bytes[bytes.len() - 1] == 0
                && bytes[bytes.len() - 2] & 0x80 == 0
            {
                bytes.pop();
            }
            if bytes[bytes.len() - 1] & 0x80 != 0 {
                bytes.push(0);
            }
            [vec![bytes.len() as u8], bytes].concat()
        }
    }
}

fn hashrig(args: &[&str]) -> std::process::Output {
    crate::common::hashrig_command()
        .args(args)
        .output()
        .expect("run hashrig")
}

#[test]
fn mines_exactly_max_blocks_paying_the_address_with_the_height() {
    let _turn = take_turn();
    let node = node();
    // A spendable coin and a transaction for the template to carry.
    node.call("generate", json!([101]));
    let wallet = node.call("getnewaddress", json!([]));
    let txid = node.call("sendtoaddress", json!([wallet, 1.5]));
    let start = node.height();
    let dir = std::env::temp_dir().join(format!("hashrig-solo-{}", std::process::id()));
    let found = dir.join("found.jsonl");
    let address = payout_address().to_string();
    let out = hashrig(&[
        "solo",
        "--rpc-url",
        &node.url,
        "--rpc-user",
        &node.user,
        "--rpc-pass",
        &node.pass,
        "--address",
        &address,
        "--coinbase-sig",
        "/hashrig-test/",
        "--backend",
        "cpu",
        "--cpu-threads",
        "1",
        "--max-blocks",
        "5",
        "--json",
        "--quiet",
        "--found-blocks",
        found.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON summary");
    assert_eq!(summary["blocks_accepted"], 5, "{summary}");
    assert_eq!(summary["blocks"], 5, "{summary}");
    assert_eq!(summary["accepted"], 0, "blocks are not shares: {summary}");
    assert_eq!(node.height(), start + 5, "exactly five blocks");

    let saved: Vec<Value> = std::fs::read_to_string(&found)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let script = payout_address().script_pubkey();
    let mut carried = false;
    for height in start + 1..=start + 5 {
        let block = node.block(height);
        assert!(block.check_merkle_root(), "merkle root at {height}");
        let coinbase = &block.txdata[0];
        assert_eq!(
            coinbase.output[0].script_pubkey, script,
            "payout at {height}"
        );
        let sig = coinbase.input[0].script_sig.as_bytes();
        assert!(
            sig.starts_with(&height_push(height as u32)),
            "BIP 34 height at {height}"
        );
        assert!(sig.ends_with(b"/hashrig-test/"));
        carried |= block
            .txdata
            .iter()
            .any(|t| t.compute_txid().to_string() == txid.as_str().unwrap());
        let hash = block.block_hash().to_string();
        assert!(
            saved
                .iter()
                .any(|r| r["hash"] == json!(hash) && r["block"].is_string()),
            "block {hash} was not in the found-blocks file"
        );
    }
    assert!(carried, "the mempool transaction was mined");
    let _ = std::fs::remove_dir_all(dir);
}

/// A CPU device that waits for the test to open its gate.
struct Gated {
    inner: CpuDevice,
    open: Arc<AtomicBool>,
}

impl Device for Gated {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn granularity(&self) -> u64 {
        self.inner.granularity()
    }
    fn scan(&mut self, work: &KernelWork, start: u32, count: u64) -> Result<Vec<u32>, DeviceError> {
        while !self.open.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.inner.scan(work, start, count)
    }
}

/// A solo miner on one gated CPU device, with its first template.
struct GatedSolo {
    open: Arc<AtomicBool>,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    scheduler: Scheduler,
    source: std::thread::JoinHandle<Result<(), hashrig::job::source::JobSourceError>>,
}

impl GatedSolo {
    fn start(
        node: &Node,
        auth: RpcAuth,
        max_blocks: Option<u64>,
        found_blocks: Arc<FoundBlockLog>,
    ) -> GatedSolo {
        let options = SoloOptions {
            rpc: NodeRpc::new(&node.url, auth, Duration::from_secs(10)),
            address: payout_address().to_string(),
            coinbase_tag: Vec::new(),
            max_blocks,
            poll_interval: Duration::from_millis(500),
        };
        let open = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::new(vec!["cpu".into()]).with_pools(vec![node.url.clone()]));
        let work = Arc::new(WorkSource::new());
        let shutdown = Shutdown::new();
        let devices: Vec<Box<dyn Device>> = vec![Box::new(Gated {
            inner: CpuDevice::new(cpu::info(), 1, cpu::default_path())
                .expect("the CPU's default path"),
            open: open.clone(),
        })];
        let (scheduler, source) = Scheduler::start_with_source(
            Box::new(GbtSource::new(options)),
            devices,
            work.clone(),
            stats.clone(),
            shutdown.clone(),
            SchedulerConfig {
                found_blocks: Some(found_blocks),
                ..SchedulerConfig::default()
            },
        );
        wait_until("a template", Duration::from_secs(30), || {
            work.generation() != 0
        });
        GatedSolo {
            open,
            stats,
            shutdown,
            scheduler,
            source,
        }
    }
}

#[test]
fn a_block_found_while_the_node_is_down_is_submitted_when_it_is_back() {
    let _turn = take_turn();
    let node = node();
    let dir = std::env::temp_dir().join(format!("hashrig-solo-restart-{}", std::process::id()));
    let path = dir.join("found.jsonl");
    let log = Arc::new(FoundBlockLog::open(&path).unwrap());
    // Authenticated the way a node's cookie file does it.
    let cookie = dir.join(".cookie");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&cookie, format!("{}:{}\n", node.user, node.pass)).unwrap();
    let solo = GatedSolo::start(&node, RpcAuth::Cookie(cookie), Some(1), log);
    let GatedSolo {
        open,
        stats,
        shutdown,
        scheduler,
        source,
    } = solo;
    let start = node.height();

    // The node goes down; then the device finds a block on its template.
    let _ = node.rpc.call::<serde_json::Value>("stop", json!([]));
    wait_until("the node to stop", Duration::from_secs(30), || {
        node.rpc.call::<u64>("getblockcount", json!([])).is_err()
    });
    open.store(true, Ordering::SeqCst);
    wait_until(
        "the block in the found-blocks file",
        Duration::from_secs(30),
        || std::fs::read_to_string(&path).is_ok_and(|t| t.contains("\"block\"")),
    );
    // The node stays down a while longer: the miner must keep retrying
    // (a scenario's length, not a wait for an event).
    std::thread::sleep(Duration::from_secs(1));
    let restarted = Command::new("bash")
        .args(["scripts/regtest-nodes.sh", "restart-a", &node.dir])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(restarted.success(), "node restart");
    wait_until(
        "the source to reach --max-blocks 1",
        Duration::from_secs(60),
        || source.is_finished(),
    );
    shutdown.trigger();
    scheduler.join();
    source.join().unwrap().unwrap();

    let saved: Value = serde_json::from_str(
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(node.height(), start + 1);
    let tip = node.call("getblockhash", json!([start + 1]));
    assert_eq!(
        saved["hash"], tip,
        "the saved block is the one the node took"
    );
    assert_eq!(stats.snapshot().pools[0].blocks_accepted, 1);
    assert_eq!(
        stats.snapshot().pools[0].accepted,
        0,
        "blocks are not shares"
    );
    // Node b follows again, so later tests get templates.
    wait_until("the nodes to reconnect", Duration::from_secs(60), || {
        node.rpc
            .call::<serde_json::Value>("getblocktemplate", json!([]))
            .is_ok()
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// Answers every HTTP request with `response`, like a misconfigured proxy.
fn fake_node(response: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

#[test]
fn bad_nodes_and_addresses_are_clear_errors_or_retries() {
    let address = payout_address().to_string();
    let run = |url: &str, address: &str| {
        let out = hashrig(&[
            "solo",
            "--rpc-url",
            url,
            "--address",
            address,
            "--backend",
            "cpu",
            "--cpu-threads",
            "1",
            "--duration",
            "3",
            "--found-blocks",
            "/dev/null",
        ]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let html = fake_node(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 19\r\nConnection: close\r\n\r\n<html>hello</html>\n",
    );
    let (code, err) = run(&html, &address);
    assert_eq!(code, Some(1), "the job source gave up: {err}");
    assert!(err.contains("not JSON-RPC"), "{err}");

    let broken = fake_node(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops\n",
    );
    let (code, err) = run(&broken, &address);
    // Retried until --duration; a node that never answered is a failure.
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(
        err.contains("never answered") && err.contains(&broken),
        "{err}"
    );

    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (code, err) = run(&refused, &address);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(
        err.contains("never answered") && err.contains(&refused),
        "{err}"
    );

    let _turn = take_turn();
    let node = node();
    let out = hashrig(&[
        "solo",
        "--rpc-url",
        &node.url,
        "--rpc-user",
        &node.user,
        "--rpc-pass",
        &node.pass,
        "--address",
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
        "--backend",
        "cpu",
        "--cpu-threads",
        "1",
        "--duration",
        "10",
        "--found-blocks",
        "/dev/null",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the node refused it: {err}");
    assert!(
        err.contains("not an address of the node's network (regtest)"),
        "{err}"
    );
    let out = hashrig(&[
        "solo",
        "--rpc-url",
        &node.url,
        "--address",
        "nonsense",
        "--backend",
        "cpu",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nonsense\""));
}

#[test]
fn a_block_found_in_the_very_last_batch_is_saved_and_submitted() {
    let _turn = take_turn();
    let node = node();
    let dir = std::env::temp_dir().join(format!("hashrig-solo-last-{}", std::process::id()));
    let path = dir.join("found.jsonl");
    let log = Arc::new(FoundBlockLog::open(&path).unwrap());
    let auth = RpcAuth::UserPass {
        user: node.user.clone(),
        password: node.pass.clone(),
    };
    let GatedSolo {
        open,
        stats,
        shutdown,
        scheduler,
        source,
    } = GatedSolo::start(&node, auth, None, log);
    let start = node.height();
    // The device is in its batch, held at the gate; the miner is told to
    // stop, and the batch ends a while later (a GPU batch is 100 ms or
    // more), with a block in it.
    shutdown.trigger();
    std::thread::sleep(Duration::from_millis(300));
    open.store(true, Ordering::SeqCst);
    scheduler.join();
    source.join().unwrap().unwrap();

    let records: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found = records
        .iter()
        .find(|r| r["block"].is_string())
        .expect("the block in the found-blocks file");
    assert_eq!(node.height(), start + 1, "the node took the block");
    let tip = node.call("getblockhash", json!([start + 1]));
    assert_eq!(found["hash"], tip);
    assert!(
        records
            .iter()
            .any(|r| r["hash"] == tip && r["result"] == json!("accepted")),
        "the node's answer recorded: {records:?}"
    );
    assert_eq!(stats.snapshot().pools[0].blocks_accepted, 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_while_the_node_is_down_exits_in_the_grace_period_and_found_blocks_submit_sends_it_later()
{
    let _turn = take_turn();
    let node = node();
    let relay = Relay::start(&node.url);
    let dir = std::env::temp_dir().join(format!("hashrig-solo-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let found = dir.join("found.jsonl");
    let address = payout_address().to_string();
    let mut child = crate::common::hashrig_command()
        .args([
            "solo",
            "--rpc-url",
            &relay.url,
            "--rpc-user",
            &node.user,
            "--rpc-pass",
            &node.pass,
            "--address",
            &address,
            "--backend",
            "cpu",
            "--cpu-threads",
            "1",
            "--shutdown-grace",
            "3",
            "--quiet",
            "--found-blocks",
            found.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run hashrig");
    // Mining: a block accepted through the relay; then the node "goes
    // down" with the next block found.
    let start = node.height();
    wait_until("a block accepted", Duration::from_secs(60), || {
        node.height() > start
    });
    relay.armed.store(true, Ordering::SeqCst);
    wait_until(
        "the node to go down with a block",
        Duration::from_secs(60),
        || relay.down.load(Ordering::SeqCst),
    );
    let height = node.height();
    let stop = std::time::Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut waited = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        waited += 1;
        if waited > 1000 {
            let _ = child.kill();
            panic!("still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = stop.elapsed();
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(
        took < Duration::from_secs(3 + 2),
        "exited {took:?} after SIGTERM"
    );

    // The block is in the file, unsubmitted, and nowhere else.
    assert_eq!(node.height(), height);
    let records: Vec<Value> = std::fs::read_to_string(&found)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last_block = records
        .iter()
        .rev()
        .find(|r| r["block"].is_string())
        .expect("a block in the file");
    let hash = last_block["hash"].as_str().unwrap().to_owned();
    assert!(
        records
            .iter()
            .any(|r| r["hash"] == json!(hash) && r["result"] == json!("unsubmitted")),
        "{records:?}"
    );
    let listed = hashrig(&[
        "found-blocks",
        "submit",
        "--dry-run",
        "--found-blocks",
        found.to_str().unwrap(),
    ]);
    let listed_out = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success());
    assert!(listed_out.contains(&hash), "{listed_out}");
    assert_eq!(listed_out.lines().count(), 1, "{listed_out}");

    // The node is back (here: reached directly): the block goes in.
    let sent = hashrig(&[
        "found-blocks",
        "submit",
        "--rpc-url",
        &node.url,
        "--rpc-user",
        &node.user,
        "--rpc-pass",
        &node.pass,
        "--found-blocks",
        found.to_str().unwrap(),
    ]);
    let sent_out = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success(),
        "{sent_out} {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(sent_out.trim(), format!("{hash}: accepted"));
    assert_eq!(node.height(), height + 1);
    assert_eq!(node.call("getblockhash", json!([height + 1])), json!(hash));
    // Answered now: nothing is left to send.
    let again = hashrig(&[
        "found-blocks",
        "submit",
        "--dry-run",
        "--found-blocks",
        found.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&again.stdout).trim().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}
