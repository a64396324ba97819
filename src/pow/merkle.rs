//! Merkle root of a block whose coinbase is assembled by the miner: the
//! coinbase's txid folded with the branch the job source sent (Stratum V1
//! `mining.notify`, or the template's other transactions for solo mining).

use bitcoin::hashes::{sha256d, Hash, HashEngine};
use bitcoin::TxMerkleNode;

/// Hashes a serialized coinbase transaction and folds in the merkle branch,
/// each step `sha256d(left || right)` with the running hash on the left.
pub fn merkle_root_from_branch(coinbase: &[u8], branch: &[[u8; 32]]) -> TxMerkleNode {
    let mut node = sha256d::Hash::hash(coinbase).to_byte_array();
    for sibling in branch {
        let mut engine = sha256d::Hash::engine();
        engine.input(&node);
        engine.input(sibling);
        node = sha256d::Hash::from_engine(engine).to_byte_array();
    }
    TxMerkleNode::from_byte_array(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::consensus::serialize;

    /// The genesis block has one transaction: its root is its coinbase txid.
    #[test]
    fn single_coinbase_root_is_txid() {
        let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Bitcoin);
        let coinbase = serialize(&genesis.txdata[0]);
        assert_eq!(
            merkle_root_from_branch(&coinbase, &[]),
            genesis.header.merkle_root
        );
    }

    /// A branch of one sibling equals rust-bitcoin's root of two transactions.
    #[test]
    fn branch_matches_rust_bitcoin() {
        let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Bitcoin);
        let mut tx2 = genesis.txdata[0].clone();
        tx2.lock_time = bitcoin::absolute::LockTime::from_consensus(7);
        let ids = [genesis.txdata[0].compute_txid(), tx2.compute_txid()];
        let expected = bitcoin::merkle_tree::calculate_root(ids.iter().map(|t| t.to_raw_hash()))
            .map(TxMerkleNode::from_raw_hash);
        let sibling = ids[1].to_byte_array();
        let root = merkle_root_from_branch(&serialize(&genesis.txdata[0]), &[sibling]);
        assert_eq!(Some(root), expected);
    }
}
