//! SHA-256 building blocks (FIPS 180-4) in the exact shape the kernels use.
//!
//! The kernels never see a header: they start from a midstate and a few
//! precomputed words. This module holds the constants and the single round,
//! written once so that [`crate::pow::kernel_work`] can be the executable
//! specification of `kernels/sha256d.cl` and `shaders/sha256d.wgsl`.

use sha2::digest::generic_array::GenericArray;

/// Round constants, FIPS 180-4 §4.2.2.
pub const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// Initial hash value, FIPS 180-4 §5.3.3.
pub const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

#[inline(always)]
pub(crate) fn big_sigma0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}

#[inline(always)]
pub(crate) fn big_sigma1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}

#[inline(always)]
pub(crate) fn small_sigma0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}

#[inline(always)]
pub(crate) fn small_sigma1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

#[inline(always)]
pub(crate) fn ch(e: u32, f: u32, g: u32) -> u32 {
    g ^ (e & (f ^ g))
}

#[inline(always)]
pub(crate) fn maj(a: u32, b: u32, c: u32) -> u32 {
    (a & b) | (c & (a | b))
}

/// The working variables a..h of the compression function.
pub type State = [u32; 8];

/// One compression round: `w` is the message-schedule word of round `t`.
#[inline(always)]
pub fn round(s: &mut State, t: usize, w: u32) {
    let t1 = s[7]
        .wrapping_add(big_sigma1(s[4]))
        .wrapping_add(ch(s[4], s[5], s[6]))
        .wrapping_add(K[t])
        .wrapping_add(w);
    let t2 = big_sigma0(s[0]).wrapping_add(maj(s[0], s[1], s[2]));
    s[7] = s[6];
    s[6] = s[5];
    s[5] = s[4];
    s[4] = s[3].wrapping_add(t1);
    s[3] = s[2];
    s[2] = s[1];
    s[1] = s[0];
    s[0] = t1.wrapping_add(t2);
}

/// Message schedule word `t >= 16` from the 16 before it.
#[inline(always)]
pub fn schedule(w: &[u32; 64], t: usize) -> u32 {
    small_sigma1(w[t - 2])
        .wrapping_add(w[t - 7])
        .wrapping_add(small_sigma0(w[t - 15]))
        .wrapping_add(w[t - 16])
}

/// SHA-256 state after compressing one 64-byte block, through `sha2`'s
/// block function (SHA-NI where the CPU has it).
pub fn compress_block(state: &State, block: &[u8; 64]) -> State {
    let mut out = *state;
    sha2::compress256(&mut out, &[*GenericArray::from_slice(block)]);
    out
}

/// The midstate: the state after the first 64 bytes of a header.
pub fn midstate(first_block: &[u8; 64]) -> State {
    compress_block(&IV, first_block)
}

/// Big-endian words of a 64-byte block, the way SHA-256 reads it.
pub fn block_words(block: &[u8]) -> Vec<u32> {
    block
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::{sha256, HashEngine};

    /// The scalar rounds here agree with an independent SHA-256 on a full block.
    #[test]
    fn rounds_match_independent_sha256() {
        let block: [u8; 64] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let mut w = [0u32; 64];
        w[..16].copy_from_slice(&block_words(&block));
        for t in 16..64 {
            w[t] = schedule(&w, t);
        }
        let mut s = IV;
        for (t, word) in w.iter().enumerate() {
            round(&mut s, t, *word);
        }
        let ours: Vec<u32> = s.iter().zip(IV).map(|(a, b)| a.wrapping_add(b)).collect();
        assert_eq!(ours, compress_block(&IV, &block).to_vec());

        // And sha2's compression agrees with bitcoin_hashes' midstate.
        let mut engine = sha256::HashEngine::default();
        engine.input(&block);
        let theirs = engine.midstate();
        assert_eq!(
            midstate(&block).to_vec(),
            block_words(&theirs.to_byte_array())
        );
    }
}
