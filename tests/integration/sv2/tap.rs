//! A Stratum V1 wire tap: a relay between one rig and the translator that
//! passes every byte on unchanged and records, from the lines themselves,
//! what the rig was given (extranonce1, jobs, difficulty, version mask) and
//! every `mining.submit` it sent, rebuilt into a header with rust-bitcoin
//! and measured against the share and network targets. The tests judge the
//! rigs' work from the wire, not from the rigs' logs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};
use serde_json::Value;

use crate::testpool::session::{hash_difficulty, merkle_root};

/// One `mining.submit`, with the extranonce1 in force when it was sent.
#[derive(Debug, Clone)]
pub struct Submit {
    /// When the tap passed it on.
    pub at: Instant,
    /// extranonce1 followed by the rig's extranonce2, hex.
    pub extranonce: String,
    pub ntime: String,
    pub nonce: String,
    /// The rolled version bits (BIP 310), when sent.
    pub version_bits: Option<String>,
    /// The difficulty of its hash (`None`: no such job on the wire).
    pub difficulty: Option<f64>,
    /// The share difficulty in force when it was sent.
    pub share_difficulty: f64,
    /// The share difficulty in force when its job was sent: what a miner
    /// mines that job at (a new difficulty applies from the next job).
    pub job_difficulty: f64,
    /// Whether its hash meets the job's network target (nBits).
    pub is_block: bool,
    /// Whether a clean job (`clean_jobs`) replaced its job on the wire
    /// before it was sent or within [`CROSSED`] after: a stale share, in
    /// flight as the work changed. The translator drops a job as the new
    /// block reaches it, and may refuse a share of it before its clean
    /// `notify` has reached the rig.
    pub stale: bool,
    /// The tap's connection it came on (a rig reconnecting gets another).
    connection: usize,
    /// Its job's count of clean jobs (`None`: no such job on the wire).
    job_epoch: Option<u64>,
    /// The translator's answer: accepted, or the error it gave.
    pub answer: Option<Result<(), String>>,
}

/// How long after a share a clean job still counts as having crossed it
/// on the wire: far longer than a loopback round trip, far shorter than
/// the regtest chain's blocks a share apart.
const CROSSED: Duration = Duration::from_secs(2);

/// A `mining.notify` as a header needs it.
#[derive(Debug, Clone)]
struct Notify {
    /// The connection's count of clean jobs when it was sent.
    epoch: u64,
    /// The share difficulty in force when it was sent.
    difficulty: f64,
    prev_hash: [u8; 32],
    coinbase1: Vec<u8>,
    coinbase2: Vec<u8>,
    branch: Vec<Vec<u8>>,
    version: u32,
    bits: u32,
}

impl Notify {
    fn from_params(params: &Value) -> Option<(String, Notify)> {
        let bytes = |i: usize| hex::decode(params[i].as_str()?).ok();
        let word = |i: usize| u32::from_str_radix(params[i].as_str()?, 16).ok();
        // Stratum's prevhash: the header's bytes as eight byte-reversed words.
        let mut prev_hash = [0u8; 32];
        for (out, word) in prev_hash.chunks_exact_mut(4).zip(bytes(1)?.chunks_exact(4)) {
            out.copy_from_slice(&[word[3], word[2], word[1], word[0]]);
        }
        let branch = params[4]
            .as_array()?
            .iter()
            .map(|b| hex::decode(b.as_str()?).ok())
            .collect::<Option<Vec<_>>>()?;
        let notify = Notify {
            epoch: 0,
            difficulty: 0.0,
            prev_hash,
            coinbase1: bytes(2)?,
            coinbase2: bytes(3)?,
            branch,
            version: word(5)?,
            bits: word(6)?,
        };
        Some((params[0].as_str()?.to_owned(), notify))
    }

    /// The header a submit of this job makes, with rust-bitcoin.
    fn header(&self, extranonce: &[u8], time: u32, nonce: u32, version: u32) -> Header {
        let root = merkle_root(&self.coinbase1, extranonce, &self.coinbase2, &self.branch);
        Header {
            version: Version::from_consensus(version as i32),
            prev_blockhash: BlockHash::from_byte_array(self.prev_hash),
            merkle_root: TxMerkleNode::from_byte_array(root),
            time,
            bits: CompactTarget::from_consensus(self.bits),
            nonce,
        }
    }
}

/// What the tap knows of one connection.
#[derive(Debug, Default)]
struct Connection {
    jobs: HashMap<String, Notify>,
    /// Clean jobs sent so far.
    epoch: u64,
    difficulty: f64,
    version_mask: u32,
}

/// What one tap saw.
#[derive(Debug, Default)]
pub struct Wire {
    /// Each connection's extranonce1s, in the order they were given.
    pub extranonce1: HashMap<usize, Vec<String>>,
    pub submits: Vec<Submit>,
    /// Each `mining.set_difficulty` the translator sent, in order, with
    /// when it passed.
    pub difficulties: Vec<(Instant, f64)>,
    connections: HashMap<usize, Connection>,
    /// Whether the translator granted version rolling (`mining.configure`).
    pub version_rolling: bool,
    /// Answers to submits: (accepted, refused).
    pub answers: (u64, u64),
}

/// A tap on a loopback port of its own, relaying to `upstream_port`.
pub struct Tap {
    pub port: u16,
    pub wire: Arc<Mutex<Wire>>,
}

impl Tap {
    pub fn start(upstream_port: u16) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let wire = Arc::new(Mutex::new(Wire::default()));
        let seen = wire.clone();
        std::thread::spawn(move || {
            for (connection, rig) in listener.incoming().enumerate() {
                let Ok(rig) = rig else { continue };
                // A translator that is down refuses the rig, as it would
                // without the tap.
                let Ok(translator) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                let pending = Arc::new(Mutex::new(HashMap::new()));
                relay(
                    &rig,
                    &translator,
                    connection,
                    &seen,
                    &pending,
                    Direction::Up,
                );
                relay(
                    &translator,
                    &rig,
                    connection,
                    &seen,
                    &pending,
                    Direction::Down,
                );
            }
        });
        Tap { port, wire }
    }

    pub fn url(&self) -> String {
        format!("stratum+tcp://127.0.0.1:{}", self.port)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Rig to translator.
    Up,
    /// Translator to rig.
    Down,
}

/// The method of each request in flight, by id, so that answers can be
/// read for what they answer (a submit's index in `Wire::submits`).
type Pending = Arc<Mutex<HashMap<String, (String, Option<usize>)>>>;

fn relay(
    from: &TcpStream,
    to: &TcpStream,
    connection: usize,
    wire: &Arc<Mutex<Wire>>,
    pending: &Pending,
    direction: Direction,
) {
    let (from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    let (wire, pending) = (wire.clone(), pending.clone());
    std::thread::spawn(move || {
        let mut lines = BufReader::new(from.try_clone().unwrap());
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let Ok(message) = serde_json::from_slice::<Value>(&line) {
                let mut wire = wire.lock().unwrap();
                let mut pending = pending.lock().unwrap();
                match direction {
                    Direction::Up => record_up(&mut wire, &mut pending, connection, &message),
                    Direction::Down => record_down(&mut wire, &mut pending, connection, &message),
                }
            }
            if to.write_all(&line).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    });
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn word(value: &Value) -> Option<u32> {
    u32::from_str_radix(value.as_str()?, 16).ok()
}

fn record_up(
    wire: &mut Wire,
    pending: &mut HashMap<String, (String, Option<usize>)>,
    connection: usize,
    message: &Value,
) {
    let method = text(&message["method"]);
    let id = message["id"].to_string();
    if method != "mining.submit" {
        pending.insert(id, (method, None));
        return;
    }
    let params = &message["params"];
    let extranonce1 = wire
        .extranonce1
        .get(&connection)
        .and_then(|given| given.last().cloned())
        .unwrap_or_default();
    let extranonce = format!("{extranonce1}{}", text(&params[2]));
    let state = wire.connections.entry(connection).or_default();
    let judged = state.jobs.get(&text(&params[1])).and_then(|job| {
        let mut version = job.version;
        if let Some(bits) = params.get(5).and_then(word) {
            version = (version & !state.version_mask) | (bits & state.version_mask);
        }
        let header = job.header(
            &hex::decode(&extranonce).ok()?,
            word(&params[3])?,
            word(&params[4])?,
            version,
        );
        let hash = header.block_hash();
        Some((hash_difficulty(&hash), header.target().is_met_by(hash)))
    });
    let share_difficulty = state.difficulty;
    let job = state.jobs.get(&text(&params[1]));
    let stale = job.is_some_and(|job| job.epoch < state.epoch);
    let job_difficulty = job.map_or(0.0, |job| job.difficulty);
    pending.insert(id, (method, Some(wire.submits.len())));
    wire.submits.push(Submit {
        at: Instant::now(),
        extranonce,
        ntime: text(&params[3]),
        nonce: text(&params[4]),
        version_bits: params.get(5).map(text),
        difficulty: judged.map(|(difficulty, _)| difficulty),
        share_difficulty,
        job_difficulty,
        is_block: judged.is_some_and(|(_, block)| block),
        stale,
        connection,
        job_epoch: job.map(|job| job.epoch),
        answer: None,
    });
}

fn record_down(
    wire: &mut Wire,
    pending: &mut HashMap<String, (String, Option<usize>)>,
    connection: usize,
    message: &Value,
) {
    let params = &message["params"];
    match message["method"].as_str() {
        Some("mining.set_extranonce") => {
            let given = text(&params[0]);
            wire.extranonce1.entry(connection).or_default().push(given);
        }
        Some("mining.set_difficulty") => {
            if let Some(difficulty) = params[0].as_f64() {
                wire.difficulties.push((Instant::now(), difficulty));
                wire.connections.entry(connection).or_default().difficulty = difficulty;
            }
        }
        Some("mining.notify") => {
            if let Some((id, mut job)) = Notify::from_params(params) {
                // Old jobs are kept: a late share of one is still judged.
                let state = wire.connections.entry(connection).or_default();
                if params[8] == true {
                    state.epoch += 1;
                    let epoch = state.epoch;
                    for submit in wire.submits.iter_mut().rev() {
                        if submit.at.elapsed() > CROSSED {
                            break;
                        }
                        if submit.connection == connection
                            && submit.job_epoch.is_some_and(|e| e < epoch)
                        {
                            submit.stale = true;
                        }
                    }
                }
                let state = wire.connections.entry(connection).or_default();
                job.epoch = state.epoch;
                job.difficulty = state.difficulty;
                state.jobs.insert(id, job);
            }
        }
        Some(_) => {}
        None => match pending.remove(&message["id"].to_string()) {
            Some((method, _)) if method == "mining.subscribe" => {
                let given = text(&message["result"][1]);
                wire.extranonce1.entry(connection).or_default().push(given);
            }
            Some((method, _)) if method == "mining.configure" => {
                let result = &message["result"];
                wire.version_rolling |= result["version-rolling"] == true;
                if let Some(mask) = word(&result["version-rolling.mask"]) {
                    wire.connections.entry(connection).or_default().version_mask = mask;
                }
            }
            Some((_, Some(index))) => {
                let accepted = message["result"] == true;
                if accepted {
                    wire.answers.0 += 1;
                } else {
                    wire.answers.1 += 1;
                }
                wire.submits[index].answer = Some(if accepted {
                    Ok(())
                } else {
                    Err(message["error"].to_string())
                });
            }
            _ => {}
        },
    }
}
