//! Error types of the Rust core. The binding layer turns them into JS errors
//! with Node-style `code`s; nothing here knows about N-API.

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
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the control channel is closed")]
    Closed,
    /// A bug in rs-cluster: caught at the boundary so it never unwinds into Node.
    #[error("internal error in rs-cluster: {0}")]
    Panic(String),
}

impl Error {
    /// The Node-style `code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Protocol(_) => "ERR_RS_CLUSTER_PROTOCOL",
            Error::Io(e) => errno_code(e.raw_os_error().unwrap_or(0)),
            Error::Closed => "ERR_IPC_CHANNEL_CLOSED",
            Error::Panic(_) => "ERR_RS_CLUSTER_INTERNAL",
        }
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Io(io::Error::from(e))
    }
}

/// libuv reports errors as negative errno values on Unix; Node turns those
/// into codes. Only the ones a cluster bind/accept/handoff can produce are named.
pub fn errno_code(errno: i32) -> &'static str {
    match errno {
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EINVAL => "EINVAL",
        libc::EBADF => "EBADF",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENOENT => "ENOENT",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::EPIPE => "EPIPE",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOMEM => "ENOMEM",
        libc::ENOBUFS => "ENOBUFS",
        _ => "EIO",
    }
}

/// The negative errno libuv would report for this failure.
pub fn uv_errno(e: &io::Error) -> i32 {
    -e.raw_os_error().unwrap_or(libc::EIO)
}

impl Error {
    pub fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Error {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        Error::Panic(text)
    }
}
