//! Where work comes from: a job source (the synthetic benchmark, a Stratum
//! pool, a node's `getblocktemplate`) turns what it is told to mine into
//! [`Job`]s, and submits what the devices found ([`crate::found`]) through
//! the sink it is given ([`source`]).

pub mod gbt;
pub mod source;
pub mod stratum;
pub mod synthetic;

use std::sync::Arc;

use bitcoin::{BlockHash, CompactTarget, Target, TxMerkleNode};

use crate::pow::block::BlockBody;

/// What kind of source issued a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The synthetic jobs of `hashrig bench`.
    Bench,
    /// A Stratum pool.
    Pool,
    /// A node, by `getblocktemplate` (solo mining).
    Node,
}

/// Where a job came from: blocks are kept one per parent and origin, and
/// the found-blocks file names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Pool, node or benchmark.
    pub kind: SourceKind,
    /// The pool's place in the failover list; 0 for a node or the bench.
    pub index: usize,
    /// The pool or node URL.
    pub name: Arc<str>,
}

impl Origin {
    /// Source `index` of kind `kind`, named `name` in logs.
    pub fn new(kind: SourceKind, index: usize, name: &str) -> Self {
        Origin {
            kind,
            index,
            name: name.into(),
        }
    }
}

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
    /// The block version.
    pub version: i32,
    /// BIP 310 version-rolling mask: header version bits the miner may change.
    pub version_mask: u32,
    /// The previous block.
    pub prev_hash: BlockHash,
    /// The coinbase transaction before the extranonce.
    pub coinbase1: Vec<u8>,
    /// The coinbase transaction after the extranonce.
    pub coinbase2: Vec<u8>,
    /// The pool's part of the extranonce.
    pub extranonce1: Vec<u8>,
    /// Bytes of extranonce2 the miner fills in; 0 to 8.
    pub extranonce2_size: usize,
    /// The merkle branch from the coinbase to the root.
    pub merkle_branch: Vec<[u8; 32]>,
    /// The network target's compact form.
    pub bits: CompactTarget,
    /// The block time.
    pub time: u32,
    /// How many seconds past `time` the header's ntime may be rolled.
    pub max_time_roll: u32,
    /// Old work is worthless: every device drops it within one batch.
    pub clean: bool,
    /// The share target in force when the job was issued. A source that
    /// takes no shares (solo) sets `Target::ZERO`: then only blocks are found.
    pub share_target: Target,
    /// Where the job came from.
    pub origin: Origin,
    /// A merkle root fixed by the source (a Stratum V2 standard channel:
    /// header-only mining, no coinbase to roll); the coinbase fields are
    /// then unused.
    pub merkle_root: Option<TxMerkleNode>,
    /// The rest of the block, for a source that builds whole blocks (solo).
    pub block_body: Option<Arc<BlockBody>>,
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
