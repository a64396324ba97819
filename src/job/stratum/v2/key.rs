//! The pool's authority key, pinned in a Stratum V2 pool address: the
//! base58check encoding of a 2-byte little-endian version (1) and a 32-byte
//! x-only secp256k1 public key, as SRI's `key-utils` writes it. The pool's
//! Noise certificate must be signed by it (Stratum V2 spec, 4.5.2).

use std::fmt;
use std::str::FromStr;

use bitcoin::secp256k1::XOnlyPublicKey;

/// The only key encoding version the spec defines.
const KEY_VERSION: u16 = 1;

/// A pool's authority public key (x-only, BIP 340).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthorityKey([u8; 32]);

/// An authority key that cannot be used, with the text that was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityKeyError {
    /// Not base58check.
    #[error("authority key {key:?} is not base58check")]
    Base58 {
        /// The key text given.
        key: String,
        /// The base58check decoder's complaint.
        #[source]
        source: bitcoin::base58::Error,
    },
    /// Not 34 bytes.
    #[error("authority key {key:?} holds {len} bytes, not 34 (version and x-only key)")]
    Length {
        /// The key text given.
        key: String,
        /// How many bytes it decodes to.
        len: usize,
    },
    /// A version other than 1.
    #[error("authority key {key:?} has version {version}, not 1")]
    Version {
        /// The key text given.
        key: String,
        /// The version it carries.
        version: u16,
    },
    /// Not a point on secp256k1.
    #[error("authority key {key:?} is not a point on secp256k1")]
    NotOnCurve {
        /// The key text given.
        key: String,
    },
}

impl AuthorityKey {
    pub(crate) fn to_bytes(self) -> [u8; 32] {
        self.0
    }
}

impl FromStr for AuthorityKey {
    type Err = AuthorityKeyError;

    fn from_str(text: &str) -> Result<Self, AuthorityKeyError> {
        let key = || text.chars().take(120).collect::<String>();
        let decoded = bitcoin::base58::decode_check(text)
            .map_err(|source| AuthorityKeyError::Base58 { key: key(), source })?;
        let (version, point) = match decoded.as_slice() {
            [v0, v1, point @ ..] if point.len() == 32 => (u16::from_le_bytes([*v0, *v1]), point),
            _ => {
                return Err(AuthorityKeyError::Length {
                    key: key(),
                    len: decoded.len(),
                })
            }
        };
        if version != KEY_VERSION {
            return Err(AuthorityKeyError::Version {
                key: key(),
                version,
            });
        }
        let point = XOnlyPublicKey::from_slice(point)
            .map_err(|_| AuthorityKeyError::NotOnCurve { key: key() })?;
        Ok(AuthorityKey(point.serialize()))
    }
}

impl fmt::Display for AuthorityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0u8; 34];
        bytes[..2].copy_from_slice(&KEY_VERSION.to_le_bytes());
        bytes[2..].copy_from_slice(&self.0);
        f.write_str(&bitcoin::base58::encode_check(&bytes))
    }
}

impl fmt::Debug for AuthorityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorityKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key in SRI's example pool configurations.
    const SRI_EXAMPLE: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";

    #[test]
    fn reads_and_writes_sri_keys() {
        let key: AuthorityKey = SRI_EXAMPLE.parse().unwrap();
        assert_eq!(key.to_string(), SRI_EXAMPLE);
    }

    #[test]
    fn bad_keys_name_the_problem() {
        let err = |s: &str| s.parse::<AuthorityKey>().unwrap_err();
        assert!(matches!(
            err("9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH73"),
            AuthorityKeyError::Base58 { .. }
        ));
        let short = bitcoin::base58::encode_check(&[1, 0, 2]);
        assert!(matches!(
            err(&short),
            AuthorityKeyError::Length { len: 3, .. }
        ));
        let key: AuthorityKey = SRI_EXAMPLE.parse().unwrap();
        let mut v2 = vec![2, 0];
        v2.extend_from_slice(&key.to_bytes());
        assert!(matches!(
            err(&bitcoin::base58::encode_check(&v2)),
            AuthorityKeyError::Version { version: 2, .. }
        ));
        // x = 5 is not on secp256k1 (5^3 + 7 = 132 is no square mod p).
        let mut off_curve = vec![1, 0];
        off_curve.extend_from_slice(&[0; 31]);
        off_curve.push(5);
        assert!(matches!(
            err(&bitcoin::base58::encode_check(&off_curve)),
            AuthorityKeyError::NotOnCurve { .. }
        ));
        assert!(err("0OIl").to_string().contains("0OIl"));
    }
}
