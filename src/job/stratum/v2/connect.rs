//! Reaching a Stratum V2 pool: TCP, the Noise handshake against the pinned
//! key, and `SetupConnection`; the fail-back probe is the same steps.

use std::time::Duration;

use stratum_core::binary_sv2::Str0255;
use stratum_core::common_messages_sv2::{Protocol, SetupConnection};
use stratum_core::parsers_sv2::{AnyMessage, CommonMessages};
use tokio::net::TcpStream;

use super::messages::PoolMessage;
use super::transport::{CodecError, Link, LinkError};
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
    let Some(key) = pool.url.authority_key else {
        return Err(LinkError::NotV2 { peer });
    };
    let operation = format!("connecting to {host}:{port}");
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| LinkError::Timeout {
            peer: peer.clone(),
            operation: operation.clone(),
        })?
        .map_err(|source| LinkError::Io {
            peer: peer.clone(),
            operation,
            source,
        })?;
    let _ = stream.set_nodelay(true);
    Link::connect(stream, key, &peer, timeout).await
}

pub(super) fn setup_connection(
    host: &str,
    port: u16,
    flags: u32,
) -> Result<AnyMessage<'_>, FieldError> {
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

/// A text field SRI's encoder refused. Cut to 255 bytes first, a field
/// always fits; the encoder's error stays typed all the same, with its
/// text, as SRI's `binary_sv2` errors implement no `std::error::Error`.
#[derive(Debug, thiserror::Error)]
#[error("could not encode {text:?} as a STR0_255 field")]
pub struct FieldError {
    text: String,
    #[source]
    source: CodecError,
}

/// A string field, cut to its 255 bytes at a character boundary.
pub(super) fn str0255(text: &str) -> Result<Str0255<'_>, FieldError> {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Str0255::try_from(&text[..end]).map_err(|e| FieldError {
        text: text.to_owned(),
        source: CodecError(format!("{e:?}")),
    })
}
