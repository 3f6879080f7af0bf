//! rs-cluster's core: everything but N-API. The control protocol and its
//! channel, the connection hand-off channel, the page of memory a worker
//! shares with the primary, the primary's reactor, and the worker's intake
//! state machine. The `rs-cluster` crate at the repository root binds this to
//! Node; this crate has no napi dependency, so the compiler keeps it that way.

#[macro_use]
mod sys;

pub mod channel;
pub mod error;
pub mod handoff;
pub mod notify;
pub mod page;
pub mod primary;
pub mod protocol;
pub mod sockets;
pub mod takeover;
pub mod tuning;
pub mod worker;
