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

pub use super::expiry::parse_expiry;
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
            other => Err(KeysError::BadScope {
                scope: other.to_owned(),
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
    /// The keys file could not be written.
    #[error("keys file {path}")]
    Io {
        /// The keys file.
        path: String,
        /// What failed underneath.
        #[source]
        source: std::io::Error,
    },
    /// An entry in the keys file is wrong.
    #[error("keys file {path}: {message}")]
    Parse {
        /// The keys file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The keys file is not TOML of the expected shape.
    #[error("keys file {path}: not TOML")]
    Toml {
        /// The keys file.
        path: String,
        /// What failed underneath.
        #[source]
        source: toml::de::Error,
    },
    /// A scope other than `read` or `control`.
    #[error("scope {scope:?}: must be read or control")]
    BadScope {
        /// The scope given.
        scope: String,
    },
    /// A key name that is empty, too long or not printable.
    #[error("key name {name:?}: must be 1 to 64 printable characters")]
    BadName {
        /// The key name given.
        name: String,
    },
    /// A key of that name is in the file already.
    #[error("key name {name:?}: a key of that name exists; revoke it first or pick another")]
    NameTaken {
        /// The key name given.
        name: String,
    },
    /// An expiry that is not a date.
    #[error("expiry {expires:?}: not a date YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")]
    BadExpiry {
        /// The expiry given.
        expires: String,
    },
    /// An expiry in the past.
    #[error("expiry {expires:?}: already past")]
    ExpiryPast {
        /// The expiry given.
        expires: String,
    },
    /// The keys could not be serialized.
    #[error("the keys could not be written as TOML")]
    Serialize(#[source] toml::ser::Error),
    /// The system gave no randomness for a new token.
    #[error("no randomness from the system for a new key")]
    NoRandomness(#[source] getrandom::Error),
    /// No key of that name to revoke.
    #[error("keys file {path}: no key named {name:?}")]
    NoSuchKey {
        /// The keys file.
        path: String,
        /// The key name given.
        name: String,
    },
    /// The keys file cannot be read as it is (see [`crate::untrusted_files::FileError`]).
    #[error("keys file")]
    File(#[from] crate::untrusted_files::FileError),
}

/// Why a request was not let in. The message is what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("an API key is needed: Authorization: Bearer KEY")]
    Missing,
    /// A token no key in the file hashes to.
    #[error("unknown API key")]
    Unknown,
    /// A known key past its expiry.
    #[error("this API key has expired")]
    Expired,
}

#[derive(Debug, Clone)]
struct ParsedKey {
    name: String,
    scope: Scope,
    hash: [u8; 32],
    expires_unix: Option<u64>,
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    hex::decode(text.strip_prefix("sha256:")?)
        .ok()?
        .try_into()
        .ok()
}

/// Keys files are small; anything bigger is not one.
const MAX_KEYS_FILE: u64 = 1 << 20;

/// The file's keys; `None` when there is no file. Refused when another
/// user may write it or its folder, or when it is not a regular file.
fn read_file(path: &Path) -> Result<Option<KeysFile>, KeysError> {
    crate::untrusted_files::check_private(path)?;
    let text = match crate::untrusted_files::read_text(path, MAX_KEYS_FILE) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|source| KeysError::Toml {
            path: path.display().to_string(),
            source,
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
                    "key {:?}: expires {e:?} is not a date YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ",
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

/// Writes `file` to `path` through a temporary file beside it, created
/// anew (never one already there, whoever made it) with mode 0600, synced
/// and renamed over: a reader never sees half a file, and nobody else's
/// file becomes the keys file.
fn write_file(path: &Path, file: &KeysFile) -> Result<(), KeysError> {
    let io = |source| KeysError::Io {
        path: path.display().to_string(),
        source,
    };
    let text = toml::to_string(file).map_err(KeysError::Serialize)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    crate::untrusted_files::check_private(path)?;
    crate::untrusted_files::replace(path, text.as_bytes()).map_err(io)
}

/// SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Adds a new key named `name` to the file and returns the token, which is
/// not stored anywhere and cannot be shown again.
pub fn new_key(
    path: &Path,
    name: &str,
    scope: Scope,
    expires: Option<&str>,
    now_unix: u64,
) -> Result<String, KeysError> {
    let mut file = read_file(path)?.unwrap_or_default();
    parse_entries(path, &file)?;
    if name.is_empty() || name.len() > 64 || name.contains(char::is_control) {
        return Err(KeysError::BadName { name: name.into() });
    }
    if file.keys.iter().any(|k| k.name == name) {
        return Err(KeysError::NameTaken { name: name.into() });
    }
    if let Some(e) = expires {
        match parse_expiry(e) {
            None => return Err(KeysError::BadExpiry { expires: e.into() }),
            Some(when) if when <= now_unix => {
                return Err(KeysError::ExpiryPast { expires: e.into() })
            }
            Some(_) => {}
        }
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(KeysError::NoRandomness)?;
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
    let mut file = read_file(path)?.unwrap_or_default();
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

/// What a re-read of the keys file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// These many keys are now in force (zero when the file is gone or
    /// empty: every request is refused).
    Loaded(usize),
    /// The file was refused; the keys in force before are kept.
    Kept(String),
}

impl KeyStore {
    /// Loads the file, which must parse and be private to this user. A
    /// missing file is no keys, said loudly: every request will be refused
    /// until it is created.
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        let keys = match read_file(path)? {
            Some(file) => parse_entries(path, &file)?,
            None => Vec::new(),
        };
        if keys.is_empty() {
            tracing::warn!(
                "API keys file {} {}: every API request is refused until a key is added with `hashrig api-key new`",
                path.display(),
                if path.exists() { "has no keys" } else { "does not exist" }
            );
        }
        Ok(KeyStore {
            path: path.to_owned(),
            keys: RwLock::new(keys),
            modified: RwLock::new(modified(path)),
        })
    }

    /// The keys file these keys come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file. A file that is refused (it no longer parses, or
    /// another user may write it) leaves the keys in force unchanged, and
    /// says why: a typo must not lock the operator out, nor let everyone
    /// in. A file that is gone or empty leaves no keys, loudly.
    pub fn reload(&self) -> Reload {
        *self.modified.write().unwrap_or_else(|e| e.into_inner()) = modified(&self.path);
        let read =
            read_file(&self.path).and_then(|f| parse_entries(&self.path, &f.unwrap_or_default()));
        match read {
            Ok(keys) => {
                let count = keys.len();
                if count == 0 {
                    tracing::warn!(
                        "API keys file {} {}: no API keys are in force; every request is refused",
                        self.path.display(),
                        if self.path.exists() {
                            "has no keys"
                        } else {
                            "is gone"
                        }
                    );
                } else {
                    tracing::info!(
                        "API keys reloaded from {} ({count} keys)",
                        self.path.display()
                    );
                }
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
                Reload::Loaded(count)
            }
            Err(e) => {
                let why = crate::error_chain::Chain(&e).to_string();
                tracing::error!("{why}; keeping the keys in force");
                Reload::Kept(why)
            }
        }
    }

    /// Re-reads the file if its modification time changed.
    pub fn reload_if_changed(&self) -> Option<Reload> {
        let now = modified(&self.path);
        // The read guard must be gone before reload takes the write lock.
        let changed = now != *self.modified.read().unwrap_or_else(|e| e.into_inner());
        changed.then(|| self.reload())
    }

    /// Whether the key with this stored hash is still in force: an open
    /// event stream ends when its key is revoked or expires.
    pub fn is_live(&self, hash: &[u8; 32], now_unix: u64) -> bool {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .any(|k| bool::from(k.hash.ct_eq(hash)) && k.expires_unix.is_none_or(|e| now_unix < e))
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

    /// A keys file path in a fresh folder only this user may write.
    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hashrig-keys-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        dir.join("keys.toml")
    }

    fn cleanup(path: &Path) {
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn new_authenticate_rotate_revoke() {
        let path = temp("rotate");
        let old = new_key(&path, "old", Scope::Read, None, 0).unwrap();
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
        let new = new_key(&path, "new", Scope::Control, Some("2030-01-01"), 0).unwrap();
        revoke_key(&path, "old").unwrap();
        assert_eq!(store.reload(), Reload::Loaded(1));
        assert_eq!(store.authenticate(Some(&old), 0), Err(AuthError::Unknown));
        assert!(!store.is_live(&token_hash(&old), 0));
        assert_eq!(
            store.authenticate(Some(&new), 0),
            Ok(("new".into(), Scope::Control))
        );
        let expiry = parse_expiry("2030-01-01").unwrap();
        assert!(store.is_live(&token_hash(&new), expiry - 1));
        assert!(!store.is_live(&token_hash(&new), expiry));
        assert_eq!(
            store.authenticate(Some(&new), expiry),
            Err(AuthError::Expired)
        );
        assert!(matches!(
            revoke_key(&path, "old"),
            Err(KeysError::NoSuchKey { .. })
        ));
        assert!(
            new_key(&path, "new", Scope::Read, None, 0).is_err(),
            "names are unique"
        );
        cleanup(&path);
    }

    #[test]
    fn a_new_key_must_expire_in_the_future() {
        let path = temp("expires");
        let now = parse_expiry("2026-11-29").unwrap();
        for (expires, why) in [
            ("2020-01-01", "already past"),
            ("2026-11-29", "already past"),
            ("2026-02-30", "not a date"),
            ("2026-1-1", "not a date"),
        ] {
            let err = new_key(&path, "k", Scope::Read, Some(expires), now).unwrap_err();
            assert!(
                err.to_string().contains(why) && err.to_string().contains(expires),
                "{expires}: {err}"
            );
        }
        assert!(!path.exists(), "nothing was written");
        new_key(&path, "k", Scope::Read, Some("2026-11-30"), now).unwrap();
        cleanup(&path);
    }

    #[cfg(unix)]
    #[test]
    fn a_keys_file_others_may_write_is_refused_and_the_last_good_keys_kept() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp("mode");
        let token = new_key(&path, "ops", Scope::Control, None, 0).unwrap();
        let store = KeyStore::load(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = crate::error_chain::Chain(&KeyStore::load(&path).unwrap_err()).to_string();
        assert!(
            err.contains("writable by other users") && err.contains("666"),
            "{err}"
        );
        // Another user appends a key of their own.
        let mut text = std::fs::read_to_string(&path).unwrap();
        let intruder = "hrk_intruder";
        text += &format!(
            "[[key]]\nname = \"x\"\nscope = \"control\"\nhash = \"sha256:{}\"\n",
            hex::encode(token_hash(intruder))
        );
        std::fs::write(&path, text).unwrap();
        assert!(matches!(store.reload(), Reload::Kept(why) if why.contains("writable")));
        assert_eq!(
            store.authenticate(Some(intruder), 0),
            Err(AuthError::Unknown)
        );
        assert!(
            store.authenticate(Some(&token), 0).is_ok(),
            "the last good keys"
        );
        let err = new_key(&path, "more", Scope::Read, None, 0).unwrap_err();
        let err = crate::error_chain::Chain(&err).to_string();
        assert!(err.contains("writable"), "{err}");
        cleanup(&path);
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_written_through_a_new_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp("tmp");
        // A temporary file someone left where a naive writer would put its own.
        let planted = path.with_extension("tmp");
        std::fs::write(&planted, "planted").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
        new_key(&path, "ops", Scope::Control, None, 0).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&planted).unwrap(), "planted");
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "no temporary file left behind: {left:?}");
        cleanup(&path);
    }

    #[test]
    fn a_file_emptied_or_deleted_leaves_no_keys() {
        let path = temp("gone");
        let token = new_key(&path, "ops", Scope::Control, None, 0).unwrap();
        let store = KeyStore::load(&path).unwrap();
        std::fs::write(&path, "").unwrap();
        assert_eq!(store.reload(), Reload::Loaded(0));
        assert_eq!(store.authenticate(Some(&token), 0), Err(AuthError::Unknown));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(store.reload(), Reload::Loaded(0));
        cleanup(&path);
    }

    #[test]
    fn bad_files_name_the_problem() {
        let path = temp("bad");
        std::fs::write(
            &path,
            "[[key]]\nname = \"a\"\nscope = \"admin\"\nhash = \"sha256:00\"\n",
        )
        .unwrap();
        let err = crate::error_chain::Chain(&KeyStore::load(&path).unwrap_err()).to_string();
        assert!(err.contains("scope") || err.contains("admin"), "{err}");
        std::fs::write(
            &path,
            format!(
                "[[key]]\nname = \"a\"\nscope = \"read\"\nhash = \"sha256:{}\"\ncolour = 1\n",
                "00".repeat(32)
            ),
        )
        .unwrap();
        let err = crate::error_chain::Chain(&KeyStore::load(&path).unwrap_err()).to_string();
        assert!(err.contains("colour") && err.contains("line"), "{err}");
        cleanup(&path);
    }
}
