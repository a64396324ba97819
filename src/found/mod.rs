//! What the devices found, from the CPU's re-check to the job source: every
//! candidate is re-hashed on the CPU ([`verify`]), a block is appended to
//! the found-blocks file the moment it is verified ([`journal`]), and
//! shares and blocks reach the job source through one bounded queue
//! ([`FoundSink`]) that never holds a device up.

pub mod journal;
pub mod sink;

pub use sink::{FoundProducer, FoundSink, Taken, SINK_CAPACITY};

use std::sync::Arc;

use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use bitcoin::BlockHash;

use crate::pow::header::with_nonce;
use crate::pow::target::{hash_difficulty, meets};
use crate::work::Work;

/// A nonce that passed the full 256-bit check on the CPU.
#[derive(Debug, Clone)]
pub struct Found {
    /// The header and target it was found on.
    pub work: Arc<Work>,
    /// The nonce.
    pub nonce: u32,
    /// The header's hash.
    pub hash: BlockHash,
    /// Meets the job's share target.
    pub is_share: bool,
    /// Meets the block target, and is the first such hash on its parent for
    /// its origin: submitted whatever the share target (see [`FoundSink`]).
    pub is_block: bool,
    /// The pool difficulty this hash satisfies.
    pub difficulty: f64,
    /// Index of the device that found it, into `Stats::devices`.
    pub device: usize,
}

impl Found {
    /// The complete header that produced the hash.
    pub fn header(&self) -> Header {
        Header {
            nonce: self.nonce,
            ..self.work.header
        }
    }
}

/// What the CPU made of a device's candidate nonce.
#[derive(Debug)]
pub enum Verdict {
    /// Meets the share target, the block target, or both.
    Found(Found),
    /// Passes the kernel's top-word test but not the full 256-bit target:
    /// correct, and worth nothing.
    Miss,
    /// Does not even pass the top-word test: the device computed wrong.
    HardwareError {
        /// The top word of the CPU's hash.
        top_word: u32,
    },
}

/// Re-hashes a candidate on the CPU with rust-bitcoin, independent of every
/// backend, and classifies it.
pub fn verify(work: &Arc<Work>, nonce: u32, device: usize) -> Verdict {
    let hash = with_nonce(&work.header, nonce).block_hash();
    let bytes = hash.to_byte_array();
    let top_word = u32::from_le_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]);
    if top_word > work.kernel.target_top {
        return Verdict::HardwareError { top_word };
    }
    let is_share = meets(&hash, &work.job.share_target);
    let is_block = meets(&hash, &work.job.block_target());
    if !is_share && !is_block {
        return Verdict::Miss;
    }
    Verdict::Found(Found {
        work: work.clone(),
        nonce,
        hash,
        is_share,
        is_block,
        difficulty: hash_difficulty(&hash),
        device,
    })
}
