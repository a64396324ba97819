//! Hashrate per backend and device, as criterion sees it: one group per
//! device (`cpu/<name>`, `opencl/<device>`, `vulkan/<adapter>`), each
//! measuring `scan` over a fixed number of nonces, so criterion's
//! throughput is nonces/s, i.e. H/s. The CPU has a row per path it runs
//! (`scan/avx512`, `scan/sha-ni`, `scan/avx2`, `scan/scalar`), on all its
//! threads.
//!
//! `cargo bench --bench hashrate` runs every device found; set
//! `HASHRIG_BENCH_FILTER=opencl` (or any text) to keep the groups whose
//! name contains it.

use std::time::Duration;

use criterion::{criterion_group, BenchmarkGroup, Criterion, Throughput};
use hashrig::backend::{enumerate, open, Backend, DeviceInfo, DeviceKind, DeviceOptions};
use hashrig::pow::header::header_bytes;
use hashrig::pow::KernelWork;

fn hashrate(c: &mut Criterion) {
    let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Bitcoin).header;
    let work = KernelWork::new(&header_bytes(&genesis), &genesis.target());
    let filter = std::env::var("HASHRIG_BENCH_FILTER").unwrap_or_default();
    let inventory = enumerate(&[Backend::Cpu, Backend::OpenCl, Backend::Vulkan]);
    for note in &inventory.notes {
        eprintln!("{note}");
    }
    let options = DeviceOptions {
        cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ..DeviceOptions::default()
    };
    for info in &inventory.devices {
        let group_name = format!("{}/{}", info.backend, info.name);
        if !group_name.contains(&filter) {
            continue;
        }
        // About 0.1 s per scan on each kind of device.
        let nonces: u64 = match (info.backend, info.kind) {
            (Backend::Cpu, _) => 1 << 22,
            (_, DeviceKind::Cpu) => 1 << 22,
            _ => 1 << 29,
        };
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(nonces));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(5));
        if info.backend == Backend::Cpu {
            for path in hashrig::backend::cpu::supported_paths() {
                let options = DeviceOptions {
                    cpu_path: Some(path),
                    ..options.clone()
                };
                bench_scan(
                    &mut group,
                    &format!("scan/{path}"),
                    info,
                    &options,
                    &work,
                    nonces,
                );
            }
        } else {
            bench_scan(&mut group, "scan", info, &options, &work, nonces);
        }
        group.finish();
    }
}

/// One row: `nonces` a scan on the device opened with `options`.
fn bench_scan(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    row: &str,
    info: &DeviceInfo,
    options: &DeviceOptions,
    work: &KernelWork,
    nonces: u64,
) {
    let mut device = match open(info, options) {
        Ok(device) => device,
        Err(e) => {
            eprintln!("{}/{row}: not benchmarked: {e}", info.name);
            return;
        }
    };
    let mut start = 0u64;
    group.bench_function(row, |b| {
        b.iter(|| {
            if start + nonces > 1 << 32 {
                start = 0;
            }
            let found = device.scan(work, start as u32, nonces).expect("scan");
            start += nonces;
            found
        })
    });
}

criterion_group!(benches, hashrate);

// criterion_main!, with the driver settings `hashrig` itself makes first.
fn main() {
    // SAFETY: first thing in main, before any other thread exists.
    let _ = unsafe { hashrig::backend::vulkan::widen_software_driver() };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
