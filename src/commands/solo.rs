//! `hashrig solo`: mine blocks straight from a node.

use std::process::ExitCode;

use hashrig::job::gbt::GbtSource;

use super::rig_run;
use crate::cli::SoloSettings;

pub fn run(
    settings: SoloSettings,
    quiet: bool,
    signals: &super::signals::Signals,
) -> anyhow::Result<ExitCode> {
    let node = vec![settings.solo.rpc.url.clone()];
    rig_run::mine_from(
        rig_run::Feed {
            source: Box::new(GbtSource::new(settings.solo)),
            kind: hashrig::api::cgminer::SourceKind::Node,
            pools: node,
        },
        &settings.devices,
        &settings.run,
        &settings.rig,
        quiet,
        signals,
    )
}
