//! The HTTP API (axum): JSON status, control routes, Prometheus metrics and
//! a Server-Sent Events stream, behind bearer API keys ([`keys`]). Off
//! unless `--api-bind` is given; it needs `--api-keys`.
//!
//! | route | scope |
//! | --- | --- |
//! | `GET /v1/summary`, `/v1/devices`, `/v1/pools`, `/v1/events`, `/metrics` | read |
//! | `POST /v1/pools/{index}/switch`, `/v1/devices/{index}/disable`, `/enable` | control |

pub mod keys;
pub mod metrics;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;

use crate::control::RigControl;
use crate::found::journal::unix_now;
use crate::shutdown::Shutdown;
use crate::stats::{estimate, Stats};
use keys::{AuthError, KeyStore, Scope};

/// Failed authentications from one address within this window...
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// ...after which it is refused until the window ends.
const MAX_FAILURES: u32 = 10;
/// Control requests carry at most a short reason.
const MAX_BODY: usize = 4096;
/// Addresses tracked for failed authentications at most: an attacker with
/// many addresses must not grow the map without bound.
const MAX_TRACKED: usize = 4096;

/// What the API serves.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub bind: SocketAddr,
    pub keys: Arc<KeyStore>,
    pub power_watts: Option<f64>,
    pub kwh_price: Option<f64>,
}

struct ApiState {
    stats: Arc<Stats>,
    control: Arc<RigControl>,
    config: ApiConfig,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    events: broadcast::Sender<(&'static str, String)>,
}

/// A running API server.
pub struct ApiServer {
    /// Where it listens (the port is the real one when 0 was asked for).
    pub addr: SocketAddr,
    thread: JoinHandle<()>,
}

impl ApiServer {
    /// Waits for the server to stop (after the shutdown signal).
    pub fn join(self) {
        let _ = self.thread.join();
    }

    /// Waits for the server to stop until `deadline` (an open event stream
    /// can hold a graceful stop up); false if it had not stopped by then.
    pub fn join_until(self, deadline: Instant) -> bool {
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.thread.join();
        true
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A refused request: its status and a message for the JSON body.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error(self.status, self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Counts a failed authentication from `ip` at `now`. The map holds at
/// most [`MAX_TRACKED`] addresses: expired entries go first, then the
/// oldest.
fn remember_failure(failures: &mut HashMap<IpAddr, (Instant, u32)>, ip: IpAddr, now: Instant) {
    if failures.len() >= MAX_TRACKED && !failures.contains_key(&ip) {
        failures.retain(|_, (since, _)| now.duration_since(*since) < FAILURE_WINDOW);
        if failures.len() >= MAX_TRACKED {
            let oldest = failures
                .iter()
                .min_by_key(|(_, (since, _))| *since)
                .map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                failures.remove(&oldest);
            }
        }
    }
    let entry = failures.entry(ip).or_insert((now, 0));
    if now.duration_since(entry.0) >= FAILURE_WINDOW {
        *entry = (now, 0);
    }
    entry.1 += 1;
}

impl ApiState {
    fn blocked(&self, ip: IpAddr) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(&ip)
            .is_some_and(|(since, n)| since.elapsed() < FAILURE_WINDOW && *n >= MAX_FAILURES)
    }

    fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        remember_failure(&mut failures, ip, Instant::now());
    }

    /// The name of the key that may do `need`, or the response refusing.
    fn authorize(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        need: Scope,
    ) -> Result<String, ApiError> {
        let ip = peer.ip();
        if self.blocked(ip) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed attempts; wait a minute",
            ));
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match self.config.keys.authenticate(token, unix_now()) {
            Ok((name, scope)) if scope >= need => Ok(name),
            Ok((name, _)) => {
                tracing::warn!("API: key {name:?} (read) refused a control route from {ip}");
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "this key may only read",
                ))
            }
            Err(why) => {
                self.failed(ip);
                let message = match why {
                    AuthError::Missing => "an API key is needed: Authorization: Bearer KEY",
                    AuthError::Unknown => "unknown API key",
                    AuthError::Expired => "this API key has expired",
                };
                Err(ApiError::new(StatusCode::UNAUTHORIZED, message))
            }
        }
    }

    fn summary(&self) -> Value {
        let snap = self.stats.snapshot();
        let estimates = estimate(
            &snap,
            self.config.power_watts,
            self.control.measured_power(),
            self.config.kwh_price,
        );
        json!({
            "uptime_s": snap.uptime_s,
            "hashrate_5s": snap.total(|d| d.hashrate_5s),
            "hashrate_1m": snap.total(|d| d.hashrate_1m),
            "hashrate_15m": snap.total(|d| d.hashrate_15m),
            "hashrate_avg": snap.total(|d| d.hashrate_avg),
            "accepted": snap.count(|d| d.accepted),
            "rejected": snap.count(|d| d.rejected),
            "stale": snap.count(|d| d.stale),
            "hw_errors": snap.count(|d| d.hw_errors),
            "dropped": snap.count(|d| d.dropped),
            "throttled": snap.pool_count(|p| p.throttled),
            "unanswered": snap.pool_count(|p| p.unanswered),
            "blocks": snap.count(|d| d.blocks),
            "blocks_accepted": snap.pool_count(|p| p.blocks_accepted),
            "blocks_rejected": snap.pool_count(|p| p.blocks_rejected + p.blocks_stale),
            "best_share": snap.best_share,
            "devices": snap.devices.len(),
            "devices_mining": (0..snap.devices.len()).filter(|i| self.control.may_run(*i)).count(),
            "pool": snap.pools.iter().find(|p| p.active).map(|p| p.name.clone()),
            "pool_hashrate": snap.pools.iter().map(|p| p.effective_hashrate).fold(0.0, |a, b| a + b),
            "estimates": estimates,
        })
    }

    fn devices(&self) -> Value {
        let snap = self.stats.snapshot();
        let list: Vec<Value> = snap
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                json!({
                    "index": i,
                    "name": d.name,
                    "state": self.control.state(i),
                    "enabled": self.control.is_enabled(i),
                    "health": self.control.health(i),
                    "health_reason": self.control.health_reason(i),
                    "resets": self.control.resets(i),
                    "throttle_ms": self.control.pause(i).as_secs_f64() * 1000.0,
                    "hashrate_5s": d.hashrate_5s,
                    "hashrate_1m": d.hashrate_1m,
                    "hashrate_avg": d.hashrate_avg,
                    "nonces": d.nonces,
                    "accepted": d.accepted,
                    "rejected": d.rejected,
                    "stale": d.stale,
                    "hw_errors": d.hw_errors,
                    "blocks": d.blocks,
                    "dropped": d.dropped,
                    "device_busy": d.device_busy,
                    "sensors": self.control.readings(i),
                })
            })
            .collect();
        Value::Array(list)
    }
}

/// An optional JSON body on control routes: `{"reason": "…"}`, logged.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    reason: Option<String>,
}

fn parse_action(body: &Bytes) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<ActionBody>(body)
        .map(|b| b.reason.map(|r| r.chars().take(200).collect()))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

fn parse_index(text: &str, what: &str) -> Result<usize, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{what} {text:?}: not an index"),
        )
    })
}

type Shared = State<Arc<ApiState>>;
type Peer = ConnectInfo<SocketAddr>;

async fn summary(State(s): Shared, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    match s.authorize(&headers, peer, Scope::Read) {
        Ok(_) => Json(s.summary()).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn devices(State(s): Shared, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    match s.authorize(&headers, peer, Scope::Read) {
        Ok(_) => Json(s.devices()).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn pools(State(s): Shared, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    match s.authorize(&headers, peer, Scope::Read) {
        Ok(_) => Json(json!(s.stats.snapshot().pools)).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn prometheus(State(s): Shared, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    match s.authorize(&headers, peer, Scope::Read) {
        Ok(_) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics::render(&s.stats.snapshot(), &s.control),
        )
            .into_response(),
        Err(r) => r.into_response(),
    }
}

async fn event_stream(State(s): Shared, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    if let Err(r) = s.authorize(&headers, peer, Scope::Read) {
        return r.into_response();
    }
    let first = ("status", s.summary().to_string());
    let updates =
        tokio_stream::wrappers::BroadcastStream::new(s.events.subscribe()).filter_map(|e| e.ok());
    let stream = tokio_stream::iter([first])
        .chain(updates)
        .map(|(kind, data)| Ok::<Event, Infallible>(Event::default().event(kind).data(data)));
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn device_action(
    State(s): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((index, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let key = match s.authorize(&headers, peer, Scope::Control) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let index = match parse_index(&index, "device") {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let enable = match action.as_str() {
        "enable" => true,
        "disable" => false,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}: enable or disable"),
            )
        }
    };
    let reason = match parse_action(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = s.control.set_enabled(index, enable) {
        return error(StatusCode::NOT_FOUND, e.to_string());
    }
    tracing::warn!(
        "API: key {key:?} from {} {action}d device {index}{}",
        peer.ip(),
        reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let event = json!({"action": action, "device": index, "key": key}).to_string();
    let _ = s.events.send(("control", event));
    Json(json!({"device": index, "enabled": enable, "state": s.control.state(index)}))
        .into_response()
}

async fn pool_switch(
    State(s): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(index): Path<String>,
    body: Bytes,
) -> Response {
    let key = match s.authorize(&headers, peer, Scope::Control) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let index = match parse_index(&index, "pool") {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let reason = match parse_action(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = s.control.request_pool(index) {
        return error(StatusCode::NOT_FOUND, e.to_string());
    }
    tracing::warn!(
        "API: key {key:?} from {} switched to pool {index}{}",
        peer.ip(),
        reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let event = json!({"action": "switch", "pool": index, "key": key}).to_string();
    let _ = s.events.send(("control", event));
    (StatusCode::ACCEPTED, Json(json!({"switching_to": index}))).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route")
}

/// Binds now (so a bad address is an error at start) and serves on its own
/// thread until `shutdown` fires.
pub fn start(
    config: ApiConfig,
    stats: Arc<Stats>,
    control: Arc<RigControl>,
    shutdown: Shutdown,
) -> std::io::Result<ApiServer> {
    let listener = std::net::TcpListener::bind(config.bind)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (events, _) = broadcast::channel(64);
    let state = Arc::new(ApiState {
        stats,
        control,
        config,
        failures: Mutex::new(HashMap::new()),
        events,
    });
    let app = Router::new()
        .route("/v1/summary", get(summary))
        .route("/v1/devices", get(devices))
        .route("/v1/pools", get(pools))
        .route("/v1/events", get(event_stream))
        .route("/metrics", get(prometheus))
        .route("/v1/devices/{index}/{action}", post(device_action))
        .route("/v1/pools/{index}/switch", post(pool_switch))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("API: {e}");
                        return;
                    }
                };
                tokio::spawn(keep_keys_fresh(state.clone(), shutdown.clone()));
                tokio::spawn(publish_status(state.clone(), shutdown.clone()));
                let stop = shutdown.clone();
                let served = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    while !stop.is_triggered() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
                .await;
                if let Err(e) = served {
                    tracing::error!("API: {e}");
                }
            });
        })?;
    tracing::info!("API on http://{addr}");
    Ok(ApiServer { addr, thread })
}

/// Re-reads the keys file when it changes, and on SIGHUP.
async fn keep_keys_fresh(state: Arc<ApiState>, shutdown: Shutdown) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    while !shutdown.is_triggered() {
        #[cfg(unix)]
        if let Some(h) = hangup.as_mut() {
            tokio::select! {
                _ = h.recv() => {
                    tracing::info!("SIGHUP: re-reading the API keys");
                    let keys = state.config.keys.clone();
                    let _ = tokio::task::spawn_blocking(move || keys.reload()).await;
                    continue;
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        #[cfg(not(unix))]
        tokio::time::sleep(Duration::from_millis(500)).await;
        // A file read: off the async thread, which serves every request.
        let keys = state.config.keys.clone();
        let _ = tokio::task::spawn_blocking(move || keys.reload_if_changed()).await;
    }
}

/// A status event every few seconds for `/v1/events` listeners.
async fn publish_status(state: Arc<ApiState>, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if state.events.receiver_count() > 0 {
            let _ = state.events.send(("status", state.summary().to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failed_login_map_is_bounded() {
        let mut failures = HashMap::new();
        let start = Instant::now();
        // Many addresses within one window: the oldest make room.
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) << 64));
            remember_failure(
                &mut failures,
                ip,
                start + Duration::from_millis(u64::from(i)),
            );
        }
        assert_eq!(failures.len(), MAX_TRACKED);
        let first = IpAddr::from(std::net::Ipv6Addr::from(0u128));
        assert!(!failures.contains_key(&first), "the oldest went first");
        // An address already tracked keeps counting.
        let last = IpAddr::from(std::net::Ipv6Addr::from(
            u128::from(MAX_TRACKED as u32 + 499) << 64,
        ));
        let later = start + Duration::from_secs(5);
        remember_failure(&mut failures, last, later);
        assert_eq!(failures[&last].1, 2);
        // Past the window, expired entries are cleared before anyone is evicted.
        let much_later = start + FAILURE_WINDOW + Duration::from_secs(10);
        remember_failure(&mut failures, first, much_later);
        assert_eq!(failures.len(), 1);
    }
}
