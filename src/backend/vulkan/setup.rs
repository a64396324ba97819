//! What opening an adapter builds once: the logical device, the compiled
//! pipeline, the two launch slots and the timestamp queries.

use super::ShaderShape;
use super::{Slot, Timestamps, FOUND_BYTES, PARAM_WORDS, SHADER_SOURCE, STAGING_BYTES};
use crate::backend::{DeviceInfo, DeviceKind, DeviceOptions, KernelVariant};

/// A logical device with the adapter's own compute limits (the downlevel
/// defaults would cap work-groups far below a GPU's) and its timestamps,
/// where it has them.
pub(super) fn request_device(
    adapter: &wgpu::Adapter,
    limits: &wgpu::Limits,
    has_timestamps: bool,
) -> Result<(wgpu::Device, wgpu::Queue), wgpu::RequestDeviceError> {
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("hashrig"),
        required_features: if has_timestamps {
            wgpu::Features::TIMESTAMP_QUERY
        } else {
            wgpu::Features::empty()
        },
        required_limits: wgpu::Limits {
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: limits.max_compute_workgroup_size_x,
            ..wgpu::Limits::downlevel_defaults()
        },
        ..wgpu::DeviceDescriptor::default()
    }))
}

impl ShaderShape {
    /// The options' choices, or the defaults for this kind of adapter,
    /// within its limits.
    pub(super) fn for_adapter(
        info: &DeviceInfo,
        options: &DeviceOptions,
        limits: &wgpu::Limits,
    ) -> Self {
        let default_size = 256;
        ShaderShape {
            variant: options
                .kernel_variant
                .unwrap_or_else(|| KernelVariant::for_device(info)),
            workgroup_size: u32::try_from(options.worksize.unwrap_or(default_size))
                .unwrap_or(u32::MAX)
                .clamp(
                    1,
                    limits
                        .max_compute_invocations_per_workgroup
                        .min(limits.max_compute_workgroup_size_x),
                ),
            // Software rasterisers pay a large fixed cost per invocation.
            nonces_per_invocation: options
                .vulkan_nonces
                .unwrap_or(if info.kind == DeviceKind::Gpu { 1 } else { 64 })
                .clamp(1, 1024),
        }
    }
}

/// Compiles the shader for `shape`; a validation error comes back as the
/// driver's log.
pub(super) fn build_pipeline(
    device: &wgpu::Device,
    shape: &ShaderShape,
) -> Result<wgpu::ComputePipeline, String> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("sha256d.wgsl"),
        source: wgpu::ShaderSource::Wgsl(SHADER_SOURCE.into()),
    });
    let add_on_multiplier = matches!(
        shape.variant,
        KernelVariant::Nvidia | KernelVariant::NvidiaWide
    );
    let constants = [
        ("WORKGROUP_SIZE", f64::from(shape.workgroup_size)),
        (
            "NONCES_PER_INVOCATION",
            f64::from(shape.nonces_per_invocation),
        ),
        ("ADD_ON_MULTIPLIER", f64::from(u8::from(add_on_multiplier))),
    ];
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("sha256d_scan"),
        layout: None,
        module: &module,
        entry_point: Some("sha256d_scan"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &constants,
            ..Default::default()
        },
        cache: None,
    });
    match pollster::block_on(scope.pop()) {
        Some(error) => Err(error.to_string()),
        None => Ok(pipeline),
    }
}

impl Slot {
    pub(super) fn new(device: &wgpu::Device, layout: &wgpu::BindGroupLayout, n: usize) -> Self {
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("params {n}")),
            size: (PARAM_WORDS * 4) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let found = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("found {n}")),
            size: FOUND_BYTES,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("staging {n}")),
            size: STAGING_BYTES,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&format!("bind group {n}")),
            layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: found.as_entire_binding(),
                },
            ],
        });
        Slot {
            params,
            found,
            staging,
            bind_group,
        }
    }
}

impl Timestamps {
    /// A begin/end pair per slot.
    pub(super) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        Timestamps {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("dispatch timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 4,
            }),
            resolved: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("resolved timestamps"),
                size: 2 * wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            period: f64::from(queue.get_timestamp_period()),
        }
    }
}
