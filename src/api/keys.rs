//! API keys: bearer tokens in a keys file (TOML), of which only a SHA-256
//! hash is stored. Several keys can be active at once, so a key is rotated
//! by adding the new one, moving clients over, and revoking the old one,
//! with no restart: the file is re-read when it changes (and on SIGHUP).
//!
//! ```toml
//! [[key]]
//! name = "grafana"
//! scope = "read"            # or "control"
//! hash = "sha256:…"         # of the token; the token itself is shown once
//! expires = "2027-06-30"    # optional: UTC, a date or YYYY-MM-DDTHH:MM:SSZ
//! ```

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// GET routes and /metrics.
    Read,
    /// Everything, including switching pools and disabling devices.
    Control,
}

impl std::str::FromStr for Scope {
    type Err = KeysError;
    fn from_str(s: &str) -> Result<Self, KeysError> {
        match s {
            "read" => Ok(Scope::Read),
            "control" => Ok(Scope::Control),
            other => Err(KeysError::Invalid {
                detail: format!("scope {other:?}: must be read or control"),
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    scope: Scope,
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default, rename = "key")]
    keys: Vec<KeyEntry>,
}

/// A keys file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    #[error("keys file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("keys file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{detail}")]
    Invalid { detail: String },
    #[error("keys file {path}: no key named {name:?}")]
    NoSuchKey { path: String, name: String },
}

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Unknown,
    Expired,
}

#[derive(Debug, Clone)]
struct ParsedKey {
    name: String,
    scope: Scope,
    hash: [u8; 32],
    expires_unix: Option<u64>,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ`, as Unix seconds.
pub fn parse_expiry(text: &str) -> Option<u64> {
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some()
        || !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    let mut seconds = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let hms: Vec<u32> = time
            .split(':')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let [h, mi, s] = hms[..] else { return None };
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
        seconds += i64::from(h * 3600 + mi * 60 + s);
    }
    u64::try_from(seconds).ok()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    hex::decode(text.strip_prefix("sha256:")?)
        .ok()?
        .try_into()
        .ok()
}

fn read_file(path: &Path) -> Result<KeysFile, KeysError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeysFile::default()),
        Err(source) => {
            return Err(KeysError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    toml::from_str(&text).map_err(|e| KeysError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn parse_entries(path: &Path, file: &KeysFile) -> Result<Vec<ParsedKey>, KeysError> {
    let bad = |message: String| KeysError::Parse {
        path: path.display().to_string(),
        message,
    };
    let mut out: Vec<ParsedKey> = Vec::new();
    for (i, k) in file.keys.iter().enumerate() {
        if k.name.is_empty() || k.name.len() > 64 {
            return Err(bad(format!("key {i}: name must be 1 to 64 characters")));
        }
        if out.iter().any(|o| o.name == k.name) {
            return Err(bad(format!("key {:?} appears twice", k.name)));
        }
        let hash = parse_hash(&k.hash).ok_or_else(|| {
            bad(format!(
                "key {:?}: hash must be sha256: and 64 hex digits",
                k.name
            ))
        })?;
        let expires_unix = match &k.expires {
            None => None,
            Some(e) => Some(parse_expiry(e).ok_or_else(|| {
                bad(format!(
                    "key {:?}: expires {e:?} is not YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ",
                    k.name
                ))
            })?),
        };
        out.push(ParsedKey {
            name: k.name.clone(),
            scope: k.scope,
            hash,
            expires_unix,
        });
    }
    Ok(out)
}

fn write_file(path: &Path, file: &KeysFile) -> Result<(), KeysError> {
    let io = |source| KeysError::Io {
        path: path.display().to_string(),
        source,
    };
    let text = toml::to_string(file).map_err(|e| KeysError::Invalid {
        detail: e.to_string(),
    })?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    // Written beside and renamed over: a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// SHA-256 of a token, as stored.
fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Adds a new key named `name` to the file and returns the token, which is
/// not stored anywhere and cannot be shown again.
pub fn new_key(
    path: &Path,
    name: &str,
    scope: Scope,
    expires: Option<&str>,
) -> Result<String, KeysError> {
    let mut file = read_file(path)?;
    parse_entries(path, &file)?;
    if name.is_empty() || name.len() > 64 || name.contains(char::is_control) {
        return Err(KeysError::Invalid {
            detail: format!("--name {name:?}: must be 1 to 64 printable characters"),
        });
    }
    if file.keys.iter().any(|k| k.name == name) {
        return Err(KeysError::Invalid {
            detail: format!(
                "--name {name:?}: a key of that name exists; revoke it first or pick another"
            ),
        });
    }
    if let Some(e) = expires {
        if parse_expiry(e).is_none() {
            return Err(KeysError::Invalid {
                detail: format!("--expires {e:?}: not YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"),
            });
        }
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| KeysError::Invalid {
        detail: format!("no randomness from the system: {e}"),
    })?;
    let token = format!("hrk_{}", hex::encode(secret));
    file.keys.push(KeyEntry {
        name: name.to_owned(),
        scope,
        hash: format!("sha256:{}", hex::encode(token_hash(&token))),
        expires: expires.map(str::to_owned),
    });
    write_file(path, &file)?;
    Ok(token)
}

/// Removes the key named `name` from the file.
pub fn revoke_key(path: &Path, name: &str) -> Result<(), KeysError> {
    let mut file = read_file(path)?;
    let before = file.keys.len();
    file.keys.retain(|k| k.name != name);
    if file.keys.len() == before {
        return Err(KeysError::NoSuchKey {
            path: path.display().to_string(),
            name: name.to_owned(),
        });
    }
    write_file(path, &file)
}

/// The keys in force, re-read when the file changes.
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    keys: RwLock<Vec<ParsedKey>>,
    modified: RwLock<Option<SystemTime>>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl KeyStore {
    /// Loads the file, which must parse; a missing file is no keys.
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        let keys = parse_entries(path, &read_file(path)?)?;
        Ok(KeyStore {
            path: path.to_owned(),
            keys: RwLock::new(keys),
            modified: RwLock::new(modified(path)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file. A file that no longer parses leaves the keys in
    /// force unchanged (and says why): a typo must not lock the operator
    /// out, nor let everyone in.
    pub fn reload(&self) {
        *self.modified.write().unwrap_or_else(|e| e.into_inner()) = modified(&self.path);
        match read_file(&self.path).and_then(|f| parse_entries(&self.path, &f)) {
            Ok(keys) => {
                tracing::info!(
                    "API keys reloaded from {} ({} keys)",
                    self.path.display(),
                    keys.len()
                );
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
            }
            Err(e) => tracing::error!("{e}; keeping the keys in force"),
        }
    }

    /// Re-reads the file if its modification time changed.
    pub fn reload_if_changed(&self) {
        let now = modified(&self.path);
        if now != *self.modified.read().unwrap_or_else(|e| e.into_inner()) {
            self.reload();
        }
    }

    /// The name and scope of the key `token` is, if it is a live key.
    /// Every stored hash is compared, in constant time, whatever matches.
    pub fn authenticate(
        &self,
        token: Option<&str>,
        now_unix: u64,
    ) -> Result<(String, Scope), AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        if token.is_empty() || token.len() > 256 {
            return Err(AuthError::Unknown);
        }
        let presented = token_hash(token);
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let mut found: Option<&ParsedKey> = None;
        for key in keys.iter() {
            if bool::from(key.hash.ct_eq(&presented)) {
                found = Some(key);
            }
        }
        let key = found.ok_or(AuthError::Unknown)?;
        if key.expires_unix.is_some_and(|e| now_unix >= e) {
            return Err(AuthError::Expired);
        }
        Ok((key.name.clone(), key.scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("hashrig-keys-{}-{name}.toml", std::process::id()))
    }

    #[test]
    fn new_authenticate_rotate_revoke() {
        let path = temp("rotate");
        let _ = std::fs::remove_file(&path);
        let old = new_key(&path, "old", Scope::Read, None).unwrap();
        let store = KeyStore::load(&path).unwrap();
        assert_eq!(
            store.authenticate(Some(&old), 0),
            Ok(("old".into(), Scope::Read))
        );
        assert_eq!(
            store.authenticate(Some("hrk_nope"), 0),
            Err(AuthError::Unknown)
        );
        assert_eq!(store.authenticate(None, 0), Err(AuthError::Missing));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&old[4..]),
            "the token itself is never stored"
        );
        let new = new_key(&path, "new", Scope::Control, Some("2030-01-01")).unwrap();
        revoke_key(&path, "old").unwrap();
        store.reload();
        assert_eq!(store.authenticate(Some(&old), 0), Err(AuthError::Unknown));
        assert_eq!(
            store.authenticate(Some(&new), 0),
            Ok(("new".into(), Scope::Control))
        );
        let expiry = parse_expiry("2030-01-01").unwrap();
        assert_eq!(
            store.authenticate(Some(&new), expiry),
            Err(AuthError::Expired)
        );
        assert!(matches!(
            revoke_key(&path, "old"),
            Err(KeysError::NoSuchKey { .. })
        ));
        assert!(
            new_key(&path, "new", Scope::Read, None).is_err(),
            "names are unique"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn expiry_dates() {
        assert_eq!(parse_expiry("1970-01-02"), Some(86_400));
        assert_eq!(parse_expiry("2000-03-01"), Some(951_868_800));
        assert_eq!(parse_expiry("2026-11-28T12:00:00Z"), Some(1_795_867_200));
        assert_eq!(parse_expiry("2026-13-01"), None);
        assert_eq!(parse_expiry("tomorrow"), None);
    }

    #[test]
    fn bad_files_name_the_problem() {
        let path = temp("bad");
        std::fs::write(
            &path,
            "[[key]]\nname = \"a\"\nscope = \"admin\"\nhash = \"sha256:00\"\n",
        )
        .unwrap();
        let err = KeyStore::load(&path).unwrap_err().to_string();
        assert!(err.contains("scope") || err.contains("admin"), "{err}");
        std::fs::write(
            &path,
            format!(
                "[[key]]\nname = \"a\"\nscope = \"read\"\nhash = \"sha256:{}\"\ncolour = 1\n",
                "00".repeat(32)
            ),
        )
        .unwrap();
        let err = KeyStore::load(&path).unwrap_err().to_string();
        assert!(err.contains("colour") && err.contains("line"), "{err}");
        let _ = std::fs::remove_file(&path);
    }
}
