//! The OpenCL kernel (on PoCL in CI) and the WGSL shader (on lavapipe in
//! CI) against the reference, on real and random headers, with targets
//! loose enough that candidates are frequent and the found-buffer
//! overflows. No runtime, no pass: these tests fail when none is found.

use hashrig::backend::{enumerate, open, selftest, Backend, Device, DeviceOptions, KernelVariant};
use hashrig::pow::header::header_bytes;
use hashrig::pow::KernelWork;

use crate::common::{loose_target, mainnet, random_headers, reference_candidates};

fn devices(backend: Backend, options: &DeviceOptions) -> Vec<Box<dyn Device>> {
    let inventory = enumerate(&[backend]);
    assert!(
        !inventory.devices.is_empty(),
        "no {backend} device found ({}): run scripts/test.sh, which installs PoCL and lavapipe",
        inventory.notes.join("; ")
    );
    inventory
        .devices
        .iter()
        .map(|info| open(info, options).unwrap_or_else(|e| panic!("{}: {e}", info.label())))
        .collect()
}

fn check_random_windows(backend: Backend, options: &DeviceOptions) {
    for mut device in devices(backend, options) {
        let label = device.info().label();
        // Top words from one candidate in 2^16 to one in 16: the last
        // overflows the 255-slot found-buffer many times over.
        let tops = [0x0000_ffff, 0x00ff_ffff, 0x0fff_ffff];
        for (i, header) in random_headers(7 + backend as u64, 6).iter().enumerate() {
            let top = tops[i % tops.len()];
            let work = KernelWork::new(&header_bytes(header), &loose_target(top));
            // Odd starts and counts: partial work-groups and vectors.
            let start = (i as u32).wrapping_mul(0x9e37_79b9) | 3;
            let count = 20_000 + i as u64 * 777;
            let mut got = device.scan(&work, start, count).expect("scan");
            got.sort_unstable();
            let expected = reference_candidates(header, &work, start, count);
            assert_eq!(got, expected, "{label}: header {i}, top word {top:#010x}");
        }
        // The very top of the nonce range: no lane may wrap around to 0.
        let header = random_headers(99, 1)[0];
        let work = KernelWork::new(&header_bytes(&header), &loose_target(0x0fff_ffff));
        let start = u32::MAX - 4000;
        let mut got = device.scan(&work, start, 4001).expect("scan");
        got.sort_unstable();
        assert_eq!(
            got,
            reference_candidates(&header, &work, start, 4001),
            "{label}: top of range"
        );
    }
}

fn check_mainnet(backend: Backend, options: &DeviceOptions) {
    for mut device in devices(backend, options) {
        let label = device.info().label();
        for known in mainnet() {
            let work = KernelWork::new(&header_bytes(&known.header), &known.header.target());
            let start = known.nonce - 100_003;
            let got = device.scan(&work, start, 200_000).expect("scan");
            assert!(
                got.contains(&known.nonce),
                "{label}: block {} nonce not found",
                known.height
            );
        }
        selftest::run(device.as_mut()).unwrap_or_else(|e| panic!("{e}"));
        // The watchdog's reset rebuilds the device; it must work after it.
        device
            .reset()
            .unwrap_or_else(|e| panic!("{label}: reset: {e}"));
        selftest::run(device.as_mut()).unwrap_or_else(|e| panic!("{label} after reset: {e}"));
    }
}

#[test]
fn opencl_matches_reference_on_random_headers() {
    check_random_windows(Backend::OpenCl, &DeviceOptions::default());
}

#[test]
fn opencl_scalar_and_narrow_vectors_match_reference() {
    for vectors in [1, 4] {
        let options = DeviceOptions {
            vectors: Some(vectors),
            worksize: Some(32),
            ..DeviceOptions::default()
        };
        check_random_windows(Backend::OpenCl, &options);
    }
}

#[test]
fn opencl_finds_mainnet_nonces_and_passes_self_test() {
    check_mainnet(Backend::OpenCl, &DeviceOptions::default());
}

/// Every build of the kernel, forced on the CPU device, on the same
/// random headers (overflowing found-buffers) and real blocks as the
/// default one: a build only a GPU vendor's device would pick is proven
/// here, not first on a rig.
#[test]
fn opencl_every_kernel_variant_matches_reference() {
    for variant in KernelVariant::ALL {
        let options = DeviceOptions {
            kernel_variant: Some(variant),
            // The wide-rotation build exists at one lane only.
            vectors: Some(if variant == KernelVariant::NvidiaWide {
                1
            } else {
                4
            }),
            ..DeviceOptions::default()
        };
        for device in devices(Backend::OpenCl, &options) {
            let shape = device.shape().expect("an OpenCL device has a shape");
            assert_eq!(shape.variant, variant, "{}", device.info().label());
        }
        check_random_windows(Backend::OpenCl, &options);
        check_mainnet(Backend::OpenCl, &options);
    }
}

/// The WGSL's NVIDIA build (additions as multiply-adds) on lavapipe.
#[test]
fn vulkan_nvidia_variant_matches_reference() {
    let options = DeviceOptions {
        kernel_variant: Some(KernelVariant::Nvidia),
        ..DeviceOptions::default()
    };
    for device in devices(Backend::Vulkan, &options) {
        let shape = device.shape().expect("a Vulkan device has a shape");
        assert_eq!(shape.variant, KernelVariant::Nvidia);
    }
    check_random_windows(Backend::Vulkan, &options);
    check_mainnet(Backend::Vulkan, &options);
}

#[test]
fn vulkan_matches_reference_on_random_headers() {
    check_random_windows(Backend::Vulkan, &DeviceOptions::default());
    // The shader reports hits per group of 32 nonces: one short group, and
    // a full group followed by a short one.
    for (nonces, worksize) in [(3, 16), (40, 8)] {
        let options = DeviceOptions {
            vulkan_nonces: Some(nonces),
            worksize: Some(worksize),
            ..DeviceOptions::default()
        };
        check_random_windows(Backend::Vulkan, &options);
    }
}

#[test]
fn vulkan_finds_mainnet_nonces_and_passes_self_test() {
    check_mainnet(Backend::Vulkan, &DeviceOptions::default());
}

/// A broken program cache entry is rebuilt, not trusted.
#[test]
fn opencl_rebuilds_a_corrupt_cache_entry() {
    let dir = std::env::temp_dir().join(format!("hashrig-cache-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Its own cache folder, through the options: the environment is
    // shared with every test running beside this one.
    let options = DeviceOptions {
        vectors: Some(2),
        worksize: Some(8),
        cache_dir: Some(dir.clone()),
        ..DeviceOptions::default()
    };
    drop(devices(Backend::OpenCl, &options));
    let entries: Vec<_> = std::fs::read_dir(dir.join("opencl"))
        .expect("cache written")
        .filter_map(Result::ok)
        .collect();
    assert!(!entries.is_empty(), "no cache entry written");
    for entry in &entries {
        let mut bytes = std::fs::read(entry.path()).expect("read cache");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(entry.path(), bytes).expect("corrupt cache");
    }
    for mut device in devices(Backend::OpenCl, &options) {
        selftest::run(device.as_mut()).expect("rebuilt kernel passes");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
