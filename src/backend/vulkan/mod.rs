//! The Vulkan backend: `shaders/sha256d.wgsl` through wgpu, on every Vulkan
//! adapter. Built like wgpu's repeated-compute example: pipeline, bind
//! groups and buffers created once per device; each launch writes a small
//! uniform, dispatches, and copies the found-buffer to a mapped staging
//! buffer. Two launch slots alternate so that on a real GPU the readback of
//! one overlaps the compute of the next.

use std::sync::Arc;
use std::time::Duration;

use super::{
    check_range, Backend, Device, DeviceError, DeviceInfo, DeviceKind, DeviceOptions, DriverError,
    KernelVariant, ListError, Locator, Shape,
};
use crate::pow::KernelWork;
use setup::{build_pipeline, request_device};

mod setup;

/// The shader source, compiled per adapter at start.
pub const SHADER_SOURCE: &str = include_str!("../../../shaders/sha256d.wgsl");
/// Slots in the found-buffer (the shader's `FOUND_CAPACITY`).
const FOUND_CAPACITY: usize = 255;
/// Uniform words: KernelWork, first nonce, last offset, two spare.
const PARAM_WORDS: usize = 32;
const FOUND_BYTES: u64 = (4 * (1 + FOUND_CAPACITY)) as u64;
/// Staging bytes per slot: the found-buffer, then two resolved timestamps.
const STAGING_BYTES: u64 = FOUND_BYTES + 16;
/// How long a launch may take before the device is declared hung.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Mesa's software Vulkan driver (lavapipe) reads its SIMD width from the
/// environment once, when it loads.
const LAVAPIPE_WIDTH_VAR: &str = "LP_NATIVE_VECTOR_WIDTH";

/// Asks lavapipe for 512-bit SIMD on CPUs with AVX-512, unless the operator
/// chose a width; returns what was set, for the log.
///
/// lavapipe runs a shader 8 invocations at a time (256 bits) by default, even
/// where AVX-512 is available. This shader is all 32-bit integer work and
/// the instruction count per SIMD step is the same at either width, so 16
/// lanes hash about 1.5 times faster on an AVX-512 Xeon (BENCHMARKS.md).
/// It is the same choice the OpenCL backend makes for PoCL (16 lanes).
///
/// Mesa's on-disk shader cache (22.3) does not key on the width: a shader
/// compiled at 256 bits is served to a 512-bit driver, which then runs 8
/// lanes wide. So whenever the width is set and the operator has not placed
/// the cache, it moves to a directory per width (or is turned off if that
/// directory cannot be made).
///
/// # Safety
///
/// Sets environment variables: call before any other thread starts (first
/// thing in `main`), as `std::env::set_var` requires.
pub unsafe fn widen_software_driver() -> Vec<String> {
    let mut set = Vec::new();
    if std::env::var_os(LAVAPIPE_WIDTH_VAR).is_none() && cpu_has_avx512() {
        std::env::set_var(LAVAPIPE_WIDTH_VAR, "512");
        set.push(format!("{LAVAPIPE_WIDTH_VAR}=512"));
    }
    let Some(width) = std::env::var(LAVAPIPE_WIDTH_VAR)
        .ok()
        .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
    else {
        return set;
    };
    let cache_placed = ["MESA_SHADER_CACHE_DIR", "MESA_SHADER_CACHE_DISABLE"]
        .iter()
        .any(|var| std::env::var_os(var).is_some());
    if cache_placed {
        return set;
    }
    let dir = super::cache_dir().map(|d| d.join(format!("mesa-lp{width}")));
    match dir.filter(|d| std::fs::create_dir_all(d).is_ok()) {
        Some(dir) => {
            set.push(format!("MESA_SHADER_CACHE_DIR={}", dir.display()));
            std::env::set_var("MESA_SHADER_CACHE_DIR", dir);
        }
        None => {
            set.push("MESA_SHADER_CACHE_DISABLE=true".into());
            std::env::set_var("MESA_SHADER_CACHE_DISABLE", "true");
        }
    }
    set
}

/// Gives the Vulkan drivers a private `XDG_RUNTIME_DIR` when the session
/// has none (a service, `ssh`, `sudo`, a container): Mesa's window-system
/// code (Wayland's client library) prints "XDG_RUNTIME_DIR is invalid or
/// not set in the environment" to standard error on every instance, noise
/// from another program on hashrig's default path. Nothing of hashrig's
/// is put there; the folder is `$TMPDIR/hashrig-runtime-UID`, mode 0700,
/// used only when it is a folder this user owns that nobody else can enter.
/// Returns the setting made, for the log.
///
/// # Safety
///
/// Sets an environment variable: call before any other thread starts
/// (first thing in `main`), as `std::env::set_var` requires.
pub unsafe fn private_runtime_dir() -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let usable = |dir: &std::path::Path| {
            dir.is_absolute()
                && std::fs::metadata(dir).is_ok_and(|m| {
                    m.is_dir() && m.uid() == unsafe { libc::geteuid() } && m.mode() & 0o077 == 0
                })
        };
        let current = std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from);
        if current
            .as_deref()
            .is_some_and(|d| d.is_absolute() && std::fs::metadata(d).is_ok_and(|m| m.is_dir()))
        {
            return None;
        }
        // SAFETY: geteuid cannot fail and touches no memory of ours.
        let uid = unsafe { libc::geteuid() };
        let dir = std::env::temp_dir().join(format!("hashrig-runtime-{uid}"));
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        if !usable(&dir) {
            return None;
        }
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
        Some(format!("XDG_RUNTIME_DIR={}", dir.display()))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

fn cpu_has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN,
        ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
    })
}

fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::VULKAN))
}

/// Lists every Vulkan adapter, or says why there are none.
pub fn list() -> Result<Vec<DeviceInfo>, ListError> {
    let found = adapters(&instance());
    if found.is_empty() {
        return Err(ListError::NoVulkanAdapter);
    }
    Ok(found
        .iter()
        .enumerate()
        .map(|(i, adapter)| {
            let info = adapter.get_info();
            DeviceInfo {
                index: 0,
                backend: Backend::Vulkan,
                name: info.name.clone(),
                kind: match info.device_type {
                    wgpu::DeviceType::DiscreteGpu
                    | wgpu::DeviceType::IntegratedGpu
                    | wgpu::DeviceType::VirtualGpu => DeviceKind::Gpu,
                    wgpu::DeviceType::Cpu => DeviceKind::Cpu,
                    wgpu::DeviceType::Other => DeviceKind::Other,
                },
                compute_units: 0,
                memory_bytes: 0,
                platform: Some("Vulkan".into()),
                vendor: Some(format!("{:#06x}", info.vendor)),
                driver: Some(
                    format!("{} {}", info.driver, info.driver_info)
                        .trim()
                        .to_owned(),
                ),
                pci_bus_id: super::pci::normalize(&info.device_pci_bus_id),
                locator: Locator::Vulkan { adapter: i },
            }
        })
        .collect())
}

/// Per-adapter shader choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShaderShape {
    /// The WGSL has the NVIDIA build only (additions on the FMA pipe; WGSL
    /// has no 64-bit integers, so `nvidia-wide` runs it too); the AMD
    /// build's Maj form is what LLVM-based drivers find unaided, so `amd`
    /// runs the generic shader.
    pub variant: KernelVariant,
    pub(crate) workgroup_size: u32,
    pub(crate) nonces_per_invocation: u32,
}

/// GPU timestamps around each dispatch, where the adapter has them.
struct Timestamps {
    queries: wgpu::QuerySet,
    /// Resolved query values, one 256-byte-aligned pair per slot.
    resolved: wgpu::Buffer,
    /// Nanoseconds per tick.
    period: f64,
}

/// One launch's buffers: while one slot's results are read back, the other
/// slot's dispatch runs.
struct Slot {
    params: wgpu::Buffer,
    found: wgpu::Buffer,
    staging: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

/// An opened Vulkan adapter.
pub struct VulkanDevice {
    info: DeviceInfo,
    /// What it was opened with, to open it again on a reset.
    options: DeviceOptions,
    shape: ShaderShape,
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    slots: [Slot; 2],
    max_groups_per_dimension: u32,
    work: KernelWork,
    timestamps: Option<Timestamps>,
    /// GPU time of the last scan's dispatches, from timestamps.
    busy: Option<Duration>,
}

impl VulkanDevice {
    pub(crate) fn open(info: DeviceInfo, options: &DeviceOptions) -> Result<Self, DeviceError> {
        let label = info.label();
        let fail = |operation: &'static str, source: DriverError| DeviceError::Driver {
            device: label.clone(),
            operation,
            source,
        };
        let Locator::Vulkan { adapter } = info.locator else {
            return Err(fail("open", DriverError::Noticed("not a Vulkan device")));
        };
        let instance = instance();
        let adapter = adapters(&instance)
            .into_iter()
            .nth(adapter)
            .ok_or_else(|| fail("open", DriverError::Noticed("adapter gone")))?;
        let limits = adapter.limits();
        let has_timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let (device, queue) = request_device(&adapter, &limits, has_timestamps)
            .map_err(|e| fail("request_device", DriverError::reported(e)))?;
        // Errors are caught by error scopes and launch checks below; an
        // uncaptured one must not take the process down.
        let device_label = label.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!("{device_label}: {e}");
        }));
        let shape = ShaderShape::for_adapter(&info, options, &limits);
        let pipeline = build_pipeline(&device, &shape).map_err(|log| DeviceError::Build {
            device: label.clone(),
            log,
        })?;
        let layout = pipeline.get_bind_group_layout(0);
        let slots = [
            Slot::new(&device, &layout, 0),
            Slot::new(&device, &layout, 1),
        ];
        let timestamps = has_timestamps.then(|| Timestamps::new(&device, &queue));
        tracing::debug!(
            "{label}: work-group {}, {} nonces per invocation",
            shape.workgroup_size,
            shape.nonces_per_invocation
        );
        Ok(VulkanDevice {
            options: options.clone(),
            info,
            shape,
            device,
            queue,
            pipeline,
            slots,
            max_groups_per_dimension: limits.max_compute_workgroups_per_dimension.max(1),
            work: bytemuck::Zeroable::zeroed(),
            timestamps,
            busy: None,
        })
    }

    fn fail(&self, operation: &'static str, source: DriverError) -> DeviceError {
        DeviceError::Driver {
            device: self.info.label(),
            operation,
            source,
        }
    }

    /// Records and submits one launch in `slot`; the results are collected
    /// by [`Self::collect`].
    fn submit(&self, slot_index: usize, start: u32, count: u64) -> wgpu::SubmissionIndex {
        let slot = &self.slots[slot_index];
        let first_query = 2 * slot_index as u32;
        let mut params = [0u32; PARAM_WORDS];
        params[..KernelWork::WORDS]
            .copy_from_slice(bytemuck::cast_slice(std::slice::from_ref(&self.work)));
        params[28] = start;
        params[29] = (count - 1) as u32;
        self.queue
            .write_buffer(&slot.params, 0, bytemuck::cast_slice(&params));

        let invocations = count.div_ceil(u64::from(self.shape.nonces_per_invocation));
        let groups = invocations.div_ceil(u64::from(self.shape.workgroup_size));
        let max = u64::from(self.max_groups_per_dimension);
        let rows = groups.div_ceil(max);
        let columns = groups.div_ceil(rows);

        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("scan"),
            });
        encoder.clear_buffer(&slot.found, 0, Some(4));
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("sha256d"),
                timestamp_writes: self.timestamps.as_ref().map(|t| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: &t.queries,
                        beginning_of_pass_write_index: Some(first_query),
                        end_of_pass_write_index: Some(first_query + 1),
                    }
                }),
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &slot.bind_group, &[]);
            pass.dispatch_workgroups(columns as u32, rows as u32, 1);
        }
        encoder.copy_buffer_to_buffer(&slot.found, 0, &slot.staging, 0, FOUND_BYTES);
        if let Some(t) = &self.timestamps {
            let offset = u64::from(first_query / 2) * wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT;
            encoder.resolve_query_set(
                &t.queries,
                first_query..first_query + 2,
                &t.resolved,
                offset,
            );
            encoder.copy_buffer_to_buffer(&t.resolved, offset, &slot.staging, FOUND_BYTES, 16);
        }
        self.queue.submit([encoder.finish()])
    }

    /// Waits for a launch and reads its found-buffer: the candidate count the
    /// shader saw (possibly above capacity) and the candidates stored.
    fn collect(
        &self,
        slot: usize,
        submission: wgpu::SubmissionIndex,
    ) -> Result<(usize, Vec<u32>, Option<Duration>), DeviceError> {
        let staging = &self.slots[slot].staging;
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let _ = sender.send(result);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: Some(LAUNCH_TIMEOUT),
            })
            .map_err(|e| self.fail("queue wait", DriverError::reported(e)))?;
        receiver
            .recv_timeout(LAUNCH_TIMEOUT)
            .map_err(|_| {
                self.fail(
                    "map found-buffer",
                    DriverError::Noticed("no answer from the driver"),
                )
            })?
            .map_err(|e| self.fail("map found-buffer", DriverError::reported(e)))?;
        let result = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| self.fail("map found-buffer", DriverError::reported(e)))?;
            let words: &[u32] = bytemuck::cast_slice(&view);
            let seen = words[0] as usize;
            let busy = self.timestamps.as_ref().map(|t| {
                let tick = |i: usize| u64::from(words[i]) | (u64::from(words[i + 1]) << 32);
                let first = 1 + FOUND_CAPACITY;
                let ticks = tick(first + 2).saturating_sub(tick(first));
                Duration::from_nanos((ticks as f64 * t.period) as u64)
            });
            (seen, words[1..1 + seen.min(FOUND_CAPACITY)].to_vec(), busy)
        };
        staging.unmap();
        Ok(result)
    }

    /// Scans a range in launches of at most `chunk` nonces, two in flight.
    fn scan_pipelined(
        &mut self,
        start: u32,
        count: u64,
        chunk: u64,
    ) -> Result<(bool, Vec<u32>), DeviceError> {
        let mut pending: Option<(usize, wgpu::SubmissionIndex)> = None;
        let mut overflowed = false;
        let mut nonces = Vec::new();
        let mut offset = 0u64;
        let mut slot = 0usize;
        while offset < count || pending.is_some() {
            let next = if offset < count {
                let n = chunk.min(count - offset);
                let submission = self.submit(slot, (u64::from(start) + offset) as u32, n);
                offset += n;
                Some((slot, submission))
            } else {
                None
            };
            if let Some((done_slot, submission)) = pending.take() {
                let (seen, found, busy) = self.collect(done_slot, submission)?;
                if let Some(busy) = busy {
                    *self.busy.get_or_insert(Duration::ZERO) += busy;
                }
                overflowed |= seen > FOUND_CAPACITY;
                nonces.extend(found);
            }
            pending = next;
            slot ^= 1;
        }
        // An overflow in any launch re-scans the whole range in halves.
        Ok((overflowed, nonces))
    }
}

impl Device for VulkanDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn granularity(&self) -> u64 {
        u64::from(self.shape.workgroup_size) * u64::from(self.shape.nonces_per_invocation)
    }

    fn busy_time(&self) -> Option<Duration> {
        self.busy
    }

    fn shape(&self) -> Option<Shape> {
        Some(Shape {
            variant: self.shape.variant,
            worksize: self.shape.workgroup_size,
            vectors: 1,
            nonces: self.shape.nonces_per_invocation,
            cpu_path: None,
        })
    }

    /// A new logical device, queue, pipeline and buffers from the adapter.
    fn reset(&mut self) -> Result<(), DeviceError> {
        *self = VulkanDevice::open(self.info.clone(), &self.options)?;
        Ok(())
    }

    fn scan(&mut self, work: &KernelWork, start: u32, count: u64) -> Result<Vec<u32>, DeviceError> {
        check_range(start, count)?;
        if count == 0 {
            return Ok(Vec::new());
        }
        self.work = *work;
        self.busy = None;
        // Two launches per batch once it is big enough to be worth it.
        let chunk = if count >= 1 << 20 {
            count.div_ceil(2)
        } else {
            count
        };
        super::scan_complete(start, count, &mut |s, c| {
            self.scan_pipelined(s, c, chunk.min(c))
        })
    }
}
