//! Who may call the API: bearer keys, and a limit on failed attempts per
//! address that never locks out a valid key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::keys::{KeyStore, Scope};
use crate::found::journal::unix_now;

/// Failed authentications from one address within this window...
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// ...after which its further failures are refused until the window ends.
const MAX_FAILURES: u32 = 10;
/// Addresses tracked for failed authentications at most: an attacker with
/// many addresses must not grow the map without bound.
const MAX_TRACKED: usize = 4096;

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A refused request: its status and a message for the JSON body.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
    /// Seconds, for 429.
    pub(super) retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
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
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

/// The token of an `Authorization: Bearer TOKEN` header; the scheme is
/// case-insensitive (RFC 7235 §2.1).
pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
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

/// Failed authentications by address, in the current window.
#[derive(Debug, Default)]
pub(super) struct Failures(Mutex<HashMap<IpAddr, (Instant, u32)>>);

impl Failures {
    /// Seconds until `ip` may fail again, while it is over the limit.
    fn blocked_for(&self, ip: IpAddr) -> Option<u64> {
        let failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(&ip)
            .filter(|(since, n)| since.elapsed() < FAILURE_WINDOW && *n >= MAX_FAILURES)
            .map(|(since, _)| FAILURE_WINDOW.saturating_sub(since.elapsed()).as_secs() + 1)
    }

    fn failed(&self, ip: IpAddr) {
        let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        remember_failure(&mut failures, ip, Instant::now());
    }
}

/// The name of the key that may do `need`, or the response refusing.
/// Failures are limited, not addresses: a valid key is served even
/// while its address is over the limit, so that a local user sending
/// bad keys cannot lock the operator (or Prometheus) out.
pub(super) fn authorize(
    keys: &KeyStore,
    failures: &Failures,
    headers: &HeaderMap,
    ip: IpAddr,
    need: Scope,
) -> Result<(String, Scope), ApiError> {
    let token = bearer_token(headers);
    let authenticated = keys.authenticate(token, unix_now());
    if authenticated.is_err() {
        if let Some(seconds) = failures.blocked_for(ip) {
            return Err(ApiError {
                retry_after: Some(seconds),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed attempts from this address; wait a minute",
                )
            });
        }
    }
    match authenticated {
        Ok((name, scope)) if scope >= need => Ok((name, scope)),
        Ok((name, _)) => {
            tracing::warn!("API: key {name:?} (read) refused a control route from {ip}");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this key may only read",
            ))
        }
        Err(why) => {
            failures.failed(ip);
            Err(ApiError::new(StatusCode::UNAUTHORIZED, why.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_any_case() {
        let mut headers = HeaderMap::new();
        for value in ["Bearer k1", "bearer k1", "BEARER  k1 ", "bEaReR k1"] {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer_token(&headers), Some("k1"), "{value}");
        }
        for value in ["Basic k1", "Bearerk1", "k1"] {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer_token(&headers), None, "{value}");
        }
    }

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
