//! `hashrig tune`: measure the candidate shapes of each selected device,
//! side by side, and remember the fastest in the tuning file.
//!
//! Every candidate is opened at once (each its own context and compiled
//! kernel) and proven by the self-test; then they take turns, one slice of
//! scanning each per round, in an order that rotates every round, so that
//! whatever else the machine is doing falls on all of them alike. A
//! candidate's figure is its median slice.

use hashrig::error_chain::Chain;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use hashrig::backend::tuning::{DeviceIdentity, Tuning, TuningFile};
use hashrig::backend::{
    open, selftest, Backend, Device, DeviceError, DeviceInfo, DeviceKind, DeviceOptions,
    KernelVariant, Shape,
};
use hashrig::pow::header::header_bytes;
use hashrig::pow::KernelWork;
use hashrig::stats::format_hashrate;

use crate::cli::{select_devices, TuneSettings};
use crate::failure::Failure;

/// Rounds of turns: enough for a median that one noisy slice cannot move.
const ROUNDS: usize = 5;

pub fn run(args: &TuneSettings, quiet: bool) -> anyhow::Result<ExitCode> {
    let path = &args.tuning_file;
    let seconds = args.seconds;
    let mut tunings = match TuningFile::load(path) {
        Ok(file) => file,
        // --reset is how a damaged file is cleared.
        Err(e) if args.reset => {
            tracing::warn!("{}: replaced", Chain(&e));
            TuningFile::empty(path)
        }
        Err(e) => return Err(e.into()),
    };
    if args.reset {
        let removed = match &args.devices.selection {
            Some(_) => {
                let inventory = crate::cli::inventory(&args.devices);
                let selected = select_devices(&args.devices, &inventory)?;
                let ids: Vec<DeviceIdentity> = selected
                    .devices
                    .iter()
                    .filter_map(DeviceIdentity::of)
                    .collect();
                tunings.remove(|t| ids.contains(&t.device))
            }
            None => tunings.remove(|_| true),
        };
        tunings.save()?;
        println!("{removed} tunings cleared from {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }

    let inventory = crate::cli::inventory(&args.devices);
    for note in &inventory.notes {
        tracing::info!("{note}");
    }
    let selected = select_devices(&args.devices, &inventory)?;
    let mut tuned = 0;
    for info in &selected.devices {
        let Some(identity) = DeviceIdentity::of(info) else {
            continue;
        };
        let Some(result) = tune_device(info, &selected.options, seconds, quiet)? else {
            continue;
        };
        println!(
            "{}: {} at {} ({:.2}x the default {}); stored in {}",
            info.label(),
            result.shape.describe(info.backend),
            format_hashrate(result.hashrate),
            result.hashrate / result.default_hashrate,
            format_hashrate(result.default_hashrate),
            path.display()
        );
        tunings.store(Tuning {
            device: identity,
            ..result
        });
        tunings.save()?;
        tuned += 1;
    }
    if tuned == 0 {
        anyhow::bail!(
            "no device was tuned (software OpenCL or Vulkan devices, PoCL and lavapipe, are tuned only when asked for: --backend opencl|vulkan, or --opencl-cpu / --vulkan-cpu)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The shapes worth measuring on a device; a dimension the flags fix has
/// only the flag's value. For the CPU: every path it runs.
pub fn candidates(info: &DeviceInfo, fixed: &DeviceOptions) -> Vec<Shape> {
    if info.backend == Backend::Cpu {
        let paths = fixed
            .cpu_path
            .map_or_else(hashrig::backend::cpu::supported_paths, |p| vec![p]);
        return paths.into_iter().map(Shape::cpu).collect();
    }
    let pick = KernelVariant::for_device(info);
    let mut variants = vec![pick, KernelVariant::Generic];
    // The WGSL has no AMD form: it would measure the generic shader twice.
    if info.backend == Backend::Vulkan && pick == KernelVariant::Amd {
        variants = vec![KernelVariant::Generic];
    }
    variants.dedup();
    let gpu = info.kind == DeviceKind::Gpu;
    let (worksizes, per_item): (Vec<u32>, Vec<u32>) = match (info.backend, gpu) {
        (Backend::OpenCl, true) => (vec![64, 128, 256, 512], vec![1, 2]),
        (Backend::OpenCl, false) => (vec![64], vec![4, 8, 16]),
        (Backend::Vulkan, true) => (vec![64, 128, 256], vec![1, 2, 4]),
        (Backend::Vulkan, false) => (vec![64, 256], vec![16, 64, 256]),
        (Backend::Cpu, _) => unreachable!("the CPU's candidates are its paths"),
    };
    // The wide-rotation NVIDIA build differs from the NVIDIA one only at
    // one nonce per work-item, in OpenCL: measured there alone.
    let wide = fixed.kernel_variant.is_none()
        && pick == KernelVariant::Nvidia
        && info.backend == Backend::OpenCl
        && fixed.vectors.is_none_or(|v| v == 1);
    let variants = fixed.kernel_variant.map_or(variants, |v| vec![v]);
    let worksizes = fixed
        .worksize
        .map_or(worksizes, |w| vec![u32::try_from(w).unwrap_or(u32::MAX)]);
    let per_item = match info.backend {
        Backend::OpenCl => fixed.vectors.map_or(per_item, |v| vec![v]),
        _ => fixed.vulkan_nonces.map_or(per_item, |n| vec![n]),
    };
    let mut out = Vec::new();
    for &variant in &variants {
        for &worksize in &worksizes {
            for &n in &per_item {
                let (vectors, nonces) = match info.backend {
                    Backend::OpenCl => (n, 1),
                    _ => (1, n),
                };
                out.push(Shape {
                    variant,
                    worksize,
                    vectors,
                    nonces,
                    cpu_path: None,
                });
            }
        }
        if wide && variant == KernelVariant::Nvidia {
            out.extend(worksizes.iter().map(|&worksize| Shape {
                variant: KernelVariant::NvidiaWide,
                worksize,
                vectors: 1,
                nonces: 1,
                cpu_path: None,
            }));
        }
    }
    out
}

/// The options that open a device in exactly this shape.
pub fn options_for(shape: &Shape, base: &DeviceOptions) -> DeviceOptions {
    DeviceOptions {
        kernel_variant: Some(shape.variant),
        worksize: Some(shape.worksize as usize),
        vectors: Some(shape.vectors),
        vulkan_nonces: Some(shape.nonces),
        cpu_path: shape.cpu_path,
        ..base.clone()
    }
}

struct Candidate {
    device: Box<dyn Device>,
    shape: Shape,
    /// Nonces per slice, from the calibration scan.
    slice: u64,
    rates: Vec<f64>,
}

impl Candidate {
    fn median(&self) -> f64 {
        let mut rates = self.rates.clone();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    }

    /// Sizes its slice to about `slice_time`, from probes doubled until
    /// one takes a twentieth of a second: a rate from a launch shorter
    /// than that is mostly launch overhead.
    fn calibrate(&mut self, work: &KernelWork, slice_time: Duration) -> Result<(), DeviceError> {
        let granularity = self.device.granularity().max(1);
        let mut probe = granularity;
        let rate = loop {
            let began = Instant::now();
            self.device.scan(work, 0, probe)?;
            let elapsed = began.elapsed().as_secs_f64();
            if elapsed >= 0.05 || probe >= 1 << 30 {
                break probe as f64 / elapsed.max(1e-9);
            }
            probe *= 2;
        };
        let nonces = (rate * slice_time.as_secs_f64()) as u64;
        self.slice = nonces.div_ceil(granularity).max(1) * granularity;
        Ok(())
    }
}

/// Measures every candidate of one device; `None` when none could run.
fn tune_device(
    info: &DeviceInfo,
    options: &DeviceOptions,
    seconds: f64,
    quiet: bool,
) -> anyhow::Result<Option<Tuning>> {
    // What the device mines on untuned, to compare the winner with.
    let default_shape = open(info, options).ok().and_then(|d| d.shape());
    let mut shapes = candidates(info, options);
    if let Some(default) = default_shape.filter(|d| !shapes.contains(d)) {
        shapes.push(default);
    }
    eprintln!(
        "{}: {} candidate shapes, {seconds:.0} s of measuring",
        info.label(),
        shapes.len()
    );
    let mut opened = open_candidates(info, options, shapes);
    if opened.is_empty() {
        tracing::error!("{}: no candidate shape could run", info.label());
        return Ok(None);
    }
    let device_failed = |e: DeviceError| Failure::Devices(Chain(&e).to_string());
    // A real header at its own (hard) target: scans find almost nothing,
    // as in mining.
    let known = &selftest::known_headers()[0];
    let work = KernelWork::new(&header_bytes(&known.header), &known.header.target());
    let slice_time = Duration::from_secs_f64(seconds / (ROUNDS * opened.len()) as f64);
    for candidate in &mut opened {
        candidate
            .calibrate(&work, slice_time)
            .map_err(device_failed)?;
    }
    measure_in_turns(&mut opened, &work, &info.label(), quiet).map_err(device_failed)?;
    for candidate in &opened {
        eprintln!(
            "  {:<52} {:>14}",
            candidate.shape.describe(info.backend),
            format_hashrate(candidate.median())
        );
    }
    let best = opened
        .iter()
        .max_by(|a, b| a.median().total_cmp(&b.median()))
        .ok_or_else(|| Failure::Devices(format!("{}: no candidate measured", info.label())))?;
    let default_hashrate = opened
        .iter()
        .find(|c| Some(c.shape) == default_shape)
        .map_or(best.median(), Candidate::median);
    Ok(Some(Tuning {
        device: DeviceIdentity::of(info).context("not a tunable device")?,
        shape: best.shape,
        hashrate: best.median(),
        default_hashrate,
        tuned_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }))
}

/// Opens and self-tests the device once per shape; a shape it cannot run
/// is left out, and said.
fn open_candidates(
    info: &DeviceInfo,
    options: &DeviceOptions,
    shapes: Vec<Shape>,
) -> Vec<Candidate> {
    let mut opened = Vec::new();
    for shape in shapes {
        let opened_one = open(info, &options_for(&shape, options)).and_then(|mut device| {
            selftest::run(device.as_mut())?;
            Ok(device)
        });
        match opened_one {
            Ok(device) => opened.push(Candidate {
                shape: device.shape().unwrap_or(shape),
                device,
                slice: 0,
                rates: Vec::new(),
            }),
            Err(e) => tracing::warn!(
                "{}: {} left out: {}",
                info.label(),
                shape.describe(info.backend),
                Chain(&e)
            ),
        }
    }
    opened
}

/// [`ROUNDS`] rounds of one slice per candidate, each round starting
/// with the next one, so that a device warming up or clocking down
/// weighs on every candidate alike.
fn measure_in_turns(
    opened: &mut [Candidate],
    work: &KernelWork,
    label: &str,
    quiet: bool,
) -> Result<(), DeviceError> {
    // A progress line only for a person watching, not in a log.
    let progress = !quiet && std::io::stderr().is_terminal();
    let mut start = 0u32;
    for round in 0..ROUNDS {
        let n = opened.len();
        for k in 0..n {
            let candidate = &mut opened[(round + k) % n];
            let count = candidate.slice.min(u64::from(u32::MAX - start));
            let began = Instant::now();
            candidate.device.scan(work, start, count)?;
            candidate
                .rates
                .push(count as f64 / began.elapsed().as_secs_f64().max(1e-9));
            start = start.wrapping_add(count as u32) % (1 << 31);
        }
        if progress {
            eprint!("\r{label}: round {}/{ROUNDS}", round + 1);
        }
    }
    if progress {
        eprintln!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashrig::backend::Locator;

    fn device(backend: Backend, kind: DeviceKind, vendor: &str) -> DeviceInfo {
        DeviceInfo {
            index: 1,
            backend,
            name: "a device".into(),
            kind,
            compute_units: 1,
            memory_bytes: 0,
            platform: None,
            vendor: Some(vendor.into()),
            driver: None,
            pci_bus_id: None,
            locator: Locator::Cpu,
        }
    }

    /// The vendor's build and the generic one on GPUs, each dimension
    /// fixed by its flag, and every path this CPU runs for the CPU.
    #[test]
    fn candidates_by_device_and_flags() {
        let open = DeviceOptions::default();
        let nvidia = device(Backend::OpenCl, DeviceKind::Gpu, "NVIDIA Corporation");
        let all = candidates(&nvidia, &open);
        assert_eq!(all.len(), 2 * 4 * 2 + 4);
        assert_eq!(
            all.iter()
                .filter(|s| s.variant == KernelVariant::NvidiaWide && s.vectors == 1)
                .count(),
            4
        );
        assert!(all.iter().any(|s| s.variant == KernelVariant::Nvidia));
        assert!(all.iter().any(|s| s.variant == KernelVariant::Generic));
        let fixed = DeviceOptions {
            kernel_variant: Some(KernelVariant::Nvidia),
            worksize: Some(128),
            ..DeviceOptions::default()
        };
        let some = candidates(&nvidia, &fixed);
        assert_eq!(some.len(), 2);
        assert!(some
            .iter()
            .all(|s| s.variant == KernelVariant::Nvidia && s.worksize == 128));

        let pocl = device(Backend::OpenCl, DeviceKind::Cpu, "AuthenticAMD");
        let lanes: Vec<u32> = candidates(&pocl, &open).iter().map(|s| s.vectors).collect();
        assert_eq!(lanes, [4, 8, 16]);
        let radv = device(Backend::Vulkan, DeviceKind::Gpu, "0x1002");
        assert!(candidates(&radv, &open)
            .iter()
            .all(|s| s.variant == KernelVariant::Generic && s.vectors == 1));
        let cpu = device(Backend::Cpu, DeviceKind::Cpu, "x");
        let paths: Vec<_> = candidates(&cpu, &open)
            .iter()
            .map(|s| s.cpu_path.unwrap())
            .collect();
        assert_eq!(paths, hashrig::backend::cpu::supported_paths());
        assert!(paths.contains(&hashrig::backend::CpuPath::Scalar));
        let forced = DeviceOptions {
            cpu_path: Some(hashrig::backend::CpuPath::Scalar),
            ..DeviceOptions::default()
        };
        assert_eq!(
            candidates(&cpu, &forced),
            [Shape::cpu(hashrig::backend::CpuPath::Scalar)]
        );
    }
}
