//! The wire under Stratum V2: a Noise NX handshake (the pool proves its
//! key with a certificate signed by the pinned authority key, Stratum V2
//! spec 4.5), then encrypted binary frames. Reading runs in its own task
//! and hands whole frames over a channel: the codec's reader is not
//! cancellation-safe, and a session's `select!` cancels reads all the time.

use std::time::Duration;

use stratum_core::binary_sv2::{GetSize, Serialize};
use stratum_core::codec_sv2::{
    self, Decoded, Decrypted, ExpectsHandshakeMessage, Handshake, HandshakeMessage, InitiatorSent,
    MessageFrame, NoiseDecoder, NoiseEncoder, Transport, TransportDecryptState,
    TransportEncryptState,
};
use stratum_core::noise_sv2::{
    self, Initiator, Responder, ELLSWIFT_ENCODING_SIZE, INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE,
};
use stratum_core::parsers_sv2::IsSv2Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::key::AuthorityKey;

/// Frames read ahead of the session at most: with [`MAX_POOL_PAYLOAD`],
/// at most 16 MiB queued, whatever a pool sends.
const READ_AHEAD: usize = 16;
/// The longest payload kept. The largest message a pool sends a miner,
/// NewExtendedMiningJob, is at most about 136 KiB (two 64 KiB coinbase
/// parts and 255 merkle hashes); a frame may carry 16 MiB. A longer one is
/// decrypted (the Noise state must move on), its payload dropped, and the
/// session counts it as a bad message.
pub const MAX_POOL_PAYLOAD: usize = 1 << 20;
/// Longest wait for a write to the peer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a Stratum V2 link could not be set up or broke. `peer` names the
/// other end; the message leaves it to the caller, which logs it first.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The URL has no authority key: not a V2 pool.
    #[error("not a Stratum V2 pool (no authority key in its URL)")]
    NotV2 {
        /// The other end, as its URL or address.
        peer: String,
    },
    /// The handshake did not finish in time.
    #[error("the Noise handshake timed out")]
    HandshakeTimeout {
        /// The other end, as its URL or address.
        peer: String,
    },
    /// The pool's certificate is not the pinned key's, or not valid now.
    #[error("the pool's certificate is not signed by the pinned authority key {key}, or is outside its validity window (valid from {valid_from} to {not_valid_after}, Unix time)")]
    Certificate {
        /// The other end, as its URL or address.
        peer: String,
        /// The pinned authority key.
        key: String,
        /// Start of the certificate's validity, Unix time.
        valid_from: u32,
        /// End of the certificate's validity, Unix time.
        not_valid_after: u32,
    },
    /// The Noise handshake failed.
    #[error("Noise handshake failed")]
    Handshake {
        /// The other end, as its URL or address.
        peer: String,
        /// What failed underneath.
        #[source]
        source: CodecError,
    },
    /// A handshake message of the wrong length.
    #[error("Noise handshake failed: the {message} has the wrong length")]
    HandshakeLength {
        /// The other end, as its URL or address.
        peer: String,
        /// Which message.
        message: &'static str,
    },
    /// A read, a write or a connect failed.
    #[error("{operation} failed")]
    Io {
        /// The other end, as its URL or address.
        peer: String,
        /// What was being done: connecting, reading, writing.
        operation: String,
        /// What failed underneath.
        #[source]
        source: std::io::Error,
    },
    /// A connect or a write took too long.
    #[error("{operation} timed out")]
    Timeout {
        /// The other end, as its URL or address.
        peer: String,
        /// What was being done: connecting, reading, writing.
        operation: String,
    },
    /// The pool closed the connection.
    #[error("the pool closed the connection")]
    Closed {
        /// The other end, as its URL or address.
        peer: String,
    },
    /// A message could not be framed or encrypted.
    #[error("could not {operation} a frame")]
    Encode {
        /// The other end, as its URL or address.
        peer: String,
        /// The step that failed.
        operation: &'static str,
        /// What failed underneath.
        #[source]
        source: CodecError,
    },
    /// A frame that does not decrypt or decode.
    #[error("undecodable frame")]
    Frame {
        /// The other end, as its URL or address.
        peer: String,
        /// What failed underneath.
        #[source]
        source: CodecError,
    },
}

/// An error from SRI's codec crates, which implement no
/// `std::error::Error`: their text, kept as a [`LinkError`]'s source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

/// One decrypted frame: its header fields and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message type byte.
    pub message_type: u8,
    /// The extension type, without the channel bit.
    pub extension_type: u16,
    /// Whether the channel-message bit is set (the message names a channel).
    pub channel_msg: bool,
    /// Empty when the pool sent more than [`MAX_POOL_PAYLOAD`].
    pub payload: Vec<u8>,
    /// How long the payload the pool sent was.
    pub payload_len: usize,
}

/// An encrypted, framed connection: frames in from the reader task, frames
/// out through [`Link::send`].
pub struct Link {
    /// Frames in, from the reader task; its last item says why the link broke.
    pub incoming: mpsc::Receiver<Result<Frame, LinkError>>,
    writer: OwnedWriteHalf,
    encoder: NoiseEncoder,
    encrypt: TransportEncryptState,
    reader: JoinHandle<()>,
    peer: String,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Link {
    /// Connects as the Noise initiator, checking the responder's
    /// certificate against `key`.
    pub async fn connect(
        stream: TcpStream,
        key: AuthorityKey,
        peer: &str,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        let initiator =
            Initiator::from_raw_k(key.to_bytes()).map_err(|e| LinkError::Handshake {
                peer: peer.into(),
                source: CodecError(format!("{e:?}")),
            })?;
        let (mut reader, mut writer) = stream.into_split();
        let mut decoder = NoiseDecoder::new();
        let mut encoder = NoiseEncoder::new();
        let (first, handshake) = Handshake::initiator(initiator)
            .step_0()
            .map_err(|e| handshake_error(peer, key, e))?;
        write_handshake(&mut writer, &mut encoder, first, peer).await?;
        let second =
            read_handshake::<InitiatorSent>(&mut reader, &mut decoder, peer, timeout).await?;
        let payload: [u8; INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE] = second
            .payload()
            .try_into()
            .map_err(|_| LinkError::HandshakeLength {
                peer: peer.into(),
                message: "responder's reply",
            })?;
        let transport = handshake
            .step_2(payload)
            .map_err(|e| handshake_error(peer, key, e))?;
        Ok(Link::start(
            reader, writer, decoder, encoder, transport, peer,
        ))
    }

    /// Accepts as the Noise responder (a server: the tests' template
    /// provider and pool), signing with `responder`'s authority key.
    pub async fn accept(
        stream: TcpStream,
        responder: Box<Responder>,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "peer".into(), |a| a.to_string());
        let (mut reader, mut writer) = stream.into_split();
        let mut decoder = NoiseDecoder::new();
        let mut encoder = NoiseEncoder::new();
        let first = read_handshake::<Responder>(&mut reader, &mut decoder, &peer, timeout).await?;
        let payload: [u8; ELLSWIFT_ENCODING_SIZE] =
            first
                .payload()
                .try_into()
                .map_err(|_| LinkError::HandshakeLength {
                    peer: peer.clone(),
                    message: "initiator's message",
                })?;
        let (second, transport) = Handshake::responder(responder)
            .step_1(payload)
            .map_err(|e| LinkError::Handshake {
                peer: peer.clone(),
                source: CodecError(e.to_string()),
            })?;
        write_handshake(&mut writer, &mut encoder, second, &peer).await?;
        Ok(Link::start(
            reader, writer, decoder, encoder, transport, &peer,
        ))
    }

    fn start(
        reader: OwnedReadHalf,
        writer: OwnedWriteHalf,
        decoder: NoiseDecoder,
        encoder: NoiseEncoder,
        transport: Transport,
        peer: &str,
    ) -> Link {
        let (encrypt, decrypt) = transport.split();
        let (tx, incoming) = mpsc::channel(READ_AHEAD);
        let reader = tokio::spawn(read_frames(reader, decoder, decrypt, tx, peer.to_owned()));
        Link {
            incoming,
            writer,
            encoder,
            encrypt,
            reader,
            peer: peer.to_owned(),
        }
    }

    /// Encrypts and sends one message.
    pub async fn send<M: Serialize + GetSize + IsSv2Message>(
        &mut self,
        message: M,
    ) -> Result<(), LinkError> {
        let (message_type, extension_type, channel_msg) = (
            message.message_type(),
            message.extension_type(),
            message.channel_bit(),
        );
        let encode = |operation, text| LinkError::Encode {
            peer: self.peer.clone(),
            operation,
            source: CodecError(text),
        };
        let frame = MessageFrame::from_message(message, message_type, extension_type, channel_msg)
            .map_err(|e| encode("fit the message in", format!("{e:?}")))?;
        let bytes = self
            .encoder
            .encode_transport(frame, &mut self.encrypt)
            .map_err(|e| encode("encrypt", e.to_string()))?;
        match tokio::time::timeout(WRITE_TIMEOUT, self.writer.write_all(bytes.as_ref())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(LinkError::Io {
                peer: self.peer.clone(),
                operation: "write".into(),
                source,
            }),
            Err(_) => Err(LinkError::Timeout {
                peer: self.peer.clone(),
                operation: "write".into(),
            }),
        }
    }
}

fn handshake_error(peer: &str, key: AuthorityKey, error: codec_sv2::Error) -> LinkError {
    match error {
        codec_sv2::Error::NoiseSv2Error(noise_sv2::Error::InvalidCertificate(cert)) => {
            LinkError::Certificate {
                peer: peer.into(),
                key: key.to_string(),
                valid_from: cert.valid_from,
                not_valid_after: cert.not_valid_after,
            }
        }
        other => LinkError::Handshake {
            peer: peer.into(),
            source: CodecError(other.to_string()),
        },
    }
}

async fn write_handshake(
    writer: &mut OwnedWriteHalf,
    encoder: &mut NoiseEncoder,
    message: HandshakeMessage,
    peer: &str,
) -> Result<(), LinkError> {
    let bytes = encoder.encode_handshake(message);
    writer
        .write_all(bytes.as_ref())
        .await
        .map_err(|source| LinkError::Io {
            peer: peer.into(),
            operation: "writing the Noise handshake".into(),
            source,
        })
}

async fn read_handshake<R: ExpectsHandshakeMessage>(
    reader: &mut OwnedReadHalf,
    decoder: &mut NoiseDecoder,
    peer: &str,
    timeout: Duration,
) -> Result<HandshakeMessage, LinkError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut buffer = vec![0u8; decoder.writable_len()];
        tokio::time::timeout_at(deadline, reader.read_exact(&mut buffer))
            .await
            .map_err(|_| LinkError::HandshakeTimeout { peer: peer.into() })?
            .map_err(|source| LinkError::Io {
                peer: peer.into(),
                operation: "reading the Noise handshake".into(),
                source,
            })?;
        decoder.writable().copy_from_slice(&buffer);
        match decoder.next_handshake_frame::<R>() {
            Ok(Decoded::Frame(frame)) => return Ok(frame),
            Ok(Decoded::Incomplete(_)) => {}
            Err(e) => {
                return Err(LinkError::Handshake {
                    peer: peer.into(),
                    source: CodecError(e.to_string()),
                })
            }
        }
    }
}

/// Reads, decrypts and forwards frames until the link breaks; the last
/// item says why.
async fn read_frames(
    mut reader: OwnedReadHalf,
    mut decoder: NoiseDecoder,
    mut decrypt: TransportDecryptState,
    tx: mpsc::Sender<Result<Frame, LinkError>>,
    peer: String,
) {
    loop {
        let mut buffer = vec![0u8; decoder.writable_len()];
        if let Err(source) = reader.read_exact(&mut buffer).await {
            let error = if source.kind() == std::io::ErrorKind::UnexpectedEof {
                LinkError::Closed { peer }
            } else {
                LinkError::Io {
                    peer,
                    operation: "read".into(),
                    source,
                }
            };
            let _ = tx.send(Err(error)).await;
            return;
        }
        decoder.writable().copy_from_slice(&buffer);
        decrypt = match decoder.next_transport_frame(decrypt) {
            Ok(Decrypted::Incomplete(_, state)) => state,
            Ok(Decrypted::Frame(mut frame, state)) => {
                let header = frame.header();
                let payload = frame.payload();
                let frame = Frame {
                    message_type: header.msg_type(),
                    extension_type: header.ext_type_without_channel_msg(),
                    channel_msg: header.channel_msg(),
                    payload: if payload.len() <= MAX_POOL_PAYLOAD {
                        payload.to_vec()
                    } else {
                        Vec::new()
                    },
                    payload_len: payload.len(),
                };
                if tx.send(Ok(frame)).await.is_err() {
                    return;
                }
                state
            }
            Err(e) => {
                let source = CodecError(e.to_string());
                let _ = tx.send(Err(LinkError::Frame { peer, source })).await;
                return;
            }
        };
    }
}
