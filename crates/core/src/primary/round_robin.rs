//! A handle the primary accepts on (round-robin, least-connections or
//! sticky): every accepted connection goes to one worker over its hand-off
//! channel. This file holds the listener and what waits in the primary.

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
    /// Its sticky key's hash (the client's address until a peek finds better).
    pub key: u64,
    /// A session key's client address, which a new session follows
    /// (`schedule::Sticky::place`); not kept once the key is placed.
    pub follows: Option<u64>,
}

/// A connection whose sticky key is read from its first request, in place.
pub struct Peek {
    pub q: Queued,
    /// Past this, its address is its key.
    pub deadline: Instant,
    /// Some of the head is there, not all: looked at again shortly rather
    /// than polled (its unread bytes keep it readable).
    pub partial: bool,
}

pub enum Accepted {
    /// With the hash of the client's IP address, when asked for and it has one.
    Conn(OwnedFd, Option<u64>),
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
    pub next: usize,
    /// Where sticky keys go (sticky policy only).
    pub sticky: super::schedule::Sticky,
    /// Connections waiting for their first request's head (sticky by header,
    /// cookie or query).
    pub peeking: Vec<Peek>,
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
            sticky: Default::default(),
            peeking: Vec::new(),
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

    /// Accepts one connection; `want_addr`: also hash the client's address.
    pub fn accept(&mut self, want_addr: bool) -> io::Result<Accepted> {
        // SAFETY: sockaddr_storage is plain data; all-zero is valid.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        loop {
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let out = want_addr.then_some((&mut addr, &mut len));
            match accept_cloexec(self.listener.as_raw_fd(), out) {
                Ok(fd) => {
                    self.accepted += 1;
                    let key = if want_addr { address_key(&addr) } else { None };
                    return Ok(Accepted::Conn(fd, key));
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

/// The hash of a client's IP address (not its port); an IPv4 client on a
/// dual-stack socket hashes as IPv4. None for a unix socket.
fn address_key(addr: &libc::sockaddr_storage) -> Option<u64> {
    let ss = addr as *const libc::sockaddr_storage;
    match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(ss as *const libc::sockaddr_in) };
            Some(super::sticky::hash(&a.sin_addr.s_addr.to_ne_bytes()))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => super::sticky::hash(&v4.octets()),
                None => super::sticky::hash(&ip.octets()),
            })
        }
        _ => None,
    }
}

type AddrOut<'a> = Option<(&'a mut libc::sockaddr_storage, &'a mut libc::socklen_t)>;

fn addr_ptrs(out: AddrOut) -> (*mut libc::sockaddr, *mut libc::socklen_t) {
    match out {
        Some((a, l)) => ((a as *mut libc::sockaddr_storage).cast(), l),
        None => (std::ptr::null_mut(), std::ptr::null_mut()),
    }
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn accept_cloexec(fd: i32, addr: AddrOut) -> io::Result<OwnedFd> {
    let (a, l) = addr_ptrs(addr);
    // SAFETY: the address pointers are both null or point at a storage and
    // its length, alive for the call.
    let r = syscall!(accept4(fd, a, l, libc::SOCK_CLOEXEC))?;
    // SAFETY: accept4 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn accept_cloexec(fd: i32, addr: AddrOut) -> io::Result<OwnedFd> {
    let (a, l) = addr_ptrs(addr);
    // SAFETY: the address pointers are both null or point at a storage and
    // its length, alive for the call.
    let r = syscall!(accept(fd, a, l))?;
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
        assert!(matches!(r.accept(false).unwrap(), Accepted::Drained));
    }
}
