//! SHA-256d with the x86 SHA extensions, two nonces at a time.
//!
//! `sha256rnds2` has a latency of 4 cycles and issues once every 2.8 on a
//! Sapphire Rapids core (measured there; `sha256msg1` and `sha256msg2` run
//! beside it): one compression alone (what a library's block function
//! does) leaves the unit idle a quarter of the time and waits on the
//! schedule's `sha256msg2` chain besides. Two independent nonces,
//! interleaved instruction by instruction, keep it busy; a third measured
//! no faster and does not fit the 16 XMM registers the legacy-encoded SHA
//! instructions can name (six a lane: the packed state and the four-group
//! schedule window).
//!
//! The state stays in the instructions' packed ABEF/CDGH form across both
//! compressions, and what no nonce changes is prepared once a work
//! ([`Prepared`]):
//! - the header block's rounds 0–3. The nonce is W3, and W3 enters round 3
//!   only through T1, which that round adds to both A and E: the state after
//!   round 3 with W3 = 0, plus the nonce in A and E, is the real one (the
//!   trick cpuminer-opt's `sha256_prehash_3rounds` uses);
//! - `K + W` of the header block's groups 1–3 (W4..W15: padding and length)
//!   and of the second hash's groups 2–3;
//! - the second hash stops once H7 is known (after round 61 of 64).
//!
//! That is 61 `sha256rnds2` a nonce instead of 64. Every group's code is
//! written out (the window rotates by value, never indexed by a loop
//! variable), so the window lives in registers: indexing it with `g % 4`
//! had put it on the stack. The SHA instructions are `asm!` only to keep
//! their order ([`rnds2`]). Together: 14.4–15.2 MH/s a thread on a
//! Sapphire Rapids Xeon where the previous code ran 11.4–12.5, 1.04 of
//! cpuminer-opt's SHA path there (BENCHMARKS.md).
//!
//! Round and schedule structure follow Intel's published SHA-NI sample
//! (the `sha256rnds2` / `sha256msg1` / `sha256msg2` pattern).

use std::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_cvtsi128_si32, _mm_insert_epi32,
    _mm_loadu_si128, _mm_set_epi32, _mm_shuffle_epi32,
};

use crate::pow::sha256::{round, IV, K};
use crate::pow::KernelWork;

/// Nonces hashed side by side (see the module comment for why two).
const LANES: usize = 2;

/// Whether this CPU has what [`scan_range`] needs.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("sha")
        && std::arch::is_x86_feature_detected!("sse4.1")
        && std::arch::is_x86_feature_detected!("ssse3")
}

/// A SHA-256 state in the packed form the instructions use.
#[derive(Clone, Copy)]
struct Packed {
    /// Lanes F, E, B, A.
    abef: __m128i,
    /// Lanes H, G, D, C.
    cdgh: __m128i,
}

/// The schedule words of the last four round groups, oldest first.
type Window = [__m128i; 4];

/// What every nonce of one [`KernelWork`] shares.
struct Prepared {
    /// The header block's state after rounds 0–3, computed with W3 = 0.
    after_round3: Packed,
    /// The header's first block, compressed: added back after the second.
    midstate: Packed,
    /// W0..W2 of the header block, the nonce's lane (3) zero.
    header_w0: __m128i,
    /// `K + W` of the header block's groups 1, 2 and 3.
    header_msg: [__m128i; 3],
    /// `K + W` of the second hash's groups 2 and 3.
    hash_msg: [__m128i; 2],
}

/// Four words as one vector, the first in lane 0.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn words(w: [u32; 4]) -> __m128i {
    _mm_set_epi32(w[3] as i32, w[2] as i32, w[1] as i32, w[0] as i32)
}

#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn pack(state: &[u32; 8]) -> Packed {
    let abcd = words([state[0], state[1], state[2], state[3]]);
    let efgh = words([state[4], state[5], state[6], state[7]]);
    let badc = _mm_shuffle_epi32(abcd, 0xb1);
    let hgfe = _mm_shuffle_epi32(efgh, 0x1b);
    Packed {
        abef: _mm_alignr_epi8(badc, hgfe, 8),
        cdgh: _mm_blend_epi16(hgfe, badc, 0xf0),
    }
}

/// The state as message words: (A B C D, E F G H), lane 0 first.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn unpack(state: Packed) -> (__m128i, __m128i) {
    let abef = _mm_shuffle_epi32(state.abef, 0x1b);
    let cdgh = _mm_shuffle_epi32(state.cdgh, 0xb1);
    (
        _mm_blend_epi16(abef, cdgh, 0xf0),
        _mm_alignr_epi8(cdgh, abef, 8),
    )
}

#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn round_constants(group: usize) -> __m128i {
    assert!(group < 16);
    // SAFETY: K has 64 words; group < 16, so 4 words from 4 * group are in bounds.
    unsafe { _mm_loadu_si128(K.as_ptr().add(4 * group).cast()) }
}

/// `sha256rnds2`: two rounds on `cdgh` from `abef` and `msg`'s lanes 0
/// and 1, returning the new ABEF.
///
/// Written as `asm!` rather than `_mm_sha256rnds2_epu32` for its order
/// alone: volatile `asm!` blocks keep their relative order, so the lanes'
/// round chains stay interleaved instruction by instruction. Given the
/// intrinsic, LLVM's scheduler ran one lane's whole compression after
/// another's, leaving a single chain of 4-cycle-latency instructions for
/// the out-of-order core: 10–15% slower on a Sapphire Rapids core.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn rnds2(cdgh: __m128i, abef: __m128i, msg: __m128i) -> __m128i {
    let mut out = cdgh;
    // SAFETY: register operands only; `available` checked the SHA extensions.
    unsafe {
        std::arch::asm!(
            "sha256rnds2 {out}, {abef}, xmm0",
            out = inout(xmm_reg) out,
            abef = in(xmm_reg) abef,
            in("xmm0") msg,
            options(nomem, nostack, preserves_flags),
        );
    }
    out
}

/// `sha256msg1` and `sha256msg2` likewise in `asm!`, so the schedule
/// stays beside the rounds that use it rather than hoisted ahead of them.
/// Both take the destination's words and one more register.
macro_rules! schedule_op {
    ($name:ident, $mnemonic:literal) => {
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        fn $name(dst: __m128i, src: __m128i) -> __m128i {
            let mut out = dst;
            // SAFETY: register operands only; `available` checked the SHA
            // extensions.
            unsafe {
                std::arch::asm!(
                    concat!($mnemonic, " {out}, {src}"),
                    out = inout(xmm_reg) out,
                    src = in(xmm_reg) src,
                    options(nomem, nostack, preserves_flags),
                );
            }
            out
        }
    };
}

schedule_op!(msg1, "sha256msg1");
schedule_op!(msg2, "sha256msg2");

/// The first two rounds of a group on every lane, `msgs` holding each
/// lane's `K + W`.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn first_halves<const N: usize>(st: &mut [Packed; N], msgs: [__m128i; N]) {
    for (s, msg) in st.iter_mut().zip(msgs) {
        // The new ABEF lands in `cdgh`; the old ABEF is now C, D, G, H.
        let new = rnds2(s.cdgh, s.abef, msg);
        s.cdgh = s.abef;
        s.abef = new;
    }
}

/// The last two rounds of a group on every lane (`msgs` lanes 2 and 3).
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn second_halves<const N: usize>(st: &mut [Packed; N], msgs: [__m128i; N]) {
    for (s, msg) in st.iter_mut().zip(msgs) {
        let new = rnds2(s.cdgh, s.abef, _mm_shuffle_epi32(msg, 0x0e));
        s.cdgh = s.abef;
        s.abef = new;
    }
}

/// A group's four rounds on every lane.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn group_rounds<const N: usize>(st: &mut [Packed; N], msgs: [__m128i; N]) {
    first_halves(st, msgs);
    second_halves(st, msgs);
}

/// `$body` once for each of the scheduled groups 4–15, with `$g` that
/// group, written out: LLVM does not always unroll a loop over them (it
/// left one rolled at three lanes), and a rolled loop cannot fold each
/// group's constants.
macro_rules! scheduled_groups {
    (|$g:ident| $body:expr) => {
        scheduled_groups!(@each $g, $body, 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@each $g:ident, $body:expr, $($group:literal)*) => {
        $({
            let $g: usize = $group;
            $body;
        })*
    };
}

/// The next group's schedule words from the window, which moves on by one.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn next_words(w: &mut Window) -> __m128i {
    // W[t..t+4] from W[t-16..t-12] (w[0]), W[t-15..] (w[1]), W[t-7..]
    // (across w[2] and w[3]) and W[t-2], W[t-1] (w[3]).
    let older = msg1(w[0], w[1]);
    let middle = _mm_alignr_epi8(w[3], w[2], 4);
    let new = msg2(_mm_add_epi32(older, middle), w[3]);
    *w = [w[1], w[2], w[3], new];
    new
}

/// `K + W` of group `g` on every lane, its words from the schedule.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn scheduled_msgs<const N: usize>(w: &mut [Window; N], g: usize) -> [__m128i; N] {
    let k = round_constants(g);
    std::array::from_fn(|lane| _mm_add_epi32(next_words(&mut w[lane]), k))
}

impl Prepared {
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn new(work: &KernelWork) -> Prepared {
        let mut after_round3 = work.midstate;
        for (t, w) in work.tail.iter().chain([&0]).enumerate() {
            round(&mut after_round3, t, *w);
        }
        let [w0, w1, w2] = work.tail;
        // The header block past the nonce: padding, then 640 bits of length.
        let header_w = [[0x8000_0000, 0, 0, 0], [0; 4], [0, 0, 0, 640]];
        // The second hash's block past the first hash: padding, 256 bits.
        let hash_w = [[0x8000_0000, 0, 0, 0], [0, 0, 0, 256]];
        let plus_k = |w: [u32; 4], group: usize| {
            words(std::array::from_fn(|i| w[i].wrapping_add(K[4 * group + i])))
        };
        Prepared {
            after_round3: pack(&after_round3),
            midstate: pack(&work.midstate),
            header_w0: words([w0, w1, w2, 0]),
            header_msg: std::array::from_fn(|i| plus_k(header_w[i], i + 1)),
            hash_msg: std::array::from_fn(|i| plus_k(hash_w[i], i + 2)),
        }
    }

    /// The first hash of `N` nonces (W3 values): the header block from
    /// round 4 on, then the midstate added.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn first_hash<const N: usize>(&self, nonce_words: [u32; N]) -> [Packed; N] {
        let mut st = nonce_words.map(|n| {
            let mut s = self.after_round3;
            // A is lane 3 of ABEF, E lane 1.
            s.abef = _mm_add_epi32(s.abef, words([0, n, 0, n]));
            s
        });
        for msg in self.header_msg {
            group_rounds(&mut st, [msg; N]);
        }
        let mut w = nonce_words.map(|n| {
            [
                _mm_insert_epi32(self.header_w0, n as i32, 3),
                words([0x8000_0000, 0, 0, 0]),
                words([0; 4]),
                words([0, 0, 0, 640]),
            ]
        });
        scheduled_groups!(|g| group_rounds(&mut st, scheduled_msgs(&mut w, g)));
        st.map(|s| Packed {
            abef: _mm_add_epi32(s.abef, self.midstate.abef),
            cdgh: _mm_add_epi32(s.cdgh, self.midstate.cdgh),
        })
    }

    /// H7 of the second hash of `N` first hashes, not yet byte-swapped: e
    /// after round 60 becomes h after round 63, so rounds 62 and 63 and the
    /// final additions but one are skipped. (Working rounds 58–60 out for e
    /// alone in scalar code, to spare the SHA unit two more `sha256rnds2`,
    /// measured 5–8% slower on a Sapphire Rapids core: the scalar rounds
    /// and the lane extraction cost more than they spare.)
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn second_hash_h7<const N: usize>(&self, first: [Packed; N]) -> [u32; N] {
        let iv = pack(&IV);
        let mut w: [Window; N] = first.map(|s| {
            let (abcd, efgh) = unpack(s);
            [
                abcd,
                efgh,
                words([0x8000_0000, 0, 0, 0]),
                words([0, 0, 0, 256]),
            ]
        });
        let mut st = [iv; N];
        for g in 0..2 {
            let k = round_constants(g);
            group_rounds(&mut st, w.map(|lane| _mm_add_epi32(lane[g], k)));
        }
        for msg in self.hash_msg {
            group_rounds(&mut st, [msg; N]);
        }
        scheduled_groups!(|g| {
            let msgs = scheduled_msgs(&mut w, g);
            first_halves(&mut st, msgs);
            // Rounds 62 and 63 are not needed.
            if g < 15 {
                second_halves(&mut st, msgs);
            }
        });
        // After rounds 60 and 61, ABEF's F (lane 0) is e after round 60.
        st.map(|s| (_mm_cvtsi128_si32(s.abef) as u32).wrapping_add(IV[7]))
    }
}

/// Scans `start .. start + count` (count even or odd) and appends the
/// nonces whose hash passes the top-word test.
///
/// # Safety
/// The CPU must have the SHA extensions and SSE4.1 ([`available`]).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub unsafe fn scan_range(work: &KernelWork, start: u32, count: u64, out: &mut Vec<u32>) {
    let prepared = Prepared::new(work);
    let end = u64::from(start) + count;
    let mut nonce = u64::from(start);
    while nonce < end {
        // A short last step hashes its final nonce again rather than
        // special-casing; the repeats are not reported.
        let n: [u32; LANES] = std::array::from_fn(|i| (nonce + i as u64).min(end - 1) as u32);
        let first = prepared.first_hash(n.map(u32::swap_bytes));
        let h7 = prepared.second_hash_h7(first);
        for (lane, h7) in h7.iter().enumerate() {
            let repeat = lane > 0 && n[lane] == n[lane - 1];
            if h7.swap_bytes() <= work.target_top && !repeat {
                out.push(n[lane]);
            }
        }
        nonce += LANES as u64;
    }
}
