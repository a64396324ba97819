//! An in-process Stratum V2 pool front, assembled from SRI's message types
//! over hashrig's Noise link, that does what the reference pool cannot be
//! told to: on the first connection it closes the channel it is asked to
//! open; on the second it refuses the extended channel, waits for the
//! standard one, and sends `Reconnect` to the real pool.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use stratum_core::binary_sv2::Str0255;
use stratum_core::common_messages_sv2::{Reconnect, SetupConnectionSuccess};
use stratum_core::mining_sv2::{CloseChannel, OpenMiningChannelError};
use stratum_core::noise_sv2::Responder;
use stratum_core::parsers_sv2::{AnyMessage, CommonMessages, Mining};
use tokio::net::TcpListener;

use hashrig::job::stratum::v2::transport::Link;

/// Message names the front received, in order, per connection.
pub type Seen = Arc<Mutex<Vec<Vec<String>>>>;

pub fn start(secret: [u8; 32], public: [u8; 32], redirect_port: u16) -> (u16, Seen) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let shared = seen.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            for connection in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let responder =
                    Responder::from_authority_kp(&public, &secret, Duration::from_secs(3600))
                        .unwrap();
                let Ok(link) = Link::accept(stream, responder, Duration::from_secs(10)).await
                else {
                    continue;
                };
                shared.lock().unwrap().push(Vec::new());
                serve(link, connection, redirect_port, &shared).await;
            }
        });
    });
    (port, seen)
}

async fn serve(mut link: Link, connection: usize, redirect_port: u16, seen: &Seen) {
    while let Some(Ok(mut frame)) = link.incoming.recv().await {
        let kind = frame.message_type;
        let name = stratum_core::parsers_sv2::message_type_to_name(kind).to_owned();
        seen.lock().unwrap().last_mut().unwrap().push(name);
        let reply = if kind < 0x10 {
            Some(AnyMessage::Common(CommonMessages::SetupConnectionSuccess(
                SetupConnectionSuccess {
                    used_version: 2,
                    flags: 0,
                },
            )))
        } else {
            match Mining::try_from((kind, frame.payload.as_mut_slice())) {
                Ok(Mining::OpenExtendedMiningChannel(open)) if connection == 0 => {
                    let _ = open;
                    Some(AnyMessage::Mining(Mining::CloseChannel(CloseChannel {
                        channel_id: 1,
                        reason_code: Str0255::try_from("maintenance").unwrap(),
                    })))
                }
                Ok(Mining::OpenExtendedMiningChannel(open)) => Some(AnyMessage::Mining(
                    Mining::OpenMiningChannelError(OpenMiningChannelError {
                        request_id: open.request_id,
                        error_code: Str0255::try_from("unsupported-channel-type").unwrap(),
                    }),
                )),
                Ok(Mining::OpenStandardMiningChannel(_)) => {
                    Some(AnyMessage::Common(CommonMessages::Reconnect(Reconnect {
                        new_host: Str0255::try_from("127.0.0.1").unwrap(),
                        new_port: redirect_port,
                    })))
                }
                _ => None,
            }
        };
        if let Some(reply) = reply {
            if link.send(reply).await.is_err() {
                return;
            }
        }
    }
}
