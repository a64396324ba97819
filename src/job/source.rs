//! The contract between a job source and the rest of the rig: it publishes
//! jobs to the [`WorkSource`], takes what the devices found from the
//! [`FoundSink`], submits it and records the answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::RigControl;
use crate::found::FoundSink;
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::work::WorkSource;

/// Why a job source stopped. The cause is the source's own typed error
/// ([`crate::job::gbt::SoloError`], [`crate::job::stratum::StartError`]),
/// kept whole as `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobSourceError {
    /// The source could not go on; `source_name` is its pool or node.
    #[error("job source {source_name}")]
    Failed {
        /// The pool or node the source works with.
        source_name: String,
        /// The source's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl JobSourceError {
    /// Source `source_name` stopped because of `cause`.
    pub fn failed(
        source_name: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        JobSourceError::Failed {
            source_name: source_name.into(),
            source: Box::new(cause),
        }
    }
}

/// What a job source gets to do its work.
pub struct SourceContext {
    /// Where to publish jobs; devices take work from it.
    pub work: Arc<WorkSource>,
    /// Verified shares and blocks from every device. Blocks are already in
    /// the found-blocks file when they arrive here.
    pub found: FoundSink,
    /// Where to count accepted, rejected and stale results.
    pub stats: Arc<Stats>,
    /// Fires when the miner is stopping.
    pub shutdown: Shutdown,
    /// Operator requests (a pool switch from the API).
    pub control: Arc<RigControl>,
    /// Once stopping, how long the source may go on submitting what the
    /// devices found before it must return (`--shutdown-grace`).
    pub grace: Duration,
}

impl SourceContext {
    /// When the source must have returned: the stop signal plus the grace
    /// period; `None` while the miner is not stopping.
    pub fn stop_deadline(&self) -> Option<Instant> {
        self.shutdown.triggered_at().map(|at| at + self.grace)
    }

    /// Whether the grace period after the stop signal is over.
    pub fn grace_over(&self) -> bool {
        self.stop_deadline().is_some_and(|d| Instant::now() >= d)
    }
}

/// A source of jobs and a sink for shares and blocks.
///
/// `run` is blocking and owns its thread: a network source starts its own
/// async runtime inside. It publishes jobs with [`WorkSource::publish`],
/// takes what the devices found from `ctx.found`, submits it, and records
/// the answers in [`Stats`]. When `shutdown` fires it keeps taking results
/// until the devices are done (the sink closes), submits what it can, and
/// returns by [`SourceContext::stop_deadline`], whatever its peer does.
pub trait JobSource: Send {
    /// A short name for logs: a pool URL, a node URL, "bench".
    fn name(&self) -> String;
    /// Runs until `ctx.shutdown` fires or the source cannot go on.
    fn run(&mut self, ctx: SourceContext) -> Result<(), JobSourceError>;
}
