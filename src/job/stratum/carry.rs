//! What outlives one connection: the session to resume, shares found while
//! disconnected, and the optional requests each pool turned out not to
//! take (kept for the life of the process, so a pool that drops or ignores
//! `mining.configure` costs one reconnect, once).

use std::collections::VecDeque;
use std::time::Instant;

use crate::found::Found;
use crate::stats::{ShareResult, Stats};

/// Shares unanswered when a connection ended, kept for the next one.
const MAX_BACKLOG: usize = 1024;

/// A request a miner may send and a pool may not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optional {
    /// BIP 310 `mining.configure` (version rolling).
    Configure,
    SuggestDifficulty,
    ExtranonceSubscribe,
}

impl Optional {
    pub fn method(self) -> &'static str {
        match self {
            Optional::Configure => "mining.configure",
            Optional::SuggestDifficulty => "mining.suggest_difficulty",
            Optional::ExtranonceSubscribe => "mining.extranonce.subscribe",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Optional::Configure => 1,
            Optional::SuggestDifficulty => 2,
            Optional::ExtranonceSubscribe => 4,
        }
    }
}

/// What outlives one connection.
#[derive(Debug, Default)]
pub struct Carry {
    /// Per pool: the session id and extranonce1 to resume.
    pub session_ids: Vec<Option<String>>,
    pub extranonce1s: Vec<Option<Vec<u8>>>,
    backlog: VecDeque<Found>,
    /// Per pool: the [`Optional`]s it does not take, as bits.
    left_out: Vec<u8>,
    /// Per pool: its submission budget, across reconnects.
    budgets: Vec<SubmitBudget>,
}

impl Carry {
    /// For `pools` pools, each allowed `max_submit_rate` shares a second.
    pub fn new(pools: usize, max_submit_rate: f64) -> Self {
        Carry {
            session_ids: vec![None; pools],
            extranonce1s: vec![None; pools],
            left_out: vec![0; pools],
            budgets: (0..pools)
                .map(|_| SubmitBudget::new(max_submit_rate))
                .collect(),
            ..Carry::default()
        }
    }

    /// Takes one submission from `pool`'s budget, if it allows one now.
    pub fn may_submit(&mut self, pool: usize) -> bool {
        self.budgets.get_mut(pool).is_some_and(SubmitBudget::take)
    }

    /// Whether `request` is left out for `pool`.
    pub fn leaves_out(&self, pool: usize, request: Optional) -> bool {
        self.left_out
            .get(pool)
            .is_some_and(|bits| bits & request.bit() != 0)
    }

    /// Leaves `request` out for `pool` from now on, and says so once.
    pub fn leave_out(&mut self, pool: usize, url: &str, request: Optional, why: &str) {
        let Some(bits) = self.left_out.get_mut(pool) else {
            return;
        };
        if *bits & request.bit() == 0 {
            *bits |= request.bit();
            tracing::warn!(
                "{url}: {why} after {}: connecting without it from now on",
                request.method()
            );
        }
    }

    /// Keeps a share for the next connection; the oldest is counted stale
    /// when the backlog is full.
    pub fn keep(&mut self, pool: usize, found: Found, stats: &Stats) {
        if self.backlog.len() >= MAX_BACKLOG {
            if let Some(old) = self.backlog.pop_front() {
                stats.record_pool_result(pool, old.device, ShareResult::Stale, 0.0, None);
            }
        }
        self.backlog.push_back(found);
    }

    pub fn take_backlog(&mut self) -> Vec<Found> {
        self.backlog.drain(..).collect()
    }
}

/// A token bucket: `rate` submissions a second, bursts of up to a second's
/// worth.
#[derive(Debug)]
pub struct SubmitBudget {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl SubmitBudget {
    pub fn new(rate: f64) -> Self {
        SubmitBudget {
            rate,
            tokens: rate.max(1.0),
            refilled: Instant::now(),
        }
    }

    /// Takes one submission if the budget allows it now.
    pub fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.refilled).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.rate.max(1.0));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn left_out_requests_are_per_pool() {
        let mut carry = Carry::new(2, 50.0);
        assert!(!carry.leaves_out(0, Optional::Configure));
        carry.leave_out(
            0,
            "p0",
            Optional::Configure,
            "the pool closed the connection",
        );
        assert!(carry.leaves_out(0, Optional::Configure));
        assert!(!carry.leaves_out(0, Optional::SuggestDifficulty));
        assert!(!carry.leaves_out(1, Optional::Configure));
        assert!(!carry.leaves_out(9, Optional::Configure));
    }

    #[test]
    fn each_pool_has_its_own_budget_across_connections() {
        let mut carry = Carry::new(2, 3.0);
        assert_eq!((0..10).filter(|_| carry.may_submit(0)).count(), 3);
        // Pool 1 is untouched; pool 0 stays spent for the next connection.
        assert_eq!((0..10).filter(|_| carry.may_submit(1)).count(), 3);
        assert!(!carry.may_submit(0));
        assert!(!carry.may_submit(7));
    }

    #[test]
    fn the_budget_allows_a_second_of_burst_then_the_rate() {
        // Binary-exact figures: 64 a second, a quarter second.
        let mut budget = SubmitBudget::new(64.0);
        let start = budget.refilled;
        let burst = (0..200).filter(|_| budget.take_at(start)).count();
        assert_eq!(burst, 64);
        let later = start + Duration::from_millis(250);
        let refilled = (0..200).filter(|_| budget.take_at(later)).count();
        assert_eq!(refilled, 16);
        // An idle hour earns no more than a second's burst.
        let much_later = later + Duration::from_secs(3600);
        assert_eq!((0..200).filter(|_| budget.take_at(much_later)).count(), 64);
        // A rate under one a second still lets one through.
        let mut slow = SubmitBudget::new(0.5);
        let start = slow.refilled;
        assert!(slow.take_at(start));
        assert!(!slow.take_at(start + Duration::from_secs(1)));
        assert!(slow.take_at(start + Duration::from_secs(2)));
    }
}
