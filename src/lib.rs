//! rs-cluster's N-API binding: the thin layer JavaScript sees. Cluster logic
//! lives in `rs-cluster-core` (crates/core), which knows nothing of N-API;
//! here are type conversion, the threadsafe function for primary events,
//! errors turned into JS errors (`errors.rs`), the stats snapshot as JS
//! objects (`stats.rs`), and the worker's channel: its class
//! (`worker_channel.rs`), its libuv shell (`worker_shell.rs`, `uv.rs`) and
//! the raw N-API that shell needs (`napi_raw.rs`).

mod errors;
mod napi_raw;
pub mod primary;
mod stats;
mod uv;
pub mod worker_channel;
mod worker_shell;
