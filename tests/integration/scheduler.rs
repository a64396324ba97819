//! The scheduler end to end on CPU devices: shares verified independently,
//! blocks recognised, hardware errors counted, clean jobs reaching every
//! device within one batch, and no header and nonce hashed twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::consensus::deserialize;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{CompactTarget, Transaction};
use hashrig::backend::cpu::{self, CpuDevice};
use hashrig::backend::{Device, DeviceError, DeviceInfo};
use hashrig::found::{Found, FoundSink, Taken, SINK_CAPACITY};
use hashrig::job::synthetic::synthetic_job;
use hashrig::job::Job;
use hashrig::pow::KernelWork;
use hashrig::scheduler::{Scheduler, SchedulerConfig};
use hashrig::shutdown::Shutdown;
use hashrig::stats::Stats;
use hashrig::work::WorkSource;

use crate::common::{loose_target, PATIENCE};

/// What a device was asked to scan.
#[derive(Debug, Clone)]
struct ScanRecord {
    started: Instant,
    work: KernelWork,
    start: u32,
    count: u64,
}

/// A real CPU device that records every scan and, when told to, also
/// reports a nonce that is no candidate (a device computing wrong).
struct Recording {
    inner: CpuDevice,
    log: Arc<Mutex<Vec<ScanRecord>>>,
    lie: bool,
}

impl Device for Recording {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn granularity(&self) -> u64 {
        self.inner.granularity()
    }
    fn scan(&mut self, work: &KernelWork, start: u32, count: u64) -> Result<Vec<u32>, DeviceError> {
        self.log.lock().unwrap().push(ScanRecord {
            started: Instant::now(),
            work: *work,
            start,
            count,
        });
        let mut found = self.inner.scan(work, start, count)?;
        if self.lie {
            crate::common::add_a_false_candidate(&mut found, work, start);
        }
        Ok(found)
    }
}

struct Rig {
    work: Arc<WorkSource>,
    stats: Arc<Stats>,
    found: FoundSink,
    shutdown: Shutdown,
    scheduler: Option<Scheduler>,
    logs: Vec<Arc<Mutex<Vec<ScanRecord>>>>,
}

impl Rig {
    fn start(devices: usize, lie: bool, batch: Duration) -> Rig {
        let logs: Vec<_> = (0..devices)
            .map(|_| Arc::new(Mutex::new(Vec::new())))
            .collect();
        let list: Vec<Box<dyn Device>> = logs
            .iter()
            .map(|log| {
                Box::new(Recording {
                    inner: CpuDevice::new(cpu::info(), 1, cpu::default_path())
                        .expect("the CPU's default path"),
                    log: log.clone(),
                    lie,
                }) as Box<dyn Device>
            })
            .collect();
        let stats = Arc::new(Stats::new(
            (0..devices).map(|i| format!("cpu{i}")).collect(),
        ));
        let work = Arc::new(WorkSource::new());
        let shutdown = Shutdown::new();
        let sink = FoundSink::new(SINK_CAPACITY, None, stats.clone());
        let scheduler = Scheduler::start(
            list,
            work.clone(),
            stats.clone(),
            &sink,
            shutdown.clone(),
            SchedulerConfig {
                batch_time: batch,
                ..SchedulerConfig::default()
            },
        );
        Rig {
            work,
            stats,
            found: sink,
            shutdown,
            scheduler: Some(scheduler),
            logs,
        }
    }

    fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(s) = self.scheduler.take() {
            s.join();
        }
    }

    /// The next result, waiting up to `timeout`.
    fn next_found(&self, timeout: Duration) -> Option<Found> {
        match self.found.wait(timeout) {
            Taken::Found(found) => Some(*found),
            Taken::Empty | Taken::Closed => None,
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A job with an easy share target (one hash in 2^16).
fn easy_job() -> Job {
    Job {
        share_target: loose_target(0x0000_ffff),
        ..synthetic_job()
    }
}

#[test]
fn shares_are_real_and_rebuild_from_the_job() {
    let mut rig = Rig::start(2, false, Duration::from_millis(50));
    let job = rig.work.publish(easy_job());
    let mut shares = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while shares.len() < 8 && Instant::now() < deadline {
        if let Some(found) = rig.next_found(Duration::from_millis(200)) {
            shares.push(found);
        }
    }
    rig.stop();
    assert!(shares.len() >= 8, "only {} shares", shares.len());
    for found in &shares {
        assert!(found.is_share && !found.is_block);
        // Rebuild the header from the job's parts with rust-bitcoin alone.
        let mut coinbase = job.coinbase1.clone();
        coinbase.extend(&job.extranonce1);
        coinbase.extend(&found.work.extranonce2);
        coinbase.extend(&job.coinbase2);
        let tx: Transaction = deserialize(&coinbase).expect("the bench coinbase is a transaction");
        let mut root = tx.compute_txid().to_byte_array();
        for branch in &job.merkle_branch {
            let mut joined = root.to_vec();
            joined.extend(branch);
            root = sha256d::Hash::hash(&joined).to_byte_array();
        }
        let header = found.header();
        assert_eq!(header.merkle_root.to_byte_array(), root);
        assert_eq!(header.prev_blockhash, job.prev_hash);
        assert_eq!(header.block_hash(), found.hash);
        assert!(job.share_target.is_met_by(found.hash));
    }
    let snapshot = rig.stats.snapshot();
    assert_eq!(snapshot.devices.iter().map(|d| d.hw_errors).sum::<u64>(), 0);
    assert!(snapshot.best_share >= 1.0 / 65536.0 * 0.99);
}

#[test]
fn blocks_are_recognised_on_an_easy_network() {
    let mut rig = Rig::start(1, false, Duration::from_millis(50));
    // Regtest's nBits: every other hash solves a block.
    rig.work.publish(Job {
        bits: CompactTarget::from_consensus(0x207f_ffff),
        ..synthetic_job()
    });
    let found = rig.next_found(Duration::from_secs(30)).expect("a block");
    // One block per parent: then the device hunts shares (difficulty 1)
    // only, in full-size batches rather than the few dozen nonces the
    // block target's flood of candidates allowed.
    let log = rig.logs[0].clone();
    let after_block = log.lock().unwrap().len();
    crate::common::wait_until("full-size batches", Duration::from_secs(30), || {
        log.lock().unwrap()[after_block..]
            .iter()
            .any(|scan| scan.count >= 1 << 12)
    });
    let more = rig.next_found(Duration::from_millis(300));
    rig.stop();
    assert!(found.is_block);
    // A block is a share exactly when its hash is at or below difficulty
    // 1, computed here apart from hashrig's targets: the hash from
    // rust-bitcoin, as a big-endian number, against 0x00000000ffff00…00.
    let hash_be: Vec<u8> = found
        .header()
        .block_hash()
        .to_byte_array()
        .into_iter()
        .rev()
        .collect();
    let mut difficulty_one = vec![0u8; 32];
    difficulty_one[4..6].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(found.is_share, hash_be <= difficulty_one, "{found:?}");
    assert!(found.header().target().is_met_by(found.hash));
    assert!(
        more.as_ref().is_none_or(|f| !f.is_block),
        "a second block on the same parent: {more:?}"
    );
    assert_eq!(rig.stats.snapshot().devices[0].blocks, 1);
}

#[test]
fn wrong_answers_are_hardware_errors() {
    let mut rig = Rig::start(1, true, Duration::from_millis(20));
    rig.work.publish(synthetic_job());
    let stats = rig.stats.clone();
    crate::common::wait_until("a hardware error", PATIENCE, || {
        stats.snapshot().devices[0].hw_errors > 0
    });
    rig.stop();
    assert!(
        rig.found.try_take().is_none(),
        "a wrong answer was passed on as a share"
    );
}

#[test]
fn a_clean_job_reaches_every_device_within_one_batch() {
    let mut rig = Rig::start(2, false, Duration::from_millis(40));
    rig.work.publish(synthetic_job());
    // Every device busy on the first job, a few batches in.
    crate::common::wait_until("batches of the first job", PATIENCE, || {
        rig.logs.iter().all(|log| log.lock().unwrap().len() >= 3)
    });
    let mut second = synthetic_job();
    second.time += 1000;
    let switched_at = Instant::now();
    let second = rig.work.publish(second);
    // ntime as SHA-256 reads it: the header's little-endian bytes, big-endian.
    let new_time_word = second.time.swap_bytes();
    crate::common::wait_until("every device on the new job", PATIENCE, || {
        rig.logs.iter().all(|log| {
            log.lock()
                .unwrap()
                .iter()
                .any(|r| r.work.tail[1] == new_time_word)
        })
    });
    rig.stop();
    for log in &rig.logs {
        let log = log.lock().unwrap();
        let old_after: Vec<_> = log
            .iter()
            .filter(|r| r.started > switched_at && r.work.tail[1] != new_time_word)
            .collect();
        let new_scans = log
            .iter()
            .filter(|r| r.work.tail[1] == new_time_word)
            .count();
        assert!(new_scans > 0, "device never switched");
        // At most the batch that was already being set up may start late.
        assert!(
            old_after.len() <= 1,
            "{} old batches after the switch",
            old_after.len()
        );
    }
}

#[test]
fn devices_never_hash_the_same_header_and_nonce() {
    let mut rig = Rig::start(2, false, Duration::from_millis(20));
    let mut job = synthetic_job();
    // A tiny nonce budget per work unit is not possible (2^32 always), so
    // check that work units differ between devices and ranges never overlap.
    job.extranonce2_size = 2;
    rig.work.publish(job);
    crate::common::wait_until("many batches on every device", PATIENCE, || {
        rig.logs.iter().all(|log| log.lock().unwrap().len() >= 20)
    });
    rig.stop();
    let mut seen = HashSet::new();
    for log in &rig.logs {
        for r in log.lock().unwrap().iter() {
            let header = r
                .work
                .midstate
                .iter()
                .chain(&r.work.tail)
                .copied()
                .collect::<Vec<u32>>();
            for chunk_start in (u64::from(r.start)..u64::from(r.start) + r.count).step_by(1024) {
                assert!(
                    seen.insert((header.clone(), chunk_start)),
                    "range hashed twice"
                );
            }
        }
    }
    assert!(!seen.is_empty());
}
