//! The OpenCL backend: `kernels/sha256d.cl` on every OpenCL device, through
//! `opencl3`, which loads libOpenCL at run time (a machine without OpenCL
//! builds, starts and simply lists no OpenCL devices).

use std::path::{Path, PathBuf};
use std::ptr;
use std::time::Duration;

use opencl3::command_queue::{CommandQueue, CL_QUEUE_PROFILING_ENABLE};
use opencl3::context::Context;
use opencl3::device::{
    Device as ClDevice, CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_CPU, CL_DEVICE_TYPE_GPU,
};
use opencl3::kernel::{ExecuteKernel, Kernel};
use opencl3::memory::{Buffer, CL_MEM_READ_ONLY, CL_MEM_READ_WRITE};
use opencl3::platform::get_platforms;
use opencl3::program::Program;
use opencl3::types::{cl_device_id, cl_mem_flags, cl_uint, CL_BLOCKING, CL_NON_BLOCKING};

use super::variant::takes_inline_ptx;
use super::{
    check_range, Backend, Device, DeviceError, DeviceInfo, DeviceKind, DeviceOptions, DriverError,
    KernelVariant, ListError, Locator, Shape,
};
use crate::pow::KernelWork;

/// The kernel source, compiled per device at start.
pub const KERNEL_SOURCE: &str = include_str!("../../kernels/sha256d.cl");
/// Slots in the found-buffer (the kernel's `FOUND_CAPACITY`).
const FOUND_CAPACITY: usize = 255;

/// Lists every device of every OpenCL platform, or says why there are none.
/// Serialises device listings within the process (see [`list`]).
static LISTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn list() -> Result<Vec<DeviceInfo>, ListError> {
    let platforms =
        get_platforms().map_err(|e| ListError::NoOpenClPlatform(DriverError::reported(e)))?;
    let mut out = Vec::new();
    for (p, platform) in platforms.iter().enumerate() {
        let platform_name = platform
            .name()
            .unwrap_or_else(|_| "unknown platform".into());
        // PoCL brings its devices up on first use; a listing that races
        // with that (another thread opening a device) sees none. Listings
        // in this process are serialised, and an empty answer is asked again.
        let _serial = LISTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut listed = platform.get_devices(CL_DEVICE_TYPE_ALL);
        for _ in 0..5 {
            if listed.as_ref().is_ok_and(|ids| !ids.is_empty()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            listed = platform.get_devices(CL_DEVICE_TYPE_ALL);
        }
        let ids = match listed {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("OpenCL platform {platform_name}: no devices ({e})");
                continue;
            }
        };
        for (d, id) in ids.into_iter().enumerate() {
            let device = ClDevice::new(id);
            let dev_type = device.dev_type().unwrap_or(0);
            out.push(DeviceInfo {
                index: 0,
                backend: Backend::OpenCl,
                name: device
                    .name()
                    .unwrap_or_else(|_| "unknown device".into())
                    .trim()
                    .to_owned(),
                kind: if dev_type & CL_DEVICE_TYPE_GPU != 0 {
                    DeviceKind::Gpu
                } else if dev_type & CL_DEVICE_TYPE_CPU != 0 {
                    DeviceKind::Cpu
                } else {
                    DeviceKind::Other
                },
                compute_units: device.max_compute_units().unwrap_or(0),
                memory_bytes: device.global_mem_size().unwrap_or(0),
                platform: Some(platform_name.trim().to_owned()),
                vendor: device.vendor().ok().map(|v| v.trim().to_owned()),
                driver: device.driver_version().ok().map(|v| v.trim().to_owned()),
                pci_bus_id: pci_bus_id(&device),
                locator: Locator::OpenCl {
                    platform: p,
                    device: d,
                },
            });
        }
    }
    Ok(out)
}

/// `domain:bus:device.function` from whichever extension the driver has:
/// Khronos's (Intel, Mesa, recent NVIDIA), NVIDIA's or AMD's own.
fn pci_bus_id(device: &ClDevice) -> Option<String> {
    let extensions = device.extensions().unwrap_or_default();
    let has = |name: &str| extensions.split_whitespace().any(|e| e == name);
    if has("cl_khr_pci_bus_info") {
        if let Ok(id) = device.pcibusinfokhr_intel() {
            return Some(format!(
                "{:04x}:{:02x}:{:02x}.{:x}",
                id.pci_domain, id.pci_bus, id.pci_device, id.pci_function
            ));
        }
    }
    if has("cl_nv_device_attribute_query") {
        if let (Ok(bus), Ok(slot)) = (device.pci_bus_id_nv(), device.pci_slot_id_nv()) {
            // NVIDIA's slot id is the device number and the function in
            // one byte, as in PCI's devfn (hashcat decodes it the same way).
            return Some(format!(
                "0000:{:02x}:{:02x}.{:x}",
                bus & 0xff,
                (slot >> 3) & 0x1f,
                slot & 0x7
            ));
        }
    }
    if has("cl_amd_device_attribute_query") {
        if let Ok(t) = device.topology_amd() {
            return Some(format!(
                "0000:{:02x}:{:02x}.{:x}",
                t.bus, t.device, t.function
            ));
        }
    }
    None
}

/// Per-device kernel choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelShape {
    /// Which build of the kernel.
    pub variant: KernelVariant,
    /// Nonces per work-item, as OpenCL vector lanes.
    pub vectors: u32,
    /// Work-items per work-group.
    pub worksize: usize,
}

impl KernelShape {
    /// Defaults: scalar work-items in groups of 256 on GPUs; 16-lane vectors
    /// on CPU devices, whose OpenCL compilers vectorise explicit vectors
    /// far better than work-items (PoCL on AVX-512: 16 lanes 1.4x 8 lanes,
    /// see BENCHMARKS.md).
    pub fn for_device(info: &DeviceInfo, max_worksize: usize, options: &DeviceOptions) -> Self {
        let (vectors, worksize) = match info.kind {
            DeviceKind::Cpu => (16, 64),
            _ => (1, 256),
        };
        KernelShape {
            variant: options
                .kernel_variant
                .unwrap_or_else(|| KernelVariant::for_device(info)),
            vectors: options.vectors.unwrap_or(vectors),
            worksize: options
                .worksize
                .unwrap_or(worksize)
                .min(max_worksize.max(1)),
        }
    }

    fn build_options(&self, inline_ptx: bool) -> String {
        format!(
            "-D VECTORS={} -D FOUND_CAPACITY={FOUND_CAPACITY}{}{}",
            self.vectors,
            self.variant.build_option(),
            if inline_ptx { " -D HASHRIG_PTX=1" } else { "" }
        )
    }
}

/// An opened OpenCL device: context, queue, program, kernel and buffers,
/// created once.
pub struct OpenClDevice {
    info: DeviceInfo,
    /// What it was opened with, to open it again on a reset.
    options: DeviceOptions,
    shape: KernelShape,
    queue: CommandQueue,
    kernel: Kernel,
    work_buffer: Buffer<cl_uint>,
    found_buffer: Buffer<cl_uint>,
    /// The work now in `work_buffer`.
    uploaded: Option<KernelWork>,
    /// Measured nonces per second: how long to sleep before waiting.
    rate: f64,
    /// Kernel run time of the current scan's launches, from profiling.
    busy: Option<Duration>,
    // Dropped last: everything above lives in it.
    _context: Context,
}

/// The device at `platform`, `device` in the runtime's order, or the
/// call that failed and why.
fn locate(platform: usize, device: usize) -> Result<cl_device_id, (&'static str, DriverError)> {
    let platforms = get_platforms().map_err(|e| ("clGetPlatformIDs", DriverError::reported(e)))?;
    platforms
        .get(platform)
        .ok_or(("open", DriverError::Noticed("platform gone")))?
        .get_devices(CL_DEVICE_TYPE_ALL)
        .map_err(|e| ("clGetDeviceIDs", DriverError::reported(e)))?
        .get(device)
        .copied()
        .ok_or(("open", DriverError::Noticed("device gone")))
}

/// A buffer of `words` `cl_uint`s in device memory only.
fn device_buffer(
    context: &Context,
    flags: cl_mem_flags,
    words: usize,
) -> Result<Buffer<cl_uint>, opencl3::error_codes::ClError> {
    // SAFETY: no host pointer; the size is in elements of cl_uint.
    unsafe { Buffer::<cl_uint>::create(context, flags, words, ptr::null_mut()) }
}

impl OpenClDevice {
    pub(crate) fn open(info: DeviceInfo, options: &DeviceOptions) -> Result<Self, DeviceError> {
        let label = info.label();
        let driver = |operation: &'static str| {
            let label = label.clone();
            move |e: opencl3::error_codes::ClError| DeviceError::Driver {
                device: label.clone(),
                operation,
                source: DriverError::reported(e),
            }
        };
        let Locator::OpenCl { platform, device } = info.locator else {
            return Err(DeviceError::Driver {
                device: label,
                operation: "open",
                source: DriverError::Noticed("not an OpenCL device"),
            });
        };
        let id = locate(platform, device).map_err(|(operation, source)| DeviceError::Driver {
            device: label.clone(),
            operation,
            source,
        })?;
        let cl_device = ClDevice::new(id);
        let shape = KernelShape::for_device(
            &info,
            cl_device.max_work_group_size().unwrap_or(256),
            options,
        );
        super::check_vectors(shape.vectors).map_err(|e| DeviceError::Driver {
            device: label.clone(),
            operation: "configure",
            source: DriverError::reported(e),
        })?;
        let context = Context::from_device(&cl_device).map_err(driver("clCreateContext"))?;
        // Profiling gives each launch's true run time, which the sleep
        // before waiting is based on (a time that included the sleep would
        // feed on itself).
        #[allow(deprecated)] // clCreateCommandQueue: the 1.2 call every runtime has
        let queue = CommandQueue::create_default(&context, CL_QUEUE_PROFILING_ENABLE)
            .map_err(driver("clCreateCommandQueue"))?;
        let program = build_program(&context, &info, &shape, options.cache_dir.as_deref())?;
        let kernel = Kernel::create(&program, "sha256d_scan").map_err(driver("clCreateKernel"))?;
        let work_buffer = device_buffer(&context, CL_MEM_READ_ONLY, KernelWork::WORDS)
            .map_err(driver("clCreateBuffer"))?;
        let found_buffer = device_buffer(&context, CL_MEM_READ_WRITE, 1 + FOUND_CAPACITY)
            .map_err(driver("clCreateBuffer"))?;
        tracing::debug!(
            "{label}: {} kernel, {} nonces per work-item, work-group {}",
            shape.variant,
            shape.vectors,
            shape.worksize
        );
        Ok(OpenClDevice {
            options: options.clone(),
            info,
            shape,
            queue,
            kernel,
            work_buffer,
            found_buffer,
            uploaded: None,
            rate: 0.0,
            busy: None,
            _context: context,
        })
    }

    fn driver_error(
        &self,
        operation: &'static str,
    ) -> impl Fn(opencl3::error_codes::ClError) -> DeviceError + '_ {
        move |e| DeviceError::Driver {
            device: self.info.label(),
            operation,
            source: DriverError::reported(e),
        }
    }

    /// One kernel launch over `start .. start + count`; returns whether the
    /// found-buffer overflowed and the candidates it holds.
    fn launch(&mut self, start: u32, count: u64) -> Result<(bool, Vec<u32>), DeviceError> {
        let lanes = u64::from(self.shape.vectors);
        let worksize = self.shape.worksize as u64;
        let items = count.div_ceil(lanes).div_ceil(worksize) * worksize;
        let last_offset = (count - 1) as cl_uint;
        let zero: [cl_uint; 1] = [0];
        // SAFETY: the buffer holds 1 + FOUND_CAPACITY words; we write one.
        unsafe {
            self.queue
                .enqueue_write_buffer(&mut self.found_buffer, CL_NON_BLOCKING, 0, &zero, &[])
        }
        .map_err(self.driver_error("clEnqueueWriteBuffer"))?;
        // SAFETY: argument types match the kernel signature
        // (constant uint*, uint, uint, global uint*).
        let event = unsafe {
            ExecuteKernel::new(&self.kernel)
                .set_arg(&self.work_buffer)
                .set_arg(&start)
                .set_arg(&last_offset)
                .set_arg(&self.found_buffer)
                .set_global_work_size(items as usize)
                .set_local_work_size(self.shape.worksize)
                .enqueue_nd_range(&self.queue)
        }
        .map_err(self.driver_error("clEnqueueNDRangeKernel"))?;
        // Without a flush some runtimes start the kernel only when waited
        // on, and the sleep below would leave the device idle.
        self.queue.flush().map_err(self.driver_error("clFlush"))?;
        // Some drivers (NVIDIA's) spin a CPU core in clFinish and event
        // waits: sleep through most of the expected run time first.
        if self.rate > 0.0 {
            let expected = Duration::from_secs_f64(count as f64 / self.rate);
            if expected > Duration::from_millis(2) {
                std::thread::sleep(expected.mul_f64(0.9));
            }
        }
        event
            .wait()
            .map_err(self.driver_error("kernel execution"))?;
        let run_ns = event
            .profiling_command_end()
            .and_then(|end| Ok(end.saturating_sub(event.profiling_command_start()?)));
        if let Ok(ns) = run_ns {
            *self.busy.get_or_insert(Duration::ZERO) += Duration::from_nanos(ns);
        }
        self.rate = match run_ns {
            Ok(ns) if ns > 0 && count >= 1 << 16 => count as f64 * 1e9 / ns as f64,
            Ok(_) => self.rate,
            // No profiling: no sleeping either.
            Err(_) => 0.0,
        };
        let mut found = [0 as cl_uint; 1 + FOUND_CAPACITY];
        // SAFETY: reading exactly the buffer's size.
        unsafe {
            self.queue
                .enqueue_read_buffer(&self.found_buffer, CL_BLOCKING, 0, &mut found, &[])
        }
        .map_err(self.driver_error("clEnqueueReadBuffer"))?;
        let seen = found[0] as usize;
        Ok((
            seen > FOUND_CAPACITY,
            found[1..1 + seen.min(FOUND_CAPACITY)].to_vec(),
        ))
    }
}

impl Device for OpenClDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn granularity(&self) -> u64 {
        u64::from(self.shape.vectors) * self.shape.worksize as u64
    }

    fn busy_time(&self) -> Option<Duration> {
        self.busy
    }

    fn shape(&self) -> Option<Shape> {
        Some(Shape {
            variant: self.shape.variant,
            worksize: self.shape.worksize as u32,
            vectors: self.shape.vectors,
            nonces: 1,
            cpu_path: None,
        })
    }

    /// A new context, queue, program (from the cache) and buffers; the old
    /// ones are released once the new ones work.
    fn reset(&mut self) -> Result<(), DeviceError> {
        *self = OpenClDevice::open(self.info.clone(), &self.options)?;
        Ok(())
    }

    fn scan(&mut self, work: &KernelWork, start: u32, count: u64) -> Result<Vec<u32>, DeviceError> {
        check_range(start, count)?;
        if count == 0 {
            return Ok(Vec::new());
        }
        self.busy = None;
        if self.uploaded.as_ref() != Some(work) {
            let words: &[cl_uint] = bytemuck::cast_slice(std::slice::from_ref(work));
            // SAFETY: the buffer holds exactly KernelWork::WORDS words.
            unsafe {
                self.queue
                    .enqueue_write_buffer(&mut self.work_buffer, CL_BLOCKING, 0, words, &[])
            }
            .map_err(self.driver_error("clEnqueueWriteBuffer"))?;
            self.uploaded = Some(*work);
        }
        super::scan_complete(start, count, &mut |s, c| self.launch(s, c))
    }
}

/// Builds the kernel for a device, through the on-disk program cache: with
/// inline PTX where the compiler takes it, and again in plain C if this
/// driver refuses the PTX (the same hashes, more instructions).
fn build_program(
    context: &Context,
    info: &DeviceInfo,
    shape: &KernelShape,
    cache_dir: Option<&Path>,
) -> Result<Program, DeviceError> {
    let inline_ptx = takes_inline_ptx(info);
    match build_with_options(context, info, &shape.build_options(inline_ptx), cache_dir) {
        Err(DeviceError::Build { log, .. }) if inline_ptx => {
            let first = log.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            tracing::warn!(
                "{}: the kernel's inline PTX did not build ({first}); building it in plain C",
                info.label()
            );
            build_with_options(context, info, &shape.build_options(false), cache_dir)
        }
        built => built,
    }
}

fn build_with_options(
    context: &Context,
    info: &DeviceInfo,
    options: &str,
    cache_dir: Option<&Path>,
) -> Result<Program, DeviceError> {
    let cache = ProgramCache::for_device(info, options, cache_dir);
    if let Some(binary) = cache.as_ref().and_then(|c| c.load()) {
        match Program::create_and_build_from_binary(context, &[&binary], options) {
            Ok(program) => return Ok(program),
            Err(e) => tracing::info!(
                "{}: cached kernel binary rejected ({e}); rebuilding",
                info.label()
            ),
        }
    }
    let program =
        Program::create_and_build_from_source(context, KERNEL_SOURCE, options).map_err(|log| {
            DeviceError::Build {
                device: info.label(),
                log,
            }
        })?;
    if let (Some(cache), Ok(binaries)) = (cache, program.get_binaries()) {
        if let Some(binary) = binaries.first().filter(|b| !b.is_empty()) {
            cache.store(binary);
        }
    }
    Ok(program)
}

/// Compiled kernel binaries on disk, under the XDG cache directory, one file
/// per (platform, device, driver, kernel source, build options). Each file
/// carries its key and a checksum of the binary; anything that does not
/// match is rebuilt, never trusted.
struct ProgramCache {
    path: PathBuf,
    key: [u8; 32],
}

/// The largest kernel cache entry read back: built programs are a few MB.
const MAX_CACHE_ENTRY: u64 = 64 << 20;
const CACHE_MAGIC: &[u8; 8] = b"HRCLBIN1";

impl ProgramCache {
    fn for_device(info: &DeviceInfo, options: &str, dir: Option<&Path>) -> Option<Self> {
        use bitcoin::hashes::{sha256, Hash};
        let dir = dir
            .map(Path::to_path_buf)
            .or_else(super::cache_dir)?
            .join("opencl");
        let material = format!(
            "{}\0{}\0{}\0{}\0{}",
            info.platform.as_deref().unwrap_or(""),
            info.name,
            info.driver.as_deref().unwrap_or(""),
            options,
            KERNEL_SOURCE
        );
        let key = sha256::Hash::hash(material.as_bytes()).to_byte_array();
        Some(ProgramCache {
            path: dir.join(format!("{}.bin", hex::encode(&key[..16]))),
            key,
        })
    }

    fn load(&self) -> Option<Vec<u8>> {
        use bitcoin::hashes::{sha256, Hash};
        // Our own folder, but a file there may still be a link to a device
        // or a FIFO: only a regular file of a program's size is read.
        let data = crate::untrusted_files::read_bytes(&self.path, MAX_CACHE_ENTRY).ok()?;
        let (magic, rest) = data.split_at_checked(8)?;
        let (key, rest) = rest.split_at_checked(32)?;
        let (checksum, binary) = rest.split_at_checked(32)?;
        let valid = magic == CACHE_MAGIC
            && key == self.key
            && checksum == sha256::Hash::hash(binary).to_byte_array()
            && !binary.is_empty();
        if !valid {
            tracing::info!(
                "kernel cache entry {} is stale or corrupt; rebuilding",
                self.path.display()
            );
            return None;
        }
        Some(binary.to_vec())
    }

    fn store(&self, binary: &[u8]) {
        use bitcoin::hashes::{sha256, Hash};
        let mut data = Vec::with_capacity(72 + binary.len());
        data.extend_from_slice(CACHE_MAGIC);
        data.extend_from_slice(&self.key);
        data.extend_from_slice(&sha256::Hash::hash(binary).to_byte_array());
        data.extend_from_slice(binary);
        let Some(dir) = self.path.parent() else {
            return;
        };
        // Write then rename, so a crash never leaves half a file under the real name.
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let result = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, &data))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            tracing::debug!(
                "could not cache kernel binary at {}: {e}",
                self.path.display()
            );
        }
    }
}
