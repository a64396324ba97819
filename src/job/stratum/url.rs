//! Pool addresses: `stratum+tcp://HOST:PORT`, `stratum+ssl://HOST:PORT` or
//! `stratum+tls://HOST:PORT` for Stratum V1, and
//! `stratum2+tcp://HOST:PORT/AUTHORITY_KEY` for Stratum V2, with the pool's
//! authority key pinned (its Noise certificate must be signed by it). The
//! port is required: pools run several ports for different difficulties,
//! and guessing one mines on the wrong.

use std::fmt;
use std::str::FromStr;

use super::v2::key::{AuthorityKey, AuthorityKeyError};

/// How to reach a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUrl {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// TLS (rustls) rather than plain TCP.
    pub tls: bool,
    /// Stratum V2 (Noise-encrypted, binary) with this pinned authority key;
    /// `None` for Stratum V1.
    pub authority_key: Option<AuthorityKey>,
}

impl PoolUrl {
    /// Whether the pool speaks Stratum V2.
    pub fn is_v2(&self) -> bool {
        self.authority_key.is_some()
    }
}

/// A pool address that cannot be used, with the text that was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolUrlError {
    /// An unknown scheme.
    #[error("pool {url:?}: unknown scheme (use stratum+tcp://, stratum+ssl://, stratum+tls:// or stratum2+tcp://)")]
    Scheme {
        /// The address given.
        url: String,
    },
    /// No port.
    #[error("pool {url:?}: no port (write HOST:PORT)")]
    NoPort {
        /// The address given.
        url: String,
    },
    /// A port that is not a number from 1 to 65535.
    #[error("pool {url:?}: {port:?} is not a port number")]
    Port {
        /// The address given.
        url: String,
        /// The port text given.
        port: String,
    },
    /// No host.
    #[error("pool {url:?}: no host")]
    NoHost {
        /// The address given.
        url: String,
    },
    /// A path, user or query where none belongs.
    #[error("pool {url:?}: unexpected path, user or query in a pool address")]
    Extra {
        /// The address given.
        url: String,
    },
    /// A V2 address without its authority key.
    #[error("pool {url:?}: a Stratum V2 address ends in the pool's authority key (stratum2+tcp://HOST:PORT/KEY)")]
    NoAuthorityKey {
        /// The address given.
        url: String,
    },
    /// A V2 address whose authority key is bad.
    #[error("pool {url:?}")]
    AuthorityKey {
        /// The address given.
        url: String,
        /// What is wrong with the key.
        #[source]
        reason: AuthorityKeyError,
    },
}

impl FromStr for PoolUrl {
    type Err = PoolUrlError;

    fn from_str(url: &str) -> Result<Self, PoolUrlError> {
        // Errors show the address, never a password in it.
        let owned = || crate::redact::mask_url(url);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| PoolUrlError::Scheme { url: owned() })?;
        let (tls, v2) = match scheme.to_ascii_lowercase().as_str() {
            "stratum+tcp" | "stratum" => (false, false),
            "stratum+ssl" | "stratum+tls" => (true, false),
            "stratum2+tcp" => (false, true),
            _ => return Err(PoolUrlError::Scheme { url: owned() }),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (rest, authority_key) = if v2 {
            let (rest, key) = rest
                .split_once('/')
                .filter(|(_, key)| !key.is_empty())
                .ok_or_else(|| PoolUrlError::NoAuthorityKey { url: owned() })?;
            let key = key
                .parse::<AuthorityKey>()
                .map_err(|reason| PoolUrlError::AuthorityKey {
                    url: owned(),
                    reason,
                })?;
            (rest, Some(key))
        } else {
            (rest, None)
        };
        if rest.contains(['/', '@', '?', '#']) {
            return Err(PoolUrlError::Extra { url: owned() });
        }
        // [v6::addr]:port or host:port
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| PoolUrlError::NoHost { url: owned() })?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| PoolUrlError::NoPort { url: owned() })?;
            (host, port)
        } else {
            rest.rsplit_once(':')
                .ok_or_else(|| PoolUrlError::NoPort { url: owned() })?
        };
        if host.is_empty() || host.len() > 253 {
            return Err(PoolUrlError::NoHost { url: owned() });
        }
        let port =
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| PoolUrlError::Port {
                    url: owned(),
                    port: port.to_owned(),
                })?;
        Ok(PoolUrl {
            host: host.to_owned(),
            port,
            tls,
            authority_key,
        })
    }
}

impl fmt::Display for PoolUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match (self.tls, self.is_v2()) {
            (_, true) => "stratum2+tcp",
            (true, false) => "stratum+ssl",
            (false, false) => "stratum+tcp",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)?;
        }
        match self.authority_key {
            Some(key) => write!(f, "/{key}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_hosts_and_ports() {
        let url: PoolUrl = "stratum+tcp://pool.example.com:3333".parse().unwrap();
        assert_eq!(
            url,
            PoolUrl {
                host: "pool.example.com".into(),
                port: 3333,
                tls: false,
                authority_key: None,
            }
        );
        assert!("stratum+ssl://p:443".parse::<PoolUrl>().unwrap().tls);
        assert!("STRATUM+TLS://p:443/".parse::<PoolUrl>().unwrap().tls);
        let v6: PoolUrl = "stratum+tcp://[::1]:3333".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "stratum+tcp://[::1]:3333");
    }

    #[test]
    fn bad_addresses_name_the_problem() {
        let err = |s: &str| s.parse::<PoolUrl>().unwrap_err();
        assert!(matches!(
            err("http://pool:3333"),
            PoolUrlError::Scheme { .. }
        ));
        assert!(matches!(err("pool:3333"), PoolUrlError::Scheme { .. }));
        assert!(matches!(
            err("stratum+tcp://pool"),
            PoolUrlError::NoPort { .. }
        ));
        assert!(matches!(
            err("stratum+tcp://pool:99999"),
            PoolUrlError::Port { .. }
        ));
        assert!(matches!(
            err("stratum+tcp://pool:0"),
            PoolUrlError::Port { .. }
        ));
        assert!(matches!(
            err("stratum+tcp://:3333"),
            PoolUrlError::NoHost { .. }
        ));
        assert!(matches!(
            err("stratum+tcp://u@pool:3333"),
            PoolUrlError::Extra { .. }
        ));
        assert!(err("ftp://x:1").to_string().contains("ftp://x:1"));
        assert!(matches!(
            err("stratum2+tcp://pool:3333"),
            PoolUrlError::NoAuthorityKey { .. }
        ));
        assert!(matches!(
            err("stratum2+tcp://pool:3333/notakey"),
            PoolUrlError::AuthorityKey { .. }
        ));
    }

    #[test]
    fn stratum_v2_addresses_pin_the_authority_key() {
        let text =
            "stratum2+tcp://127.0.0.1:34254/9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
        let url: PoolUrl = text.parse().unwrap();
        assert!(url.is_v2() && !url.tls);
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 34254));
        assert_eq!(url.to_string(), text);
    }
}
