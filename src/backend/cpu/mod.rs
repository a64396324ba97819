//! The CPU backend: sha2's block function (SHA-NI where the CPU has it) on
//! the header's midstate, the range split across threads.

use super::{
    check_range, Backend, Device, DeviceError, DeviceInfo, DeviceKind, DriverError, Locator,
};
use crate::pow::sha256::{State, IV};
use crate::pow::KernelWork;
use sha2::digest::generic_array::GenericArray;

/// How the CPU is listed.
pub fn info() -> DeviceInfo {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    DeviceInfo {
        index: 0,
        backend: Backend::Cpu,
        name: cpu_model().unwrap_or_else(|| "CPU".into()),
        kind: DeviceKind::Cpu,
        compute_units: threads as u32,
        memory_bytes: 0,
        platform: None,
        vendor: None,
        driver: Some(if has_sha_extensions() {
            "SHA extensions, 2 nonces interleaved".into()
        } else {
            "sha2 compress256".into()
        }),
        pci_bus_id: None,
        locator: Locator::Cpu,
    }
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

fn has_sha_extensions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::shani::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The CPU as one device whose `scan` runs `threads` threads.
#[derive(Debug)]
pub struct CpuDevice {
    info: DeviceInfo,
    threads: usize,
}

impl CpuDevice {
    /// A CPU device hashing on `threads` threads.
    pub fn new(mut info: DeviceInfo, threads: usize) -> Self {
        info.compute_units = threads as u32;
        CpuDevice { info, threads }
    }
}

/// Scans one contiguous range on the calling thread: with the SHA
/// extensions, two nonces at a time; else through sha2's block function.
fn scan_range(work: &KernelWork, start: u32, count: u64, out: &mut Vec<u32>) {
    #[cfg(target_arch = "x86_64")]
    if super::shani::available() {
        // SAFETY: the CPU has the SHA extensions and SSE4.1, checked above.
        unsafe { super::shani::scan_range(work, start, count, out) };
        return;
    }
    scan_range_portable(work, start, count, out);
}

/// Portable path: sha2's block function per compression.
fn scan_range_portable(work: &KernelWork, start: u32, count: u64, out: &mut Vec<u32>) {
    // Block 2 of the header: three tail words, the nonce, padding for 80 bytes.
    let mut header_block = [0u8; 64];
    for (i, word) in work.tail.iter().enumerate() {
        header_block[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    header_block[16] = 0x80;
    header_block[62..64].copy_from_slice(&640u16.to_be_bytes());
    // The second hash's block: 32 bytes of first hash, padding for 32 bytes.
    let mut hash_block = [0u8; 64];
    hash_block[32] = 0x80;
    hash_block[62..64].copy_from_slice(&256u16.to_be_bytes());

    let mut header_block = *GenericArray::from_slice(&header_block);
    let mut hash_block = *GenericArray::from_slice(&hash_block);
    let end = u64::from(start) + count;
    let mut nonce = u64::from(start);
    while nonce < end {
        let n = nonce as u32;
        header_block[12..16].copy_from_slice(&n.to_le_bytes());
        let mut first: State = work.midstate;
        sha2::compress256(&mut first, std::slice::from_ref(&header_block));
        for (i, word) in first.iter().enumerate() {
            hash_block[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
        }
        let mut second: State = IV;
        sha2::compress256(&mut second, std::slice::from_ref(&hash_block));
        if second[7].swap_bytes() <= work.target_top {
            out.push(n);
        }
        nonce += 1;
    }
}

impl Device for CpuDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn granularity(&self) -> u64 {
        self.threads as u64 * 1024
    }

    fn scan(&mut self, work: &KernelWork, start: u32, count: u64) -> Result<Vec<u32>, DeviceError> {
        check_range(start, count)?;
        let mut found = Vec::new();
        if self.threads <= 1 || count < 4096 {
            scan_range(work, start, count, &mut found);
            return Ok(found);
        }
        let per_thread = count.div_ceil(self.threads as u64);
        let end = u64::from(start) + count;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.threads as u64)
                .map(|t| u64::from(start) + t * per_thread)
                .filter(|first| *first < end)
                .map(|first| {
                    let n = per_thread.min(end - first);
                    scope.spawn(move || {
                        let mut part = Vec::new();
                        scan_range(work, first as u32, n, &mut part);
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
    use crate::pow::header::header_bytes;
    use bitcoin::Target;

    #[test]
    fn cpu_scan_matches_reference_with_frequent_candidates() {
        let genesis =
            bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Bitcoin).header;
        let target =
            crate::pow::target::parse_target(&format!("00ffffff{}", "f".repeat(56))).unwrap();
        let work = KernelWork::new(&header_bytes(&genesis), &target);
        let mut device = CpuDevice::new(info(), 2);
        let mut got = device.scan(&work, 1000, 20_000).unwrap();
        got.sort_unstable();
        let expected: Vec<u32> = (1000..21_000).filter(|n| work.is_candidate(*n)).collect();
        assert!(expected.len() > 30);
        assert_eq!(got, expected);
    }

    #[test]
    fn cpu_scan_finds_genesis_nonce() {
        let genesis =
            bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Bitcoin).header;
        let work = KernelWork::new(&header_bytes(&genesis), &genesis.target());
        let mut device = CpuDevice::new(info(), 1);
        assert_eq!(
            device.scan(&work, 2_083_236_893 - 100, 200).unwrap(),
            vec![2_083_236_893]
        );
        let _ = Target::MAX;
    }

    #[test]
    fn portable_path_matches_reference() {
        let genesis =
            bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Bitcoin).header;
        let target =
            crate::pow::target::parse_target(&format!("00ffffff{}", "f".repeat(56))).unwrap();
        let work = KernelWork::new(&header_bytes(&genesis), &target);
        let mut got = Vec::new();
        scan_range_portable(&work, 5, 10_000, &mut got);
        let expected: Vec<u32> = (5..10_005).filter(|n| work.is_candidate(*n)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn cpu_scan_handles_the_top_of_the_range() {
        let work = KernelWork::new(&[7u8; 80], &Target::from_be_bytes([0xff; 32]));
        let mut device = CpuDevice::new(info(), 2);
        let got = device.scan(&work, u32::MAX - 9, 10).unwrap();
        assert_eq!(got.len(), 10);
        assert!(device.scan(&work, u32::MAX - 9, 11).is_err());
    }
}
