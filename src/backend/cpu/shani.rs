//! SHA-256d with the x86 SHA extensions, two nonces at a time.
//!
//! `sha256rnds2` has a latency of several cycles and a throughput of about
//! one per cycle: one compression alone (what a library's block function
//! does) leaves the unit idle most of the time. Two independent nonces,
//! interleaved round group by round group, keep it busy. The state stays in
//! the instructions' packed ABEF/CDGH form across both compressions, and the
//! nonce-free parts (midstate, padding words, the IV) are prepared once.
//! As in the kernels, the header block starts after its nonce-free rounds
//! 0 and 1, and the second hash stops once H7 is known (round 61 of 64):
//! 62 `sha256rnds2` a nonce instead of 64.
//!
//! Round and schedule structure follow Intel's published SHA-NI sample
//! (the `sha256rnds2` / `sha256msg1` / `sha256msg2` pattern).

use std::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_cvtsi128_si32, _mm_loadu_si128,
    _mm_set_epi32, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32,
    _mm_shuffle_epi32,
};

use crate::pow::sha256::{round, IV, K};
use crate::pow::KernelWork;

/// Nonces hashed side by side: 2 saturates the SHA unit here (4 measured the
/// same on an AVX-512 Xeon, 3 slower).
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

#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn pack(state: &[u32; 8]) -> Packed {
    let abcd = _mm_set_epi32(
        state[3] as i32,
        state[2] as i32,
        state[1] as i32,
        state[0] as i32,
    );
    let efgh = _mm_set_epi32(
        state[7] as i32,
        state[6] as i32,
        state[5] as i32,
        state[4] as i32,
    );
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
    // SAFETY: K has 64 words; group < 16, so 4 words from 4 * group are in bounds.
    unsafe { _mm_loadu_si128(K.as_ptr().add(4 * group).cast()) }
}

/// Rounds `4g .. 4g + 4` on each of `N` interleaved states: the schedule
/// words of group `g` (from the previous four groups, for `g >= 4`), then
/// two `sha256rnds2`, or only the first where `first_half_only`.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn group<const N: usize>(
    st: &mut [Packed; N],
    w: &mut [[__m128i; 4]; N],
    group: usize,
    first_half_only: bool,
) {
    if group >= 4 {
        for lane in w.iter_mut() {
            // W[g] from W[g-4] (slot g%4), W[g-3], W[g-2], W[g-1].
            let older = _mm_sha256msg1_epu32(lane[group % 4], lane[(group + 1) % 4]);
            let middle = _mm_alignr_epi8(lane[(group + 3) % 4], lane[(group + 2) % 4], 4);
            lane[group % 4] =
                _mm_sha256msg2_epu32(_mm_add_epi32(older, middle), lane[(group + 3) % 4]);
        }
    }
    let k = round_constants(group);
    for (s, lane) in st.iter_mut().zip(w.iter()) {
        let msg = _mm_add_epi32(lane[group % 4], k);
        s.cdgh = _mm_sha256rnds2_epu32(s.cdgh, s.abef, msg);
        if !first_half_only {
            s.abef = _mm_sha256rnds2_epu32(s.abef, s.cdgh, _mm_shuffle_epi32(msg, 0x0e));
        }
    }
}

/// The first hash of `N` nonces: block 2 of the header from the state
/// after its rounds 0 and 1 (`after_round1`, nonce-free: the nonce is
/// W[3]), then the midstate added.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn first_hash<const N: usize>(
    after_round1: Packed,
    midstate: Packed,
    blocks: [[__m128i; 4]; N],
) -> [Packed; N] {
    let mut w = blocks;
    // Rounds 2 and 3: the second half of group 0. After a first half the
    // registers hold the new ABEF in `cdgh` and the old one, now CDGH, in
    // `abef`; that is where the precomputed state goes.
    let k = round_constants(0);
    let mut st = [after_round1; N];
    for (s, lane) in st.iter_mut().zip(&w) {
        let msg = _mm_add_epi32(lane[0], k);
        s.cdgh = after_round1.abef;
        s.abef = _mm_sha256rnds2_epu32(
            after_round1.cdgh,
            after_round1.abef,
            _mm_shuffle_epi32(msg, 0x0e),
        );
    }
    for g in 1..16 {
        group(&mut st, &mut w, g, false);
    }
    for s in &mut st {
        s.abef = _mm_add_epi32(s.abef, midstate.abef);
        s.cdgh = _mm_add_epi32(s.cdgh, midstate.cdgh);
    }
    st
}

/// H7 of the second hash of `N` nonces, not yet byte-swapped: e after
/// round 60 becomes h after round 63, so rounds 62 and 63 and the final
/// additions but one are skipped.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn second_hash_h7<const N: usize>(iv: Packed, blocks: [[__m128i; 4]; N]) -> [u32; N] {
    let mut w = blocks;
    let mut st = [iv; N];
    for g in 0..15 {
        group(&mut st, &mut w, g, false);
    }
    group(&mut st, &mut w, 15, true);
    // After rounds 60 and 61 the new ABEF (in `cdgh`) has F = e after 60
    // in lane 0.
    st.map(|s| (_mm_cvtsi128_si32(s.cdgh) as u32).wrapping_add(IV[7]))
}

/// Scans `start .. start + count` (count even or odd) and appends the
/// nonces whose hash passes the top-word test.
///
/// # Safety
/// The CPU must have the SHA extensions and SSE4.1 ([`available`]).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub unsafe fn scan_range(work: &KernelWork, start: u32, count: u64, out: &mut Vec<u32>) {
    let midstate = pack(&work.midstate);
    let mut after_round1 = work.midstate;
    round(&mut after_round1, 0, work.tail[0]);
    round(&mut after_round1, 1, work.tail[1]);
    let after_round1 = pack(&after_round1);
    let iv = pack(&IV);
    let [w0, w1, w2] = work.tail.map(|w| w as i32);
    // Block 2 of the header past the nonce: padding, then the length (640 bits).
    let pad1 = _mm_set_epi32(0, 0, 0, 0x8000_0000u32 as i32);
    let zero = _mm_set_epi32(0, 0, 0, 0);
    let len1 = _mm_set_epi32(640, 0, 0, 0);
    // The second hash's block past the first hash: padding, 256 bits.
    let len2 = _mm_set_epi32(256, 0, 0, 0);

    let end = u64::from(start) + count;
    let mut nonce = u64::from(start);
    while nonce < end {
        // A short last step hashes its final nonce again rather than
        // special-casing; the repeats are not reported.
        let n: [u32; LANES] = std::array::from_fn(|i| (nonce + i as u64).min(end - 1) as u32);
        let header_block = n.map(|n| {
            [
                _mm_set_epi32(n.swap_bytes() as i32, w2, w1, w0),
                pad1,
                zero,
                len1,
            ]
        });
        let first = first_hash(after_round1, midstate, header_block);
        let hash_block = first.map(|s| {
            let (abcd, efgh) = unpack(s);
            [abcd, efgh, pad1, len2]
        });
        let h7 = second_hash_h7(iv, hash_block);
        for (lane, h7) in h7.iter().enumerate() {
            let repeat = lane > 0 && n[lane] == n[lane - 1];
            if h7.swap_bytes() <= work.target_top && !repeat {
                out.push(n[lane]);
            }
        }
        nonce += LANES as u64;
    }
}
