//! Solo-mining block assembly, pure: the coinbase transaction cut around
//! its extranonce (so the WorkSource rolls it as it rolls a pool's
//! extranonce2), the merkle branch of the coinbase, and the full block.
//!
//! - BIP 34: the coinbase scriptSig starts with the block height, pushed as
//!   Bitcoin Core's `CScript() << height` does (OP_1..OP_16 for 1-16,
//!   otherwise a minimal little-endian number).
//! - BIP 141: with a witness commitment, the coinbase carries it as an
//!   output, and in the block (not in its txid) a 32-byte zero witness
//!   reserved value.

use std::sync::Arc;

use bitcoin::block::Header;
use bitcoin::consensus::encode::{serialize, VarInt};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::script::{Builder, PushBytesBuf, ScriptBuf};

/// Extranonce bytes in a solo coinbase: all rolled by the WorkSource.
pub const SOLO_EXTRANONCE: usize = 8;
/// Consensus bounds on a coinbase scriptSig.
const SCRIPT_SIG_MAX: usize = 100;

/// A coinbase transaction without its extranonce: `prefix || extranonce ||
/// suffix` is its serialization without witness (what its txid hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinbaseParts {
    pub(crate) prefix: Vec<u8>,
    pub(crate) suffix: Vec<u8>,
    /// The block needs the BIP 141 witness reserved value in the coinbase.
    pub segwit: bool,
}

/// What goes into a solo coinbase.
#[derive(Debug, Clone)]
pub struct CoinbaseSpec<'a> {
    /// The height of the block (BIP 34 puts it in the coinbase).
    pub height: u32,
    /// The block reward plus fees, in satoshis.
    pub value: u64,
    pub(crate) payout_script: &'a ScriptBuf,
    /// A short tag pushed after the extranonce (`--coinbase-sig`).
    pub tag: &'a [u8],
    /// The template's `default_witness_commitment` output script.
    pub witness_commitment: Option<&'a ScriptBuf>,
}

/// A coinbase that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoinbaseError {
    /// The scriptSig is longer than consensus allows.
    #[error("coinbase scriptSig of {len} bytes exceeds {SCRIPT_SIG_MAX}: shorten the coinbase tag ({tag_len} bytes)")]
    ScriptSigTooLong {
        /// The scriptSig's length.
        len: usize,
        /// The coinbase tag's length.
        tag_len: usize,
    },
}

/// The BIP 34 height push.
pub fn bip34_height_push(height: u32) -> ScriptBuf {
    Builder::new().push_int(i64::from(height)).into_script()
}

impl CoinbaseParts {
    pub(crate) fn build(spec: &CoinbaseSpec<'_>) -> Result<Self, CoinbaseError> {
        let height = bip34_height_push(spec.height);
        let mut tag_push = Vec::new();
        if !spec.tag.is_empty() {
            let bytes = PushBytesBuf::try_from(spec.tag.to_vec()).map_err(|_| {
                CoinbaseError::ScriptSigTooLong {
                    len: spec.tag.len(),
                    tag_len: spec.tag.len(),
                }
            })?;
            tag_push = Builder::new().push_slice(bytes).into_script().into_bytes();
        }
        // height, then a push of the extranonce, then the tag.
        let script_len = height.len() + 1 + SOLO_EXTRANONCE + tag_push.len();
        if script_len > SCRIPT_SIG_MAX {
            return Err(CoinbaseError::ScriptSigTooLong {
                len: script_len,
                tag_len: spec.tag.len(),
            });
        }
        let mut prefix = Vec::new();
        prefix.extend_from_slice(&1u32.to_le_bytes()); // version
        prefix.push(1); // one input
        prefix.extend_from_slice(&[0; 32]);
        prefix.extend_from_slice(&u32::MAX.to_le_bytes());
        prefix.extend_from_slice(&serialize(&VarInt(script_len as u64)));
        prefix.extend_from_slice(height.as_bytes());
        prefix.push(SOLO_EXTRANONCE as u8); // push the next 8 bytes

        let mut suffix = tag_push;
        suffix.extend_from_slice(&u32::MAX.to_le_bytes()); // sequence
        let outputs = 1 + usize::from(spec.witness_commitment.is_some());
        suffix.extend_from_slice(&serialize(&VarInt(outputs as u64)));
        suffix.extend_from_slice(&spec.value.to_le_bytes());
        suffix.extend_from_slice(&serialize(spec.payout_script));
        if let Some(commitment) = spec.witness_commitment {
            suffix.extend_from_slice(&0u64.to_le_bytes());
            suffix.extend_from_slice(&serialize(commitment));
        }
        suffix.extend_from_slice(&0u32.to_le_bytes()); // lock time
        Ok(CoinbaseParts {
            prefix,
            suffix,
            segwit: spec.witness_commitment.is_some(),
        })
    }

    /// The coinbase as it goes into the block: with the witness reserved
    /// value when the block commits to witnesses.
    pub fn block_serialization(&self, extranonce: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.segwit {
            out.extend_from_slice(&self.prefix);
            out.extend_from_slice(extranonce);
            out.extend_from_slice(&self.suffix);
            return out;
        }
        // version || marker 0 || flag 1 || inputs+outputs || witness || locktime
        let body_end = self.suffix.len() - 4;
        out.extend_from_slice(&self.prefix[..4]);
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&self.prefix[4..]);
        out.extend_from_slice(extranonce);
        out.extend_from_slice(&self.suffix[..body_end]);
        out.push(1); // one witness item
        out.push(32);
        out.extend_from_slice(&[0; 32]);
        out.extend_from_slice(&self.suffix[body_end..]);
        out
    }

    /// Bytes the coinbase adds to a block, and its weight (BIP 141).
    pub fn size_and_weight(&self) -> (usize, usize) {
        let base = self.prefix.len() + SOLO_EXTRANONCE + self.suffix.len();
        let total = base + if self.segwit { 2 + 1 + 1 + 32 } else { 0 };
        (total, base * 3 + total)
    }
}

/// The merkle branch of the first leaf (the coinbase) over `txids`, the
/// other transactions in block order: the sibling hashes on the way up.
pub fn coinbase_merkle_branch(txids: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut branch = Vec::new();
    // Level hashes to the right of the coinbase's path.
    let mut level: Vec<[u8; 32]> = txids.to_vec();
    while !level.is_empty() {
        branch.push(level[0]);
        // The next level: our node pairs with level[0]; the rest pair up,
        // the last doubled when the level (with our node) is odd.
        let mut rest: Vec<[u8; 32]> = level[1..].to_vec();
        if rest.len() % 2 == 1 {
            if let Some(last) = rest.last().copied() {
                rest.push(last);
            }
        }
        level = rest
            .chunks_exact(2)
            .map(|pair| {
                let mut both = [0u8; 64];
                both[..32].copy_from_slice(&pair[0]);
                both[32..].copy_from_slice(&pair[1]);
                sha256d::Hash::hash(&both).to_byte_array()
            })
            .collect();
    }
    branch
}

/// The transactions a block carries after its coinbase, serialized back to
/// back in block order: kept as one buffer, as the block will need them,
/// rather than one allocation each (a template may list 200,000).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockTransactions {
    serialized: Vec<u8>,
    count: usize,
}

impl BlockTransactions {
    /// Appends one serialized transaction.
    pub fn push(&mut self, serialized: &[u8]) {
        self.serialized.extend_from_slice(serialized);
        self.count += 1;
    }

    /// Gives back memory kept for growth once the list is complete.
    pub fn shrink_to_fit(&mut self) {
        self.serialized.shrink_to_fit();
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none (a template with only its coinbase).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Their serialized size, in bytes.
    pub fn size(&self) -> usize {
        self.serialized.len()
    }

    pub(crate) fn serialized(&self) -> &[u8] {
        &self.serialized
    }
}

/// What completes a block around its header: the coinbase cut around its
/// extranonce and the template's other transactions, serialized. A solo job
/// carries it, so a block found on the job can be written out whole the
/// moment the CPU verifies it, whatever happens to the template later. The
/// transactions are the template's own, shared, not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockBody {
    /// The height of the block.
    pub height: u32,
    pub(crate) coinbase: CoinbaseParts,
    pub(crate) transactions: Arc<BlockTransactions>,
}

impl BlockBody {
    /// The whole block for `header`, with `extranonce` in the coinbase.
    pub fn block_bytes(&self, header: &Header, extranonce: &[u8]) -> Vec<u8> {
        let coinbase = self.coinbase.block_serialization(extranonce);
        serialize_block(header, &coinbase, &self.transactions)
    }
}

/// A whole block for `submitblock`: header, transaction count, coinbase,
/// and the template's transactions as given.
pub fn serialize_block(
    header: &Header,
    coinbase: &[u8],
    transactions: &BlockTransactions,
) -> Vec<u8> {
    let mut out = serialize(header);
    out.reserve(9 + coinbase.len() + transactions.size());
    out.extend_from_slice(&serialize(&VarInt(1 + transactions.len() as u64)));
    out.extend_from_slice(coinbase);
    out.extend_from_slice(transactions.serialized());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::consensus::deserialize;
    use bitcoin::hashes::Hash;
    use bitcoin::{Transaction, Txid};

    fn payout() -> ScriptBuf {
        ScriptBuf::from_bytes(
            hex::decode("76a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac").unwrap(),
        )
    }

    #[test]
    fn bip34_heights_as_core_pushes_them() {
        assert_eq!(bip34_height_push(1).as_bytes(), &[0x51]);
        assert_eq!(bip34_height_push(16).as_bytes(), &[0x60]);
        assert_eq!(bip34_height_push(17).as_bytes(), &[0x01, 17]);
        assert_eq!(bip34_height_push(128).as_bytes(), &[0x02, 0x80, 0x00]);
        // Block 227,836 (BIP 34's activation on mainnet): 03 fc7903.
        assert_eq!(
            bip34_height_push(227_836).as_bytes(),
            &[0x03, 0xfc, 0x79, 0x03]
        );
    }

    #[test]
    fn coinbase_parses_and_carries_height_extranonce_and_payout() {
        let script = payout();
        let parts = CoinbaseParts::build(&CoinbaseSpec {
            height: 840_000,
            value: 312_500_000,
            payout_script: &script,
            tag: b"/hashrig/",
            witness_commitment: None,
        })
        .unwrap();
        let extranonce = [1, 2, 3, 4, 5, 6, 7, 8];
        let bytes = parts.block_serialization(&extranonce);
        let tx: Transaction = deserialize(&bytes).unwrap();
        assert!(tx.is_coinbase());
        let sig = tx.input[0].script_sig.as_bytes();
        assert!(sig.starts_with(bip34_height_push(840_000).as_bytes()));
        assert!(sig.windows(8).any(|w| w == extranonce));
        assert!(sig.ends_with(b"/hashrig/"));
        assert_eq!(tx.output[0].script_pubkey, script);
        assert_eq!(tx.output[0].value.to_sat(), 312_500_000);
        assert_eq!(parts.size_and_weight().0, bytes.len());
    }

    #[test]
    fn segwit_coinbase_has_the_reserved_value_and_the_same_txid() {
        let script = payout();
        let commitment =
            ScriptBuf::from_bytes(hex::decode(format!("6a24aa21a9ed{}", "ab".repeat(32))).unwrap());
        let parts = CoinbaseParts::build(&CoinbaseSpec {
            height: 500_000,
            value: 1,
            payout_script: &script,
            tag: b"",
            witness_commitment: Some(&commitment),
        })
        .unwrap();
        let extranonce = [9; 8];
        let with_witness: Transaction =
            deserialize(&parts.block_serialization(&extranonce)).unwrap();
        assert_eq!(with_witness.input[0].witness.to_vec(), vec![vec![0u8; 32]]);
        assert_eq!(with_witness.output[1].script_pubkey, commitment);
        let mut plain = parts.prefix.clone();
        plain.extend_from_slice(&extranonce);
        plain.extend_from_slice(&parts.suffix);
        assert_eq!(
            with_witness.compute_txid(),
            Txid::from_byte_array(sha256d::Hash::hash(&plain).to_byte_array())
        );
        let (size, weight) = parts.size_and_weight();
        assert_eq!(size, bitcoin::consensus::serialize(&with_witness).len());
        assert_eq!(weight as u64, with_witness.weight().to_wu());
    }

    #[test]
    fn tags_that_overflow_the_script_sig_are_refused() {
        let script = payout();
        let err = CoinbaseParts::build(&CoinbaseSpec {
            height: 1,
            value: 1,
            payout_script: &script,
            tag: &[b'x'; 95],
            witness_commitment: None,
        })
        .unwrap_err();
        assert!(matches!(err, CoinbaseError::ScriptSigTooLong { .. }));
    }

    #[test]
    fn branch_gives_rust_bitcoins_merkle_root() {
        for n in 0..12u8 {
            let coinbase = [0xc0; 32];
            let txids: Vec<[u8; 32]> = (0..n).map(|i| [i + 1; 32]).collect();
            let branch = coinbase_merkle_branch(&txids);
            let mut root = coinbase;
            for sibling in &branch {
                let mut both = [0u8; 64];
                both[..32].copy_from_slice(&root);
                both[32..].copy_from_slice(sibling);
                root = sha256d::Hash::hash(&both).to_byte_array();
            }
            let all = std::iter::once(coinbase)
                .chain(txids.iter().copied())
                .map(Txid::from_byte_array);
            let expected = bitcoin::merkle_tree::calculate_root(all).unwrap();
            assert_eq!(root, expected.to_byte_array(), "{n} transactions");
        }
    }
}
