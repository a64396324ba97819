//! Stratum V2 against the reference pool: SRI's `pool_sv2`, installed from
//! the crate registry by `scripts/sv2-roles.sh` (`HASHRIG_POOL_SV2`), fed by
//! a template provider of the tests' own on the regtest node. Without the
//! pool these tests fail, never skip.

mod farm_cost;
mod front;
mod tap;
mod template_provider;
mod translator;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use hashrig::job::gbt::rpc::NodeRpc;
use hashrig::job::stratum::v2::transport::Link;
use serde_json::json;
use std::future::Future;
use stratum_core::noise_sv2::Responder;

use crate::common::{hashrig_command, wait_until};
use crate::solo::{node, payout_address, take_turn};
use template_provider::TemplateProvider;

/// The key pair in SRI's example configurations.
const AUTHORITY_PUBLIC: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
const AUTHORITY_SECRET: &str = "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn secret_bytes() -> [u8; 32] {
    bitcoin::base58::decode_check(AUTHORITY_SECRET)
        .unwrap()
        .try_into()
        .unwrap()
}

fn public_bytes() -> [u8; 32] {
    bitcoin::base58::decode_check(AUTHORITY_PUBLIC).unwrap()[2..]
        .try_into()
        .unwrap()
}

/// Accepts Noise connections as the responder (SRI's example key) on a
/// loopback port, in a thread of its own, until the test process ends;
/// `serve` gets each link and its number, from 0.
pub fn serve_noise<F, Fut>(serve: F) -> u16
where
    F: Fn(Link, usize) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            for connection in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (public, secret) = (public_bytes(), secret_bytes());
                let responder =
                    Responder::from_authority_kp(&public, &secret, Duration::from_secs(3600))
                        .unwrap();
                if let Ok(link) = Link::accept(stream, responder, Duration::from_secs(10)).await {
                    tokio::spawn(serve(link, connection));
                }
            }
        });
    });
    port
}

/// The base58check form of the x-only key of `secret`.
fn authority_key_of(secret: [u8; 32]) -> String {
    let secp = Secp256k1::new();
    let keypair = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&secret).unwrap());
    let mut bytes = vec![1, 0];
    bytes.extend_from_slice(&keypair.x_only_public_key().0.serialize());
    bitcoin::base58::encode_check(&bytes)
}

/// The reference pool, on loopback ports of its own, stopped on drop.
pub struct ReferencePool {
    child: Child,
    pub port: u16,
    pub metrics_port: u16,
    log: PathBuf,
    pub provider: TemplateProvider,
}

impl ReferencePool {
    pub fn start(rpc: NodeRpc, batch: u32) -> ReferencePool {
        let binary = std::env::var("HASHRIG_POOL_SV2").unwrap_or_else(|_| {
            panic!(
                "HASHRIG_POOL_SV2 is not set: run the tests with scripts/test.sh, or first \
                 eval \"$(bash scripts/sv2-roles.sh)\""
            )
        });
        let provider = TemplateProvider::start(rpc);
        let (port, metrics_port) = (free_port(), free_port());
        let dir =
            std::env::temp_dir().join(format!("hashrig-sv2-pool-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("pool.toml");
        std::fs::write(
            &config,
            format!(
                r#"authority_public_key = "{AUTHORITY_PUBLIC}"
authority_secret_key = "{AUTHORITY_SECRET}"
cert_validity_sec = 3600
listen_address = "127.0.0.1:{port}"
coinbase_reward_script = "addr({address})"
server_id = 1
pool_signature = "hashrig test"
shares_per_minute = 60.0
share_batch_size = {batch}
monitoring_address = "127.0.0.1:{metrics_port}"
monitoring_cache_refresh_secs = 1

[template_provider_type.Sv2Tp]
address = "127.0.0.1:{tp}"
"#,
                address = payout_address(),
                tp = provider.port,
            ),
        )
        .unwrap();
        let log = dir.join("pool.log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pool_sv2");
        let pool = ReferencePool {
            child,
            port,
            metrics_port,
            log,
            provider,
        };
        wait_until(
            "the reference pool to listen",
            Duration::from_secs(30),
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        pool
    }

    pub fn url(&self) -> String {
        format!("stratum2+tcp://127.0.0.1:{}/{AUTHORITY_PUBLIC}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sum of a family's samples on the pool's own `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        metric_at(self.metrics_port, name)
    }
}

/// The sum of a family's samples on an SRI role's `/metrics` at `port`
/// (0 when it does not answer).
fn metric_at(port: u16, name: &str) -> f64 {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0.0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Drop for ReferencePool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mine(url: &str, seconds: u32, extra: &[&str]) -> (String, std::process::ExitStatus) {
    let out = hashrig_command()
        .args([
            "mine",
            "--pool",
            url,
            "--user",
            "hashrig.sv2",
            "--backend",
            "cpu",
            "--cpu-threads",
            "1",
            "--duration",
            &seconds.to_string(),
        ])
        .args(extra)
        .env("RUST_LOG", "hashrig=debug")
        .output()
        .expect("run hashrig");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status)
}

#[test]
fn mines_shares_and_blocks_through_the_reference_pool() {
    let _turn = take_turn();
    let node = node();
    let start_height = node.height();
    let pool = ReferencePool::start(node.rpc.clone(), 2);
    let started = Instant::now();
    let (log, status) = mine(&pool.url(), 20, &[]);
    assert!(status.success(), "{log}");
    assert!(log.contains("Noise handshake done"), "{log}");
    assert!(log.contains("extended channel"), "{log}");
    // Opened as the rig started (0 H/s); the first real figure follows, and
    // the pool answers it with a new target (SetTarget).
    let update = log.find("nominal hashrate").expect("no UpdateChannel");
    assert!(
        log[update..].contains("from the next job"),
        "no SetTarget after UpdateChannel:\n{log}"
    );
    let accepted = log.matches("share accepted").count();
    assert!(
        accepted >= 1,
        "no share accepted:\n{log}\npool:\n{}",
        pool.log()
    );
    wait_until(
        "the pool's metrics to count the shares",
        Duration::from_secs(10),
        || pool.metric("sv2_client_shares_accepted_total") >= 1.0,
    );
    // A block: submitted by the pool through the provider, taken by the node.
    let submitted = pool.provider.seen.lock().unwrap().submitted.clone();
    assert!(
        !submitted.is_empty(),
        "no block reached the node:\n{log}\npool:\n{}",
        pool.log()
    );
    // On regtest every share is a block to the pool: after the first on a
    // parent, the rest are side blocks the node calls "inconclusive".
    let taken: Vec<_> = submitted
        .iter()
        .filter(|(_, answer)| answer.is_null())
        .collect();
    assert!(!taken.is_empty(), "the node took no block: {submitted:?}");
    for (hash, answer) in &submitted {
        assert!(
            answer.is_null() || answer == "inconclusive" || answer == "duplicate",
            "submitblock {hash}: {answer}"
        );
        let header = node.call("getblockheader", json!([hash.to_string()]));
        assert!(
            header["height"].as_u64().unwrap() > start_height,
            "{header}"
        );
    }
    assert!(log.contains("BLOCK accepted"), "{log}");
    assert!(node.height() > start_height);
    eprintln!(
        "{} shares accepted, {} blocks in {:?}",
        accepted,
        submitted.len(),
        started.elapsed()
    );
}

#[test]
fn a_wrong_authority_key_is_refused_before_any_share() {
    let _turn = take_turn();
    let node = node();
    let pool = ReferencePool::start(node.rpc.clone(), 1);
    let wrong = authority_key_of([7; 32]);
    let url = format!("stratum2+tcp://127.0.0.1:{}/{wrong}", pool.port);
    let (log, _) = mine(&url, 4, &[]);
    assert!(
        log.contains("not signed by the pinned authority key"),
        "{log}"
    );
    assert!(log.contains(&wrong), "{log}");
    assert!(!log.contains("share accepted"), "{log}");
    assert!(!log.contains("SetupConnection"), "{log}");
    assert_eq!(pool.metric("sv2_client_shares_accepted_total"), 0.0);
}

#[test]
fn a_standard_channel_mines_header_only() {
    let _turn = take_turn();
    let node = node();
    let pool = ReferencePool::start(node.rpc.clone(), 1);
    let (log, status) = mine(&pool.url(), 12, &["--sv2-channel", "standard"]);
    assert!(status.success(), "{log}");
    assert!(log.contains("standard channel"), "{log}");
    assert!(
        log.matches("share accepted").count() >= 1,
        "no share accepted:\n{log}\npool:\n{}",
        pool.log()
    );
    wait_until(
        "the pool's metrics to count the shares",
        Duration::from_secs(10),
        || pool.metric("sv2_client_shares_accepted_total") >= 1.0,
    );
}

/// CloseChannel is followed by a reconnect; a refused extended channel by a
/// standard one; `Reconnect` to the real pool, which is then mined.
#[test]
fn follows_a_closed_channel_a_refusal_and_a_reconnect() {
    let _turn = take_turn();
    let node = node();
    let pool = ReferencePool::start(node.rpc.clone(), 1);
    let (front_port, seen) = front::start(pool.port);
    let url = format!("stratum2+tcp://127.0.0.1:{front_port}/{AUTHORITY_PUBLIC}");
    let (log, status) = mine(&url, 15, &[]);
    assert!(status.success(), "{log}");
    assert!(
        log.contains("the pool closed the channel: maintenance"),
        "{log}"
    );
    assert!(
        log.contains("extended channel refused (unsupported-channel-type)"),
        "{log}"
    );
    assert!(
        log.contains(&format!("reconnecting to 127.0.0.1:{}", pool.port)),
        "{log}"
    );
    assert!(
        log.matches("share accepted").count() >= 1,
        "{log}\npool:\n{}",
        pool.log()
    );
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "{seen:?}");
    assert_eq!(
        seen[0],
        ["SetupConnection", "OpenExtendedMiningChannel"],
        "{seen:?}"
    );
    assert_eq!(
        seen[1],
        [
            "SetupConnection",
            "OpenExtendedMiningChannel",
            "OpenStandardMiningChannel"
        ],
        "{seen:?}"
    );
}

/// Share round trip on loopback, Stratum V1 and V2 side by side: the tests'
/// V1 pool (answers at once) and the reference pool acknowledging every
/// share (`share_batch_size = 1`), alternated. A benchmark, not a test:
///     cargo test --test integration -- --ignored --nocapture share_latency
#[test]
#[ignore = "a benchmark: run it by name"]
fn share_latency_v1_and_v2_side_by_side() {
    let _turn = take_turn();
    let node = node();
    let v2 = ReferencePool::start(node.rpc.clone(), 1);
    let v1 = crate::testpool::TestPool::start(0.001);
    let latencies = |log: &str| -> Vec<f64> {
        log.lines()
            .filter(|l| l.contains("share accepted"))
            .filter_map(|l| l.rsplit(", ").next()?.strip_suffix(" ms)")?.parse().ok())
            .collect()
    };
    let summary = |name: &str, mut ms: Vec<f64>| {
        ms.sort_by(f64::total_cmp);
        assert!(!ms.is_empty(), "{name}: no share accepted");
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        eprintln!(
            "{name}: {} shares, median {:.3} ms, p90 {:.3} ms, max {:.3} ms",
            ms.len(),
            at(0.5),
            at(0.9),
            at(1.0)
        );
    };
    for round in 1..=3 {
        let (log, _) = mine(&v1.url(), 10, &["--min-difficulty", "0.001"]);
        summary(&format!("round {round}, V1 {}", v1.url()), latencies(&log));
        let (log, _) = mine(&v2.url(), 10, &["--min-difficulty", "0.001"]);
        summary(&format!("round {round}, V2 pool_sv2"), latencies(&log));
    }
}
