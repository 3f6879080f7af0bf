//! A round-robin handle: the primary listens and accepts, and every accepted
//! connection goes to one worker over its hand-off channel.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

/// A connection waiting in the primary: not yet sent, or given back.
pub struct Queued {
    pub fd: OwnedFd,
    /// The primary's number for it, so a refusal can be remembered.
    pub seq: u32,
    /// Workers that already refused it; it is never offered to them again.
    pub refused_by: Vec<u32>,
    /// When it was accepted (`CLOCK_MONOTONIC`, ns).
    pub accepted_ns: u64,
}

pub enum Accepted {
    Conn(OwnedFd),
    /// Nothing left in the backlog.
    Drained,
    /// Out of fds: stop accepting for a moment instead of spinning on a
    /// listener that stays readable.
    OutOfFds,
}

pub struct RoundRobin {
    pub listener: OwnedFd,
    pub queue: VecDeque<Queued>,
    /// Accepting is paused until then after EMFILE/ENFILE.
    pub paused_until: Option<Instant>,
    /// Connections accepted so far.
    pub accepted: u64,
    next: usize,
}

impl RoundRobin {
    /// Takes a bound, listening, non-blocking socket.
    pub fn new(listener: OwnedFd) -> RoundRobin {
        RoundRobin {
            listener,
            queue: VecDeque::new(),
            paused_until: None,
            accepted: 0,
            next: 0,
        }
    }

    /// The next worker in rotation that `eligible` accepts. Rotation is strict
    /// so shares stay even; a worker that is skipped (window full) keeps its
    /// place and is first in line once it has room.
    pub fn pick(&mut self, workers: &[u32], mut eligible: impl FnMut(u32) -> bool) -> Option<u32> {
        let n = workers.len();
        for i in 0..n {
            let idx = (self.next + i) % n;
            let w = workers[idx];
            if eligible(w) {
                self.next = (idx + 1) % n;
                return Some(w);
            }
        }
        None
    }

    pub fn accept(&mut self) -> io::Result<Accepted> {
        loop {
            match accept_cloexec(self.listener.as_raw_fd()) {
                Ok(fd) => {
                    self.accepted += 1;
                    return Ok(Accepted::Conn(fd));
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(Accepted::Drained),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => return Ok(Accepted::OutOfFds),
                    // The peer gave up between SYN and accept, or a signal: try the next one.
                    Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO | libc::EPERM) => continue,
                    _ => return Err(e),
                },
            }
        }
    }

    pub fn listener_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn accept_cloexec(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed (the peer's address is not wanted).
    let r = syscall!(accept4(
        fd,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        libc::SOCK_CLOEXEC
    ))?;
    // SAFETY: accept4 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn accept_cloexec(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed (the peer's address is not wanted).
    let r = syscall!(accept(fd, std::ptr::null_mut(), std::ptr::null_mut()))?;
    // SAFETY: accept returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(r) };
    crate::channel::set_cloexec(fd.as_raw_fd())?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr() -> RoundRobin {
        let fd = crate::sockets::bind_tcp(Some("127.0.0.1"), 0, 0).unwrap();
        RoundRobin::new(fd)
    }

    #[test]
    fn rotation_is_strict_and_skips_full_workers() {
        let mut r = rr();
        let ws = [1, 2, 3];
        let picks: Vec<_> = (0..6).map(|_| r.pick(&ws, |_| true).unwrap()).collect();
        assert_eq!(picks, vec![1, 2, 3, 1, 2, 3]);
        assert_eq!(r.pick(&ws, |w| w != 1), Some(2));
        assert_eq!(r.pick(&ws, |w| w == 1), Some(1));
        assert_eq!(r.pick(&ws, |_| false), None);
        assert_eq!(r.pick(&[], |_| true), None);
    }

    #[test]
    fn accept_on_an_idle_listener_is_drained() {
        let mut r = rr();
        crate::sockets::start_listening(r.listener.as_fd(), 0).unwrap();
        crate::sockets::prepare_accept(&r.listener).unwrap();
        assert!(matches!(r.accept().unwrap(), Accepted::Drained));
    }
}
