//! Targets and difficulty: nBits (BIP 9's compact form, via rust-bitcoin),
//! pool share difficulty (Stratum V1 `mining.set_difficulty`, "bdiff") and the
//! reverse, a hash's difficulty, for "best share" statistics.

use bitcoin::{BlockHash, CompactTarget, Target};

/// Difficulty-1 target in "bdiff" terms, `0x00000000FFFF0000…0000`:
/// the target of nBits `0x1d00ffff`, which pools use for difficulty 1.
pub const DIFF1_TARGET: Target = Target::MAX;

/// `0xFFFF × 2^208`, difficulty 1's target, as a float.
const DIFF1_F64: f64 = 65535.0 * 411376139330301510538742295639337626245683966408394965837152256.0;

/// A difficulty that cannot be turned into a target.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DifficultyError {
    /// Zero, negative, NaN or infinite.
    #[error("difficulty {0} is not a positive finite number")]
    NotPositive(f64),
}

/// A 256-bit target that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetParseError {
    /// Not 64 hexadecimal digits.
    #[error("target {0:?} is not 64 hexadecimal digits (most significant first)")]
    BadHex(String),
}

/// Target from a header's nBits.
pub fn block_target(bits: CompactTarget) -> Target {
    Target::from_compact(bits)
}

/// Parses a target printed the way explorers print hashes: 64 hex digits,
/// most significant first.
pub fn parse_target(text: &str) -> Result<Target, TargetParseError> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| TargetParseError::BadHex(text.to_owned()))?;
    Ok(Target::from_be_bytes(bytes))
}

/// Share target for a pool difficulty: `diff1 / difficulty`, with `diff1`
/// the bdiff target. Works for fractional difficulties (down to the point
/// where the target would exceed 2^256 − 1, which saturates) and for very
/// large ones (where the target rounds down, never to zero).
pub fn share_target(difficulty: f64) -> Result<Target, DifficultyError> {
    if !(difficulty.is_finite() && difficulty > 0.0) {
        return Err(DifficultyError::NotPositive(difficulty));
    }
    let value = DIFF1_F64 / difficulty;
    // 2^256: anything at or above it saturates to the largest target.
    if !value.is_finite() || value >= 2f64.powi(256) {
        return Ok(Target::from_be_bytes([0xff; 32]));
    }
    if value < 1.0 {
        return Ok(Target::from_be_bytes(one_be()));
    }
    Ok(Target::from_be_bytes(f64_to_u256_be(value)))
}

fn one_be() -> [u8; 32] {
    let mut b = [0u8; 32];
    b[31] = 1;
    b
}

/// Converts a float in `[1, 2^256)` to a big-endian 256-bit integer (truncating).
fn f64_to_u256_be(value: f64) -> [u8; 32] {
    let bits = value.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1075;
    let mantissa = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    // value = mantissa × 2^exponent
    let mut limbs = [0u64; 4]; // little-endian limbs
    if exponent >= 0 {
        let word = (exponent / 64) as usize;
        let shift = (exponent % 64) as u32;
        limbs[word] = mantissa << shift;
        if shift > 0 && word + 1 < 4 {
            limbs[word + 1] = mantissa >> (64 - shift);
        }
    } else {
        limbs[0] = mantissa >> (-exponent) as u32;
    }
    let mut out = [0u8; 32];
    for (i, limb) in limbs.iter().enumerate() {
        out[(3 - i) * 8..(4 - i) * 8].copy_from_slice(&limb.to_be_bytes());
    }
    out
}

/// A 256-bit big-endian integer as a float (rounded).
fn u256_be_to_f64(bytes: &[u8; 32]) -> f64 {
    bytes.iter().fold(0.0, |acc, b| acc * 256.0 + f64::from(*b))
}

/// The pool difficulty a hash would satisfy: `diff1 / hash`. A zero hash
/// (never seen, but a pool can send anything) gives infinity.
pub fn hash_difficulty(hash: &BlockHash) -> f64 {
    use bitcoin::hashes::Hash;
    let mut be = hash.to_byte_array();
    be.reverse();
    DIFF1_F64 / u256_be_to_f64(&be)
}

/// The difficulty of a target in the same bdiff terms (network difficulty
/// for a block target).
pub fn target_difficulty(target: &Target) -> f64 {
    DIFF1_F64 / u256_be_to_f64(&target.to_be_bytes())
}

/// The most significant 32 bits of a target: what the kernels compare the
/// top word of each hash against.
pub fn target_top_word(target: &Target) -> u32 {
    let be = target.to_be_bytes();
    u32::from_be_bytes([be[0], be[1], be[2], be[3]])
}

/// Whether a hash meets a target: hash ≤ target as 256-bit numbers.
pub fn meets(hash: &BlockHash, target: &Target) -> bool {
    target.is_met_by(*hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_target(t: &Target) -> String {
        hex::encode(t.to_be_bytes())
    }

    #[test]
    fn difficulty_one_is_bdiff() {
        let t = share_target(1.0).unwrap();
        assert_eq!(
            hex_target(&t),
            "00000000ffff0000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(t, block_target(CompactTarget::from_consensus(0x1d00ffff)));
    }

    #[test]
    fn fractional_and_large_difficulties() {
        assert_eq!(
            hex_target(&share_target(0.5).unwrap()),
            "00000001fffe0000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(
            hex_target(&share_target(1.0 / 65536.0).unwrap()),
            "0000ffff00000000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(
            hex_target(&share_target(65536.0).unwrap()),
            "000000000000ffff000000000000000000000000000000000000000000000000"
        );
        // Saturates instead of overflowing.
        assert_eq!(hex_target(&share_target(1e-30).unwrap()), "ff".repeat(32));
        // Astronomically hard: smallest nonzero target, never zero.
        assert_eq!(share_target(1e80).unwrap(), Target::from_be_bytes(one_be()));
        let big = share_target(1e12).unwrap();
        let d = target_difficulty(&big);
        assert!((d / 1e12 - 1.0).abs() < 1e-9, "{d}");
    }

    #[test]
    fn bad_difficulties_are_errors() {
        for d in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(share_target(d).is_err(), "{d}");
        }
    }

    #[test]
    fn parse_target_checks_length_and_hex() {
        assert!(parse_target(&"0".repeat(63)).is_err());
        assert!(parse_target(&"g".repeat(64)).is_err());
        let t = parse_target(&format!("0000ffff{}", "0".repeat(56))).unwrap();
        assert_eq!(target_top_word(&t), 0x0000ffff);
    }

    #[test]
    fn genesis_hash_difficulty() {
        let hash: BlockHash = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
            .parse()
            .unwrap();
        let d = hash_difficulty(&hash);
        // 0xffff0000.../0x0019d668... = 2536.47...
        assert!((d - 2536.4).abs() < 1.0, "{d}");
    }
}
