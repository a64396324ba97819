//! The wire under Stratum: TCP or TLS, newline-framed, every line bounded.
//! DNS is resolved afresh on every connect, so a pool that moves is found
//! again after a reconnect.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_util::codec::{Decoder, Encoder, Framed};

use super::url::PoolUrl;

/// The longest line a pool may send. A notify carries two coinbase parts
/// (at most 100 kB each, hex-encoded) and up to 32 branch hashes.
pub const MAX_LINE: usize = 512 * 1024;

/// A byte stream to a pool, plain or TLS.
pub trait PoolStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PoolStream for T {}

/// A connection to a pool, one JSON message per line.
pub type PoolLines = Framed<Box<dyn PoolStream>, BoundedLines>;

/// A line from a pool, or the news that one could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line, without its newline.
    Text(String),
    /// A line whose bytes are not UTF-8 (a pool's Latin-1 message, say):
    /// a bad message like any other, counted and skipped by the session.
    NotUtf8 {
        /// Its length.
        len: usize,
        /// How many bytes are valid UTF-8.
        valid_up_to: usize,
    },
    /// Longer than [`MAX_LINE`]; the rest of it is discarded unread.
    TooLong,
}

/// Newline-framed lines of bytes, each bounded by [`MAX_LINE`], decoded to
/// text one line at a time: a line that is not UTF-8 is reported as such,
/// never as a read error (`Framed` ends the stream after any decode error,
/// and one bad line must not end a session). An oversized line is reported
/// once and its rest discarded as it arrives: memory stays bounded.
#[derive(Debug, Default)]
pub struct BoundedLines {
    /// How far the buffer was searched for a newline already.
    searched: usize,
    /// Inside an oversized line: drop bytes up to its newline.
    discarding: bool,
}

impl BoundedLines {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn line(bytes: &[u8]) -> Line {
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        match std::str::from_utf8(bytes) {
            Ok(text) => Line::Text(text.to_owned()),
            Err(e) => Line::NotUtf8 {
                len: bytes.len(),
                valid_up_to: e.valid_up_to(),
            },
        }
    }
}

impl Decoder for BoundedLines {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        loop {
            let newline = buf[self.searched..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|at| self.searched + at);
            match newline {
                Some(end) => {
                    let line = buf.split_to(end + 1);
                    self.searched = 0;
                    if std::mem::take(&mut self.discarding) {
                        continue;
                    }
                    if end > MAX_LINE {
                        return Ok(Some(Line::TooLong));
                    }
                    return Ok(Some(Self::line(&line)));
                }
                None if self.discarding => {
                    buf.clear();
                    self.searched = 0;
                    return Ok(None);
                }
                None if buf.len() > MAX_LINE => {
                    buf.clear();
                    self.searched = 0;
                    self.discarding = true;
                    return Ok(Some(Line::TooLong));
                }
                None => {
                    self.searched = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        // A last line without its newline.
        if buf.is_empty() || self.discarding {
            buf.clear();
            return Ok(None);
        }
        let line = buf.split();
        self.searched = 0;
        Ok(Some(Self::line(&line)))
    }
}

impl Encoder<String> for BoundedLines {
    type Error = std::io::Error;

    fn encode(&mut self, line: String, buf: &mut BytesMut) -> Result<(), std::io::Error> {
        buf.reserve(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\n");
        Ok(())
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The connection took too long.
    #[error("connecting to {url}: timed out after {timeout:?}")]
    Timeout {
        /// The pool.
        url: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The connection failed.
    #[error("connecting to {url}")]
    Io {
        /// The pool.
        url: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The host is not a name TLS can check.
    #[error("{url}: {host:?} is not a valid TLS server name")]
    ServerName {
        /// The pool.
        url: String,
        /// The host name given.
        host: String,
    },
    /// The system has no root certificates to check the pool's with.
    #[error(
        "{url}: no TLS root certificates found on this system (pin the pool's certificate instead)"
    )]
    NoRoots {
        /// The pool.
        url: String,
    },
}

/// Connects to `host:port` (`url` names the pool in errors), with TLS when
/// the URL says so. With `pin`, the server's certificate must have that
/// SHA-256 fingerprint; the usual chain checks are then replaced by the pin
/// (pools often use self-signed certificates).
pub async fn connect(
    url: &PoolUrl,
    host: &str,
    port: u16,
    pin: Option<[u8; 32]>,
    timeout: Duration,
) -> Result<PoolLines, ConnectError> {
    let name = url.to_string();
    let attempt = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|source| ConnectError::Io {
                url: name.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn PoolStream> = if url.tls {
            // The system's roots are files: read them off the async thread.
            let for_config = name.clone();
            let config = tokio::task::spawn_blocking(move || tls_config(&for_config, pin))
                .await
                .map_err(|e| ConnectError::Io {
                    url: name.clone(),
                    source: std::io::Error::other(e),
                })??;
            let server =
                ServerName::try_from(host.to_owned()).map_err(|_| ConnectError::ServerName {
                    url: name.clone(),
                    host: host.to_owned(),
                })?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(server, tcp)
                .await
                .map_err(|source| ConnectError::Io {
                    url: name.clone(),
                    source,
                })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        Ok(Framed::new(stream, BoundedLines::new()))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout { url: name, timeout }),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(url: &str, pin: Option<[u8; 32]>) -> Result<rustls::ClientConfig, ConnectError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Io {
            url: url.to_owned(),
            source: std::io::Error::other(e),
        })?;
    let config = match pin {
        Some(fingerprint) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
                fingerprint,
                provider: provider(),
            }))
            .with_no_client_auth(),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(ConnectError::NoRoots {
                    url: url.to_owned(),
                });
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

/// Accepts exactly one certificate, by the SHA-256 of its DER encoding; the
/// handshake signatures are still verified against it.
#[derive(Debug)]
struct PinnedCertificate {
    fingerprint: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let seen: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if seen == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "pool certificate fingerprint {} is not the pinned {}",
                hex::encode(seen),
                hex::encode(self.fingerprint)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Parses a certificate fingerprint: 64 hex digits, colons allowed.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    hex::decode(digits).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_line_is_skipped_and_the_next_one_read() {
        let mut codec = BoundedLines::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&vec![b'a'; MAX_LINE + 10]);
        buf.extend_from_slice(b"\n{\"ok\":1}\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Line::TooLong));
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Line::Text("{\"ok\":1}".into()))
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_reported_and_the_next_one_read() {
        let mut codec = BoundedLines::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"{\"params\":[\"Gr\xfc\xdfe\"]}\r\n{\"ok\":1}\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Line::NotUtf8 {
                len: 20,
                valid_up_to: 14
            })
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Line::Text("{\"ok\":1}".into()))
        );
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn lines_split_across_reads_and_a_last_line_without_newline() {
        let mut codec = BoundedLines::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"{\"a\":");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"1}\n{\"b\"");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Line::Text("{\"a\":1}".into()))
        );
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(
            codec.decode_eof(&mut buf).unwrap(),
            Some(Line::Text("{\"b\"".into()))
        );
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn an_oversized_line_arriving_in_pieces_is_dropped_as_it_comes() {
        let mut codec = BoundedLines::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&vec![b'a'; MAX_LINE + 1]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Line::TooLong));
        assert!(buf.is_empty());
        buf.extend_from_slice(&vec![b'b'; 4096]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty(), "the rest of a long line is not kept");
        buf.extend_from_slice(b"bbb\nnext\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Line::Text("next".into()))
        );
    }

    #[test]
    fn fingerprints_with_or_without_colons() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_fingerprint(&hex), Some([0xab; 32]));
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons), Some([0xab; 32]));
        assert_eq!(parse_fingerprint("abcd"), None);
    }
}
