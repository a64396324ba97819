//! A global allocator that ends the run when the heap an input makes the
//! code hold passes a budget: memory a hostile peer can make hashrig take
//! is a finding, like a crash. libFuzzer's `-rss_limit_mb` sees the whole
//! process and only past 2 GB by default; this sees every Rust allocation
//! and holds each input to a fixed allowance plus so much per input byte,
//! so an amplification (a 60 MB answer taking 2 GB) fails on small inputs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What any input may hold, whatever its size.
const ALLOWANCE: usize = 32 << 20;
/// And per byte of input: the product's own bound is a 64 MiB body in
/// 300 MiB, under 5 bytes a byte; transient growth doubles that.
const PER_INPUT_BYTE: usize = 16;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Sets the budget for the input about to run.
pub fn budget_for(input: &[u8]) {
    let limit = LIVE.load(Ordering::Relaxed) + ALLOWANCE + PER_INPUT_BYTE * input.len();
    LIMIT.store(limit, Ordering::Relaxed);
}

pub struct Bounded;

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    if live > LIMIT.load(Ordering::Relaxed) {
        // No allocation from here: a fixed message, then abort (libFuzzer
        // saves the input as a crash).
        let _ = std::io::stderr().write_all(b"\n==bounded_alloc== live heap past the input's budget\n");
        std::process::abort();
    }
}

// SAFETY: every call is passed to the system allocator unchanged; only
// the count of live bytes is kept beside it.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = System.realloc(ptr, layout, new_size);
        if !moved.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        moved
    }
}

/// A libFuzzer target whose every input runs under the budget: the
/// allocator installed and the budget set before the body, in one place.
macro_rules! bounded_fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        #[global_allocator]
        static ALLOCATOR: bounded_alloc::Bounded = bounded_alloc::Bounded;

        libfuzzer_sys::fuzz_target!(|$data: &[u8]| {
            bounded_alloc::budget_for($data);
            $body
        });
    };
}
