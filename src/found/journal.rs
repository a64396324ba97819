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
use crate::untrusted_files::BoundedLines;

/// The largest the file may grow: far beyond any honest use (a block per
/// parent), far below a full disk.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// A record that could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The file is at its cap: the record is not written.
    #[error("{path}: {size} bytes, at its cap of {max} bytes; record not written")]
    Full {
        /// The found-blocks file.
        path: String,
        /// Its size now.
        size: u64,
        /// Its cap.
        max: u64,
    },
    /// Writing or syncing the record failed.
    #[error("{path}")]
    Io {
        /// The found-blocks file.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be opened for reading as it is (not a regular
    /// file, say).
    #[error(transparent)]
    Read(#[from] crate::untrusted_files::FileError),
    /// A record changed under hashrig while it marked it.
    #[error("{path}: line {line} changed since it was read: {why}")]
    Changed {
        /// The found-blocks file.
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What differs.
        why: String,
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
        let file = crate::untrusted_files::open_append(path)?;
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

    /// Appends one record and waits until it is on disk. Blocking: call it
    /// from a thread, never from an async runtime.
    pub fn append(&self, record: &Value) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.display().to_string(),
            source,
        };
        // Written into a buffer with room for the line end: a block's
        // record is tens of MB, and growing a full string copies it.
        let mut line = Vec::with_capacity(record_size_hint(record));
        serde_json::to_writer(&mut line, record).map_err(|e| io(e.into()))?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let size = file.metadata().map_err(io)?.len();
        if size + line.len() as u64 > self.max_bytes {
            return Err(JournalError::Full {
                path: self.path.display().to_string(),
                size,
                max: self.max_bytes,
            });
        }
        file.write_all(&line).map_err(io)?;
        file.sync_data().map_err(io)
    }

    /// [`Self::append`], and when that fails, the whole record into the log:
    /// then the log is the only copy.
    pub fn append_or_log(&self, record: &Value) {
        if let Err(e) = self.append(record) {
            tracing::error!("{}; record: {record}", crate::error_chain::Chain(&e));
        }
    }
}

/// About how long `record` is as a line: its block's hex and a little.
fn record_size_hint(record: &Value) -> usize {
    let block = record
        .get("block")
        .and_then(Value::as_str)
        .map_or(0, str::len);
    block + 4096
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
    /// The node took the block.
    Accepted,
    /// The node refused the block.
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

    /// How the record spells it.
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

/// The longest record read back: a record holds one block's hex and a
/// little more, and a block hashrig builds comes from a node answer of at
/// most 64 MiB (the RPC body cap) whose transactions are hex already. A
/// longer line is no record of ours; it is named and skipped unread.
pub const MAX_RECORD: usize = (64 << 20) + (64 << 10);

/// A whole block in the file that no node has answered for. The block
/// itself stays in the file until it is sent ([`read_block`]): memory
/// holds one record at a time, however many blocks wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubmittedBlock {
    /// The block's hash.
    pub hash: String,
    /// The block's height, where the record has it.
    pub height: Option<u64>,
    /// Its line in the file, from 1, and where that line starts.
    pub line: usize,
    offset: u64,
}

/// The fields of a record read back; the rest is left unread.
#[derive(serde::Deserialize)]
struct StoredRecord {
    hash: Option<String>,
    block: Option<String>,
    height: Option<u64>,
    result: Option<String>,
}

/// Why a line is not a record.
fn parse_record(line: &[u8]) -> Result<StoredRecord, String> {
    if let Err(e) = std::str::from_utf8(line) {
        return Err(format!(
            "not UTF-8 text (byte {} of {})",
            e.valid_up_to(),
            line.len()
        ));
    }
    serde_json::from_slice(line).map_err(|e| format!("not a record ({e})"))
}

/// Opens the file, refusing what is not a regular file (a FIFO would block
/// forever, a link to `/dev/zero` would never end).
fn open_records(path: &Path) -> Result<BoundedLines<BufReader<File>>, JournalError> {
    let (file, _) = crate::untrusted_files::open_regular(path)?;
    Ok(BoundedLines::new(
        BufReader::with_capacity(1 << 16, file),
        MAX_RECORD,
    ))
}

/// Reads the file line by line, as bytes, and returns the solo blocks whose
/// last word is no answer or "unsubmitted", oldest first, and a note for
/// every line that is not a record (a torn last line after a crash, binary
/// junk, bytes that are not UTF-8, a line past [`MAX_RECORD`]): each is
/// named by its number and skipped; every intact record counts.
pub fn unsubmitted_blocks(
    path: &Path,
) -> Result<(Vec<UnsubmittedBlock>, Vec<String>), JournalError> {
    unsubmitted_in(open_records(path)?).map_err(|source| JournalError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// [`unsubmitted_blocks`] of records read from `lines` (the fuzz target's
/// way in).
pub fn unsubmitted_in<R: BufRead>(
    mut lines: BoundedLines<R>,
) -> std::io::Result<(Vec<UnsubmittedBlock>, Vec<String>)> {
    let mut blocks: Vec<UnsubmittedBlock> = Vec::new();
    let mut notes = Vec::new();
    let mut line = Vec::new();
    while let Some(at) = lines.next_line(&mut line)? {
        let number = at.number;
        if at.too_long {
            notes.push(format!(
                "line {number}: {} bytes, longer than any record ({MAX_RECORD}); skipped",
                at.len
            ));
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = match parse_record(&line) {
            Ok(record) => record,
            Err(why) => {
                notes.push(format!("line {number}: {why}; skipped"));
                continue;
            }
        };
        let Some(hash) = record.hash else {
            notes.push(format!("line {number}: no \"hash\"; skipped"));
            continue;
        };
        match (record.block, record.result) {
            (Some(_), _) if !blocks.iter().any(|b| b.hash == hash) => {
                blocks.push(UnsubmittedBlock {
                    hash,
                    height: record.height,
                    line: number,
                    offset: at.offset,
                });
            }
            (None, Some(result)) if result != BlockOutcome::Unsubmitted.as_str() => {
                blocks.retain(|b| b.hash != hash);
            }
            _ => {}
        }
    }
    Ok((blocks, notes))
}

/// The block of `wanted`, read again from its line: hex, as `submitblock`
/// takes it.
pub fn read_block(path: &Path, wanted: &UnsubmittedBlock) -> Result<String, JournalError> {
    let changed = |why: String| JournalError::Changed {
        path: path.display().to_string(),
        line: wanted.line,
        why,
    };
    let io = |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    };
    let (mut file, _) = crate::untrusted_files::open_regular(path)?;
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(wanted.offset))
        .map_err(io)?;
    let mut lines = BoundedLines::new(BufReader::with_capacity(1 << 16, file), MAX_RECORD);
    let mut line = Vec::new();
    match lines.next_line(&mut line).map_err(io)? {
        Some(at) if !at.too_long => {}
        _ => return Err(changed("the line is gone".into())),
    }
    let record = parse_record(&line).map_err(changed)?;
    match (record.hash, record.block) {
        (Some(hash), Some(block)) if hash == wanted.hash => Ok(block),
        _ => Err(changed(format!("it no longer holds block {}", wanted.hash))),
    }
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
        assert_eq!(read_block(&path, &blocks[0]).unwrap(), "bbff");
        assert_eq!(read_block(&path, &blocks[1]).unwrap(), "ccff");
        assert_eq!(blocks[0].height, Some(7));
        assert_eq!(blocks[0].line, 3);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("line 7:"), "{notes:?}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_damaged_line_is_named_and_every_intact_record_kept() {
        let path = temp("damaged");
        let log = FoundBlockLog::open(&path).unwrap();
        log.append(&json!({"hash": "aa", "block": "aaff"})).unwrap();
        drop(log);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        // Binary junk, then a record with bytes that are not UTF-8 in it.
        file.write_all(b"\x00\xff\xfe junk \x80\n").unwrap();
        file.write_all(b"{\"hash\": \"zz\", \"block\": \"\xfc\xdf\"}\n")
            .unwrap();
        file.write_all(b"{\"hash\": \"bb\", \"block\": \"bbff\", \"height\": 9}\n")
            .unwrap();
        drop(file);
        let (blocks, notes) = unsubmitted_blocks(&path).unwrap();
        let hashes: Vec<&str> = blocks.iter().map(|b| b.hash.as_str()).collect();
        assert_eq!(hashes, ["aa", "bb"]);
        assert_eq!(read_block(&path, &blocks[1]).unwrap(), "bbff");
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("line 2: not UTF-8"), "{notes:?}");
        assert!(notes[1].starts_with("line 3: not UTF-8"), "{notes:?}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }
}
