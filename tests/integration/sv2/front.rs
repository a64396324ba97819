//! An in-process Stratum V2 pool front, assembled from SRI's message types
//! over hashrig's Noise link, that does what the reference pool cannot be
//! told to: on the first connection it closes the channel it is asked to
//! open; on the second it refuses the extended channel, waits for the
//! standard one, and sends `Reconnect` to the real pool.

use std::sync::{Arc, Mutex};

use stratum_core::binary_sv2::Str0255;
use stratum_core::common_messages_sv2::{Reconnect, SetupConnectionSuccess};
use stratum_core::mining_sv2::{CloseChannel, OpenMiningChannelError};
use stratum_core::parsers_sv2::{AnyMessage, CommonMessages, Mining};

use hashrig::job::stratum::v2::transport::Link;

/// Message names the front received, in order, per connection.
pub type Seen = Arc<Mutex<Vec<Vec<String>>>>;

pub fn start(redirect_port: u16) -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let shared = seen.clone();
    let port = super::serve_noise(move |link, connection| {
        let seen = shared.clone();
        async move { serve(link, connection, redirect_port, &seen).await }
    });
    (port, seen)
}

fn record(seen: &Seen, connection: usize, name: String) {
    let mut seen = seen.lock().unwrap();
    if seen.len() <= connection {
        seen.resize(connection + 1, Vec::new());
    }
    seen[connection].push(name);
}

async fn serve(mut link: Link, connection: usize, redirect_port: u16, seen: &Seen) {
    while let Some(Ok(mut frame)) = link.incoming.recv().await {
        let kind = frame.message_type;
        let name = stratum_core::parsers_sv2::message_type_to_name(kind).to_owned();
        record(seen, connection, name);
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
