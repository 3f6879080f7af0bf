#![deny(clippy::all)]
//! rs-cluster's native addon. The core (`protocol`, `channel`, `sockets`,
//! `primary`) is plain Rust with no N-API in it; `binding` is the thin layer
//! JavaScript sees, and `worker::receiver` is the one place that uses libuv.

pub mod binding;
pub mod board;
pub mod channel;
pub mod error;
pub mod primary;
pub mod protocol;
pub mod sockets;
pub mod worker;
