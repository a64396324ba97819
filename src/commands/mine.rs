//! `hashrig mine`: mine on Stratum V1 or V2 pools (failover between them)
//! until stopped.

use std::process::ExitCode;

use hashrig::job::stratum::StratumSource;

use super::rig_run;
use crate::cli::MineSettings;

pub fn run(
    settings: MineSettings,
    quiet: bool,
    signals: &super::signals::Signals,
) -> anyhow::Result<ExitCode> {
    let pools = settings
        .stratum
        .pools
        .iter()
        .map(|p| p.url.to_string())
        .collect();
    rig_run::mine_from(
        rig_run::Feed {
            source: Box::new(StratumSource::new(settings.stratum)),
            kind: hashrig::api::cgminer::SourceKind::Stratum,
            pools,
        },
        &settings.devices,
        &settings.run,
        &settings.rig,
        quiet,
        signals,
    )
}
