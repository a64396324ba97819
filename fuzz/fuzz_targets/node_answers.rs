//! Fuzzes a node's answer as solo mining reads it: any bytes, streamed
//! into the typed template (never a JSON tree), checked, and assembled
//! into a job and its block parts. The allocator holds each input to a
//! memory budget (`bounded_alloc.rs`).
//!
//!     cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run node_answers \
//!         corpus/node_answers seeds/node_answers -- -max_total_time=150
//!
//! First run, 2026-12-05: 801,753 inputs in 91 s, no crash, none past its
//! memory budget.

#![no_main]

#[macro_use]
#[path = "bounded_alloc.rs"]
mod bounded_alloc;

use bitcoin::ScriptBuf;
use hashrig::job::gbt::answer::{parse, ChainInfo, SubmitAnswer};
use hashrig::job::gbt::template::{assemble, BlockTemplate, RawTemplate};
use hashrig::job::{Origin, SourceKind};

bounded_fuzz_target!(|data: &[u8]| {
    let _ = parse::<ChainInfo>(data);
    let _ = parse::<SubmitAnswer>(data);
    let Ok(answer) = parse::<RawTemplate>(data) else {
        return;
    };
    if let Some(Some(raw)) = answer.result {
        if let Ok(template) = BlockTemplate::try_from(raw) {
            let payout = ScriptBuf::from_bytes(vec![0x51]);
            let node = Origin::new(SourceKind::Node, 0, "http://127.0.0.1:8332");
            let _ = assemble(&template, &payout, b"/fuzz/", node);
        }
    }
});
