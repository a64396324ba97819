//! Stratum V2 (pool mining, encrypted and binary): the pinned authority key
//! (`key`), the Noise-encrypted frame link (`transport`), pool messages
//! parsed and validated once (`messages`), and one connection's session
//! (`session`), which the failover loop in [`super::client`] runs for a
//! `stratum2+tcp://` pool as it runs a V1 session for the others.

mod connect;
pub mod key;
pub mod messages;
mod session;
pub mod transport;

pub use connect::probe;
pub use session::run_connection;
pub use transport::LinkError;
