//! Where work comes from: a job source (the synthetic benchmark now; a
//! Stratum pool or a node's `getblocktemplate` later) turns what it is told
//! to mine into [`Job`]s, and submits the [`Found`] nonces that come back.

pub mod bench;
pub mod found_blocks;
pub mod gbt;
pub mod stratum;

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use bitcoin::block::Header;
use bitcoin::{BlockHash, CompactTarget, Target};

use crate::control::RigControl;
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::work::{Work, WorkSource};

/// What a job source says to mine. Immutable once published; shared by `Arc`.
///
/// The coinbase is `coinbase1 || extranonce1 || extranonce2 || coinbase2`
/// (Stratum V1's split, which a solo source can produce too by cutting its
/// own coinbase around the extranonce), so every source rolls extranonce2
/// the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The source's name for the job (Stratum's job_id). Not unique across
    /// blocks: pools reuse ids, so jobs are told apart by `generation` too.
    pub id: String,
    /// Set by [`WorkSource::publish`]: increases with every published job.
    pub generation: u64,
    pub version: i32,
    /// BIP 310 version-rolling mask: header version bits the miner may change.
    pub version_mask: u32,
    pub prev_hash: BlockHash,
    pub coinbase1: Vec<u8>,
    pub coinbase2: Vec<u8>,
    pub extranonce1: Vec<u8>,
    /// Bytes of extranonce2 the miner fills in; 0 to 8.
    pub extranonce2_size: usize,
    pub merkle_branch: Vec<[u8; 32]>,
    pub bits: CompactTarget,
    pub time: u32,
    /// How many seconds past `time` the header's ntime may be rolled.
    pub max_time_roll: u32,
    /// Old work is worthless: every device drops it within one batch.
    pub clean: bool,
    /// The share target in force when the job was issued.
    pub share_target: Target,
}

impl Job {
    /// The block target from nBits.
    pub fn block_target(&self) -> Target {
        Target::from_compact(self.bits)
    }

    /// The coinbase transaction for one extranonce2, serialized without
    /// witness (what its txid, and so the merkle root, hashes).
    pub fn coinbase(&self, extranonce2: &[u8]) -> Vec<u8> {
        [
            &self.coinbase1[..],
            &self.extranonce1,
            extranonce2,
            &self.coinbase2,
        ]
        .concat()
    }
}

/// A nonce that passed the full 256-bit check on the CPU.
#[derive(Debug, Clone)]
pub struct Found {
    pub work: Arc<Work>,
    pub nonce: u32,
    pub hash: BlockHash,
    /// Meets the job's share target.
    pub is_share: bool,
    /// Meets the block target: always submitted, whatever the share target.
    pub is_block: bool,
    /// The pool difficulty this hash satisfies.
    pub difficulty: f64,
    /// Index of the device that found it, into [`Stats::devices`].
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

/// Why a job source stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobSourceError {
    #[error("job source {source_name}: {message}")]
    Failed {
        source_name: String,
        message: String,
    },
}

/// What a job source gets to do its work.
pub struct SourceContext {
    /// Where to publish jobs; devices take work from it.
    pub work: Arc<WorkSource>,
    /// Verified shares and blocks from every device.
    pub found: Receiver<Found>,
    /// Where to count accepted, rejected and stale results.
    pub stats: Arc<Stats>,
    /// Fires when the miner is stopping.
    pub shutdown: Shutdown,
    /// Operator requests (a pool switch from the API).
    pub control: Arc<RigControl>,
}

/// A source of jobs and a sink for shares and blocks.
///
/// `run` is blocking and owns its thread: a network source starts its own
/// async runtime inside. It publishes jobs with [`WorkSource::publish`],
/// receives [`Found`] from the scheduler, submits them, and records the
/// answers in [`Stats`]. It returns when `shutdown` fires, after submitting
/// or recording what is in flight.
pub trait JobSource: Send {
    /// A short name for logs: a pool URL, a node URL, "bench".
    fn name(&self) -> String;
    fn run(&mut self, ctx: SourceContext) -> Result<(), JobSourceError>;
}
