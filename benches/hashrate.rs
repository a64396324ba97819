//! Hashrate per backend and device, as criterion sees it: one group per
//! device (`cpu/<name>`, `opencl/<device>`, `vulkan/<adapter>`), each
//! measuring `scan` over a fixed number of nonces, so criterion's
//! throughput is nonces/s, i.e. H/s.
//!
//! `cargo bench --bench hashrate` runs every device found; set
//! `HASHRIG_BENCH_FILTER=opencl` (or any text) to keep the groups whose
//! name contains it.

use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use hashrig::backend::{enumerate, open, Backend, DeviceKind, DeviceOptions};
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
        let mut device = match open(info, &options) {
            Ok(device) => device,
            Err(e) => {
                eprintln!("{group_name}: not benchmarked: {e}");
                continue;
            }
        };
        // About 0.1 s per scan on each kind of device.
        let nonces: u64 = match (info.backend, info.kind) {
            (Backend::Cpu, _) => 1 << 20,
            (_, DeviceKind::Cpu) => 1 << 22,
            _ => 1 << 29,
        };
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(nonces));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(5));
        let mut start = 0u64;
        group.bench_function("scan", |b| {
            b.iter(|| {
                if start + nonces > 1 << 32 {
                    start = 0;
                }
                let found = device.scan(&work, start as u32, nonces).expect("scan");
                start += nonces;
                found
            })
        });
        group.finish();
    }
}

criterion_group!(benches, hashrate);

// criterion_main!, with the driver settings `hashrig` itself makes first.
fn main() {
    // SAFETY: first thing in main, before any other thread exists.
    let _ = unsafe { hashrig::backend::vulkan::widen_software_driver() };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
