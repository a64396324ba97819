//! Stratum V1 (pool mining): typed messages parsed once from untrusted JSON
//! at the edge (`messages`, `replies`), the wire (`transport`: TCP or TLS,
//! bounded lines), one connection's session (`session`), and the client
//! that keeps a connection alive across a failover list (`client`). What V1
//! and V2 share: how a connection ends (`end`), what outlives one (`carry`)
//! and the shares awaiting an answer (`tracking`).

mod carry;
pub mod client;
mod drain;
mod end;
pub mod messages;
pub mod options;
pub mod replies;
mod session;
mod tracking;
pub mod transport;
pub mod url;
pub mod v2;

pub use client::{ConnectionError, StartError, StratumSource};
pub use messages::{submit_params, Notify, ServerMessage, Session, StratumError, SubscribeResult};
pub use options::{PoolConfig, StratumOptions, StratumTimeouts, Sv2Channel};
pub use url::{PoolUrl, PoolUrlError};
