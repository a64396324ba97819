//! Integration tests: one binary, a module per area. Every backend is held
//! against an independent implementation (rust-bitcoin's block hash, and
//! through it `KernelWork`'s reference algorithm) on real and random headers.
//! A missing OpenCL or Vulkan runtime fails its tests: `scripts/test.sh`
//! installs PoCL and lavapipe.

mod api;
mod chaos;
mod cli;
mod common;
mod dashboard;
mod farm;
mod gpu;
mod hostile;
mod pools;
mod relay;
mod rig;
mod scheduler;
mod solo;
mod stratum;
mod surface;
mod sv2;
mod testpool;
mod tune;
