//! SHA-256d 16 nonces at a time in AVX-512 registers: native rotates
//! (`vprold`) and three-input logic (`vpternlogd`) for Ch, Maj and the
//! three-way XORs of the Σ and σ functions, so a round is about half the
//! instructions of a plain SIMD one.
//!
//! [`Avx512`] is private to this module and only made inside
//! [`scan_range`], whose target features the caller has checked: that is
//! what makes its methods' intrinsics sound to call.

use std::arch::x86_64::{
    __m512i, _mm512_add_epi32, _mm512_and_si512, _mm512_cmple_epu32_mask, _mm512_or_si512,
    _mm512_ror_epi32, _mm512_set1_epi32, _mm512_set_epi32, _mm512_setr_epi32, _mm512_shuffle_epi8,
    _mm512_srlv_epi32, _mm512_ternarylogic_epi32, _mm512_xor_si512,
};

use super::lane_scan;
use super::lanes::Lanes;
use crate::pow::KernelWork;

/// Whether this CPU has what [`scan_range`] needs.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
}

/// Sixteen 32-bit lanes.
#[derive(Clone, Copy)]
struct Avx512(__m512i);

/// `vpternlogd` truth tables: bit `4a + 2b + c` of the constant is the
/// result for input bits a, b, c.
const XOR3: i32 = 0x96;
const CHOOSE: i32 = 0xca;
const MAJORITY: i32 = 0xe8;

// SAFETY (every `unsafe` block below): an `Avx512` exists only inside
// `scan_range`, which runs only where AVX-512 F and BW are present.
impl Lanes for Avx512 {
    const WIDTH: usize = 16;

    #[inline(always)]
    fn splat(word: u32) -> Self {
        Avx512(unsafe { _mm512_set1_epi32(word as i32) })
    }
    #[inline(always)]
    fn nonce_words(first: u32) -> Self {
        unsafe {
            let offsets = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            Avx512(byte_swap(_mm512_add_epi32(
                _mm512_set1_epi32(first as i32),
                offsets,
            )))
        }
    }
    #[inline(always)]
    fn at_most(h7: Self, target_top: u32) -> u32 {
        unsafe {
            let top = byte_swap(h7.0);
            u32::from(_mm512_cmple_epu32_mask(
                top,
                _mm512_set1_epi32(target_top as i32),
            ))
        }
    }
    #[inline(always)]
    fn add(x: Self, y: Self) -> Self {
        Avx512(unsafe { _mm512_add_epi32(x.0, y.0) })
    }
    #[inline(always)]
    fn xor(x: Self, y: Self) -> Self {
        Avx512(unsafe { _mm512_xor_si512(x.0, y.0) })
    }
    #[inline(always)]
    fn and(x: Self, y: Self) -> Self {
        Avx512(unsafe { _mm512_and_si512(x.0, y.0) })
    }
    #[inline(always)]
    fn or(x: Self, y: Self) -> Self {
        Avx512(unsafe { _mm512_or_si512(x.0, y.0) })
    }
    #[inline(always)]
    fn rotr<const N: i32>(x: Self) -> Self {
        Avx512(unsafe { _mm512_ror_epi32::<N>(x.0) })
    }
    #[inline(always)]
    fn shr<const N: i32>(x: Self) -> Self {
        Avx512(unsafe { _mm512_srlv_epi32(x.0, _mm512_set1_epi32(N)) })
    }
    #[inline(always)]
    fn xor3(x: Self, y: Self, z: Self) -> Self {
        Avx512(unsafe { _mm512_ternarylogic_epi32::<XOR3>(x.0, y.0, z.0) })
    }
    #[inline(always)]
    fn ch(e: Self, f: Self, g: Self) -> Self {
        Avx512(unsafe { _mm512_ternarylogic_epi32::<CHOOSE>(e.0, f.0, g.0) })
    }
    #[inline(always)]
    fn maj(a: Self, b: Self, c: Self) -> Self {
        Avx512(unsafe { _mm512_ternarylogic_epi32::<MAJORITY>(a.0, b.0, c.0) })
    }
}

/// Each lane's bytes reversed (`vpshufb` within each 128-bit quarter).
#[inline(always)]
unsafe fn byte_swap(x: __m512i) -> __m512i {
    let order = _mm512_set_epi32(
        0x0c0d_0e0f,
        0x0809_0a0b,
        0x0405_0607,
        0x0001_0203,
        0x0c0d_0e0f,
        0x0809_0a0b,
        0x0405_0607,
        0x0001_0203,
        0x0c0d_0e0f,
        0x0809_0a0b,
        0x0405_0607,
        0x0001_0203,
        0x0c0d_0e0f,
        0x0809_0a0b,
        0x0405_0607,
        0x0001_0203,
    );
    unsafe { _mm512_shuffle_epi8(x, order) }
}

/// Scans `start .. start + count`, 16 nonces a step, and appends the
/// nonces that pass the top-word test.
///
/// # Safety
/// The CPU must have AVX-512 F and BW ([`available`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn scan_range(work: &KernelWork, start: u32, count: u64, out: &mut Vec<u32>) {
    lane_scan::scan_range::<Avx512>(work, start, count, out);
}
