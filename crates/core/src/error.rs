//! Error types of the core. The binding turns them into JS errors in one
//! place (`src/errors.rs`), naming errnos through Node's own libuv; nothing
//! here knows about N-API.

use std::io;

use thiserror::Error;

/// A control frame that does not follow `protocol.rs`. The peer that sent it
/// is cut off; the others keep working.
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("frame length {0} is out of range")]
    BadLength(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("malformed {0} frame")]
    BadBody(&'static str),
    #[error("malformed JSON in control frame: {0}")]
    Json(#[from] serde_json::Error),
    #[error("frame announces file descriptors that did not arrive")]
    MissingFds,
    #[error("file descriptors arrived where the protocol expects none")]
    UnexpectedFds,
    #[error("protocol version {0} is not supported (expected {expected})", expected = crate::protocol::VERSION)]
    Version(u16),
    #[error("frame of this kind is not valid in this direction")]
    WrongDirection,
}

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A system call failed; `syscall` names it as Node's errors do.
    #[error("{syscall}: {source}")]
    Os {
        syscall: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the control channel is closed")]
    Closed,
    /// A bug in rs-cluster: caught at the boundary so it never unwinds into Node.
    #[error("internal error in rs-cluster: {0}")]
    Panic(String),
}

impl Error {
    pub fn os(syscall: &'static str, source: io::Error) -> Error {
        Error::Os { syscall, source }
    }

    pub fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Error {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        Error::Panic(text)
    }
}

/// Adds the name of the failed call to an `io::Result`.
pub trait Context<T> {
    fn during(self, syscall: &'static str) -> Result<T, Error>;
}

impl<T> Context<T> for io::Result<T> {
    fn during(self, syscall: &'static str) -> Result<T, Error> {
        self.map_err(|e| Error::os(syscall, e))
    }
}

/// The negative errno libuv would report for this failure.
pub fn uv_errno(e: &io::Error) -> i32 {
    -e.raw_os_error().unwrap_or(libc::EIO)
}
