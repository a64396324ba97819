//! A stop signal shared by every thread: set once, seen by all, and able to
//! wake a thread that is sleeping on it. It remembers when it fired, so
//! every part of the shutdown (devices, job sources, the main thread) keeps
//! the same grace period from the same moment.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A stop signal many threads and tasks can wait on; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<(Mutex<Option<Instant>>, Condvar)>,
}

impl Shutdown {
    /// A signal not yet fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop, and wakes those waiting. Firing again
    /// keeps the first time.
    pub fn trigger(&self) {
        let (fired, wake) = &*self.inner;
        fired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now);
        wake.notify_all();
    }

    /// Whether it has fired.
    pub fn is_triggered(&self) -> bool {
        self.triggered_at().is_some()
    }

    /// When the signal first fired.
    pub fn triggered_at(&self) -> Option<Instant> {
        *self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps up to `timeout`; returns true if the signal fired.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let (fired, wake) = &*self.inner;
        let guard = fired.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = wake
            .wait_timeout_while(guard, timeout, |fired| fired.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_first_trigger() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        assert!(!s.wait_timeout(Duration::from_millis(1)));
        s.trigger();
        let first = s.triggered_at().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        s.clone().trigger();
        assert_eq!(s.triggered_at(), Some(first));
        assert!(s.wait_timeout(Duration::from_secs(5)));
    }
}
