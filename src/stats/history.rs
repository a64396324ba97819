//! The hashrate over the last hour, for the dashboard's chart: one point
//! per step (5 s), per device and in total, in a ring of fixed size, so
//! its memory is bounded however long the rig runs.

use std::collections::VecDeque;

/// The default step between points.
pub const HISTORY_STEP_SECONDS: u64 = 5;
/// An hour of points at the default step.
pub const HISTORY_POINTS: usize = 720;

/// One sample of every device's hashrate (hashes per second, the 5 s
/// window) and their sum.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryPoint {
    /// Unix seconds.
    pub t: u64,
    /// The whole rig's hashrate at that time.
    pub total: f64,
    /// Each device's hashrate at that time.
    pub devices: Vec<f64>,
}

/// The last `capacity` points, oldest first.
#[derive(Debug, Clone)]
pub struct History {
    capacity: usize,
    points: VecDeque<HistoryPoint>,
}

impl History {
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            capacity: capacity.max(1),
            points: VecDeque::with_capacity(capacity.max(1)),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds a point, dropping the oldest when full.
    pub fn push(&mut self, point: HistoryPoint) {
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// The points after Unix second `since` (all when `None`), oldest first.
    pub fn since(&self, since: Option<u64>) -> Vec<HistoryPoint> {
        self.points
            .iter()
            .filter(|p| since.is_none_or(|s| p.t > s))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: u64) -> HistoryPoint {
        HistoryPoint {
            t,
            total: t as f64 * 2.0,
            devices: vec![t as f64, t as f64],
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_points_only() {
        let mut h = History::new(3);
        for t in 1..=5 {
            h.push(point(t));
        }
        let ts: Vec<u64> = h.since(None).iter().map(|p| p.t).collect();
        assert_eq!(ts, [3, 4, 5]);
        let newer: Vec<u64> = h.since(Some(4)).iter().map(|p| p.t).collect();
        assert_eq!(newer, [5]);
        assert!(h.since(Some(9)).is_empty());
        assert_eq!(History::new(0).capacity(), 1);
    }
}
