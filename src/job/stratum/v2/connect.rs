//! Reaching a Stratum V2 pool: TCP, the Noise handshake against the pinned
//! key, and `SetupConnection`; the fail-back probe is the same steps.

use std::time::Duration;

use stratum_core::binary_sv2::Str0255;
use stratum_core::common_messages_sv2::{Protocol, SetupConnection};
use stratum_core::parsers_sv2::{AnyMessage, CommonMessages};
use tokio::net::TcpStream;

use super::messages::PoolMessage;
use super::transport::{Link, LinkError};
use crate::job::stratum::options::{PoolConfig, StratumOptions};

/// Whether a Stratum V2 pool completes the handshake and the connection
/// setup: the fail-back probe of a better pool.
pub async fn probe(pool: &PoolConfig, options: &StratumOptions) -> bool {
    let timeout = options.timeouts.connect;
    let attempt = async {
        let mut link = connect(pool, &pool.url.host, pool.url.port, timeout)
            .await
            .ok()?;
        let setup = setup_connection(&pool.url.host, pool.url.port, 0).ok()?;
        link.send(setup).await.ok()?;
        while let Some(Ok(frame)) = link.incoming.recv().await {
            match PoolMessage::try_from(frame) {
                Ok(PoolMessage::SetupConnectionSuccess { .. }) => return Some(true),
                Ok(PoolMessage::SetupConnectionError { .. }) => return Some(false),
                _ => {}
            }
        }
        None
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

pub(super) async fn connect(
    pool: &PoolConfig,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Link, LinkError> {
    let peer = pool.url.to_string();
    let io = |detail: String| LinkError::Io {
        peer: peer.clone(),
        detail,
    };
    let Some(key) = pool.url.authority_key else {
        return Err(io("not a Stratum V2 pool".into()));
    };
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| io(format!("connect to {host}:{port} timed out")))?
        .map_err(|e| io(format!("connect to {host}:{port} failed: {e}")))?;
    let _ = stream.set_nodelay(true);
    Link::connect(stream, key, &peer, timeout).await
}

pub(super) fn setup_connection(
    host: &str,
    port: u16,
    flags: u32,
) -> Result<AnyMessage<'_>, String> {
    Ok(AnyMessage::Common(CommonMessages::SetupConnection(
        SetupConnection {
            protocol: Protocol::MiningProtocol,
            min_version: 2,
            max_version: 2,
            flags,
            endpoint_host: str0255(host)?,
            endpoint_port: port,
            vendor: str0255("hashrig")?,
            hardware_version: str0255("GPU rig")?,
            firmware: str0255(env!("CARGO_PKG_VERSION"))?,
            device_id: str0255("")?,
        },
    )))
}

/// A string field, cut to its 255 bytes at a character boundary.
pub(super) fn str0255(text: &str) -> Result<Str0255<'_>, String> {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Str0255::try_from(&text[..end]).map_err(|e| format!("could not encode {text:?}: {e:?}"))
}
