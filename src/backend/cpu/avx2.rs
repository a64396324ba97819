//! SHA-256d 8 nonces at a time in AVX2 registers. AVX2 has no rotate and
//! no three-input logic: a rotation is two shifts and an OR, Ch and Maj are
//! plain logic (the trait's defaults).
//!
//! [`Avx2`] is private to this module and only made inside [`scan_range`],
//! whose target feature the caller has checked: that is what makes its
//! methods' intrinsics sound to call.

use std::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_castsi256_ps, _mm256_cmpeq_epi32,
    _mm256_min_epu32, _mm256_movemask_ps, _mm256_or_si256, _mm256_set1_epi32, _mm256_set_epi32,
    _mm256_setr_epi32, _mm256_shuffle_epi8, _mm256_sllv_epi32, _mm256_srlv_epi32, _mm256_xor_si256,
};

use super::lane_scan;
use super::lanes::Lanes;
use crate::pow::KernelWork;

/// Whether this CPU has what [`scan_range`] needs.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// Eight 32-bit lanes.
#[derive(Clone, Copy)]
struct Avx2(__m256i);

/// Shifts every lane by the constant `n`. Written with the per-lane shift
/// and a splat because a const generic cannot compute `32 - N`; the
/// compiler folds it into the immediate form (`vpsrld ymm, ymm, imm`).
#[inline(always)]
unsafe fn shift_right(x: __m256i, n: i32) -> __m256i {
    unsafe { _mm256_srlv_epi32(x, _mm256_set1_epi32(n)) }
}

#[inline(always)]
unsafe fn shift_left(x: __m256i, n: i32) -> __m256i {
    unsafe { _mm256_sllv_epi32(x, _mm256_set1_epi32(n)) }
}

// SAFETY (every `unsafe` block below): an `Avx2` exists only inside
// `scan_range`, which runs only where AVX2 is present.
impl Lanes for Avx2 {
    const WIDTH: usize = 8;

    #[inline(always)]
    fn splat(word: u32) -> Self {
        Avx2(unsafe { _mm256_set1_epi32(word as i32) })
    }
    #[inline(always)]
    fn nonce_words(first: u32) -> Self {
        unsafe {
            let offsets = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            Avx2(byte_swap(_mm256_add_epi32(
                _mm256_set1_epi32(first as i32),
                offsets,
            )))
        }
    }
    #[inline(always)]
    fn at_most(h7: Self, target_top: u32) -> u32 {
        unsafe {
            // No unsigned compare in AVX2: x <= t exactly where min(x, t) == x.
            let top = byte_swap(h7.0);
            let within = _mm256_cmpeq_epi32(
                _mm256_min_epu32(top, _mm256_set1_epi32(target_top as i32)),
                top,
            );
            _mm256_movemask_ps(_mm256_castsi256_ps(within)) as u32
        }
    }
    #[inline(always)]
    fn add(x: Self, y: Self) -> Self {
        Avx2(unsafe { _mm256_add_epi32(x.0, y.0) })
    }
    #[inline(always)]
    fn xor(x: Self, y: Self) -> Self {
        Avx2(unsafe { _mm256_xor_si256(x.0, y.0) })
    }
    #[inline(always)]
    fn and(x: Self, y: Self) -> Self {
        Avx2(unsafe { _mm256_and_si256(x.0, y.0) })
    }
    #[inline(always)]
    fn or(x: Self, y: Self) -> Self {
        Avx2(unsafe { _mm256_or_si256(x.0, y.0) })
    }
    #[inline(always)]
    fn rotr<const N: i32>(x: Self) -> Self {
        Avx2(unsafe { _mm256_or_si256(shift_right(x.0, N), shift_left(x.0, 32 - N)) })
    }
    #[inline(always)]
    fn shr<const N: i32>(x: Self) -> Self {
        Avx2(unsafe { shift_right(x.0, N) })
    }
}

/// Each lane's bytes reversed (`vpshufb` within each 128-bit half).
#[inline(always)]
unsafe fn byte_swap(x: __m256i) -> __m256i {
    let order = _mm256_set_epi32(
        0x0c0d_0e0f,
        0x0809_0a0b,
        0x0405_0607,
        0x0001_0203,
        0x0c0d_0e0f,
        0x0809_0a0b,
        0x0405_0607,
        0x0001_0203,
    );
    unsafe { _mm256_shuffle_epi8(x, order) }
}

/// Scans `start .. start + count`, 8 nonces a step, and appends the
/// nonces that pass the top-word test.
///
/// # Safety
/// The CPU must have AVX2 ([`available`]).
#[target_feature(enable = "avx2")]
pub unsafe fn scan_range(work: &KernelWork, start: u32, count: u64, out: &mut Vec<u32>) {
    lane_scan::scan_range::<Avx2>(work, start, count, out);
}
