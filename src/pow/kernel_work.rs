//! The kernel contract: what the host computes once per header so that the
//! GPU spends its time only on what depends on the nonce.
//!
//! [`KernelWork::top_word`] is the executable specification of
//! `kernels/sha256d.cl` and `shaders/sha256d.wgsl`: the same precomputed
//! inputs, the same order of rounds, the same early exit. The tests prove it
//! against rust-bitcoin's `Header::block_hash`; the kernels are then proven
//! against it.
//!
//! The header's second 64-byte block is `merkle tail, ntime, nbits, nonce`
//! followed by SHA-256 padding for an 80-byte message; the nonce first enters
//! at schedule word W[3], so rounds 0–2 and the nonce-free parts of the
//! schedule are the same for every nonce.

use bitcoin::Target;
use bytemuck::{Pod, Zeroable};

use super::sha256::{
    big_sigma0, big_sigma1, ch, maj, midstate, round, small_sigma0, small_sigma1, State, IV, K,
};
use super::target::target_top_word;

/// Length of the header message in bits, the last padding word of block 2.
const HEADER_BITS: u32 = 640;
/// Length of the first hash in bits, the last padding word of the second hash.
const HASH_BITS: u32 = 256;
/// The padding bit right after the message.
const PAD: u32 = 0x8000_0000;

/// Everything a kernel needs to scan nonces of one header, laid out as 28
/// little-endian `u32`s (`bytemuck` so buffers are filled without copies
/// or unsafe casts). The kernels index it as a flat word array; the word
/// offsets are the `KW_*` names in `kernels/sha256d.cl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct KernelWork {
    /// SHA-256 state after the header's first 64 bytes. Words 0–7.
    pub midstate: [u32; 8],
    /// W[0..3] of block 2: last 4 bytes of the merkle root, ntime, nbits,
    /// as SHA-256 reads them (big-endian). Words 8–10. Kernels do not read
    /// them (they are folded into what follows); CPU hashing does.
    pub tail: [u32; 3],
    /// Most significant 32 bits of the target. Word 11.
    pub target_top: u32,
    /// Working variables a..g after rounds 0–2 of block 2. Words 12–18.
    pub round3: [u32; 7],
    /// Round 3's T1 without W[3]: `h + Σ1(e) + Ch(e,f,g) + K[3]`. Word 19.
    pub round3_t1: u32,
    /// Round 3's T2, `Σ0(a) + Maj(a,b,c)`: nonce-free. Word 20.
    pub round3_t2: u32,
    /// W[16]: nonce-free. Word 21.
    pub w16: u32,
    /// W[17]: nonce-free. Word 22.
    pub w17: u32,
    /// W[18] without σ0(W[3]). Word 23.
    pub w18_part: u32,
    /// W[19] without W[3]. Word 24.
    pub w19_part: u32,
    /// Always 1. Word 25. The NVIDIA kernel builds write each addition as
    /// `x * one + y`: with a 1 its compiler cannot see, the addition runs as
    /// a multiply-add on the FMA pipe instead of the integer ALU pipe that
    /// the rotates and logic fill (see BENCHMARKS.md).
    pub one: u32,
    /// Keeps the struct a multiple of 16 bytes for uniform buffers. Words 26, 27.
    pub reserved: [u32; 2],
}

impl KernelWork {
    /// Number of `u32` words in the struct.
    pub const WORDS: usize = 28;

    /// Precomputes the kernel inputs for a serialized header and a target.
    /// The header's own nonce field is ignored.
    pub fn new(header: &[u8; 80], target: &Target) -> Self {
        let mut first = [0u8; 64];
        first.copy_from_slice(&header[..64]);
        let midstate = midstate(&first);
        let word =
            |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let tail = [word(64), word(68), word(72)];

        let mut s: State = midstate;
        for (t, w) in tail.iter().enumerate() {
            round(&mut s, t, *w);
        }
        let [a, b, c, d, e, f, g, h] = s;
        let round3_t1 = h
            .wrapping_add(big_sigma1(e))
            .wrapping_add(ch(e, f, g))
            .wrapping_add(K[3]);
        let round3_t2 = big_sigma0(a).wrapping_add(maj(a, b, c));

        // W[4] = PAD, W[5..15] = 0, W[15] = HEADER_BITS.
        let w16 = small_sigma0(tail[1]).wrapping_add(tail[0]);
        let w17 = small_sigma1(HEADER_BITS)
            .wrapping_add(small_sigma0(tail[2]))
            .wrapping_add(tail[1]);
        let w18_part = small_sigma1(w16).wrapping_add(tail[2]);
        let w19_part = small_sigma1(w17).wrapping_add(small_sigma0(PAD));

        KernelWork {
            midstate,
            tail,
            target_top: target_top_word(target),
            round3: [a, b, c, d, e, f, g],
            round3_t1,
            round3_t2,
            w16,
            w17,
            w18_part,
            w19_part,
            one: 1,
            reserved: [0; 2],
        }
    }

    /// The same work with another target.
    pub fn with_target(mut self, target: &Target) -> Self {
        self.target_top = target_top_word(target);
        self
    }

    /// The most significant 32 bits of `sha256d(header with nonce)` read as
    /// a 256-bit little-endian number: byte-swapped H7 of the second hash.
    ///
    /// This is the algorithm of the kernels, step for step.
    pub fn top_word(&self, nonce: u32) -> u32 {
        // The nonce is stored little-endian in the header; SHA-256 reads
        // words big-endian.
        let w3 = nonce.swap_bytes();

        let mut w = [0u32; 64];
        w[..3].copy_from_slice(&self.tail);
        w[3] = w3;
        w[4] = PAD;
        w[15] = HEADER_BITS;
        w[16] = self.w16;
        w[17] = self.w17;
        w[18] = self.w18_part.wrapping_add(small_sigma0(w3));
        w[19] = self.w19_part.wrapping_add(w3);
        for t in 20..64 {
            w[t] = small_sigma1(w[t - 2])
                .wrapping_add(w[t - 7])
                .wrapping_add(small_sigma0(w[t - 15]))
                .wrapping_add(w[t - 16]);
        }

        // Round 3 from its precomputed parts, then rounds 4..63.
        let [a, b, c, d, e, f, g] = self.round3;
        let t1 = self.round3_t1.wrapping_add(w3);
        let mut s: State = [
            t1.wrapping_add(self.round3_t2),
            a,
            b,
            c,
            d.wrapping_add(t1),
            e,
            f,
            g,
        ];
        for (t, word) in w.iter().enumerate().skip(4) {
            round(&mut s, t, *word);
        }
        let mut hash1 = [0u32; 8];
        for i in 0..8 {
            hash1[i] = s[i].wrapping_add(self.midstate[i]);
        }

        // Second hash: one block, the 32-byte first hash and constant padding.
        let mut w = [0u32; 64];
        w[..8].copy_from_slice(&hash1);
        w[8] = PAD;
        w[15] = HASH_BITS;
        // Only rounds 0..=60 decide H7: e after round 60 becomes h after 63.
        for t in 16..61 {
            w[t] = small_sigma1(w[t - 2])
                .wrapping_add(w[t - 7])
                .wrapping_add(small_sigma0(w[t - 15]))
                .wrapping_add(w[t - 16]);
        }
        let mut s: State = IV;
        for (t, word) in w.iter().enumerate().take(61) {
            round(&mut s, t, *word);
        }
        let h7 = s[4].wrapping_add(IV[7]);
        h7.swap_bytes()
    }

    /// Whether a nonce passes the kernel's cheap test: top word of the hash
    /// at most the target's top word. Candidates still need the full
    /// 256-bit comparison on the CPU.
    pub fn is_candidate(&self, nonce: u32) -> bool {
        self.top_word(nonce) <= self.target_top
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pow::header::{header_bytes, with_nonce};
    use bitcoin::block::{Header, Version};
    use bitcoin::hashes::Hash;
    use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};
    use proptest::prelude::*;

    fn header_from(seed: [u8; 32], merkle: [u8; 32], time: u32, bits: u32, version: i32) -> Header {
        Header {
            version: Version::from_consensus(version),
            prev_blockhash: BlockHash::from_byte_array(seed),
            merkle_root: TxMerkleNode::from_byte_array(merkle),
            time,
            bits: CompactTarget::from_consensus(bits),
            nonce: 0,
        }
    }

    fn expected_top_word(header: &Header, nonce: u32) -> u32 {
        let hash = with_nonce(header, nonce).block_hash().to_byte_array();
        u32::from_le_bytes([hash[28], hash[29], hash[30], hash[31]])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// The kernel algorithm agrees with rust-bitcoin on random headers and nonces.
        #[test]
        fn top_word_matches_rust_bitcoin(
            seed in any::<[u8; 32]>(), merkle in any::<[u8; 32]>(),
            time in any::<u32>(), bits in any::<u32>(), version in any::<i32>(),
            nonce in any::<u32>(),
        ) {
            let header = header_from(seed, merkle, time, bits, version);
            let work = KernelWork::new(&header_bytes(&header), &Target::MAX);
            prop_assert_eq!(work.top_word(nonce), expected_top_word(&header, nonce));
        }
    }

    #[test]
    fn genesis_nonce_is_a_candidate_and_neighbours_are_not() {
        let genesis =
            bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Bitcoin).header;
        let work = KernelWork::new(&header_bytes(&genesis), &genesis.target());
        assert_eq!(work.target_top, 0);
        assert!(work.is_candidate(2_083_236_893));
        for n in 2_083_236_893u32 - 2000..2_083_236_893 {
            assert!(!work.is_candidate(n));
        }
    }

    #[test]
    fn layout_is_28_words() {
        assert_eq!(std::mem::size_of::<KernelWork>(), KernelWork::WORDS * 4);
    }
}
