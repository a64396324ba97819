//! A Stratum V1 pool on loopback for the tests: real TCP (or TLS), real
//! protocol, and every submitted share rebuilt from its own record of the
//! job with rust-bitcoin and checked for proof of work against the
//! difficulty in force when that job was sent. Scenarios are driven from
//! the test: difficulty changes, new extranonce, version mask, clean jobs,
//! restarts, silence, refusing connections, rejecting shares, raw lines,
//! submits never answered, and the ways real pools treat requests they do
//! not take ([`Quirk`]).

pub(crate) mod session;

use session::Session;

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::block::Header;
use bitcoin::hashes::{sha256d, Hash};
use serde_json::{json, Value};

/// One job as the pool sent it.
#[derive(Debug, Clone)]
pub struct PoolJob {
    pub id: String,
    pub prev_hash: [u8; 32],
    pub coinbase1: Vec<u8>,
    pub coinbase2: Vec<u8>,
    pub branch: Vec<[u8; 32]>,
    pub version: u32,
    pub bits: u32,
    pub time: u32,
}

/// A share the pool accepted, with the header it rebuilt.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub job_id: String,
    /// When the pool accepted it.
    pub at: Instant,
    pub header: Header,
    pub difficulty: f64,
    pub version_bits: Option<u32>,
    pub is_block: bool,
}

/// How a pool treats optional requests, after pools met in the field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Quirk {
    #[default]
    None,
    /// ckpool (2017 builds): "Dropping <method> from unsubscribed client":
    /// anything but `mining.subscribe` before the subscription closes the
    /// connection; `mining.configure` first is exactly that.
    DropsBeforeSubscribe,
    /// Answers `mining.configure` with an error, like pools that never
    /// heard of BIP 310, and goes on.
    RefusesConfigure,
    /// Goes silent for good on this connection after `mining.configure`.
    HangsOnConfigure,
    /// Closes the connection on `mining.suggest_difficulty`.
    DropsOnSuggestDifficulty,
    /// Closes the connection on `mining.extranonce.subscribe`.
    DropsOnExtranonceSubscribe,
    /// Sends a `client.show_message` in Latin-1 (bytes that are not UTF-8)
    /// just before answering `mining.extranonce.subscribe`.
    Latin1OnExtranonceSubscribe,
    /// Answers every `mining.authorize` with `client.reconnect` and no
    /// parameters (this host again), as a pool shedding load does.
    ReconnectsOnAuthorize,
}

#[derive(Debug, Default)]
pub struct Tally {
    pub accepted: Vec<Accepted>,
    /// Shares that failed validation: the miner built garbage.
    pub invalid: Vec<String>,
    /// Rejected on purpose (`reject_all`).
    pub rejected: usize,
    /// Job ids the pool no longer knew.
    pub stale: usize,
    pub subscribes: Vec<Value>,
    pub configures: usize,
    pub suggested: Vec<f64>,
    pub users: Vec<String>,
    /// Replies the miner sent to the pool's own requests.
    pub replies: Vec<Value>,
    /// Every method received, in order.
    pub methods: Vec<String>,
    /// When each `mining.submit` arrived.
    pub submits: Vec<Instant>,
    /// Connections accepted.
    pub connections: usize,
}

impl Tally {
    /// How many times `method` was received.
    pub fn count(&self, method: &str) -> usize {
        self.methods.iter().filter(|m| *m == method).count()
    }
}

struct Conn {
    outbox: Sender<String>,
    closed: Arc<AtomicBool>,
}

/// What a connection knows: its extranonce1 per job, as in force when the
/// job was sent, and the difficulty of each job.
#[derive(Default)]
struct ConnJobs {
    sent: SentJobs,
}

/// Job id -> the extranonce1 and difficulty in force when it was sent, and
/// the job.
type SentJobs = HashMap<String, (Vec<u8>, f64, PoolJob)>;

#[derive(Default)]
struct State {
    difficulty: f64,
    jobs: Vec<PoolJob>,
    next_job: u64,
    next_extranonce: u32,
    sessions: HashMap<String, Vec<u8>>,
    /// The jobs each session was sent, kept across disconnects so that a
    /// resumed session can still submit shares of them (as pools do).
    session_jobs: HashMap<String, SentJobs>,
    conns: Vec<Conn>,
    silent: bool,
    down: bool,
    reject_all: bool,
    block_bits: u32,
    seen: HashSet<[u8; 80]>,
    tally: Tally,
    /// Job ids cycle through a few values: pools reuse them across blocks.
    reuse_ids: bool,
    prev: [u8; 32],
    quirk: Quirk,
    /// Submits are checked and counted but never answered.
    mute_submits: bool,
}

pub struct TestPool {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    /// SHA-256 of the TLS certificate, for TLS pools.
    pub fingerprint: Option<[u8; 32]>,
}

pub const EN2_SIZE: usize = 4;

impl TestPool {
    pub fn start(difficulty: f64) -> TestPool {
        Self::start_with(difficulty, None)
    }

    /// A pool speaking TLS with a fresh self-signed certificate.
    pub fn start_tls(difficulty: f64) -> TestPool {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert_der = key.cert.der().to_vec();
        let fingerprint: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(&cert_der).into()
        };
        let key_der = key.signing_key.serialize_der();
        let mut pool = Self::start_with(difficulty, Some((cert_der, key_der)));
        pool.fingerprint = Some(fingerprint);
        pool
    }

    fn start_with(difficulty: f64, tls: Option<(Vec<u8>, Vec<u8>)>) -> TestPool {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State {
            difficulty,
            block_bits: 0x1d00_ffff,
            next_extranonce: 0x0800_0001,
            prev: [0x5a; 32],
            ..State::default()
        }));
        state.lock().unwrap().new_job(true);
        let stop = Arc::new(AtomicBool::new(false));
        let tls_config = tls.map(|(cert, key)| {
            use tokio_rustls::rustls;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(
                        vec![rustls::pki_types::CertificateDer::from(cert)],
                        rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
                    )
                    .unwrap(),
            )
        });
        {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if state.lock().unwrap().down {
                                drop(stream);
                                continue;
                            }
                            state.lock().unwrap().tally.connections += 1;
                            let state = state.clone();
                            let tls_config = tls_config.clone();
                            std::thread::spawn(move || serve(stream, state, tls_config));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => break,
                    }
                }
            });
        }
        TestPool {
            addr,
            state,
            stop,
            fingerprint: None,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.fingerprint.is_some() {
            "stratum+ssl"
        } else {
            "stratum+tcp"
        };
        format!("{scheme}://localhost:{}", self.addr.port())
    }

    pub fn tally<T>(&self, f: impl FnOnce(&Tally) -> T) -> T {
        f(&self.state.lock().unwrap().tally)
    }

    pub fn accepted(&self) -> usize {
        self.tally(|t| t.accepted.len())
    }

    /// Waits until `more` shares beyond those accepted so far are accepted,
    /// or panics after `timeout` with `what`.
    pub fn wait_for_more_shares(&self, what: &str, more: usize, timeout: Duration) {
        let before = self.accepted();
        self.wait_for(what, timeout, |t| t.accepted.len() >= before + more);
    }

    /// Waits until `check` holds, or panics after `timeout` with `what`.
    pub fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&Tally) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.tally(&check) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let summary = self.tally(|t| {
            format!(
                "accepted {}, invalid {:?}, rejected {}, stale {}",
                t.accepted.len(),
                t.invalid,
                t.rejected,
                t.stale
            )
        });
        panic!("timed out waiting for {what}; {summary}");
    }

    /// Sends `mining.set_difficulty` now; it applies to the next job.
    pub fn set_difficulty(&self, difficulty: f64) {
        let mut s = self.state.lock().unwrap();
        s.difficulty = difficulty;
        s.broadcast(&notification("mining.set_difficulty", json!([difficulty])));
    }

    /// Sends a new job to every connection.
    pub fn new_job(&self, clean: bool) {
        let mut s = self.state.lock().unwrap();
        s.new_job(clean);
        s.send_job_to_all(clean);
    }

    pub fn set_block_bits(&self, bits: u32) {
        self.state.lock().unwrap().block_bits = bits;
    }

    pub fn set_reuse_ids(&self, on: bool) {
        self.state.lock().unwrap().reuse_ids = on;
    }

    /// Gives every connection a new extranonce1 (from the next job on).
    pub fn change_extranonce(&self) {
        let mut s = self.state.lock().unwrap();
        let conns = std::mem::take(&mut s.conns);
        for conn in &conns {
            let en1 = s.next_extranonce.to_be_bytes().to_vec();
            s.next_extranonce += 1;
            let _ = conn.outbox.send(format!("\u{1}EN1 {}", hex::encode(&en1)));
            let _ = conn.outbox.send(notification(
                "mining.set_extranonce",
                json!([hex::encode(&en1), EN2_SIZE]),
            ));
        }
        s.conns = conns;
    }

    pub fn set_version_mask(&self, mask: u32) {
        let s = self.state.lock().unwrap();
        s.broadcast(&format!("\u{1}MASK {mask:08x}"));
        s.broadcast(&notification(
            "mining.set_version_mask",
            json!([format!("{mask:08x}")]),
        ));
    }

    /// Raw text to every connection (a newline is added).
    pub fn send_raw(&self, line: &str) {
        self.state.lock().unwrap().broadcast(line);
    }

    /// Raw bytes, UTF-8 or not, to every connection (a newline is added).
    pub fn send_raw_bytes(&self, line: &[u8]) {
        self.state
            .lock()
            .unwrap()
            .broadcast(&format!("\u{1}RAW {}", hex::encode(line)));
    }

    /// The id of the newest job.
    pub fn current_job_id(&self) -> String {
        let s = self.state.lock().unwrap();
        s.jobs.last().map(|j| j.id.clone()).unwrap_or_default()
    }

    pub fn set_silent(&self, silent: bool) {
        self.state.lock().unwrap().silent = silent;
    }

    pub fn set_reject_all(&self, on: bool) {
        self.state.lock().unwrap().reject_all = on;
    }

    pub fn set_quirk(&self, quirk: Quirk) {
        self.state.lock().unwrap().quirk = quirk;
    }

    /// Checks and counts submits, and never answers them.
    pub fn set_mute_submits(&self, on: bool) {
        self.state.lock().unwrap().mute_submits = on;
    }

    /// Closes every connection; while down, new connections are dropped.
    pub fn set_down(&self, down: bool) {
        let mut s = self.state.lock().unwrap();
        s.down = down;
        if down {
            for conn in s.conns.drain(..) {
                conn.closed.store(true, Ordering::SeqCst);
            }
        }
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.set_down(true);
    }
}

fn notification(method: &str, params: Value) -> String {
    json!({"id": null, "method": method, "params": params}).to_string()
}

impl State {
    fn new_job(&mut self, clean: bool) {
        self.next_job += 1;
        if clean {
            self.prev = *sha256d::Hash::hash(&self.prev).as_byte_array();
        }
        let id = if self.reuse_ids {
            format!("{:x}", self.next_job % 3)
        } else {
            format!("{:x}", self.next_job)
        };
        let height = self.next_job as u32;
        let mut coinbase1 = hex::decode(
            "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff",
        )
        .unwrap();
        coinbase1.push(4 + 4 + EN2_SIZE as u8);
        coinbase1.push(3);
        coinbase1.extend_from_slice(&height.to_le_bytes()[..3]);
        let coinbase2 = hex::decode(
            "ffffffff0100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",
        )
        .unwrap();
        let job = PoolJob {
            id,
            prev_hash: self.prev,
            coinbase1,
            coinbase2,
            branch: vec![
                *sha256d::Hash::hash(&height.to_le_bytes()).as_byte_array(),
                [0x77; 32],
            ],
            version: 0x2000_0000,
            bits: self.block_bits,
            time: 1_700_000_000 + self.next_job as u32,
        };
        if clean {
            self.jobs.clear();
        }
        self.jobs.retain(|j| j.id != job.id);
        self.jobs.push(job);
    }

    fn broadcast(&self, line: &str) {
        for conn in &self.conns {
            let _ = conn.outbox.send(line.to_owned());
        }
    }

    fn send_job_to_all(&self, clean: bool) {
        if self.silent {
            return;
        }
        if let Some(job) = self.jobs.last() {
            self.broadcast(&format!("\u{1}JOB {} {}", job.id, self.difficulty));
            self.broadcast(&notify_line(job, clean));
        }
    }
}

fn notify_line(job: &PoolJob, clean: bool) -> String {
    // Stratum's prevhash: the header bytes as eight byte-reversed words.
    let mut prev = [0u8; 32];
    for (out, word) in prev.chunks_exact_mut(4).zip(job.prev_hash.chunks_exact(4)) {
        out.copy_from_slice(&[word[3], word[2], word[1], word[0]]);
    }
    notification(
        "mining.notify",
        json!([
            job.id,
            hex::encode(prev),
            hex::encode(&job.coinbase1),
            hex::encode(&job.coinbase2),
            job.branch.iter().map(hex::encode).collect::<Vec<_>>(),
            format!("{:08x}", job.version),
            format!("{:08x}", job.bits),
            format!("{:08x}", job.time),
            clean
        ]),
    )
}

/// A byte stream with a read timeout, plain or TLS.
trait Wire: Read + Write + Send {}
impl<T: Read + Write + Send> Wire for T {}

fn serve(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut wire: Box<dyn Wire> = match tls {
        Some(config) => {
            let Ok(conn) = tokio_rustls::rustls::ServerConnection::new(config) else {
                return;
            };
            Box::new(tokio_rustls::rustls::StreamOwned::new(conn, stream))
        }
        None => Box::new(stream),
    };
    let (outbox, inbox): (Sender<String>, Receiver<String>) = mpsc::channel();
    let closed = Arc::new(AtomicBool::new(false));
    state.lock().unwrap().conns.push(Conn {
        outbox: outbox.clone(),
        closed: closed.clone(),
    });
    let mut session = Session {
        sid: None,
        extranonce1: Vec::new(),
        version_mask: 0,
        jobs: ConnJobs::default(),
        outbox,
        closed: closed.clone(),
        subscribed: false,
        hung: false,
    };
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !closed.load(Ordering::SeqCst) {
        // Lines for the miner. Lines starting with \u{1} are notes to self.
        while let Ok(line) = inbox.try_recv() {
            if let Some(raw) = line.strip_prefix("\u{1}RAW ") {
                let mut bytes = hex::decode(raw).unwrap();
                bytes.push(b'\n');
                if wire.write_all(&bytes).is_err() || wire.flush().is_err() {
                    closed.store(true, Ordering::SeqCst);
                }
                continue;
            }
            if let Some(note) = line.strip_prefix('\u{1}') {
                session.note(note, &state);
                continue;
            }
            if wire.write_all(format!("{line}\n").as_bytes()).is_err() || wire.flush().is_err() {
                closed.store(true, Ordering::SeqCst);
            }
        }
        match wire.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        }
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            // Hung up: what else came in the same read is never read.
            if closed.load(Ordering::SeqCst) {
                break;
            }
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let Ok(value) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            session.handle(&value, &state);
        }
    }
    closed.store(true, Ordering::SeqCst);
    if let Some(sid) = session.sid {
        state
            .lock()
            .unwrap()
            .session_jobs
            .insert(sid, session.jobs.sent);
    }
}
