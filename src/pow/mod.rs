//! Pure proof-of-work math: no I/O, no threads.

pub mod block;
pub mod header;
pub mod kernel_work;
pub mod merkle;
pub mod sha256;
pub mod target;

pub use kernel_work::KernelWork;
