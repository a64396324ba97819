//! `hashrig devices`: every device found, with why a backend found none.

use std::process::ExitCode;

use hashrig::backend::{enumerate, Backend};

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let inventory = enumerate(&[Backend::Cpu, Backend::OpenCl, Backend::Vulkan]);
    for note in &inventory.notes {
        tracing::info!("{note}");
    }
    for d in &inventory.devices {
        if json {
            println!("{}", serde_json::to_string(d)?);
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
                [d.platform.as_deref(), d.driver.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
