//! Hashrate meters: nonces per second over a sliding window, kept in
//! one-second buckets of a fixed ring.

use std::time::{Duration, Instant};

/// The longest window a meter keeps: 15 minutes.
pub const LONGEST_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Seconds of history a meter keeps: the longest window, and a little
/// more for the partial second at each end.
const METER_SECONDS: usize = LONGEST_WINDOW.as_secs() as usize + 2;

/// Hashes done over time, in one-second buckets of a fixed ring: memory
/// does not grow with the batch rate (a regtest job can make batches of a
/// few dozen nonces, thousands a second).
#[derive(Debug)]
pub struct Meter {
    origin: Instant,
    /// Per slot: the second (since `origin`) it holds, and its nonces.
    slots: Box<[(u64, u64)]>,
}

impl Meter {
    pub fn new(origin: Instant) -> Self {
        Meter {
            origin,
            // u64::MAX marks an unused slot.
            slots: vec![(u64::MAX, 0); METER_SECONDS].into_boxed_slice(),
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_secs()
    }

    pub fn record(&mut self, at: Instant, nonces: u64) {
        let second = self.second(at);
        let slot = &mut self.slots[(second % METER_SECONDS as u64) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += nonces;
    }

    /// Hashes per second over the last `window` (whole seconds, plus the
    /// current partial one), or over the time since `started` while that
    /// is shorter.
    pub fn rate(&self, now: Instant, window: Duration, started: Instant) -> f64 {
        let since_origin = now.saturating_duration_since(self.origin);
        let now_second = since_origin.as_secs();
        let first = now_second.saturating_sub(window.as_secs());
        // The buckets from `first` to now cover this long.
        let covered = since_origin - Duration::from_secs(first);
        let span = covered.min(now.saturating_duration_since(started));
        if span.is_zero() {
            return 0.0;
        }
        let sum: u64 = (first..=now_second)
            .map(|second| self.slots[(second % METER_SECONDS as u64) as usize])
            .filter(|(held, _)| (first..=now_second).contains(held))
            .map(|(_, nonces)| nonces)
            .sum();
        sum as f64 / span.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_windows() {
        let start = Instant::now();
        let mut m = Meter::new(start);
        let t = start + Duration::from_secs(100);
        m.record(t - Duration::from_secs(50), 1000);
        m.record(t - Duration::from_secs(2), 500);
        assert_eq!(m.rate(t, Duration::from_secs(5), start), 100.0);
        assert_eq!(m.rate(t, Duration::from_secs(60), start), 1500.0 / 60.0);
        // Shorter uptime than the window: divide by the uptime.
        assert_eq!(m.rate(t, LONGEST_WINDOW, start), 1500.0 / 100.0);
    }

    #[test]
    fn meter_memory_is_fixed_and_old_seconds_fall_out() {
        let start = Instant::now();
        let mut m = Meter::new(start);
        // A batch every millisecond for twenty minutes of simulated time.
        for ms in 0..1_200_000u64 {
            m.record(start + Duration::from_millis(ms), 10);
        }
        assert_eq!(m.slots.len(), METER_SECONDS);
        let end = start + Duration::from_secs(1200);
        let rate = m.rate(end, Duration::from_secs(60), start);
        assert!((rate - 10_000.0).abs() < 1.0, "{rate}");
        let rate = m.rate(end, LONGEST_WINDOW, start);
        assert!((rate - 10_000.0).abs() < 1.0, "{rate}");
        // Nothing for an hour: every window is empty again.
        let later = end + Duration::from_secs(3600);
        assert_eq!(m.rate(later, LONGEST_WINDOW, start), 0.0);
    }
}
