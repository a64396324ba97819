//! The end of a session at shutdown, V1 and V2 alike: what the devices
//! still find is submitted, and the pool's answers are read, until the
//! devices are done and every share is answered, or the grace period is
//! over. Each session says how it reads and handles its pool's messages.

use std::time::Instant;

use super::end::End;
use crate::found::{Found, FoundSink};

/// What a session does while it drains.
pub(super) trait Draining {
    /// One thing read from the pool (a line, a frame, or the link's end).
    type Incoming;
    /// Reads the next thing from the pool. Cancel-safe: a share found
    /// first drops the read, and nothing read is lost.
    async fn next_incoming(&mut self) -> Self::Incoming;
    /// Handles what [`Self::next_incoming`] read.
    async fn handle_incoming(&mut self, incoming: Self::Incoming) -> Result<(), End>;
    /// Submits a share or block the devices found.
    async fn submit_found(&mut self, found: Found) -> Result<(), End>;
    /// Whether shares are still waiting for the pool's answer.
    fn awaiting_answers(&self) -> bool;
}

/// Drains `session` until the devices are done (`sink` closed) and every
/// share is answered, the link fails, or `deadline` passes.
pub(super) async fn drain(session: &mut impl Draining, sink: &FoundSink, deadline: Instant) {
    let mut devices_done = false;
    while !devices_done || session.awaiting_answers() {
        let step = tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => break,
            found = sink.next(), if !devices_done => match found {
                Some(found) => session.submit_found(found).await,
                None => {
                    devices_done = true;
                    Ok(())
                }
            },
            incoming = session.next_incoming() => session.handle_incoming(incoming).await,
        };
        if step.is_err() {
            break;
        }
    }
}
