//! Pools as they are in the field, from the outside: ckpool dropping what
//! comes before a subscription, pools refusing or hanging on BIP 310's
//! `mining.configure` or closing on other optional requests, and a regtest
//! pool whose block target is easier than its shares. The miner must mine
//! within seconds, leave out what the pool does not take (and keep leaving
//! it out), and submit a block-only hash once per parent.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::stratum::{no_invalid, only_resends_refused, options, Miner, EASY, WAIT};
use crate::testpool::{Quirk, TestPool};

/// A pool that does not take `left_out` the way `quirk` says: the miner
/// mines within seconds, reconnecting at most once, and never sends it to
/// that pool again (here: after the pool redirects it to itself).
fn mines_without(quirk: Quirk, left_out: &str, reconnects: usize) {
    let pool = TestPool::start(EASY);
    pool.set_quirk(quirk);
    let mut opts = options(&[&pool]);
    opts.suggest_difficulty = Some(EASY);
    let started = Instant::now();
    let miner = Miner::start(opts);
    pool.wait_for("shares", WAIT, |t| t.accepted.len() >= 2);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "{quirk:?}: first shares after {took:?}"
    );
    assert_eq!(
        pool.tally(|t| t.count(left_out)),
        1,
        "{quirk:?}: {left_out} sent once"
    );
    assert_eq!(
        pool.tally(|t| t.connections),
        1 + reconnects,
        "{quirk:?}: connections"
    );
    let subscribes = pool.tally(|t| t.subscribes.len());
    pool.send_raw(
        &json!({"id": null, "method": "client.reconnect", "params": ["localhost", pool.addr.port(), 0]})
            .to_string(),
    );
    pool.wait_for("the reconnect", WAIT, |t| t.subscribes.len() > subscribes);
    pool.wait_for_more_shares("shares after the reconnect", 1, WAIT);
    assert_eq!(
        pool.tally(|t| t.count(left_out)),
        1,
        "{quirk:?}: {left_out} is left out for this pool"
    );
    only_resends_refused(&pool);
    let snap = miner.stats.snapshot();
    assert!(snap.pools[0].accepted >= 2);
}

#[test]
fn a_pool_dropping_everything_before_subscribe_is_mined_without_configure() {
    // ckpool: the configure that comes first closes the connection.
    mines_without(Quirk::DropsBeforeSubscribe, "mining.configure", 1);
}

#[test]
fn a_pool_refusing_configure_is_mined_without_it() {
    mines_without(Quirk::RefusesConfigure, "mining.configure", 0);
}

#[test]
fn a_pool_hanging_on_configure_is_mined_without_it() {
    mines_without(Quirk::HangsOnConfigure, "mining.configure", 1);
}

#[test]
fn pools_dropping_other_optional_requests_are_mined_without_them() {
    mines_without(
        Quirk::DropsOnSuggestDifficulty,
        "mining.suggest_difficulty",
        1,
    );
    mines_without(
        Quirk::DropsOnExtranonceSubscribe,
        "mining.extranonce.subscribe",
        1,
    );
}

#[test]
fn a_regtest_pool_gets_its_shares_and_one_block_only_submission_per_parent() {
    // Regtest's nBits: every other hash meets the block target, far easier
    // than the share difficulty.
    let pool = TestPool::start(EASY);
    pool.set_block_bits(0x207f_ffff);
    pool.new_job(true);
    let mut miner = Miner::start(options(&[&pool]));
    let shares =
        |t: &crate::testpool::Tally| t.accepted.iter().filter(|a| a.difficulty >= EASY).count();
    pool.wait_for("shares on the first parent", WAIT, |t| shares(t) >= 3);
    pool.new_job(true);
    let before = pool.tally(shares);
    pool.wait_for("shares on the next parent", WAIT, |t| {
        shares(t) >= before + 3
    });
    let snap = miner.stop();
    no_invalid(&pool);
    let accepted = pool.tally(|t| t.accepted.clone());
    let mut parents: Vec<_> = accepted.iter().map(|a| a.header.prev_blockhash).collect();
    parents.sort_unstable();
    parents.dedup();
    assert_eq!(parents.len(), 2, "two parents mined");
    for parent in &parents {
        let block_only = accepted
            .iter()
            .filter(|a| a.header.prev_blockhash == *parent && a.difficulty < EASY)
            .count();
        assert_eq!(block_only, 1, "block-only submissions on {parent}");
    }
    assert_eq!(snap.pools[0].blocks_submitted, 2);
    assert_eq!(snap.devices[0].blocks, 2);
    assert!(
        snap.pools[0].accepted >= 6,
        "shares counted apart from blocks"
    );
}
