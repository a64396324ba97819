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
use std::time::{Duration, Instant};

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
    binary: String,
    config: PathBuf,
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
        difficulty.insert("shares_per_minute".into(), SHARES_PER_MINUTE.into());
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
        let child = spawn(&binary, &file, &log);
        let translator = Translator {
            child,
            binary,
            config: file,
            port,
            metrics_port,
            log,
        };
        translator.wait_listening();
        translator
    }

    fn wait_listening(&self) {
        wait_until("the translator to listen", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// Stops the translator, leaves it down for `down`, and starts it
    /// again on the same ports; returns when it listens again.
    pub fn restart(&mut self, down: Duration) -> Instant {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = spawn(&self.binary, &self.config, &self.log);
        self.wait_listening();
        Instant::now()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The translator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The sum of a family's samples on the translator's own `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        metric_at(self.metrics_port, name)
    }
}

fn spawn(binary: &str, config: &PathBuf, log: &PathBuf) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(binary)
        .arg("-c")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("start translator_sv2")
}

impl Drop for Translator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The translator's vardiff target in the tests.
const SHARES_PER_MINUTE: f64 = 30.0;

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
    let submits = every_submit(&taps);
    judge(&submits);
    // On regtest every share the translator takes is a block to the pool,
    // so it goes up whatever the channel's target: the pool's own count
    // must hold (nearly) all of them; the last may still be in flight
    // when the rigs stop.
    let on_wire: u64 = taps.iter().map(|t| t.wire.lock().unwrap().answers.0).sum();
    wait_until(
        "the pool's metrics to count the rigs' shares",
        Duration::from_secs(15),
        || pool.metric("sv2_client_shares_accepted_total") >= 0.95 * on_wire as f64,
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
        on_wire,
        refused(true),
        refused(false),
        pool.metric("sv2_client_shares_accepted_total")
    );
}

/// Every rig's submits, from the taps, once each rig is seen to have had
/// shares accepted, version rolling granted and an extranonce prefix no
/// other rig was given.
fn every_submit(taps: &[Tap]) -> Vec<Submit> {
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
    submits
}

/// Every submit, rebuilt from the wire: no two the same work, each of a
/// job the rig was sent, each at the difficulty its job was sent with (a
/// new difficulty applies from the next job) unless it is a block, and each
/// accepted one at the difficulty the translator holds. A refused one must
/// be stale (its job replaced by a clean one as it was found, or as it
/// crossed the clean job on the wire) or what the
/// translator cannot take: on regtest a hash can meet the network target
/// (a block, which hashrig always sends) and not the share target, and the
/// translator checks a share against its share target only. On mainnet the
/// network target is always the harder.
fn judge(submits: &[Submit]) {
    let mut seen = HashSet::new();
    let at_least = |difficulty: f64, wanted: f64| difficulty >= wanted * 0.999_999;
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
        assert!(
            submit.is_block || at_least(difficulty, submit.job_difficulty),
            "below its job's difficulty: {submit:?}"
        );
        match &submit.answer {
            Some(Ok(())) => assert!(
                at_least(
                    difficulty,
                    submit.job_difficulty.min(submit.share_difficulty)
                ),
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

/// How many times too slow the translator is told the rig is in the
/// vardiff test: enough that vardiff must move it up (SRI's classic vardiff
/// moves at 100 % off after a minute), under its 1000 % at which it would
/// only triple the hashrate a minute (and take minutes to settle), with
/// room for the machine's load to change the rig's speed 2.5-fold.
const UNDERSTATED: f64 = 4.0;

/// One CPU thread's hashrate on this machine now (`hashrig bench`), H/s.
fn one_thread_hashrate() -> f64 {
    let out = crate::common::hashrig_command()
        .args(["bench", "--backend", "cpu", "--cpu-threads", "1"])
        .args(["--seconds", "3", "--json", "--quiet"])
        .output()
        .expect("run hashrig bench");
    assert!(out.status.success(), "{out:?}");
    let line: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    line["hashrate"].as_f64().expect("a hashrate")
}

/// The translator's vardiff (every 60 s, toward `shares_per_minute`) on one
/// rig [`UNDERSTATED`] times faster than the translator was told: vardiff
/// moves its difficulty up, hashrig takes every difficulty it is given
/// (`judge`), and from vardiff's first move to the end its accepted shares
/// per minute are within a factor of 3 of the target, whatever vardiff did
/// after (a loaded machine's speed changes, and vardiff follows it).
#[test]
fn one_rig_follows_the_translators_difficulty() {
    let _turn = take_turn();
    let node = node();
    let pool = ReferencePool::start(node.rpc.clone(), 1);
    let hashrate = one_thread_hashrate();
    let translator = Translator::start(&pool, true, hashrate / UNDERSTATED);
    let tap = Tap::start(translator.port);
    let started = Instant::now();
    let (log, status) = mine(&tap.url(), 240, &["--min-difficulty", "0.00001"]);
    let ended = Instant::now();
    assert!(status.success(), "{log}");
    let wire = tap.wire.lock().unwrap();
    judge(&wire.submits);
    let timeline: Vec<String> = wire
        .difficulties
        .iter()
        .map(|(at, d)| format!("{:.0} s: {d:.6}", at.duration_since(started).as_secs_f64()))
        .collect();
    let context = format!("{timeline:?}, rig measured at {hashrate:.0} H/s");
    let (first, moved) = match wire.difficulties.as_slice() {
        [first, moved, ..] => (first.1, moved),
        _ => panic!("vardiff never moved: {context}"),
    };
    assert!(moved.1 > first, "vardiff moved down: {context}");
    // From vardiff's first move (and the job that follows it) to the end.
    let settled = moved.0 + Duration::from_secs(2);
    let window = ended.duration_since(settled);
    assert!(
        window >= Duration::from_secs(100),
        "vardiff moved late: {context}"
    );
    let accepted = wire
        .submits
        .iter()
        .filter(|s| s.at >= settled && matches!(s.answer, Some(Ok(()))))
        .count();
    let per_minute = accepted as f64 * 60.0 / window.as_secs_f64();
    eprintln!(
        "vardiff: {context}; then {per_minute:.1} shares accepted a minute over {window:.0?} (target {SHARES_PER_MINUTE})"
    );
    assert!(
        (SHARES_PER_MINUTE / 3.0..=SHARES_PER_MINUTE * 3.0).contains(&per_minute),
        "{per_minute:.1} shares a minute, target {SHARES_PER_MINUTE}: {context}"
    );
}

/// How soon after the translator listens again every rig must have a share
/// accepted: hashrig's backoff doubles from 1 s, so after a 5 s outage its
/// next try is at most about 5 s away, then a job and a share.
const BACK_WITHIN: Duration = Duration::from_secs(20);

/// The translator restarted mid-run: every rig reconnects (with backoff),
/// mines again within [`BACK_WITHIN`], and every block it found, the
/// outage included, is in its found-blocks journal.
#[test]
fn rigs_come_back_after_the_translator_restarts() {
    let _turn = take_turn();
    let node = node();
    let pool = ReferencePool::start(node.rpc.clone(), 1);
    let mut translator = Translator::start(&pool, true, RIG_HASHRATE);
    let taps: Vec<Tap> = (0..2).map(|_| Tap::start(translator.port)).collect();
    let dir = std::env::temp_dir().join(format!("hashrig-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journals: Vec<PathBuf> = (0..2)
        .map(|i| dir.join(format!("found-{i}.jsonl")))
        .collect();
    let rigs: Vec<_> = taps
        .iter()
        .zip(&journals)
        .map(|(tap, journal)| {
            let (url, journal) = (tap.url(), journal.to_str().unwrap().to_owned());
            std::thread::spawn(move || {
                mine(
                    &url,
                    45,
                    &["--min-difficulty", "0.00001", "--found-blocks", &journal],
                )
            })
        })
        .collect();
    let accepted = |tap: &Tap| tap.wire.lock().unwrap().answers.0;
    wait_until("every rig to mine", Duration::from_secs(30), || {
        taps.iter().all(|t| accepted(t) >= 1)
    });
    let went_down = Instant::now();
    let back = translator.restart(Duration::from_secs(5));
    let logs: Vec<(String, std::process::ExitStatus)> =
        rigs.into_iter().map(|r| r.join().unwrap()).collect();
    for (i, ((log, status), tap)) in logs.iter().zip(&taps).enumerate() {
        assert!(status.success(), "rig {i}: {log}");
        let wire = tap.wire.lock().unwrap();
        judge(&wire.submits);
        let first_after = wire
            .submits
            .iter()
            .filter(|s| s.at > back && matches!(s.answer, Some(Ok(()))))
            .map(|s| s.at.duration_since(back))
            .min()
            .unwrap_or_else(|| panic!("rig {i}: no share accepted after the restart:\n{log}"));
        assert!(
            first_after <= BACK_WITHIN,
            "rig {i}: first share {first_after:?} after the translator came back"
        );
        // Every block the rig reported is in its journal.
        let reported = log.matches("BLOCK found").count();
        let journal = std::fs::read_to_string(&journals[i]).unwrap_or_default();
        let journaled = journal
            .lines()
            .filter(|l| l.contains("\"found_at\""))
            .count();
        assert_eq!(
            reported, journaled,
            "rig {i}: blocks reported and journaled"
        );
        let during = wire
            .submits
            .iter()
            .filter(|s| s.at > went_down && s.at < back)
            .count();
        eprintln!(
            "restart: rig {i} mining again {first_after:.1?} after the translator came back ({:.1?} down); {reported} blocks found and journaled, {during} submits during the outage",
            back.duration_since(went_down)
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
