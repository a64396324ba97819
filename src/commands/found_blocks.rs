//! `hashrig found-blocks submit`: solo blocks that no node answered for
//! (found while the node was down, or still unsubmitted when the miner
//! stopped), sent to a node, each answer appended to the file.

use hashrig::error_chain::Chain;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use hashrig::found::journal::{
    answer_record, read_block, unsubmitted_blocks, BlockOutcome, FoundBlockLog,
};
use hashrig::job::gbt::submit::submit_block;

use crate::cli::FoundBlocksSettings;
use crate::failure::Failure;

/// How long one block is retried while the node does not answer.
const PER_BLOCK: Duration = Duration::from_secs(30);

pub fn submit(settings: &FoundBlocksSettings) -> anyhow::Result<ExitCode> {
    let file: &Path = &settings.file;
    let (blocks, notes) = unsubmitted_blocks(file)
        .with_context(|| format!("found-blocks file {}", file.display()))?;
    for note in notes {
        tracing::warn!("{}: {note}", file.display());
    }
    if blocks.is_empty() {
        eprintln!("{}: no block is waiting for a node", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    if settings.dry_run {
        for block in &blocks {
            println!(
                "{} height {} (line {}): would be submitted",
                block.hash,
                block.height.map_or_else(|| "?".into(), |h| h.to_string()),
                block.line
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(rpc) = &settings.node else {
        anyhow::bail!("internal: no node for a submission");
    };
    let rpc = rpc.with_timeout(PER_BLOCK);
    let log = FoundBlockLog::open(file).with_context(|| {
        format!(
            "found-blocks file {}: cannot open for appending",
            file.display()
        )
    })?;
    for block in &blocks {
        let hex = match read_block(file, block) {
            Ok(hex) => hex,
            Err(e) => {
                tracing::warn!("{}: {}; skipped", block.hash, Chain(&e));
                continue;
            }
        };
        let deadline = Instant::now() + PER_BLOCK;
        let (outcome, reason) = submit_block(&rpc, &hex, &|| Some(deadline));
        if outcome == BlockOutcome::Unsubmitted {
            return Err(Failure::Source(format!(
                "{}: node {} did not answer ({}); it and the blocks after it are still waiting in {}",
                block.hash,
                rpc.url,
                reason.unwrap_or_default(),
                file.display()
            ))
            .into());
        }
        log.append(&answer_record(
            &block.hash,
            &rpc.url,
            outcome,
            reason.as_deref(),
        ))?;
        println!(
            "{}: {}{}",
            block.hash,
            outcome.as_str(),
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
