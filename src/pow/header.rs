//! The 80-byte block header, on rust-bitcoin's [`Header`].

use bitcoin::block::Header;
use bitcoin::consensus::{deserialize, serialize};

/// Header bytes that cannot be a block header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderParseError {
    /// Not hexadecimal, or not 80 bytes.
    #[error("header {input:?} is not 160 hexadecimal digits (80 bytes): {reason}")]
    BadHex { input: String, reason: String },
}

/// Parses a header from 160 hex digits of its serialization (wire order).
pub fn parse_header_hex(text: &str) -> Result<Header, HeaderParseError> {
    let bad = |reason: &str| HeaderParseError::BadHex {
        input: text.chars().take(200).collect(),
        reason: reason.to_owned(),
    };
    let bytes = hex::decode(text.trim()).map_err(|e| bad(&e.to_string()))?;
    if bytes.len() != 80 {
        return Err(bad(&format!("{} bytes", bytes.len())));
    }
    deserialize(&bytes).map_err(|e| bad(&e.to_string()))
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
