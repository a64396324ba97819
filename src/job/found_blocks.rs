//! The found-blocks file: every block-solving hash is appended here, and
//! synced to disk, before it is submitted anywhere. A block is worth more
//! than everything else the rig does that day; if the pool or node is down,
//! the process crashes or the submission is lost, the operator still has it.
//!
//! One JSON object per line (JSON Lines), append-only.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

/// An append-only, synced log of found blocks.
#[derive(Debug)]
pub struct FoundBlockLog {
    path: PathBuf,
    file: Mutex<File>,
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
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(FoundBlockLog {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and waits until it is on disk.
    pub fn append(&self, record: &Value) -> std::io::Result<()> {
        let mut line = record.to_string();
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line.as_bytes())?;
        file.sync_data()
    }
}

/// Seconds since the Unix epoch, for records.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines_that_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("hashrig-found-{}", std::process::id()));
        let path = dir.join("sub").join("found.jsonl");
        let log = FoundBlockLog::open(&path).unwrap();
        log.append(&serde_json::json!({"hash": "00ab"})).unwrap();
        drop(log);
        let log = FoundBlockLog::open(&path).unwrap();
        log.append(&serde_json::json!({"hash": "00cd"})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["hash"], "00cd");
        let _ = std::fs::remove_dir_all(dir);
    }
}
