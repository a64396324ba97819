//! The API's accept loop: hyper HTTP/1 connections under the limits
//! `axum::serve` does not set. A client that sends its headers slowly, or
//! nothing at all, or keeps an idle connection open, is cut off after
//! [`ConnectionLimits::header_timeout`]; open connections are capped in all
//! and per address ([`super::admission`]): a flood from one address cannot
//! keep the operator (from another address, or with a real request from
//! the same one) out.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

use super::admission::{descriptor_limit, Busy, Caps, Registry, Slot};
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

impl ConnectionLimits {
    fn caps(&self) -> Caps {
        Caps {
            total: self.max_connections,
            per_address: self.max_per_address,
        }
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
            .admit(peer.ip(), limits.caps());
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
                .remove(id);
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
    let busy = slot.busy_count();
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
