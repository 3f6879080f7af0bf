//! A shared handle (SCHED_NONE, and UDP always): the primary binds once and
//! every worker that asks gets a duplicate of the bound fd and accepts or
//! receives on it itself.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::protocol::{Family, Query};
use crate::sockets;

pub struct Shared {
    pub fd: OwnedFd,
}

impl Shared {
    pub fn bind(q: &Query) -> io::Result<Shared> {
        let fd = match q.family {
            Family::Udp4 | Family::Udp6 if q.fd >= 0 => sockets::dup_fd(q.fd)?,
            Family::Udp4 | Family::Udp6 => sockets::bind_udp(q.address.as_deref(), q.port, q.family, q.flags)?,
            // Node's shared handle binds a pipe without readableAll/writableAll.
            Family::Pipe => super::handles::bind_stream(&Query {
                readable_all: false,
                writable_all: false,
                ..q.clone()
            })?,
            _ => super::handles::bind_stream(q)?,
        };
        Ok(Shared { fd })
    }

    /// A fresh duplicate for one reply: the queued reply owns it, so a handle
    /// closed before the reply is flushed cannot change what is sent.
    pub fn dup_for_reply(&self) -> io::Result<OwnedFd> {
        self.fd.as_fd().try_clone_to_owned()
    }
}
