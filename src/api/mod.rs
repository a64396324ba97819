//! The HTTP API (axum): JSON status, control routes, Prometheus metrics and
//! a Server-Sent Events stream, behind bearer API keys ([`keys`]). Off
//! unless `--api-bind` is given; it needs `--api-keys`.
//!
//! | route | scope |
//! | --- | --- |
//! | `GET /`, `/dashboard.js`, `/dashboard.css`: the dashboard page | none (it asks for a key) |
//! | `GET /v1/summary`, `/v1/devices`, `/v1/pools`, `/v1/events`, `/metrics` | read |
//! | `GET /v1/history` (hashrate over the last hour), `/v1/whoami` | read |
//! | `POST /v1/pools/{index}/switch`, `/v1/devices/{index}/disable`, `/enable` | control |

mod admission;
mod auth;
pub mod cgminer;
mod dashboard;
mod events;
mod expiry;
pub mod keys;
pub mod metrics;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::control::RigControl;
use crate::shutdown::Shutdown;
use crate::stats::{estimate, History, HistoryPoint, Stats};
use auth::{error, ApiError, Failures};
use keys::{KeyStore, Scope};
pub use server::ConnectionLimits;

/// Control requests carry at most a short reason.
const MAX_BODY: usize = 4096;
/// The most of a control action's reason that is kept (and logged).
const MAX_REASON: usize = 200;

/// What the API serves.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where to listen.
    pub bind: SocketAddr,
    /// The API keys clients must present.
    pub keys: Arc<KeyStore>,
    /// The rig's power draw in watts, for the cost estimate.
    pub power_watts: Option<f64>,
    /// Electricity price per kWh, for the cost estimate.
    pub kwh_price: Option<f64>,
    /// Bounds on connections and requests.
    pub limits: ConnectionLimits,
    /// Between two points of `/v1/history`, and how many it keeps.
    pub history_step: Duration,
    /// How many points of hashrate history to keep.
    pub history_points: usize,
}

impl ApiConfig {
    /// Serves `keys` on `bind` with the default connection limits.
    pub fn new(bind: SocketAddr, keys: Arc<KeyStore>) -> Self {
        ApiConfig {
            bind,
            keys,
            power_watts: None,
            kwh_price: None,
            limits: ConnectionLimits::default(),
            history_step: Duration::from_secs(crate::stats::HISTORY_STEP_SECONDS),
            history_points: crate::stats::HISTORY_POINTS,
        }
    }
}

struct ApiState {
    stats: Arc<Stats>,
    control: Arc<RigControl>,
    config: ApiConfig,
    failures: Failures,
    events: broadcast::Sender<(&'static str, String)>,
    history: std::sync::Mutex<History>,
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
        join_until(self.thread, deadline)
    }
}

/// Joins a server's thread if it ends by `deadline`; false if it had not.
fn join_until(thread: JoinHandle<()>, deadline: Instant) -> bool {
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = thread.join();
    true
}

impl ApiState {
    /// The name of the key that may do `need`, or the response refusing.
    fn authorize(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        need: Scope,
    ) -> Result<(String, Scope), ApiError> {
        auth::authorize(&self.config.keys, &self.failures, headers, peer.ip(), need)
    }

    fn summary(&self) -> Value {
        let snap = self.stats.snapshot();
        let estimates = estimate(
            &snap,
            self.config.power_watts,
            self.control.measured_power(),
            self.config.kwh_price,
        );
        let mut summary = snap.totals();
        let more = json!({
            "uptime_s": snap.uptime_s,
            "hashrate_5s": snap.total(|d| d.hashrate_5s),
            "hashrate_1m": snap.total(|d| d.hashrate_1m),
            "hashrate_15m": snap.total(|d| d.hashrate_15m),
            "hashrate_avg": snap.total(|d| d.hashrate_avg),
            "devices": snap.devices.len(),
            "devices_mining": (0..snap.devices.len()).filter(|i| self.control.may_run(*i)).count(),
            "pool": snap.pools.iter().find(|p| p.active).map(|p| p.name.clone()),
            "estimates": estimates,
        });
        if let Value::Object(more) = more {
            summary.extend(more);
        }
        Value::Object(summary)
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
                    "pci_bus_id": d.pci_bus_id,
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

/// A control action's reason as it goes into the log: bounded, and quoted
/// with every control character escaped, so a client cannot forge lines.
fn loggable_reason(reason: Option<&str>) -> String {
    reason
        .map(|r| {
            let bounded: String = r.chars().take(MAX_REASON).collect();
            format!(" (reason: {bounded:?})")
        })
        .unwrap_or_default()
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
        .map(|b| b.reason.map(|r| r.chars().take(MAX_REASON).collect()))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

/// Reads a control request's body, bounded in size and in time.
async fn read_body(body: Body, timeout: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body: larger than {MAX_BODY} bytes"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body: not received in time",
        )),
    }
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

/// `?since=T`: only the points after Unix second T (a page polling for
/// what is new).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    since: Option<u64>,
}

async fn history(
    State(s): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    query: Result<axum::extract::Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = s.authorize(&headers, peer, Scope::Read) {
        return r.into_response();
    }
    let since = match query {
        Ok(q) => q.since,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("query: {e}")),
    };
    let snap = s.stats.snapshot();
    let devices: Vec<Value> = snap
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| json!({"index": i, "name": d.name, "pci_bus_id": d.pci_bus_id}))
        .collect();
    let history = s.history.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({
        "step_s": s.config.history_step.as_secs_f64(),
        "capacity": history.capacity(),
        "devices": devices,
        "points": history.since(since),
    }))
    .into_response()
}

/// The key's name and scope: what a page may show its holder.
async fn whoami(State(s): Shared, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    match s.authorize(&headers, peer, Scope::Read) {
        Ok((name, scope)) => Json(json!({"name": name, "scope": scope})).into_response(),
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
    let Some(token) = auth::bearer_token(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "an API key is needed");
    };
    events::stream(
        ("status", s.summary().to_string()),
        s.events.subscribe(),
        s.config.keys.clone(),
        keys::token_hash(token),
    )
}

async fn device_action(
    State(s): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((index, action)): Path<(String, String)>,
    body: Body,
) -> Response {
    let key = match s.authorize(&headers, peer, Scope::Control) {
        Ok((k, _)) => k,
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
    let reason = match read_body(body, s.config.limits.body_timeout)
        .await
        .and_then(|b| parse_action(&b))
    {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = s.control.set_enabled(index, enable) {
        return error(StatusCode::NOT_FOUND, e.to_string());
    }
    tracing::warn!(
        "API: key {key:?} from {} {action}d device {index}{}",
        peer.ip(),
        loggable_reason(reason.as_deref())
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
    body: Body,
) -> Response {
    let key = match s.authorize(&headers, peer, Scope::Control) {
        Ok((k, _)) => k,
        Err(r) => return r.into_response(),
    };
    let index = match parse_index(&index, "pool") {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let reason = match read_body(body, s.config.limits.body_timeout)
        .await
        .and_then(|b| parse_action(&b))
    {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = s.control.request_pool(index) {
        return error(StatusCode::NOT_FOUND, e.to_string());
    }
    tracing::warn!(
        "API: key {key:?} from {} switched to pool {index}{}",
        peer.ip(),
        loggable_reason(reason.as_deref())
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
    let ring = std::sync::Mutex::new(History::new(config.history_points));
    let state = Arc::new(ApiState {
        stats,
        control,
        config,
        failures: Failures::default(),
        events,
        history: ring,
    });
    let app = Router::new()
        .route("/", get(dashboard::index))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route("/v1/summary", get(summary))
        .route("/v1/devices", get(devices))
        .route("/v1/pools", get(pools))
        .route("/v1/history", get(history))
        .route("/v1/whoami", get(whoami))
        .route("/v1/events", get(event_stream))
        .route("/metrics", get(prometheus))
        .route("/v1/devices/{index}/{action}", post(device_action))
        .route("/v1/pools/{index}/switch", post(pool_switch))
        .fallback(not_found)
        .with_state(state.clone());
    let limits = state.config.limits;
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
                tokio::spawn(record_history(state.clone(), shutdown.clone()));
                server::serve(listener, app, limits, shutdown).await;
            });
        })?;
    // Its own line: scripts read the address from the one above.
    tracing::info!("API on http://{addr}");
    tracing::info!("dashboard: http://{addr}/ (sign in with an API key)");
    Ok(ApiServer { addr, thread })
}

/// Re-reads the keys file when it changes (SIGHUP is the binary's, which
/// calls [`KeyStore::reload`]).
async fn keep_keys_fresh(state: Arc<ApiState>, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // A file read: off the async thread, which serves every request.
        let keys = state.config.keys.clone();
        let _ = tokio::task::spawn_blocking(move || keys.reload_if_changed()).await;
    }
}

/// A status event every few seconds for `/v1/events` listeners, and an
/// event when the active pool or a device's state changes (a switch, a
/// dropped pool, a device throttled, cut off, sick or failed).
async fn publish_status(state: Arc<ApiState>, shutdown: Shutdown) {
    let mut last = Changes::of(&state);
    while !shutdown.is_triggered() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = Changes::of(&state);
        for event in last.events_to(&now) {
            let _ = state.events.send(event);
        }
        last = now;
        if state.events.receiver_count() > 0 {
            let _ = state.events.send(("status", state.summary().to_string()));
        }
    }
}

/// What the change events compare between two ticks.
#[derive(Debug, Clone, PartialEq)]
struct Changes {
    /// The active pool, and whether it is connected.
    pool: Option<(String, bool)>,
    devices: Vec<&'static str>,
}

impl Changes {
    fn of(state: &ApiState) -> Changes {
        let snap = state.stats.snapshot();
        Changes {
            pool: snap
                .pools
                .iter()
                .find(|p| p.active)
                .map(|p| (p.name.clone(), p.connected)),
            devices: (0..snap.devices.len())
                .map(|i| state.control.state(i))
                .collect(),
        }
    }

    /// The events from `self` to `now`.
    fn events_to(&self, now: &Changes) -> Vec<(&'static str, String)> {
        let mut events = Vec::new();
        if self.pool != now.pool {
            let (pool, connected) = now.pool.clone().unzip();
            events.push((
                "pool",
                json!({"pool": pool, "connected": connected.unwrap_or(false)}).to_string(),
            ));
        }
        for (i, (before, after)) in self.devices.iter().zip(&now.devices).enumerate() {
            if before != after {
                events.push((
                    "device",
                    json!({"device": i, "from": before, "state": after}).to_string(),
                ));
            }
        }
        events
    }
}

/// A point of `/v1/history` every step.
async fn record_history(state: Arc<ApiState>, shutdown: Shutdown) {
    let step = state.config.history_step.max(Duration::from_millis(10));
    while !shutdown.is_triggered() {
        tokio::time::sleep(step).await;
        let snap = state.stats.snapshot();
        let devices: Vec<f64> = snap.devices.iter().map(|d| d.hashrate_5s).collect();
        let point = HistoryPoint {
            t: crate::stats::unix_now(),
            total: devices.iter().sum(),
            devices,
        };
        state
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(point);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_cannot_forge_log_lines() {
        let logged = loggable_reason(Some(
            "maintenance\n2026-11-29T00:00:00Z INFO forged\r\u{1b}[2J",
        ));
        assert!(!logged.contains(['\n', '\r', '\u{1b}']), "{logged}");
        assert!(logged.contains(r"maintenance\n2026"), "{logged}");
        let long = loggable_reason(Some(&"x".repeat(10_000)));
        assert!(long.len() < MAX_REASON + 20, "{}", long.len());
        assert_eq!(loggable_reason(None), "");
    }
}
