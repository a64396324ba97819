//! Every byte from outside, bounded and survived, through the real binary:
//! a pool that sends bytes that are not UTF-8 or asks to reconnect in a
//! loop, a node that streams huge answers, and damaged, endless or blocking
//! found-blocks files. Memory is read from `/proc` and the kernel's own
//! account of the process; a run whose memory cannot be read fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::consensus::serialize;
use bitcoin::hashes::Hash;
use serde_json::{json, Value};

use crate::common::{hashrig_command, run_measured, Measured};
use crate::solo::payout_address;
use crate::stratum::{no_invalid, EASY};
use crate::testpool::{Quirk, TestPool};

/// No input may take the process past this (issue 24).
const MEMORY_BOUND_KIB: u64 = 300 * 1024;

fn summary(run: &Measured) -> Value {
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary: {}\n{}", run.stdout, run.stderr))
}

/// `hashrig mine` on one CPU thread against `pools` for `seconds`, run to
/// its end with `tick` called while it runs.
fn mine_measured(pools: &[String], seconds: &str, tick: impl FnMut(Duration)) -> Measured {
    let mut command = hashrig_command();
    command.args(["--quiet", "mine"]);
    for url in pools {
        command.args(["--pool", url.as_str()]);
    }
    command.args([
        "--user",
        "wallet.hostile",
        "--backend",
        "cpu",
        "--cpu-threads",
        "1",
        "--duration",
        seconds,
        "--shutdown-grace",
        "2",
        "--json",
        "--found-blocks",
        "/dev/null",
    ]);
    run_measured(command, Duration::from_secs(40), tick)
}

#[test]
fn pool_lines_that_are_not_utf8_are_counted_and_skipped() {
    let pool = TestPool::start(EASY);
    // The first one arrives while mining.extranonce.subscribe is pending.
    pool.set_quirk(Quirk::Latin1OnExtranonceSubscribe);
    let urls = [pool.url()];
    let mut next = Duration::from_secs(1);
    let run = mine_measured(&urls, "10", |elapsed| {
        if elapsed >= next {
            pool.send_raw_bytes(
                b"{\"id\":null,\"method\":\"client.show_message\",\"params\":[\"Gr\xfc\xdfe\"]}",
            );
            pool.send_raw_bytes(b"\xff\xfe\x00 binary \x80");
            next += Duration::from_millis(500);
        }
    });
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let summary = summary(&run);
    let pool_summary = &summary["pools"][0];
    assert!(pool_summary["accepted"].as_u64().unwrap() >= 2, "{summary}");
    assert!(
        pool_summary["bad_messages"].as_u64().unwrap() >= 10,
        "every line that is not UTF-8 is counted: {summary}"
    );
    assert_eq!(
        pool.tally(|t| t.connections),
        1,
        "one connection for the whole run: {}",
        run.stderr
    );
    assert_eq!(
        pool.tally(|t| t.count("mining.extranonce.subscribe")),
        1,
        "nothing optional is blamed"
    );
    assert!(!run.stderr.contains("connection lost"), "{}", run.stderr);
    no_invalid(&pool);
}

#[test]
fn a_pool_asking_to_reconnect_in_a_loop_is_backed_off_then_failed_over() {
    // Alone: backed off, a handful of connections, not dozens a second.
    let looping = TestPool::start(EASY);
    looping.set_quirk(Quirk::ReconnectsOnAuthorize);
    let urls = [looping.url()];
    let run = mine_measured(&urls, "8", |_| {});
    let connections = looping.tally(|t| t.connections);
    assert!(
        (2..=6).contains(&connections),
        "{connections} connections in 8 s: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("asked to reconnect"),
        "said even under --quiet: {}",
        run.stderr
    );

    // With a second pool: failed over to it, and mined there.
    let looping = TestPool::start(EASY);
    looping.set_quirk(Quirk::ReconnectsOnAuthorize);
    let backup = TestPool::start(EASY);
    let urls = [looping.url(), backup.url()];
    let run = mine_measured(&urls, "10", |_| {});
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        looping.tally(|t| t.connections) <= 4,
        "{}",
        looping.tally(|t| t.connections)
    );
    assert!(backup.accepted() >= 2, "{}", run.stderr);
    no_invalid(&backup);
}

/// What the node double answers: a JSON text, or a body streamed in
/// pieces (`head`, `repeat` × `count`, `tail`) that is never held whole.
#[derive(Clone)]
enum Body {
    Json(String),
    Streamed {
        head: Vec<u8>,
        repeat: Vec<u8>,
        count: usize,
        tail: Vec<u8>,
    },
}

impl Body {
    fn result(result: Value) -> Body {
        Body::Json(json!({"result": result, "error": null, "id": "hashrig"}).to_string())
    }

    /// `{"result": [0,0,0,…]}` of about `megabytes` MB.
    fn zeros(megabytes: usize) -> Body {
        Body::Streamed {
            head: b"{\"result\":[0".to_vec(),
            repeat: b",0,0,0,0,0,0,0,0".to_vec(),
            count: megabytes * 1_000_000 / 16,
            tail: b"],\"error\":null,\"id\":\"hashrig\"}".to_vec(),
        }
    }

    fn write_to(&self, stream: &mut TcpStream) -> std::io::Result<()> {
        let len = match self {
            Body::Json(text) => text.len(),
            Body::Streamed {
                head,
                repeat,
                count,
                tail,
            } => head.len() + repeat.len() * count + tail.len(),
        };
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        )?;
        match self {
            Body::Json(text) => stream.write_all(text.as_bytes()),
            Body::Streamed {
                head,
                repeat,
                count,
                tail,
            } => {
                stream.write_all(head)?;
                let chunk = repeat.repeat(4096);
                for _ in 0..count / 4096 {
                    stream.write_all(&chunk)?;
                }
                for _ in 0..count % 4096 {
                    stream.write_all(repeat)?;
                }
                stream.write_all(tail)
            }
        }
    }
}

/// A node on loopback that answers each JSON-RPC method as `answer` says.
fn node_double(answer: impl Fn(&str) -> Body + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let method = request["method"].as_str().unwrap_or("").to_owned();
                let mut stream = stream;
                // The miner may hang up mid-answer: that is the point.
                let _ = answer(&method).write_to(&mut stream);
            });
        }
    });
    url
}

/// A template whose block the CPU will not solve, with `transactions`.
fn template_with(transactions: Vec<Value>) -> Value {
    json!({
        "version": 0x2000_0000,
        "previousblockhash": "11".repeat(32),
        "transactions": transactions,
        "coinbasevalue": 5_000_000_000u64,
        "curtime": 1_700_000_000,
        "mintime": 1_699_999_000,
        "bits": "1d00ffff",
        "height": 500,
    })
}

/// The smallest transaction a node could list: one input, one output,
/// empty scripts.
fn minimal_transaction() -> Vec<u8> {
    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::ONE,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint {
                txid: bitcoin::Txid::from_byte_array([7; 32]),
                vout: 0,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: bitcoin::Sequence::MAX,
            witness: bitcoin::Witness::new(),
        }],
        output: vec![bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(1),
            script_pubkey: bitcoin::ScriptBuf::new(),
        }],
    };
    serialize(&tx)
}

fn solo_against(url: &str, seconds: &str) -> Measured {
    let address = payout_address().to_string();
    let mut command = hashrig_command();
    command.args([
        "--quiet",
        "solo",
        "--rpc-url",
        url,
        "--address",
        &address,
        "--backend",
        "cpu",
        "--cpu-threads",
        "1",
        "--duration",
        seconds,
        "--json",
        "--found-blocks",
        "/dev/null",
    ]);
    let run = run_measured(command, Duration::from_secs(90), |_| {});
    assert_eq!(run.signal, None, "ended by a signal: {}", run.stderr);
    run
}

fn chain_info() -> Body {
    Body::result(json!({"chain": "regtest", "blocks": 499}))
}

#[test]
fn no_node_answer_takes_the_process_past_300_mib() {
    // 60 MB of [0,0,0,…] where the chain's name belongs.
    let url = node_double(|_| Body::zeros(60));
    let run = solo_against(&url, "5");
    assert!(
        run.peak_rss_kib < MEMORY_BOUND_KIB,
        "getblockchaininfo: {} KiB",
        run.peak_rss_kib
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("result"),
        "names the bad value: {}",
        run.stderr
    );

    // …and where the template belongs: refused, asked again, never held.
    let url = node_double(|method| match method {
        "getblockchaininfo" => chain_info(),
        _ => Body::zeros(60),
    });
    let run = solo_against(&url, "6");
    assert!(
        run.peak_rss_kib < MEMORY_BOUND_KIB,
        "getblocktemplate: {} KiB",
        run.peak_rss_kib
    );
    assert!(run.stderr.contains("getblocktemplate"), "{}", run.stderr);

    // 200,000 minimal transactions (the template limit): parsed as it
    // streams in, assembled and mined.
    let data = hex::encode(minimal_transaction());
    let transactions = vec![json!({"data": data, "depends": [], "fee": 0}); 200_000];
    let template = Body::result(template_with(transactions));
    if let Body::Json(text) = &template {
        assert!(text.len() > 25_000_000, "{} bytes", text.len());
    }
    let url = node_double(move |method| match method {
        "getblockchaininfo" => chain_info(),
        "getbestblockhash" => Body::result(json!("11".repeat(32))),
        _ => template.clone(),
    });
    let run = solo_against(&url, "6");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(summary(&run)["hashrate"].as_f64().unwrap() > 0.0, "mined");
    assert!(
        run.peak_rss_kib < MEMORY_BOUND_KIB,
        "200,000 transactions: {} KiB",
        run.peak_rss_kib
    );
}

fn submit_found_blocks(file: &Path, node: &str, dry_run: bool) -> Measured {
    let mut command = hashrig_command();
    command.args([
        "found-blocks",
        "submit",
        "--rpc-url",
        node,
        "--found-blocks",
    ]);
    command.arg(file);
    if dry_run {
        command.arg("--dry-run");
    }
    run_measured(command, Duration::from_secs(60), |_| {})
}

#[test]
fn found_blocks_survive_damaged_endless_and_blocking_files() {
    let dir = std::env::temp_dir().join(format!("hashrig-hostile-found-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let node = node_double(|_| Body::result(Value::Null));
    let record = |hash: &str| {
        let mut line = json!({"hash": hash, "block": format!("{hash}00"), "height": 9}).to_string();
        line.push('\n');
        line.into_bytes()
    };
    let (first, second) = ("aa".repeat(32), "bb".repeat(32));

    // Binary junk between two good records, and bytes that are not UTF-8
    // inside a third: both good blocks are listed and sent.
    let damaged = dir.join("damaged.jsonl");
    let mut bytes = record(&first);
    bytes.extend_from_slice(b"\x00\x01\xff\xfe\xfd binary junk \x80\x81\n");
    bytes.extend_from_slice(b"{\"hash\":\"cc\",\"block\":\"\xfc\xdf\"}\n");
    bytes.extend(record(&second));
    std::fs::write(&damaged, &bytes).unwrap();
    let run = submit_found_blocks(&damaged, &node, true);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains(&first) && run.stdout.contains(&second),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("line 2: not UTF-8"), "{}", run.stderr);
    assert!(run.stderr.contains("line 3: not UTF-8"), "{}", run.stderr);
    let run = submit_found_blocks(&damaged, &node, false);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("{first}: accepted"))
            && run.stdout.contains(&format!("{second}: accepted")),
        "{}",
        run.stdout
    );

    // A FIFO with no writer: refused at once, not waited on.
    let fifo = dir.join("fifo.jsonl");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let run = submit_found_blocks(&fifo, &node, true);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("not a regular file (a FIFO)"),
        "{}",
        run.stderr
    );

    // A link to /dev/zero: refused, not read.
    let zero = dir.join("zero.jsonl");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let run = submit_found_blocks(&zero, &node, true);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("not a regular file (a device)"),
        "{}",
        run.stderr
    );
    assert!(
        run.peak_rss_kib < MEMORY_BOUND_KIB,
        "{} KiB",
        run.peak_rss_kib
    );

    // 600 MB with no newline (sparse: no disk), then a good record: the
    // long line is read through, named and skipped; the record is found.
    let huge = dir.join("huge.jsonl");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(600_000_000).unwrap();
    drop(file);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&huge)
        .unwrap();
    file.write_all(b"\n").unwrap();
    file.write_all(&record(&second)).unwrap();
    drop(file);
    let run = submit_found_blocks(&huge, &node, true);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("line 1: 600000000 bytes"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains(&second), "{}", run.stdout);
    assert!(
        run.peak_rss_kib < MEMORY_BOUND_KIB,
        "a 600 MB line: {} KiB",
        run.peak_rss_kib
    );
    let _ = std::fs::remove_dir_all(&dir);
}
