//! Who keeps a connection when connections run out, for both APIs (HTTP
//! and cgminer): open connections are capped in all and per address, and
//! when a cap is hit the oldest *idle* connection (one waiting for its
//! request, not one being answered) of the address holding the most makes
//! room. A flood of connections that send nothing, from one address or
//! from the same address as the farm's agent, costs the flood its own
//! oldest connections, never the newcomer's answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// How many connections may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// From everyone.
    pub total: usize,
    /// From one address.
    pub per_address: usize,
}

/// One open connection.
#[derive(Clone)]
pub struct Slot {
    ip: IpAddr,
    opened: Instant,
    /// Requests being answered on it (an event stream counts until it
    /// ends): a busy connection is never evicted.
    busy: Arc<AtomicUsize>,
    /// Cancelled when the connection is evicted: its task closes it.
    pub close: CancellationToken,
}

impl Slot {
    /// Marks the connection busy for as long as the guard lives.
    pub fn busy(&self) -> Busy {
        Busy::new(&self.busy)
    }

    /// The counter a guard made later (inside a service) increments.
    pub fn busy_count(&self) -> Arc<AtomicUsize> {
        self.busy.clone()
    }
}

/// Every open connection, for the caps.
#[derive(Default)]
pub struct Registry {
    next_id: u64,
    open: HashMap<u64, Slot>,
}

impl Registry {
    /// Open connections from `ip`.
    pub fn from(&self, ip: IpAddr) -> usize {
        self.open.values().filter(|s| s.ip == ip).count()
    }

    /// Forgets a connection that ended.
    pub fn remove(&mut self, id: u64) {
        self.open.remove(&id);
    }

    /// Closes the oldest idle connection from `ip`; false if it has none.
    fn evict_idle_from(&mut self, ip: IpAddr) -> bool {
        let oldest = self
            .open
            .iter()
            .filter(|(_, s)| s.ip == ip && s.busy.load(Ordering::SeqCst) == 0)
            .min_by_key(|(_, s)| s.opened)
            .map(|(id, _)| *id);
        match oldest.and_then(|id| self.open.remove(&id)) {
            Some(slot) => {
                slot.close.cancel();
                true
            }
            None => false,
        }
    }

    /// Makes room for a connection from `ip`, if it can; then registers it
    /// and returns its id (for [`Registry::remove`]) and slot.
    pub fn admit(&mut self, ip: IpAddr, caps: Caps) -> Option<(u64, Slot)> {
        if self.from(ip) >= caps.per_address {
            if !self.evict_idle_from(ip) {
                return None;
            }
        } else if self.open.len() >= caps.total {
            let mut counts: HashMap<IpAddr, usize> = HashMap::new();
            for s in self.open.values() {
                *counts.entry(s.ip).or_default() += 1;
            }
            let mut by_size: Vec<(IpAddr, usize)> = counts.into_iter().collect();
            by_size.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
            if !by_size
                .iter()
                .any(|(flooder, _)| self.evict_idle_from(*flooder))
            {
                return None;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let slot = Slot {
            ip,
            opened: Instant::now(),
            busy: Arc::new(AtomicUsize::new(0)),
            close: CancellationToken::new(),
        };
        self.open.insert(id, slot.clone());
        Some((id, slot))
    }
}

/// Marks a connection busy for as long as it lives.
pub struct Busy(Arc<AtomicUsize>);

impl Busy {
    pub fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The soft limit on open file descriptors, where there is one.
pub fn descriptor_limit() -> Option<usize> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0
            && limit.rlim_cur != libc::RLIM_INFINITY
        {
            return usize::try_from(limit.rlim_cur).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_address_makes_room_for_others() {
        let caps = Caps {
            total: 4,
            per_address: 3,
        };
        let mut registry = Registry::default();
        let flooder: IpAddr = [10, 0, 0, 1].into();
        let operator: IpAddr = [10, 0, 0, 2].into();
        let held: Vec<(u64, Slot)> = (0..3)
            .map(|_| registry.admit(flooder, caps).unwrap())
            .collect();
        // Its own cap: its oldest idle connection goes.
        let (_, fourth) = registry.admit(flooder, caps).unwrap();
        assert!(held[0].1.close.is_cancelled());
        assert_eq!(registry.from(flooder), 3);
        // The total cap: another address still gets in, at the flooder's cost.
        registry.admit(operator, caps).unwrap();
        let (_, fifth) = registry.admit(operator, caps).unwrap();
        assert_eq!(registry.open.len(), 4);
        assert_eq!(registry.from(operator), 2);
        assert!(held[1].1.close.is_cancelled());
        // Busy connections are never evicted: with all of them busy, a
        // newcomer is refused.
        let _busy: Vec<Busy> = registry.open.values().map(Slot::busy).collect();
        assert!(registry.admit([10, 0, 0, 3].into(), caps).is_none());
        assert!(!fourth.close.is_cancelled() && !fifth.close.is_cancelled());
    }
}
