//! The nonce loop of the lane paths: the generated body on `V::WIDTH`
//! nonces a step, and the nonces whose top word passes, in order.

use super::lanes::Lanes;
use super::sha256d_lanes::second_hash_h7;
use crate::pow::KernelWork;

/// Scans `start .. start + count` `V::WIDTH` nonces at a time and appends
/// the nonces that pass the top-word test, in order. The last step may run
/// past the range (wrapping past 2^32 − 1); those lanes are not reported.
#[inline(always)]
pub(super) fn scan_range<V: Lanes>(work: &KernelWork, start: u32, count: u64, out: &mut Vec<u32>) {
    let words: &[u32; KernelWork::WORDS] = bytemuck::cast_ref(work);
    let end = u64::from(start) + count;
    let mut first = u64::from(start);
    while first < end {
        let h7 = second_hash_h7::<V>(words, V::nonce_words(first as u32));
        let mut hits = V::at_most(h7, work.target_top);
        while hits != 0 {
            let nonce = first + u64::from(hits.trailing_zeros());
            if nonce < end {
                out.push(nonce as u32);
            }
            hits &= hits - 1;
        }
        first += V::WIDTH as u64;
    }
}

/// The scalar path: [`scan_range`] on `u32` one nonce at a time.
pub(super) fn scan_range_scalar(work: &KernelWork, start: u32, count: u64, out: &mut Vec<u32>) {
    scan_range::<u32>(work, start, count, out);
}
