//! Fuzzes the Stratum V1 edge: any bytes a pool could send, parsed as JSON
//! and then as every typed message; a notify that parses is turned into a
//! job and a header, the whole path a share would take.
//!
//!     cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run stratum_messages \
//!         corpus/stratum_messages seeds/stratum_messages -- -max_total_time=300
//!
//! (RUSTC_BOOTSTRAP lets the stable toolchain build with the sanitizer flags
//! cargo-fuzz passes.) First run, 2026-11-28: 7.79 M inputs in 241 s, no crash;
//! with replies added: 1.18 M more in 151 s (a busy machine), no crash.

#![no_main]

#[macro_use]
#[path = "bounded_alloc.rs"]
mod bounded_alloc;

use std::sync::Arc;

use hashrig::job::stratum::replies::{granted_version_mask, Incoming};
use hashrig::job::stratum::{ServerMessage, Session, SubscribeResult};
use hashrig::job::{Origin, SourceKind};
use hashrig::work::Work;

bounded_fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = SubscribeResult::try_from(&value);
    if let Ok(Incoming::Reply(reply)) = Incoming::try_from(&value) {
        let _ = granted_version_mask(&reply);
        let _ = reply.reason();
    }
    if let Ok(ServerMessage::Notify(notify)) = ServerMessage::try_from(&value) {
        let session = Session {
            extranonce1: vec![1, 2, 3, 4],
            extranonce2_size: 4,
            share_target: hashrig::pow::target::DIFF1_TARGET,
            version_mask: 0x1fff_e000,
            origin: Origin::new(SourceKind::Pool, 0, "stratum+tcp://fuzz:3333"),
        };
        let job = Arc::new(notify.to_job(&session));
        let work = Work::new(job.clone(), vec![0; 4], job.version, job.time);
        let _ = work.header.block_hash();
    }
});
