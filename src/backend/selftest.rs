//! The self-test every device passes before it mines: it must find exactly
//! the right nonces in windows of real mainnet headers, and exactly the
//! reference's candidates under a target loose enough that they are many.

use bitcoin::Target;

use super::{Device, DeviceError};
use crate::pow::header::{header_bytes, parse_header_hex};
use crate::pow::target::parse_target;
use crate::pow::KernelWork;

/// Real mainnet headers: `height header_hex nonce hash`, one per line.
pub const MAINNET_HEADERS: &str = include_str!("../../tests/data/mainnet_headers.txt");

/// A real block header and the nonce that solved it.
#[derive(Debug, Clone)]
pub struct KnownHeader {
    /// The block's height.
    pub height: u32,
    /// Its header, nonce included.
    pub header: bitcoin::block::Header,
    /// Its nonce.
    pub nonce: u32,
    /// Its hash, as block explorers show it.
    pub hash: String,
}

/// Parses [`MAINNET_HEADERS`]. The file is part of the binary, so a bad
/// line is a build defect; it is skipped rather than trusted.
pub fn known_headers() -> Vec<KnownHeader> {
    MAINNET_HEADERS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let height = fields.next()?.parse().ok()?;
            let header = parse_header_hex(fields.next()?).ok()?;
            let nonce = fields.next()?.parse().ok()?;
            let hash = fields.next()?.to_owned();
            Some(KnownHeader {
                height,
                header,
                nonce,
                hash,
            })
        })
        .collect()
}

/// Nonces scanned around each known nonce.
const WINDOW: u64 = 1 << 16;
/// Nonces scanned under the loose target.
const LOOSE_WINDOW: u64 = 1 << 14;

/// Runs the self-test on `device`; `Err` says what it got wrong.
pub fn run(device: &mut dyn Device) -> Result<(), DeviceError> {
    let label = device.info().label();
    let fail = |detail: String| DeviceError::SelfTest {
        device: label.clone(),
        detail,
    };
    let headers = known_headers();
    if headers.is_empty() {
        return Err(fail("no known headers compiled in".into()));
    }
    for known in &headers {
        let work = KernelWork::new(&header_bytes(&known.header), &known.header.target());
        // A window that starts off any alignment, so partial batches are tested.
        let start = known.nonce.saturating_sub(WINDOW as u32 / 2 + 13);
        let mut got = device.scan(&work, start, WINDOW)?;
        got.sort_unstable();
        if !got.contains(&known.nonce) {
            return Err(fail(format!(
                "block {}: nonce {} not found in {start}+{WINDOW} (found {got:?})",
                known.height, known.nonce
            )));
        }
        if let Some(bad) = got.iter().find(|n| !work.is_candidate(**n)) {
            return Err(fail(format!(
                "block {}: reported nonce {bad}, which is no candidate",
                known.height
            )));
        }
    }
    // One candidate in 256: the found-buffer fills, and every one must come back.
    let loose: Target =
        parse_target(&format!("00ffffff{}", "f".repeat(56))).map_err(|e| fail(e.to_string()))?;
    let work = KernelWork::new(&header_bytes(&headers[0].header), &loose);
    let start = 0xfff0_0000u32 + 7;
    let mut got = device.scan(&work, start, LOOSE_WINDOW)?;
    got.sort_unstable();
    let expected: Vec<u32> = (u64::from(start)..u64::from(start) + LOOSE_WINDOW)
        .map(|n| n as u32)
        .filter(|n| work.is_candidate(*n))
        .collect();
    if got != expected {
        return Err(fail(format!(
            "loose target: {} candidates, the reference has {}",
            got.len(),
            expected.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    #[test]
    fn known_headers_hash_to_their_published_hashes() {
        let headers = known_headers();
        assert_eq!(headers.len(), 4);
        for k in headers {
            assert_eq!(k.header.nonce, k.nonce);
            assert_eq!(k.header.block_hash().to_string(), k.hash);
            assert!(k.header.target().is_met_by(k.header.block_hash()));
            let _ = k.header.block_hash().to_byte_array();
        }
    }

    #[test]
    fn every_cpu_path_here_passes() {
        for path in super::super::cpu::supported_paths() {
            let mut device =
                super::super::cpu::CpuDevice::new(super::super::cpu::info(), 2, path).unwrap();
            run(&mut device).unwrap();
        }
    }
}
