//! The found-blocks file: every block-solving hash is appended here, and
//! synced to disk, the moment the CPU has verified it: before it is
//! submitted anywhere, whether or not a pool or node is reachable. A block
//! is worth more than everything else the rig does that day; if the pool or
//! node is down, the process crashes or the submission is lost, the
//! operator still has it, and `hashrig found-blocks submit` can send a solo
//! block to a node later.
//!
//! One JSON object per line (JSON Lines), append-only: a [`found_record`]
//! when a block is found, then an [`answer_record`] for each answer (or for
//! giving up). The file is capped ([`DEFAULT_MAX_BYTES`]): blocks are kept
//! one per parent, so a full file means something is badly wrong, and it
//! is said loudly rather than filling the disk.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::Found;
use crate::pow::header::header_bytes;
use crate::stats::ShareResult;

/// The largest the file may grow: far beyond any honest use (a block per
/// parent), far below a full disk.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// A record that could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("{path}: {size} bytes, at its cap of {max} bytes; record not written")]
    Full { path: String, size: u64, max: u64 },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// An append-only, synced, capped log of found blocks.
#[derive(Debug)]
pub struct FoundBlockLog {
    path: PathBuf,
    file: Mutex<File>,
    max_bytes: u64,
}

impl FoundBlockLog {
    /// The default location: `$XDG_DATA_HOME/hashrig/found-blocks.jsonl`.
    pub fn default_path() -> Option<PathBuf> {
        dirs::data_dir().map(|d| d.join("hashrig").join("found-blocks.jsonl"))
    }

    /// Opens (creating it and its folder if needed) for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = crate::files::open_append(path)?;
        Ok(FoundBlockLog {
            path: path.to_owned(),
            file: Mutex::new(file),
            max_bytes: DEFAULT_MAX_BYTES,
        })
    }

    /// The same log with another cap.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and waits until it is on disk. Blocking: call it
    /// from a thread, never from an async runtime.
    pub fn append(&self, record: &Value) -> Result<(), JournalError> {
        let mut line = record.to_string();
        line.push('\n');
        let io = |source| JournalError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let size = file.metadata().map_err(io)?.len();
        if size + line.len() as u64 > self.max_bytes {
            return Err(JournalError::Full {
                path: self.path.display().to_string(),
                size,
                max: self.max_bytes,
            });
        }
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)
    }

    /// [`Self::append`], and when that fails, the whole record into the log:
    /// then the log is the only copy.
    pub fn append_or_log(&self, record: &Value) {
        if let Err(e) = self.append(record) {
            tracing::error!("{e}; record: {record}");
        }
    }
}

/// Seconds since the Unix epoch, for records.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The record of a found block: its header and coinbase (enough for a pool
/// to rebuild it), and for a solo job the whole block, for `submitblock`.
pub fn found_record(found: &Found) -> Value {
    let work = &found.work;
    let job = &work.job;
    let header = found.header();
    let mut record = json!({
        "found_at": unix_now(),
        "source": job.origin.kind,
        "origin": &*job.origin.name,
        "hash": found.hash.to_string(),
        "header": hex::encode(header_bytes(&header)),
        "job_id": job.id,
        "extranonce2": hex::encode(&work.extranonce2),
        "ntime": format!("{:08x}", work.time),
        "nonce": format!("{:08x}", found.nonce),
        "version": format!("{:08x}", work.version as u32),
        // A header-only job (Stratum V2 standard channel) has no coinbase
        // here: the pool keeps it.
        "coinbase": job
            .merkle_root
            .is_none()
            .then(|| hex::encode(job.coinbase(&work.extranonce2))),
    });
    if let Some(body) = &job.block_body {
        record["height"] = json!(body.height);
        record["block"] = json!(hex::encode(body.block_bytes(&header, &work.extranonce2)));
    }
    record
}

/// What became of a found block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOutcome {
    Accepted,
    Rejected,
    /// The peer said it came too late (a pool's stale answer, a node's
    /// `inconclusive`).
    Stale,
    /// No peer answered before the miner stopped: still to be submitted.
    Unsubmitted,
}

impl From<ShareResult> for BlockOutcome {
    fn from(result: ShareResult) -> Self {
        match result {
            ShareResult::Accepted => BlockOutcome::Accepted,
            ShareResult::Rejected => BlockOutcome::Rejected,
            ShareResult::Stale => BlockOutcome::Stale,
        }
    }
}

impl BlockOutcome {
    /// The peer's answer, as counted; `None` when there was none.
    pub fn answer(self) -> Option<ShareResult> {
        match self {
            BlockOutcome::Accepted => Some(ShareResult::Accepted),
            BlockOutcome::Rejected => Some(ShareResult::Rejected),
            BlockOutcome::Stale => Some(ShareResult::Stale),
            BlockOutcome::Unsubmitted => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BlockOutcome::Accepted => "accepted",
            BlockOutcome::Rejected => "rejected",
            BlockOutcome::Stale => "stale",
            BlockOutcome::Unsubmitted => "unsubmitted",
        }
    }
}

/// The record of an answer about the block `hash`, from `origin`.
pub fn answer_record(
    hash: &str,
    origin: &str,
    outcome: BlockOutcome,
    reason: Option<&str>,
) -> Value {
    json!({
        "hash": hash,
        "answered_at": unix_now(),
        "origin": origin,
        "result": outcome.as_str(),
        "reason": reason,
    })
}

/// A whole block in the file that no node has answered for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubmittedBlock {
    pub hash: String,
    /// The block, hex-encoded, as `submitblock` takes it.
    pub block: String,
    pub height: Option<u64>,
    /// Its line in the file, from 1.
    pub line: usize,
}

/// Reads the file and returns the solo blocks whose last word is no answer
/// or "unsubmitted", oldest first, and a note for every line that is not a
/// record (a torn last line after a crash, say).
pub fn unsubmitted_blocks(
    path: &Path,
) -> Result<(Vec<UnsubmittedBlock>, Vec<String>), JournalError> {
    let io = |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut blocks: Vec<UnsubmittedBlock> = Vec::new();
    let mut notes = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                notes.push(format!("line {number}: not a record ({e}); skipped"));
                continue;
            }
        };
        let Some(hash) = record.get("hash").and_then(Value::as_str) else {
            notes.push(format!("line {number}: no \"hash\"; skipped"));
            continue;
        };
        match (record.get("block"), record.get("result")) {
            (Some(Value::String(block)), _) if !blocks.iter().any(|b| b.hash == hash) => {
                blocks.push(UnsubmittedBlock {
                    hash: hash.to_owned(),
                    block: block.clone(),
                    height: record.get("height").and_then(Value::as_u64),
                    line: number,
                });
            }
            (None, Some(Value::String(result))) if result != BlockOutcome::Unsubmitted.as_str() => {
                blocks.retain(|b| b.hash != hash);
            }
            _ => {}
        }
    }
    Ok((blocks, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir()
            .join(format!("hashrig-found-{}-{name}", std::process::id()))
            .join("sub")
            .join("found.jsonl")
    }

    #[test]
    fn appends_lines_that_survive_reopening() {
        let path = temp("reopen");
        let log = FoundBlockLog::open(&path).unwrap();
        log.append(&json!({"hash": "00ab"})).unwrap();
        drop(log);
        let log = FoundBlockLog::open(&path).unwrap();
        log.append(&json!({"hash": "00cd"})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["hash"], "00cd");
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_full_file_refuses_records_and_keeps_what_it_has() {
        let path = temp("full");
        let log = FoundBlockLog::open(&path).unwrap().with_max_bytes(40);
        log.append(&json!({"hash": "00ab"})).unwrap();
        let err = log.append(&json!({"hash": "00cd", "pad": "x".repeat(20)}));
        assert!(
            matches!(err, Err(JournalError::Full { max: 40, .. })),
            "{err:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"hash\":\"00ab\"}\n"
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn unsubmitted_blocks_are_those_no_node_answered() {
        let path = temp("unsubmitted");
        let log = FoundBlockLog::open(&path).unwrap();
        let block = |hash: &str| json!({"hash": hash, "block": format!("{hash}ff"), "height": 7});
        log.append(&block("aa")).unwrap();
        log.append(&answer_record("aa", "node", BlockOutcome::Accepted, None))
            .unwrap();
        log.append(&block("bb")).unwrap();
        log.append(&answer_record(
            "bb",
            "node",
            BlockOutcome::Unsubmitted,
            Some("node down"),
        ))
        .unwrap();
        log.append(&block("cc")).unwrap();
        log.append(&json!({"hash": "dd", "header": "00"})).unwrap(); // a pool's block
        drop(log);
        // A torn last line, as after a crash mid-write.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"hash\": \"ee\", \"blo").unwrap();
        let (blocks, notes) = unsubmitted_blocks(&path).unwrap();
        let hashes: Vec<&str> = blocks.iter().map(|b| b.hash.as_str()).collect();
        assert_eq!(hashes, ["bb", "cc"]);
        assert_eq!(blocks[0].block, "bbff");
        assert_eq!(blocks[0].height, Some(7));
        assert_eq!(blocks[0].line, 3);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("line 7:"), "{notes:?}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }
}
