//! The 80-byte block header, on rust-bitcoin's [`Header`].

use bitcoin::block::Header;
use bitcoin::consensus::{deserialize, serialize};

/// Header text that cannot be a block header. `input` is the text given
/// (its first 200 characters).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderParseError {
    /// Not hexadecimal.
    #[error("header {input:?} is not hexadecimal")]
    NotHex {
        /// The text given (its first 200 characters).
        input: String,
        /// What the decoder said.
        #[source]
        source: hex::FromHexError,
    },
    /// Hexadecimal, but not 80 bytes of it.
    #[error("header {input:?} is {bytes} bytes, not 80 (160 hexadecimal digits)")]
    WrongLength {
        /// The text given (its first 200 characters).
        input: String,
        /// How many bytes it decodes to.
        bytes: usize,
    },
    /// 80 bytes that rust-bitcoin cannot decode as a header.
    #[error("header {input:?} does not decode")]
    Decode {
        /// The text given (its first 200 characters).
        input: String,
        /// What the decoder said.
        #[source]
        source: bitcoin::consensus::encode::Error,
    },
}

/// Parses a header from 160 hex digits of its serialization (wire order).
pub fn parse_header_hex(text: &str) -> Result<Header, HeaderParseError> {
    let input = || text.chars().take(200).collect::<String>();
    let bytes = hex::decode(text.trim()).map_err(|source| HeaderParseError::NotHex {
        input: input(),
        source,
    })?;
    if bytes.len() != 80 {
        return Err(HeaderParseError::WrongLength {
            input: input(),
            bytes: bytes.len(),
        });
    }
    deserialize(&bytes).map_err(|source| HeaderParseError::Decode {
        input: input(),
        source,
    })
}

/// The 80 serialized bytes of a header.
pub fn header_bytes(header: &Header) -> [u8; 80] {
    let mut out = [0u8; 80];
    out.copy_from_slice(&serialize(header));
    out
}

/// The same header with another nonce.
pub fn with_nonce(header: &Header, nonce: u32) -> Header {
    Header { nonce, ..*header }
}
