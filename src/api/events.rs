//! `/v1/events`: Server-Sent Events for one key, ended when it is revoked
//! or expires.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;

use super::keys::KeyStore;
use crate::found::journal::unix_now;

/// An event stream's state: it ends when its key is revoked or expires.
struct Feed {
    first: Option<(&'static str, String)>,
    updates: broadcast::Receiver<(&'static str, String)>,
    keys: Arc<KeyStore>,
    key_hash: [u8; 32],
    ended: bool,
}

impl Feed {
    async fn next(mut self) -> Option<(Event, Feed)> {
        if self.ended {
            return None;
        }
        if let Some((kind, data)) = self.first.take() {
            return Some((Event::default().event(kind).data(data), self));
        }
        loop {
            // Wake at least every second to check the key.
            let update = tokio::time::timeout(Duration::from_secs(1), self.updates.recv()).await;
            if !self.keys.is_live(&self.key_hash, unix_now()) {
                self.ended = true;
                let end = Event::default()
                    .event("end")
                    .data(r#"{"reason":"the API key was revoked or has expired"}"#);
                return Some((end, self));
            }
            match update {
                Ok(Ok((kind, data))) => {
                    return Some((Event::default().event(kind).data(data), self))
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => {}
            }
        }
    }
}

/// The stream: `first`, then each update, while the key hashing to
/// `key_hash` is live.
pub(super) fn stream(
    first: (&'static str, String),
    updates: broadcast::Receiver<(&'static str, String)>,
    keys: Arc<KeyStore>,
    key_hash: [u8; 32],
) -> Response {
    let feed = Feed {
        first: Some(first),
        updates,
        keys,
        key_hash,
        ended: false,
    };
    let stream = futures_util::stream::unfold(feed, Feed::next).map(Ok::<Event, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
