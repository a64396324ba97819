//! `hashrig scan`: scan one header's nonce range on one device and print
//! every nonce whose sha256d meets the target.

use hashrig::error_chain::Chain;
use std::io::Write;
use std::process::ExitCode;

use bitcoin::hashes::Hash;
use hashrig::backend::open;
use hashrig::pow::header::{header_bytes, with_nonce};
use hashrig::pow::target::meets;
use hashrig::pow::KernelWork;

use crate::cli::{select_devices, ScanSettings};
use crate::failure::Failure;

/// Nonces per device call, so progress shows on long CPU scans.
const CHUNK: u64 = 1 << 26;

pub fn run(settings: &ScanSettings, quiet: bool) -> anyhow::Result<ExitCode> {
    let inventory = crate::cli::inventory(&settings.device);
    let selected = select_devices(&settings.device, &inventory)?;
    let info = selected
        .devices
        .first()
        .ok_or_else(|| Failure::Devices("no device of that backend".into()))?;
    let mut device =
        open(info, &selected.options).map_err(|e| Failure::Devices(Chain(&e).to_string()))?;
    let work = KernelWork::new(&header_bytes(&settings.header), &settings.target);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let end = u64::from(settings.start) + settings.count;
    let mut next = u64::from(settings.start);
    let mut hardware_errors = 0u64;
    while next < end {
        let count = CHUNK.min(end - next);
        let mut candidates = device
            .scan(&work, next as u32, count)
            .map_err(|e| Failure::Devices(Chain(&e).to_string()))?;
        candidates.sort_unstable();
        for nonce in candidates {
            // Every candidate is re-hashed by rust-bitcoin before it is printed.
            let hash = with_nonce(&settings.header, nonce).block_hash();
            let top = hash.to_byte_array();
            let top_word = u32::from_le_bytes([top[28], top[29], top[30], top[31]]);
            if top_word > work.target_top {
                hardware_errors += 1;
                tracing::warn!("{}: hardware error at nonce {nonce}", info.label());
                continue;
            }
            if !meets(&hash, &settings.target) {
                continue;
            }
            if settings.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "nonce": nonce, "hash": hash.to_string() })
                )?;
            } else {
                writeln!(out, "{nonce} {hash}")?;
            }
        }
        out.flush()?;
        next += count;
        if !quiet && settings.count > CHUNK {
            eprint!(
                "\rscanned {:.1}% ({} of {})",
                100.0 * (next - u64::from(settings.start)) as f64 / settings.count as f64,
                next - u64::from(settings.start),
                settings.count
            );
        }
    }
    if !quiet && settings.count > CHUNK {
        eprintln!();
    }
    if hardware_errors > 0 {
        tracing::warn!("{}: {hardware_errors} hardware errors", info.label());
    }
    Ok(ExitCode::SUCCESS)
}
