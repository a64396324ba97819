//! `hashrig devices`: every device found, with why a backend found none.

use std::process::ExitCode;

use hashrig::backend::{enumerate, Backend};

pub fn run(settings: &crate::cli::DevicesSettings) -> anyhow::Result<ExitCode> {
    let json = settings.json;
    let inventory = enumerate(&[Backend::Cpu, Backend::OpenCl, Backend::Vulkan]);
    for note in &inventory.notes {
        tracing::info!("{note}");
    }
    let tunings = super::rig_run::load_tunings(settings.tuning_file.as_deref());
    for d in &inventory.devices {
        let tuning = tunings.as_ref().and_then(|t| t.find(d));
        if json {
            let mut value = serde_json::to_value(d)?;
            if let (Some(object), Some(t)) = (value.as_object_mut(), tuning) {
                object.insert("tuning".into(), serde_json::to_value(t)?);
            }
            println!("{value}");
        } else {
            let memory = if d.memory_bytes > 0 {
                format!("{:.1} GiB", d.memory_bytes as f64 / (1u64 << 30) as f64)
            } else {
                "-".into()
            };
            let units = if d.compute_units > 0 {
                d.compute_units.to_string()
            } else {
                "-".into()
            };
            println!(
                "{:>3}  {:<7} {:<4} {:<48} units {:>4}  memory {:>9}  {}",
                d.index,
                d.backend.to_string(),
                format!("{:?}", d.kind).to_lowercase(),
                d.name,
                units,
                memory,
                [
                    d.pci_bus_id
                        .as_deref()
                        .map(|id| format!("pci:{id}"))
                        .as_deref(),
                    d.platform.as_deref(),
                    d.driver.as_deref()
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" / ")
            );
            if let Some(t) = tuning {
                println!(
                    "     tuned: {}, {}",
                    t.shape.describe(d.backend),
                    hashrig::stats::format_hashrate(t.hashrate)
                );
            } else if d.backend == Backend::Cpu {
                println!(
                    "     runs: {} (untuned: `hashrig tune --backend cpu` measures every path)",
                    hashrig::backend::Shape::cpu(hashrig::backend::cpu::default_path())
                        .describe(d.backend)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
