//! Reading the files an operator points hashrig at (the config file, the
//! API keys file) without trusting them: a FIFO or a device must not block
//! the miner, a huge file must not be read into memory, and a keys file
//! another user can write is a key another user can add.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// A file that cannot be read as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Opening, inspecting or reading the file failed.
    #[error("{path}")]
    Io {
        /// The file, as given.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A FIFO, a device, a folder or a socket, not a regular file.
    #[error("{path}: not a regular file ({kind}); refused")]
    NotRegular {
        /// The file, as given.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than hashrig reads.
    #[error("{path}: {size} bytes, larger than the {limit} allowed")]
    TooLarge {
        /// The file, as given.
        path: String,
        /// Its size.
        size: u64,
        /// The most hashrig reads.
        limit: u64,
    },
    /// The file is not UTF-8.
    #[error("{path}: not UTF-8 text")]
    NotText {
        /// The file, as given.
        path: String,
    },
    /// Another user can write the file: a key another user can add.
    #[error("{path}: writable by other users (mode {mode:03o}); refused: `chmod go-w {path}`")]
    WritableByOthers {
        /// The file, as given.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file belongs to another user.
    #[error("{path}: owned by user {owner}, neither this user ({me}) nor root; refused")]
    ForeignOwner {
        /// The file, as given.
        path: String,
        /// Its owner.
        owner: u32,
        /// This process's user.
        me: u32,
    },
}

impl FileError {
    /// Whether the file (not its folder) is simply absent.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn kind_of(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
    }
    if file_type.is_dir() {
        "a folder"
    } else {
        "not a plain file"
    }
}

/// Opens without blocking: opening a FIFO for reading waits for a writer
/// unless `O_NONBLOCK` is given, and the type is only known for sure on
/// the handle (the path may be swapped between a check and the open).
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Opens `path` for appending (created if missing) without blocking, and
/// only if it is a regular file or a character device (`/dev/null`): a
/// FIFO would block the open until a reader came, or take writes nobody
/// keeps.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let file_type = file.metadata()?.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_char_device() {
            return Ok(file);
        }
    }
    if !file_type.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a regular file ({}); refused", kind_of(file_type)),
        ));
    }
    Ok(file)
}

/// Opens `path` for reading only if it is a regular file: a FIFO (which
/// could block forever), a device (`/dev/zero` never ends), a socket or a
/// folder is refused, by the type of the opened handle.
pub fn open_regular(path: &Path) -> Result<(File, std::fs::Metadata), FileError> {
    let shown = || path.display().to_string();
    let io = |source| FileError::Io {
        path: shown(),
        source,
    };
    let file = open_nonblocking(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular {
            path: shown(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok((file, meta))
}

/// Reads `path` as UTF-8 text if it is a regular file of at most `limit`
/// bytes; its type and size are checked before anything is read.
pub fn read_text(path: &Path, limit: u64) -> Result<String, FileError> {
    let bytes = read_bytes(path, limit)?;
    String::from_utf8(bytes).map_err(|_| FileError::NotText {
        path: path.display().to_string(),
    })
}

/// Reads `path` if it is a regular file of at most `limit` bytes; its type
/// and size are checked before anything is read.
pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let shown = || path.display().to_string();
    let io = |source| FileError::Io {
        path: shown(),
        source,
    };
    let (file, meta) = open_regular(path)?;
    if meta.len() > limit {
        return Err(FileError::TooLarge {
            path: shown(),
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::new();
    // Bounded again: the file may grow while it is read.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: shown(),
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// Refuses a secret file, or its folder, that a user other than this one
/// (or root) owns or may write: OpenSSH's StrictModes rule. What is
/// missing passes.
pub fn check_private(path: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        // Missing (the folder, or just the file) is nothing to read; a
        // writer checks again once it has made the folder.
        match check_owner_and_mode(&folder).and_then(|()| check_owner_and_mode(path)) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

#[cfg(unix)]
fn check_owner_and_mode(path: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| FileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(FileError::WritableByOthers {
            path: path.display().to_string(),
            mode,
        });
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(FileError::ForeignOwner {
            path: path.display().to_string(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

/// One line of a file read by [`BoundedLines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineAt {
    /// From 1.
    pub number: usize,
    /// Where it starts in the file.
    pub offset: u64,
    /// Its length without the newline; past the bound, nothing of it was
    /// kept.
    pub len: u64,
    pub(crate) too_long: bool,
}

/// Lines of bytes read in bounded chunks, each kept only up to `max` bytes:
/// a line past the bound (a file of zeros with no newline, say) is read
/// through and reported, never held. Bytes, not text: one damaged line is
/// the caller's to name and skip, not the end of the file.
pub struct BoundedLines<R> {
    reader: R,
    max: usize,
    number: usize,
    offset: u64,
}

impl<R: std::io::BufRead> BoundedLines<R> {
    /// Reads `reader` in lines of at most `max` bytes.
    pub fn new(reader: R, max: usize) -> Self {
        BoundedLines {
            reader,
            max,
            number: 0,
            offset: 0,
        }
    }

    /// Reads the next line into `line` (cleared first, newline left out);
    /// `None` at the end of the file.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> std::io::Result<Option<LineAt>> {
        line.clear();
        let start = self.offset;
        let mut len: u64 = 0;
        let mut too_long = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if len == 0 {
                    return Ok(None);
                }
                break;
            }
            let (part, ended) = match available.iter().position(|b| *b == b'\n') {
                Some(at) => (&available[..at], true),
                None => (available, false),
            };
            len += part.len() as u64;
            if !too_long && line.len() + part.len() > self.max {
                too_long = true;
                line.clear();
                line.shrink_to(0);
            }
            if !too_long {
                line.extend_from_slice(part);
            }
            let used = part.len() + usize::from(ended);
            self.reader.consume(used);
            self.offset += used as u64;
            if ended {
                break;
            }
        }
        self.number += 1;
        Ok(Some(LineAt {
            number: self.number,
            offset: start,
            len,
            too_long,
        }))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    fn folder(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("hashrig-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = folder("fifo");
        let fifo = dir.join("keys.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = Instant::now();
        let err = read_text(&fifo, 1024).unwrap_err();
        assert!(
            matches!(err, FileError::NotRegular { kind: "a FIFO", .. }),
            "{err}"
        );
        // Appending: with no reader, a plain open would wait for one.
        let err = open_append(&fifo).unwrap_err();
        assert!(
            err.to_string().contains("FIFO") || err.raw_os_error() == Some(libc::ENXIO),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(open_append(Path::new("/dev/null")).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn size_is_checked_before_reading() {
        let dir = folder("size");
        let big = dir.join("big.toml");
        let f = File::create(&big).unwrap();
        // Sparse: 50 MB on paper, nothing on disk.
        f.set_len(50_000_000).unwrap();
        let err = read_text(&big, 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::TooLarge {
                    size: 50_000_000,
                    ..
                }
            ),
            "{err}"
        );
        std::fs::write(&big, "a = 1\n").unwrap();
        assert_eq!(read_text(&big, 1 << 20).unwrap(), "a = 1\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn long_lines_are_read_through_not_kept() {
        let text = b"short\nlonger than eight\n\nlast";
        let mut lines = BoundedLines::new(std::io::BufReader::with_capacity(3, &text[..]), 8);
        let mut line = Vec::new();
        let first = lines.next_line(&mut line).unwrap().unwrap();
        assert_eq!((first.number, first.offset, first.too_long), (1, 0, false));
        assert_eq!(line, b"short");
        let second = lines.next_line(&mut line).unwrap().unwrap();
        assert_eq!((second.number, second.offset, second.len), (2, 6, 17));
        assert!(second.too_long && line.is_empty());
        let third = lines.next_line(&mut line).unwrap().unwrap();
        assert_eq!((third.number, third.len), (3, 0));
        let last = lines.next_line(&mut line).unwrap().unwrap();
        assert_eq!((last.number, last.offset), (4, 25));
        assert_eq!(line, b"last");
        assert_eq!(lines.next_line(&mut line).unwrap(), None);
    }

    #[test]
    fn devices_are_not_regular_files() {
        let err = open_regular(Path::new("/dev/zero")).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::NotRegular {
                    kind: "a device",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn files_and_folders_writable_by_others_are_refused() {
        let dir = folder("private");
        let keys = dir.join("keys.toml");
        assert!(
            check_private(&keys).is_ok(),
            "a missing file in a private folder"
        );
        std::fs::write(&keys, "").unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_private(&keys).is_ok());
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = check_private(&keys).unwrap_err();
        assert!(
            matches!(err, FileError::WritableByOthers { mode: 0o666, .. }),
            "{err}"
        );
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_private(&keys).unwrap_err();
        assert!(matches!(err, FileError::WritableByOthers { .. }), "{err}");
        assert!(err.to_string().contains(dir.to_str().unwrap()), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Writes `bytes` to `path` through a temporary file beside it, created
/// anew (never one already there, whoever made it) with mode 0600, synced
/// and renamed over: a reader never sees half a file, and nobody else's
/// file takes its place.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let (tmp, mut f) = (0..16)
        .find_map(|_| {
            let tmp = path.with_file_name(format!(
                ".{name}.{}.{:016x}.tmp",
                std::process::id(),
                fastrand::u64(..)
            ));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            options.open(&tmp).ok().map(|f| (tmp, f))
        })
        .ok_or_else(|| std::io::Error::other("could not create a new temporary file beside it"))?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
