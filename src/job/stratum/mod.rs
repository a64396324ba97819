//! Stratum V1 (pool mining). This first part is the protocol edge: typed
//! messages parsed once from untrusted JSON, and jobs built from them. The
//! client (connection, subscribe/authorize, submit, reconnects) builds on it.

pub mod messages;

pub use messages::{submit_params, Notify, ServerMessage, Session, StratumError, SubscribeResult};
