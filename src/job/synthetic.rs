//! The synthetic benchmark job: a fixed, realistic header template with a
//! difficulty-1 share target, mined like a pool job (extranonce2 rolled per
//! work unit) so a benchmark exercises the same path as real mining.

use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget};

use super::source::{JobSource, JobSourceError, SourceContext};
use super::{Job, Origin, SourceKind};
use crate::found::sink::Taken;
use crate::pow::target::DIFF1_TARGET;
use crate::stats::ShareResult;

/// The benchmark job source. Every verified share counts as accepted: there
/// is no pool to reject it, and the scheduler has already re-checked it.
#[derive(Debug, Default)]
pub struct SyntheticSource;

/// The benchmark's job: mainnet-shaped (nBits of block 840,000, so no
/// benchmark share is ever taken for a block), a difficulty-1 share target,
/// a coinbase with room for 4 + 8 bytes of extranonce.
pub fn synthetic_job() -> Job {
    let coinbase1 = hex_bytes(
        "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff2003a08601",
    );
    let coinbase2 = hex_bytes(
        "0e2f686173687269672062656e63682fffffffff0100f2052a010000001976a914000000000000000000000000000000000000000088ac00000000",
    );
    Job {
        id: "bench".into(),
        generation: 0,
        version: 0x2000_0000,
        version_mask: 0,
        prev_hash: BlockHash::from_byte_array([0x42; 32]),
        coinbase1,
        coinbase2,
        extranonce1: vec![0xb3, 0x9c, 0x00, 0x01],
        extranonce2_size: 8,
        merkle_branch: vec![[0x11; 32], [0x22; 32], [0x33; 32]],
        bits: CompactTarget::from_consensus(0x1703_4219),
        time: 1_700_000_000,
        max_time_roll: 7200,
        clean: true,
        share_target: DIFF1_TARGET,
        origin: Origin::new(SourceKind::Bench, 0, "bench"),
        block_body: None,
        merkle_root: None,
    }
}

fn hex_bytes(text: &str) -> Vec<u8> {
    // Constant, known-good hex: a failure here is a bug in this file.
    hex::decode(text).unwrap_or_default()
}

impl JobSource for SyntheticSource {
    fn name(&self) -> String {
        "bench".into()
    }

    fn run(&mut self, ctx: SourceContext) -> Result<(), JobSourceError> {
        ctx.work.publish(synthetic_job());
        ctx.stats.set_share_difficulty(Some(1.0));
        // Until the devices are done: what they found in their last batch
        // counts too.
        while !ctx.grace_over() {
            match ctx.found.wait(Duration::from_millis(100)) {
                Taken::Found(found) => ctx.stats.record_result(found.device, ShareResult::Accepted),
                Taken::Empty => {}
                Taken::Closed => break,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_job_hex_is_valid() {
        let job = synthetic_job();
        assert!(!job.coinbase1.is_empty());
        assert!(!job.coinbase2.is_empty());
    }
}
