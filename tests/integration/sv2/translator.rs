//! Rigs behind SRI's translator proxy (`translator_sv2`, installed by
//! `scripts/sv2-roles.sh` as `HASHRIG_TRANSLATOR_SV2`): hashrig speaks
//! Stratum V1 to it, it speaks Stratum V2 to the reference pool. The
//! translator runs the farm's own config file, `packaging/sv2/translator.toml`,
//! with only its ports, upstream, the rigs' hashrate and the aggregation
//! mode changed. Without the binary these tests fail, never skip.

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::tap::{Submit, Tap};
use super::{free_port, metric_at, mine, ReferencePool, AUTHORITY_PUBLIC};
use crate::common::wait_until;
use crate::solo::{node, take_turn};

/// The farm's file, as the README shows it.
const FARM_CONFIG: &str = include_str!("../../../packaging/sv2/translator.toml");

/// The translator in front of `pool`, on loopback ports of its own,
/// stopped on drop.
pub struct Translator {
    child: Child,
    pub port: u16,
    pub metrics_port: u16,
    log: PathBuf,
}

impl Translator {
    /// `hashrate` is each rig's (H/s), for the first difficulty it gets.
    pub fn start(pool: &ReferencePool, aggregate: bool, hashrate: f64) -> Translator {
        let binary = std::env::var("HASHRIG_TRANSLATOR_SV2").unwrap_or_else(|_| {
            panic!(
                "HASHRIG_TRANSLATOR_SV2 is not set: run the tests with scripts/test.sh, or \
                 first eval \"$(bash scripts/sv2-roles.sh)\""
            )
        });
        let (port, metrics_port) = (free_port(), free_port());
        let mut config: toml::Table = toml::from_str(FARM_CONFIG).expect("the farm's file parses");
        config.insert("downstream_address".into(), "127.0.0.1".into());
        config.insert("downstream_port".into(), i64::from(port).into());
        config.insert("aggregate_channels".into(), aggregate.into());
        config.insert(
            "monitoring_address".into(),
            format!("127.0.0.1:{metrics_port}").into(),
        );
        config.insert("monitoring_cache_refresh_secs".into(), 1.into());
        let difficulty = config["downstream_difficulty_config"]
            .as_table_mut()
            .expect("[downstream_difficulty_config]");
        difficulty.insert("min_individual_miner_hashrate".into(), hashrate.into());
        difficulty.insert("shares_per_minute".into(), 30.0.into());
        let upstream = config["upstreams"].as_array_mut().expect("[[upstreams]]")[0]
            .as_table_mut()
            .expect("an upstream");
        upstream.insert("address".into(), "127.0.0.1".into());
        upstream.insert("port".into(), i64::from(pool.port).into());
        assert_eq!(
            upstream["authority_pubkey"].as_str(),
            Some(AUTHORITY_PUBLIC)
        );
        let dir =
            std::env::temp_dir().join(format!("hashrig-translator-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("translator.toml");
        std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
        let log = dir.join("translator.log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&file)
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start translator_sv2");
        let translator = Translator {
            child,
            port,
            metrics_port,
            log,
        };
        wait_until("the translator to listen", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        translator
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sum of a family's samples on the translator's own `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        metric_at(self.metrics_port, name)
    }
}

impl Drop for Translator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CPU rig of one thread, for the translator's first difficulty: low, so
/// that shares come every few seconds on any machine.
const RIG_HASHRATE: f64 = 500_000.0;

/// Three rigs at once behind the translator: each mines, each gets shares
/// accepted, and the wire shows their work disjoint.
fn three_rigs(aggregate: bool) {
    let _turn = take_turn();
    let node = node();
    let pool = ReferencePool::start(node.rpc.clone(), 1);
    let translator = Translator::start(&pool, aggregate, RIG_HASHRATE);
    let taps: Vec<Tap> = (0..3).map(|_| Tap::start(translator.port)).collect();
    let rigs: Vec<_> = taps
        .iter()
        .map(|tap| {
            let url = tap.url();
            std::thread::spawn(move || mine(&url, 25, &["--min-difficulty", "0.00001"]))
        })
        .collect();
    // While they mine: the translator serves three V1 rigs, and the pool
    // sees one channel for them all, or one per rig.
    wait_until(
        "the translator to serve three rigs",
        Duration::from_secs(20),
        || translator.metric("sv1_clients_total") >= 3.0,
    );
    let channels = if aggregate { 1.0 } else { 3.0 };
    wait_until(
        "the pool to see the translator's channels",
        Duration::from_secs(10),
        || pool.metric("sv2_client_channels") == channels,
    );
    let logs: Vec<(String, std::process::ExitStatus)> =
        rigs.into_iter().map(|r| r.join().unwrap()).collect();
    let context = || format!("translator:\n{}\npool:\n{}", translator.log(), pool.log());
    for (i, (log, status)) in logs.iter().enumerate() {
        assert!(status.success(), "rig {i}: {log}\n{}", context());
        assert!(
            log.contains("share accepted"),
            "rig {i}: no share accepted:\n{log}\n{}",
            context()
        );
    }
    // Each rig's own extranonce prefix, as the wire gave it.
    let mut prefixes = HashSet::new();
    let mut submits: Vec<Submit> = Vec::new();
    for (i, tap) in taps.iter().enumerate() {
        let wire = tap.wire.lock().unwrap();
        assert!(
            wire.answers.0 >= 1,
            "rig {i}: no share accepted on the wire"
        );
        assert!(wire.version_rolling, "rig {i}: no version rolling granted");
        for given in wire.extranonce1.values().flatten() {
            assert!(
                prefixes.insert(given.clone()),
                "extranonce1 {given} given to two rigs"
            );
        }
        submits.extend(wire.submits.iter().cloned());
    }
    judge(&submits);
    wait_until(
        "the pool's metrics to count shares",
        Duration::from_secs(15),
        || pool.metric("sv2_client_shares_accepted_total") >= 1.0,
    );
    let refused = |stale: bool| {
        submits
            .iter()
            .filter(|s| matches!(s.answer, Some(Err(_))) && s.stale == stale)
            .count()
    };
    eprintln!(
        "translator (aggregate_channels = {aggregate}): {} submits from 3 rigs, {} accepted on the wire, {} refused as stale, {} regtest blocks under the share target refused; pool counted {}",
        submits.len(),
        taps.iter().map(|t| t.wire.lock().unwrap().answers.0).sum::<u64>(),
        refused(true),
        refused(false),
        pool.metric("sv2_client_shares_accepted_total")
    );
}

/// Every submit, rebuilt from the wire: no two the same work, each of a
/// job the rig was sent, each accepted one at the difficulty it was given.
/// A refused one must be stale (sent as the work changed) or what the
/// translator cannot take: on regtest a
/// hash can meet the network target (a block, which hashrig always sends)
/// and not the share target, and the translator checks shares against its
/// share target only. On mainnet the network target is always the harder.
fn judge(submits: &[Submit]) {
    let mut seen = HashSet::new();
    for submit in submits {
        let work = (
            submit.extranonce.clone(),
            submit.ntime.clone(),
            submit.nonce.clone(),
            submit.version_bits.clone(),
        );
        assert!(
            seen.insert(work),
            "the same work submitted twice: {submit:?}"
        );
        let difficulty = submit
            .difficulty
            .unwrap_or_else(|| panic!("a submit of a job never sent: {submit:?}"));
        match &submit.answer {
            Some(Ok(())) => assert!(
                difficulty >= submit.share_difficulty * 0.999_999 || submit.is_block,
                "accepted below its difficulty: {submit:?}"
            ),
            Some(Err(_)) => assert!(
                submit.stale || (submit.is_block && difficulty < submit.share_difficulty),
                "refused, neither stale nor a regtest block under the share target: {submit:?}"
            ),
            // The run ended before the answer came.
            None => {}
        }
    }
}

#[test]
fn three_rigs_share_one_aggregated_channel() {
    three_rigs(true);
}

#[test]
fn three_rigs_each_on_a_channel_of_their_own() {
    three_rigs(false);
}
