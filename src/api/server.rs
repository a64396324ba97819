//! The API's accept loop: hyper HTTP/1 connections under the limits
//! `axum::serve` does not set. A client that sends its headers slowly, or
//! nothing at all, or keeps an idle connection open, is cut off after
//! [`ConnectionLimits::header_timeout`]; open connections are capped in all
//! and per address, and when a cap is hit the oldest *idle* connection of
//! the address holding the most makes room: a flood from one address
//! cannot keep the operator (from another address, or with a real request
//! from the same one) out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

use crate::shutdown::Shutdown;

/// How many connections the API holds open, and for how long an idle one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most, from everyone.
    pub max_connections: usize,
    /// Open connections at most from one address.
    pub max_per_address: usize,
    /// From accepting a connection (or finishing a response on it) to the
    /// end of the next request's headers: slow or silent clients and idle
    /// kept-alive connections are closed after this.
    pub header_timeout: Duration,
    /// Reading a request's body, at most.
    pub body_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        // Well inside the process's file descriptors, which the devices,
        // pools and log need too.
        let max_connections = descriptor_limit().map_or(256, |n| (n / 4).clamp(8, 256));
        ConnectionLimits {
            max_connections,
            max_per_address: (max_connections / 2).max(4),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// The soft limit on open file descriptors, where there is one.
fn descriptor_limit() -> Option<usize> {
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

/// One open connection.
#[derive(Clone)]
struct Slot {
    ip: IpAddr,
    opened: Instant,
    /// Requests being answered on it (an event stream counts until it
    /// ends): a busy connection is never evicted.
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
}

/// Every open connection, for the caps.
#[derive(Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Slot>,
}

impl Registry {
    fn from(&self, ip: IpAddr) -> usize {
        self.open.values().filter(|s| s.ip == ip).count()
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

    /// Makes room for a connection from `ip`, if it can; then registers it.
    fn admit(&mut self, ip: IpAddr, limits: &ConnectionLimits) -> Option<(u64, Slot)> {
        if self.from(ip) >= limits.max_per_address {
            if !self.evict_idle_from(ip) {
                return None;
            }
        } else if self.open.len() >= limits.max_connections {
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
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts and serves connections to `app` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: Shutdown,
) {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let stopping = CancellationToken::new();
    let watch = {
        let stopping = stopping.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            while !shutdown.is_triggered() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stopping.cancel();
        })
    };
    let mut refused_logged = Instant::now() - Duration::from_secs(60);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopping.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: the pending
                // connection stays queued; try again shortly.
                tracing::warn!("API: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admitted = registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(peer.ip(), &limits);
        let Some((id, slot)) = admitted else {
            if refused_logged.elapsed() >= Duration::from_secs(60) {
                tracing::warn!(
                    "API: connection from {} refused: {} connections open, every one busy",
                    peer.ip(),
                    limits.max_connections
                );
                refused_logged = Instant::now();
            }
            drop(stream);
            continue;
        };
        let app = app.clone();
        let registry = registry.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, &slot, &limits, &stopping).await;
            registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .open
                .remove(&id);
        });
    }
    watch.abort();
    // Open connections (event streams) end with the runtime.
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    slot: &Slot,
    limits: &ConnectionLimits,
    stopping: &CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let busy = slot.busy.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let guard = Busy::new(&busy);
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move {
            let response = match tower_service::Service::call(&mut app, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            // The guard lives as long as the response body: an event
            // stream keeps its connection busy until it ends.
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _ = &guard;
                    frame
                }))
            }))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = slot.close.cancelled() => {}
        _ = stopping.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: total,
            max_per_address: per_address,
            ..ConnectionLimits::default()
        }
    }

    #[test]
    fn a_flooding_address_makes_room_for_others() {
        let limits = limits(4, 3);
        let mut registry = Registry::default();
        let flooder: IpAddr = [10, 0, 0, 1].into();
        let operator: IpAddr = [10, 0, 0, 2].into();
        let held: Vec<(u64, Slot)> = (0..3)
            .map(|_| registry.admit(flooder, &limits).unwrap())
            .collect();
        // Its own cap: its oldest idle connection goes.
        let (_, fourth) = registry.admit(flooder, &limits).unwrap();
        assert!(held[0].1.close.is_cancelled());
        assert_eq!(registry.from(flooder), 3);
        // The total cap: another address still gets in, at the flooder's cost.
        registry.admit(operator, &limits).unwrap();
        let (_, fifth) = registry.admit(operator, &limits).unwrap();
        assert_eq!(registry.open.len(), 4);
        assert_eq!(registry.from(operator), 2);
        assert!(held[1].1.close.is_cancelled());
        // Busy connections are never evicted: with all of them busy, a
        // newcomer is refused.
        let _busy: Vec<Busy> = registry.open.values().map(|s| Busy::new(&s.busy)).collect();
        assert!(registry.admit([10, 0, 0, 3].into(), &limits).is_none());
        assert!(!fourth.close.is_cancelled() && !fifth.close.is_cancelled());
    }
}
