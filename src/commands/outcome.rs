//! What a run of `bench`, `mine` or `solo` leaves, and whether it failed:
//! made by the run loop (`rig_run.rs`), printed by `report.rs`.

use std::process::ExitCode;

use hashrig::stats::Snapshot;

use crate::failure::Failure;

/// What a run leaves.
pub struct Outcome {
    pub snapshot: Snapshot,
    /// Time to a share and to a block, energy and cost, at the end.
    pub estimates: hashrig::stats::Estimates,
    pub seconds: f64,
    /// Why the job source stopped on its own, if it did.
    pub source_error: Option<String>,
    /// Every device failed: which, and why.
    pub devices_failed: Option<String>,
}

/// The pools (or node) of a run that never answered, with their last
/// error, when not one of them ever did.
fn never_answered(snapshot: &Snapshot) -> Option<String> {
    if snapshot.pools.is_empty() || snapshot.pools.iter().any(|p| p.answered) {
        return None;
    }
    let each: Vec<String> = snapshot
        .pools
        .iter()
        .map(|p| match &p.last_error {
            Some(e) => format!("{} ({e})", p.name),
            None => p.name.clone(),
        })
        .collect();
    Some(format!("never answered: {}", each.join("; ")))
}

impl Outcome {
    /// Why the run failed, if it did: every device failed, or the job
    /// source gave up or never heard from its pools (or node).
    pub fn failure(&self) -> Option<Failure> {
        if let Some(failed) = &self.devices_failed {
            return Some(Failure::Devices(format!("every device failed: {failed}")));
        }
        if let Some(e) = &self.source_error {
            return Some(Failure::Source(e.clone()));
        }
        never_answered(&self.snapshot).map(Failure::Source)
    }

    /// Success, or the failure as an error carrying its exit code.
    pub fn result(&self) -> anyhow::Result<ExitCode> {
        match self.failure() {
            Some(failure) => Err(failure.into()),
            None => Ok(ExitCode::SUCCESS),
        }
    }
}
