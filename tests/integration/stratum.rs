//! Pool mining end to end: the Stratum client and real CPU devices against
//! the loopback pool of `testpool`, which rebuilds and checks every share.
//! No scenario may produce a single invalid share.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hashrig::backend::Device;
use hashrig::found::journal::FoundBlockLog;
use hashrig::job::source::JobSourceError;
use hashrig::job::stratum::{PoolConfig, StratumOptions, StratumSource, StratumTimeouts};
use hashrig::scheduler::{Scheduler, SchedulerConfig};
use hashrig::shutdown::Shutdown;
use hashrig::stats::{Snapshot, Stats};
use hashrig::work::WorkSource;
use serde_json::json;

use crate::testpool::TestPool;

pub const WAIT: Duration = Duration::from_secs(60);

/// A pool share difficulty a single CPU thread meets a few times a second.
pub const EASY: f64 = 0.0003;

pub struct Miner {
    pub stats: Arc<Stats>,
    shutdown: Shutdown,
    scheduler: Option<Scheduler>,
    source: Option<JoinHandle<Result<(), JobSourceError>>>,
}

impl Miner {
    pub fn start(options: StratumOptions) -> Miner {
        Self::start_with(options, None)
    }

    /// With blocks written to `found_blocks`.
    fn start_with(options: StratumOptions, found_blocks: Option<Arc<FoundBlockLog>>) -> Miner {
        // HASHRIG_TEST_LOG=debug shows what the client did.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("HASHRIG_TEST_LOG"))
            .try_init();
        let stats = Arc::new(
            Stats::new(vec!["cpu0".into()])
                .with_pools(options.pools.iter().map(|p| p.url.to_string()).collect()),
        );
        let shutdown = Shutdown::new();
        let devices: Vec<Box<dyn Device>> = vec![Box::new(crate::common::cpu_device(1))];
        let (scheduler, source) = Scheduler::start_with_source(
            Box::new(StratumSource::new(options)),
            devices,
            Arc::new(WorkSource::new()),
            stats.clone(),
            shutdown.clone(),
            SchedulerConfig {
                batch_time: Duration::from_millis(50),
                found_blocks,
                ..SchedulerConfig::default()
            },
        );
        Miner {
            stats,
            shutdown,
            scheduler: Some(scheduler),
            source: Some(source),
        }
    }

    /// Stops like the CLI does: devices first, then the source, which
    /// submits what is left and waits for the answers.
    pub fn stop(&mut self) -> Snapshot {
        self.shutdown.trigger();
        if let Some(s) = self.scheduler.take() {
            s.join();
        }
        if let Some(source) = self.source.take() {
            source
                .join()
                .expect("source thread")
                .expect("source result");
        }
        self.stats.snapshot()
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(s) = self.scheduler.take() {
            s.join();
        }
    }
}

fn pool_config(pool: &TestPool) -> PoolConfig {
    PoolConfig {
        url: pool.url().parse().unwrap(),
        user: "wallet.rig1".into(),
        password: "x".into(),
        cert_fingerprint: pool.fingerprint,
    }
}

pub fn options(pools: &[&TestPool]) -> StratumOptions {
    let mut options = StratumOptions::new(pools.iter().map(|p| pool_config(p)).collect());
    options.timeouts = StratumTimeouts {
        connect: Duration::from_secs(3),
        silence: Duration::from_secs(60),
        failback_after: Duration::from_millis(1500),
        backoff_max: Duration::from_millis(500),
        optional_answer: Duration::from_secs(1),
        ..StratumTimeouts::default()
    };
    options
}

pub fn no_invalid(pool: &TestPool) {
    let invalid = pool.tally(|t| t.invalid.clone());
    assert!(
        invalid.is_empty(),
        "the pool got invalid shares: {invalid:?}"
    );
}

/// No invalid share, except copies of shares in flight at the
/// reconnect (`client.reconnect`, or the miner hanging up): the pool took one as hashrig left, its answer was
/// lost with the connection, and hashrig sent it again on the next one
/// (nothing found is lost, `stratum/carry.rs`); the pool calls the second
/// copy a duplicate. A few at most: a share or two are in flight at once.
pub fn only_resends_refused(pool: &TestPool) {
    let invalid = pool.tally(|t| t.invalid.clone());
    assert!(
        invalid.len() <= 3 && invalid.iter().all(|why| why == "duplicate share"),
        "the pool got invalid shares: {invalid:?}"
    );
}

#[test]
fn mines_valid_shares_and_counts_them_like_the_pool() {
    let pool = TestPool::start(EASY);
    let mut opts = options(&[&pool]);
    opts.suggest_difficulty = Some(EASY);
    let mut miner = Miner::start(opts);
    pool.wait_for("5 accepted shares", WAIT, |t| t.accepted.len() >= 5);
    let snap = miner.stop();
    no_invalid(&pool);
    let (accepted, subscribes, configures, users, suggested) = pool.tally(|t| {
        (
            t.accepted.len() as u64,
            t.subscribes.clone(),
            t.configures,
            t.users.clone(),
            t.suggested.clone(),
        )
    });
    assert_eq!(snap.devices[0].accepted, accepted, "miner and pool agree");
    assert_eq!(snap.pools[0].accepted, accepted);
    assert!(snap.pools[0].effective_hashrate > 0.0);
    assert_eq!(
        subscribes[0],
        json!([format!("hashrig/{}", env!("CARGO_PKG_VERSION"))])
    );
    assert_eq!(configures, 1);
    assert_eq!(users, vec!["wallet.rig1".to_string()]);
    assert_eq!(suggested, vec![EASY]);
    // Version rolling was granted: every submit carries the sixth field.
    assert!(pool.tally(|t| t.accepted.iter().all(|a| a.version_bits.is_some())));
}

#[test]
fn a_difficulty_change_applies_from_the_next_job() {
    let pool = TestPool::start(EASY * 8.0);
    let _miner = Miner::start(options(&[&pool]));
    pool.wait_for("a share at the first difficulty", WAIT, |t| {
        !t.accepted.is_empty()
    });
    // Easier from now on, but only for jobs sent after this: a miner that
    // applied it to the current job would send shares the pool rejects.
    pool.set_difficulty(EASY);
    // Shares of the current job after the change must still meet the old
    // difficulty.
    pool.wait_for_more_shares("shares of the current job", 2, WAIT);
    no_invalid(&pool);
    pool.new_job(false);
    pool.wait_for("shares at the new difficulty", WAIT, |t| {
        t.accepted
            .iter()
            .filter(|a| a.difficulty < EASY * 8.0)
            .count()
            >= 2
    });
    no_invalid(&pool);
}

#[test]
fn extranonce_changes_clean_jobs_and_reused_job_ids() {
    let pool = TestPool::start(EASY);
    let _miner = Miner::start(options(&[&pool]));
    pool.wait_for("first shares", WAIT, |t| t.accepted.len() >= 2);
    pool.change_extranonce();
    pool.new_job(false);
    pool.wait_for_more_shares("shares with the new extranonce1", 2, WAIT);
    no_invalid(&pool);
    // Clean jobs in quick succession, reusing job ids: a share of an old job
    // sent under a reused id would rebuild to a wrong header.
    pool.set_reuse_ids(true);
    for _ in 0..8 {
        pool.new_job(true);
        std::thread::sleep(Duration::from_millis(250));
    }
    pool.wait_for_more_shares("shares after the clean jobs", 2, WAIT);
    no_invalid(&pool);
}

#[test]
fn version_rolling_mask_changes_and_opt_out() {
    let pool = TestPool::start(EASY);
    let miner = Miner::start(options(&[&pool]));
    pool.wait_for("first shares", WAIT, |t| !t.accepted.is_empty());
    pool.set_version_mask(0x0000_6000);
    pool.new_job(false);
    pool.wait_for_more_shares("shares under the narrower mask", 2, WAIT);
    no_invalid(&pool);
    drop(miner);

    let pool = TestPool::start(EASY);
    let mut opts = options(&[&pool]);
    opts.version_rolling = false;
    let _miner = Miner::start(opts);
    pool.wait_for("shares without version rolling", WAIT, |t| {
        t.accepted.len() >= 2
    });
    assert_eq!(pool.tally(|t| t.configures), 0);
    assert!(pool.tally(|t| t.accepted.iter().all(|a| a.version_bits.is_none())));
}

#[test]
fn pool_restart_resumes_the_session_and_submits_what_was_found_meanwhile() {
    let pool = TestPool::start(EASY);
    let miner = Miner::start(options(&[&pool]));
    pool.wait_for("first shares", WAIT, |t| t.accepted.len() >= 2);
    let old_job = pool.current_job_id();
    pool.set_down(true);
    // Down long enough for the device to find shares (eight expected;
    // none in 1 of 3000 runs), then back with a new job on the same block.
    let nonces = || miner.stats.snapshot().devices[0].nonces;
    let down_from = nonces();
    let needed = (8.0 * EASY * 4_294_967_296.0) as u64;
    let deadline = std::time::Instant::now() + WAIT;
    while nonces() < down_from + needed {
        assert!(
            std::time::Instant::now() < deadline,
            "the device stopped while the pool was down"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    pool.new_job(false);
    let back = std::time::Instant::now();
    pool.set_down(false);
    pool.wait_for(
        "a share found while the pool was down, accepted after",
        WAIT,
        |t| {
            t.accepted
                .iter()
                .any(|a| a.at > back && a.job_id == old_job)
        },
    );
    pool.wait_for_more_shares("shares after the restart", 2, WAIT);
    no_invalid(&pool);
    let subscribes = pool.tally(|t| t.subscribes.clone());
    assert!(subscribes.len() >= 2);
    // The reconnect asked to resume the first session (its extranonce1).
    assert_eq!(subscribes.last().unwrap()[1], json!("s08000001"));
}

#[test]
fn a_silent_pool_is_reconnected() {
    let pool = TestPool::start(EASY);
    let mut opts = options(&[&pool]);
    opts.timeouts.silence = Duration::from_millis(1500);
    let _miner = Miner::start(opts);
    pool.wait_for("first shares", WAIT, |t| !t.accepted.is_empty());
    pool.set_silent(true);
    pool.wait_for("reconnects to the silent pool", WAIT, |t| {
        t.subscribes.len() >= 3
    });
    pool.set_silent(false);
    pool.wait_for_more_shares("shares once the pool talks again", 1, WAIT);
    no_invalid(&pool);
}

#[test]
fn fails_over_and_back() {
    let first = TestPool::start(EASY);
    let second = TestPool::start(EASY);
    let miner = Miner::start(options(&[&first, &second]));
    first.wait_for("shares on the first pool", WAIT, |t| t.accepted.len() >= 2);
    first.set_down(true);
    second.wait_for("shares on the second pool", WAIT, |t| t.accepted.len() >= 2);
    assert!(miner.stats.snapshot().pools[1].active);
    first.set_down(false);
    first.wait_for_more_shares("shares on the first pool again", 2, WAIT);
    assert!(miner.stats.snapshot().pools[0].active);
    no_invalid(&first);
    no_invalid(&second);
}

#[test]
fn rejected_shares_are_counted_with_the_reason() {
    let pool = TestPool::start(EASY);
    pool.set_reject_all(true);
    let mut miner = Miner::start(options(&[&pool]));
    pool.wait_for("rejected shares", WAIT, |t| t.rejected >= 2);
    let snap = miner.stop();
    no_invalid(&pool);
    assert!(snap.devices[0].rejected >= 2);
    assert_eq!(snap.devices[0].accepted, 0);
    assert!(snap.pools[0]
        .last_reject
        .as_deref()
        .is_some_and(|r| r.contains("Low difficulty")));
}

#[test]
fn a_block_is_submitted_below_the_share_difficulty_once_per_parent_and_saved_first() {
    // Share difficulty out of reach; block target (nBits 0x1e07fff8,
    // difficulty ~1/2048) within it, as on a test network: a CPU thread
    // meets it every second or so, many times per parent.
    let pool = TestPool::start(1e9);
    pool.set_block_bits(0x1e07_fff8);
    pool.new_job(true);
    let dir = std::env::temp_dir().join(format!("hashrig-stratum-blocks-{}", std::process::id()));
    let path = dir.join("found.jsonl");
    let log = Arc::new(FoundBlockLog::open(&path).unwrap());
    let mut miner = Miner::start_with(options(&[&pool]), Some(log));
    pool.wait_for("a block", WAIT, |t| !t.accepted.is_empty());
    // Long enough for several more hashes to meet the block target on the
    // same parent: none of them is submitted.
    let nonces = || miner.stats.snapshot().devices[0].nonces;
    let from = nonces();
    // A block every 2^32 / 2048 = 2^21 hashes.
    crate::common::wait_until("4 blocks' worth of hashes", WAIT, || {
        nonces() > from + 4 * (1 << 21)
    });
    assert_eq!(pool.accepted(), 1, "one block per parent");
    // A new parent: a new block.
    pool.new_job(true);
    pool.wait_for("a block on the next parent", WAIT, |t| {
        t.accepted.len() >= 2
    });
    let snap = miner.stop();
    no_invalid(&pool);
    let accepted = pool.tally(|t| t.accepted.clone());
    assert!(accepted.iter().all(|a| a.is_block));
    assert_eq!(accepted.len(), 2, "one block per parent");
    assert_ne!(
        accepted[0].header.prev_blockhash,
        accepted[1].header.prev_blockhash
    );
    // Counted as blocks, not shares.
    assert_eq!(snap.devices[0].blocks, 2);
    assert_eq!(snap.devices[0].accepted, 0);
    assert_eq!(snap.pools[0].blocks_accepted, 2);
    let saved: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found: Vec<&serde_json::Value> =
        saved.iter().filter(|s| s.get("header").is_some()).collect();
    assert_eq!(found.len(), 2, "one record per block: {saved:?}");
    for block in &accepted {
        let hash = block.header.block_hash().to_string();
        assert!(
            saved.iter().any(|s| s["hash"] == json!(hash)
                && s["header"] == json!(hex::encode(bitcoin::consensus::serialize(&block.header)))),
            "block {hash} not in the found-blocks file"
        );
        assert!(
            saved
                .iter()
                .any(|s| s["hash"] == json!(hash) && s["result"] == json!("accepted")),
            "the pool's answer for {hash} not in the found-blocks file"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_input_from_the_pool_is_survived() {
    let pool = TestPool::start(EASY);
    let miner = Miner::start(options(&[&pool]));
    pool.wait_for("first shares", WAIT, |t| !t.accepted.is_empty());
    let notify = |params: serde_json::Value| {
        json!({"id": null, "method": "mining.notify", "params": params}).to_string()
    };
    let good = ["ff", &"00".repeat(32), "01", "02"];
    let bad_lines = [
        "this is not json".to_string(),
        "{\"id\": 1}".to_string(),
        "[1, 2, 3]".to_string(),
        notify(json!([
            good[0],
            "00",
            good[2],
            good[3],
            [],
            "20000000",
            "1d00ffff",
            "6553f100",
            true
        ])),
        notify(json!([
            good[0],
            good[1],
            "zz",
            good[3],
            [],
            "20000000",
            "1d00ffff",
            "6553f100",
            true
        ])),
        notify(json!([
            good[0],
            good[1],
            good[2],
            good[3],
            vec!["00".repeat(32); 40],
            "20000000",
            "1d00ffff",
            "6553f100",
            true
        ])),
        notify(json!([
            good[0],
            good[1],
            good[2],
            good[3],
            [],
            536870912,
            "1d00ffff",
            "6553f100",
            true
        ])),
        notify(json!([
            good[0],
            good[1],
            good[2],
            good[3],
            [],
            "20000000",
            "1d00ffff",
            "6553f100",
            "yes"
        ])),
        json!({"id": null, "method": "mining.set_difficulty", "params": ["abc"]}).to_string(),
        json!({"id": null, "method": "mining.set_difficulty", "params": [-1]}).to_string(),
        json!({"id": null, "method": "mining.set_extranonce", "params": ["abcd", 4096]})
            .to_string(),
        json!({"id": null, "method": "client.reconnect", "params": ["localhost", 99999, 0]})
            .to_string(),
        json!({"id": 12345, "result": true, "error": null}).to_string(),
    ];
    for line in &bad_lines {
        pool.send_raw(line);
    }
    // Sent after the garbage on the same connection, so read after it.
    pool.new_job(false);
    pool.wait_for_more_shares("shares after the garbage", 2, WAIT);
    no_invalid(&pool);
    assert_eq!(
        pool.tally(|t| t.subscribes.len()),
        1,
        "no reconnect was needed"
    );
    let bad_messages = miner.stats.snapshot().pools[0].bad_messages;
    assert!(bad_messages >= 5, "counted {bad_messages} bad messages");
    // A line past the bound is one the miner will not buffer: it hangs up,
    // once, and mines on.
    pool.send_raw(&"a".repeat(600 * 1024));
    pool.wait_for("one reconnect", WAIT, |t| t.subscribes.len() == 2);
    pool.wait_for_more_shares("shares after the reconnect", 2, WAIT);
    only_resends_refused(&pool);
    assert_eq!(pool.tally(|t| t.subscribes.len()), 2);
}

#[test]
fn redirects_stay_on_the_host_and_get_version_is_answered() {
    let pool = TestPool::start(EASY);
    let _miner = Miner::start(options(&[&pool]));
    pool.wait_for("first shares", WAIT, |t| !t.accepted.is_empty());
    pool.send_raw(&json!({"id": 77, "method": "client.get_version", "params": []}).to_string());
    pool.wait_for("the version reply", WAIT, |t| {
        t.replies.iter().any(|r| {
            r["id"] == json!(77)
                && r["result"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("hashrig/"))
        })
    });
    // Told to go elsewhere, without --allow-redirect it reconnects here.
    pool.send_raw(
        &json!({"id": null, "method": "client.reconnect", "params": ["pool.invalid", pool.addr.port(), 0]})
            .to_string(),
    );
    pool.wait_for("a reconnect to the same host", WAIT, |t| {
        t.subscribes.len() >= 2
    });
    pool.wait_for_more_shares("shares after the reconnect", 1, WAIT);
    only_resends_refused(&pool);
}

#[test]
fn tls_pool_with_a_pinned_certificate() {
    let pool = TestPool::start_tls(EASY);
    let _miner = Miner::start(options(&[&pool]));
    pool.wait_for("shares over TLS", WAIT, |t| t.accepted.len() >= 2);
    no_invalid(&pool);

    let other = TestPool::start_tls(EASY);
    let mut opts = options(&[&other]);
    opts.pools[0].cert_fingerprint = Some([0x42; 32]);
    let wrong = Miner::start(opts);
    // The miner says why it gave up on the pool, and tried again: events,
    // not a quiet interval, show the handshake was stopped each time.
    crate::common::wait_until("the pin mismatch, twice", WAIT, || {
        let refused = wrong.stats.snapshot().pools[0]
            .last_error
            .as_ref()
            .is_some_and(|e| e.contains("is not the pinned"));
        refused && other.tally(|t| t.connections >= 2)
    });
    assert!(
        other.tally(|t| t.subscribes.is_empty()),
        "a wrong certificate must stop the handshake"
    );
}
