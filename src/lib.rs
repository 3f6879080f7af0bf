//! rs-cluster's N-API binding: the thin layer JavaScript sees. Cluster logic
//! lives in `rs-cluster-core` (crates/core), which knows nothing of N-API;
//! here are type conversion, the threadsafe function for primary events,
//! errors turned into JS errors (`errors.rs`), the stats snapshot as JS
//! objects (`stats.rs`), and the libuv shell of the worker's channel
//! (`uv.rs`, `worker_channel.rs`).

mod errors;
pub mod primary;
mod stats;
mod uv;
pub mod worker_channel;
