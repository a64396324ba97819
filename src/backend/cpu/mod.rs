//! The CPU backend: the kernels' algorithm on the CPU's vector units, or
//! its SHA extensions, the range split across threads.
//!
//! Four paths ([`CpuPath`]), each exact on its own: AVX-512 (16 nonces per
//! instruction, `avx512.rs`), AVX2 (8, `avx2.rs`), SHA-NI (two nonces
//! interleaved, `shani.rs`) and plain `u32` (one, the fallback). The three
//! lane paths run one generated body (`sha256d_lanes.rs`, from
//! `scripts/gen_kernels.py`, like the GPU kernels); SHA-NI runs the
//! instructions' own round structure. A path runs only where
//! [`supports`] says the CPU has it.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod lane_scan;
mod lanes;
// Generated straight-line code, kept exactly as the generator writes it
// (`gen_kernels.py --check` compares it byte for byte).
#[rustfmt::skip]
mod sha256d_lanes;
#[cfg(target_arch = "x86_64")]
mod shani;

use super::{
    check_range, Backend, CpuPath, Device, DeviceError, DeviceInfo, DeviceKind, DriverError,
    Locator, Shape,
};
use crate::pow::KernelWork;

/// How the CPU is listed: its model, its threads, and the paths it can run
/// (the first is what it runs untuned).
pub fn info() -> DeviceInfo {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let paths: Vec<&str> = supported_paths().iter().map(|p| p.name()).collect();
    DeviceInfo {
        index: 0,
        backend: Backend::Cpu,
        name: cpu_model().unwrap_or_else(|| "CPU".into()),
        kind: DeviceKind::Cpu,
        compute_units: threads as u32,
        memory_bytes: 0,
        platform: None,
        vendor: None,
        driver: Some(format!("paths {}", paths.join(", "))),
        pci_bus_id: None,
        locator: Locator::Cpu,
    }
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

/// Whether this CPU has the instructions `path` needs.
pub fn supports(path: CpuPath) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match path {
            CpuPath::Avx512 => avx512::available(),
            CpuPath::ShaNi => shani::available(),
            CpuPath::Avx2 => avx2::available(),
            CpuPath::Scalar => true,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        path == CpuPath::Scalar
    }
}

/// The paths this CPU can run, in [`CpuPath::ALL`]'s order of preference.
pub fn supported_paths() -> Vec<CpuPath> {
    CpuPath::ALL.into_iter().filter(|p| supports(*p)).collect()
}

/// What an untuned CPU runs: the first path it supports.
pub fn default_path() -> CpuPath {
    supported_paths()
        .first()
        .copied()
        .unwrap_or(CpuPath::Scalar)
}

/// The CPU code's source, for the tuning file's key: a tuning measured on
/// other code is measured again.
pub const CODE_SOURCE: &str = concat!(
    include_str!("sha256d_lanes.rs"),
    include_str!("lanes.rs"),
    include_str!("lane_scan.rs"),
    include_str!("avx512.rs"),
    include_str!("avx2.rs"),
    include_str!("shani.rs"),
);

/// The CPU as one device whose `scan` runs `threads` threads on one path.
#[derive(Debug)]
pub struct CpuDevice {
    info: DeviceInfo,
    threads: usize,
    path: CpuPath,
}

impl CpuDevice {
    /// A CPU device hashing on `threads` threads through `path`; refused
    /// where the CPU lacks the path's instructions.
    pub fn new(mut info: DeviceInfo, threads: usize, path: CpuPath) -> Result<Self, DeviceError> {
        refuse_unless_among(path, &supported_paths(), &info)?;
        info.compute_units = threads as u32;
        Ok(CpuDevice {
            info,
            threads,
            path,
        })
    }
}

/// `path` unless it is one of the paths the CPU `runs`.
fn refuse_unless_among(
    path: CpuPath,
    runs: &[CpuPath],
    info: &DeviceInfo,
) -> Result<(), DeviceError> {
    if runs.contains(&path) {
        return Ok(());
    }
    let runs: Vec<&str> = runs.iter().map(|p| p.name()).collect();
    Err(DeviceError::Unsupported {
        device: info.label(),
        detail: format!(
            "this CPU cannot run the {path} path (it runs {})",
            runs.join(", ")
        ),
    })
}

/// Scans one contiguous range on the calling thread through `path`, which
/// [`CpuDevice::new`] has checked the CPU supports.
fn scan_range(path: CpuPath, work: &KernelWork, start: u32, count: u64, out: &mut Vec<u32>) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: each path runs only once `supports` found its instructions.
    unsafe {
        match path {
            CpuPath::Avx512 => return avx512::scan_range(work, start, count, out),
            CpuPath::ShaNi => return shani::scan_range(work, start, count, out),
            CpuPath::Avx2 => return avx2::scan_range(work, start, count, out),
            CpuPath::Scalar => {}
        }
    }
    let _ = path;
    lane_scan::scan_range_scalar(work, start, count, out);
}

impl Device for CpuDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn granularity(&self) -> u64 {
        self.threads as u64 * 1024
    }

    fn shape(&self) -> Option<Shape> {
        Some(Shape::cpu(self.path))
    }

    fn scan(&mut self, work: &KernelWork, start: u32, count: u64) -> Result<Vec<u32>, DeviceError> {
        check_range(start, count)?;
        let mut found = Vec::new();
        if self.threads <= 1 || count < 4096 {
            scan_range(self.path, work, start, count, &mut found);
            return Ok(found);
        }
        let per_thread = count.div_ceil(self.threads as u64);
        let end = u64::from(start) + count;
        let path = self.path;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.threads as u64)
                .map(|t| u64::from(start) + t * per_thread)
                .filter(|first| *first < end)
                .map(|first| {
                    let n = per_thread.min(end - first);
                    scope.spawn(move || {
                        let mut part = Vec::new();
                        scan_range(path, work, first as u32, n, &mut part);
                        part
                    })
                })
                .collect();
            for handle in handles {
                match handle.join() {
                    Ok(part) => found.extend(part),
                    Err(_) => {
                        return Err(DeviceError::Driver {
                            device: self.info.label(),
                            operation: "cpu hashing thread",
                            source: DriverError::Noticed("panicked"),
                        })
                    }
                }
            }
            Ok(())
        })?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::selftest::known_headers;
    use crate::pow::header::{header_bytes, with_nonce};
    use bitcoin::hashes::Hash;
    use bitcoin::Target;
    use proptest::prelude::*;

    /// Every path this CPU runs; the others are named, so a log shows
    /// which paths this machine proved (the CI machines differ by day).
    fn paths_here() -> Vec<CpuPath> {
        let (here, absent): (Vec<CpuPath>, Vec<CpuPath>) =
            CpuPath::ALL.into_iter().partition(|p| supports(*p));
        eprintln!("CPU paths tested here: {here:?}; not on this CPU: {absent:?}");
        here
    }

    fn scan(path: CpuPath, work: &KernelWork, start: u32, count: u64) -> Vec<u32> {
        let mut found = Vec::new();
        scan_range(path, work, start, count, &mut found);
        found
    }

    /// The nonces of `start..start + count` whose hash, by rust-bitcoin,
    /// has a top word at most `work.target_top`.
    fn by_rust_bitcoin(
        header: &bitcoin::block::Header,
        work: &KernelWork,
        start: u32,
        count: u64,
    ) -> Vec<u32> {
        (u64::from(start)..u64::from(start) + count)
            .map(|n| n as u32)
            .filter(|n| {
                let hash = with_nonce(header, *n).block_hash().to_byte_array();
                u32::from_le_bytes([hash[28], hash[29], hash[30], hash[31]]) <= work.target_top
            })
            .collect()
    }

    /// Each path on real mainnet headers: the block's own nonce found at
    /// its own target and nothing else near it, and under a loose target
    /// exactly rust-bitcoin's nonces, across odd range ends.
    #[test]
    fn every_path_is_exact_on_mainnet_headers() {
        let known = known_headers();
        assert!(known.len() >= 3);
        let loose =
            crate::pow::target::parse_target(&format!("00ffffff{}", "f".repeat(56))).unwrap();
        for path in paths_here() {
            for block in &known {
                let bytes = header_bytes(&block.header);
                let work = KernelWork::new(&bytes, &block.header.target());
                let around = block.nonce.saturating_sub(40);
                assert_eq!(
                    scan(path, &work, around, 81),
                    vec![block.nonce],
                    "{path} at {}",
                    block.height
                );
                let work = work.with_target(&loose);
                for (start, count) in [
                    (block.nonce.wrapping_mul(7), 3001u64),
                    (5, 17),
                    (u32::MAX - 20, 21),
                ] {
                    assert_eq!(
                        scan(path, &work, start, count),
                        by_rust_bitcoin(&block.header, &work, start, count),
                        "{path} at {}: {start}+{count}",
                        block.height
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Each path agrees with rust-bitcoin on random headers, ranges and
        /// target words (from one in two nonces passing to almost none).
        #[test]
        fn every_path_matches_rust_bitcoin_on_random_work(
            seed in any::<[u8; 80]>(),
            start in any::<u32>(),
            count in 1u64..600,
            target_top in prop_oneof![Just(0u32), any::<u32>(), 0x0100_0000u32..0x1000_0000],
        ) {
            let header: bitcoin::block::Header =
                bitcoin::consensus::deserialize(&seed).expect("any 80 bytes are a header");
            let count = count.min((1u64 << 32) - u64::from(start));
            let mut work = KernelWork::new(&seed, &Target::MAX);
            work.target_top = target_top;
            let expected = by_rust_bitcoin(&header, &work, start, count);
            for path in CpuPath::ALL.into_iter().filter(|p| supports(*p)) {
                prop_assert_eq!(scan(path, &work, start, count), expected.clone(), "{}", path);
            }
        }
    }

    #[test]
    fn threads_split_the_range_and_find_the_genesis_nonce() {
        let genesis =
            bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Bitcoin).header;
        let work = KernelWork::new(&header_bytes(&genesis), &genesis.target());
        for path in paths_here() {
            let mut device = CpuDevice::new(info(), 2, path).unwrap();
            assert_eq!(
                device.scan(&work, 2_083_236_893 - 10_000, 20_000).unwrap(),
                vec![2_083_236_893],
                "{path}"
            );
            assert_eq!(device.shape(), Some(Shape::cpu(path)));
        }
    }

    #[test]
    fn a_path_the_cpu_lacks_is_refused_by_name() {
        let err = refuse_unless_among(CpuPath::Avx512, &[CpuPath::Avx2, CpuPath::Scalar], &info())
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("this CPU cannot run the avx512 path (it runs avx2, scalar)"),
            "{err}"
        );
        assert!(refuse_unless_among(CpuPath::Scalar, &[CpuPath::Scalar], &info()).is_ok());
        for path in CpuPath::ALL.into_iter().filter(|p| !supports(*p)) {
            assert!(CpuDevice::new(info(), 1, path).is_err(), "{path}");
        }
    }

    #[test]
    fn cpu_scan_handles_the_top_of_the_range() {
        let work = KernelWork::new(&[7u8; 80], &Target::from_be_bytes([0xff; 32]));
        for path in paths_here() {
            let mut device = CpuDevice::new(info(), 2, path).unwrap();
            let got = device.scan(&work, u32::MAX - 9, 10).unwrap();
            assert_eq!(got.len(), 10, "{path}");
            assert!(device.scan(&work, u32::MAX - 9, 11).is_err());
        }
    }
}
