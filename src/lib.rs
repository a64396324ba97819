//! hashrig: a SHA-256d proof-of-work mining engine for GPU rigs.
//!
//! The flow, left to right: a [`job::source::JobSource`] publishes
//! [`job::Job`]s to the [`work::WorkSource`], which hands each device its own
//! header; the [`scheduler`] runs one worker per [`backend::Device`] and
//! re-hashes every candidate on the CPU ([`found::verify`]); verified shares
//! and blocks go back to the job source through one bounded
//! [`found::FoundSink`], blocks written to the found-blocks file first;
//! [`stats`] watches every stage. [`pow`] is the pure math under it.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod api;
pub mod backend;
pub mod control;
pub mod error_chain;
pub mod found;
pub mod job;
pub mod pow;
pub mod redact;
pub mod scheduler;
pub mod shutdown;
pub mod stats;
pub mod thermal;
pub mod untrusted_files;
pub mod work;
