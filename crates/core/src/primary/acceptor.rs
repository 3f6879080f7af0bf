//! A listener the primary accepts on (every policy but SCHED_NONE): each
//! accepted connection goes to the worker its policy chooses, over that
//! worker's hand-off channel. This file holds the listening socket, its
//! policy, and what waits in the primary.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use super::peek::Peeking;
use super::policy::{Candidate, Choice, Schedule};
use crate::tuning::{FD_PAUSE, MAX_WAITING};

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
    /// (`policy/sticky.rs`); not kept once the key is placed.
    pub follows: Option<u64>,
}

#[cfg(test)]
impl Queued {
    pub fn for_test(key: u64) -> Queued {
        Queued {
            fd: std::fs::File::open("/dev/null").unwrap().into(),
            seq: 0,
            refused_by: Vec::new(),
            accepted_ns: 0,
            key,
            follows: None,
        }
    }
}

/// What became of a queued connection offered to the workers.
pub enum Placing {
    Done,
    /// Its own worker has no room: it waits, keeping its place.
    Wait(Queued),
    /// Nobody can take it now: it and those behind it stay queued.
    Stop(Queued),
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

pub struct Acceptor {
    listener: OwnedFd,
    /// Accepted or given back, waiting for a worker with room.
    queue: VecDeque<Queued>,
    /// Accepting is paused until then after EMFILE/ENFILE.
    paused_until: Option<Instant>,
    /// Connections accepted so far.
    accepted: u64,
    policy: Box<dyn Schedule>,
    /// Connections waiting for their first request's head (a sticky key in it).
    peeking: Peeking,
}

impl Acceptor {
    /// Takes a bound, listening, non-blocking socket.
    pub fn new(listener: OwnedFd, policy: Box<dyn Schedule>) -> Acceptor {
        Acceptor {
            listener,
            queue: VecDeque::new(),
            paused_until: None,
            accepted: 0,
            policy,
            peeking: Peeking::default(),
        }
    }

    /// The worker for `q` among `cands` (see `Schedule::choose`).
    pub fn choose(&mut self, q: &Queued, cands: &[Candidate]) -> Choice {
        self.policy.choose(q, cands)
    }

    /// Accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Waiting in the primary: for a worker's room, or a request head.
    pub fn waiting(&self) -> usize {
        self.queue.len() + self.peeking.len()
    }

    /// Sticky keys its policy remembers.
    pub fn keys(&self) -> usize {
        self.policy.keys()
    }

    pub fn has_queue(&self) -> bool {
        !self.queue.is_empty()
    }

    pub fn push(&mut self, q: Queued) {
        self.queue.push_back(q);
    }

    /// Hands each queued connection to `place`, in order, until it returns
    /// one (nobody can take it now), which keeps its place at the front.
    /// `place` may also keep one aside (waiting for its own worker): those
    /// go back to the front afterwards, in order.
    pub fn drain_queue(&mut self, mut place: impl FnMut(&mut dyn Schedule, Queued) -> Placing) {
        let mut waiting = VecDeque::new();
        while let Some(q) = self.queue.pop_front() {
            match place(self.policy.as_mut(), q) {
                Placing::Done => {}
                Placing::Wait(q) => waiting.push_back(q),
                Placing::Stop(q) => {
                    self.queue.push_front(q);
                    break;
                }
            }
        }
        while let Some(q) = waiting.pop_back() {
            self.queue.push_front(q);
        }
    }

    /// Whether accepting is allowed now (not paused after running out of fds).
    pub fn may_accept(&mut self, now: Instant) -> bool {
        if self.paused_until.is_some_and(|t| t > now) {
            return false;
        }
        self.paused_until = None;
        true
    }

    /// Whether it may hold more: past `MAX_WAITING` the kernel's backlog
    /// holds the rest.
    pub fn has_space(&self) -> bool {
        self.queue.len() < MAX_WAITING
    }

    /// Out of fds, or the listener failed: stop a moment rather than spin.
    pub fn pause(&mut self, now: Instant) {
        self.paused_until = Some(now + FD_PAUSE);
    }

    /// Until when accepting is paused, if it is.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|&t| t > now)
    }

    pub fn peeking(&self) -> &Peeking {
        &self.peeking
    }

    /// A connection just accepted: keyed at once if its policy looks for
    /// nothing in its head or the head is there; else it waits for its
    /// head, and None is returned.
    pub fn key_by_head(&mut self, q: Queued, buf: &mut [u8], now: Instant) -> Option<Queued> {
        match self.policy.head_key() {
            None => Some(q),
            Some(spec) => self.peeking.start(spec, q, buf, now, &mut self.queue),
        }
    }

    /// Connections waiting for their head that can be keyed now join the
    /// queue (`readable`: sorted fds that polled readable).
    pub fn settle_peeks(&mut self, readable: &[i32], buf: &mut [u8], now: Instant) {
        if let Some(spec) = self.policy.head_key() {
            self.peeking.settle(spec, readable, buf, now, &mut self.queue);
        }
    }

    /// Accepts one connection, with its address's hash if the policy wants it.
    pub fn accept(&mut self) -> io::Result<Accepted> {
        let got = accept_from(self.listener.as_raw_fd(), self.policy.wants_address())?;
        if matches!(got, Accepted::Conn(..)) {
            self.accepted += 1;
        }
        Ok(got)
    }

    pub fn listener_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

/// Accepts one connection on listening socket `fd`; `want_addr`: with the
/// hash of the client's address.
pub fn accept_from(fd: i32, want_addr: bool) -> io::Result<Accepted> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    loop {
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let out = want_addr.then_some((&mut addr, &mut len));
        match accept_cloexec(fd, out) {
            Ok(fd) => {
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

    fn acceptor() -> Acceptor {
        let fd = crate::sockets::bind_tcp(Some("127.0.0.1"), 0, 0).unwrap();
        let policy = super::super::policy::Policy::RoundRobin.build().unwrap();
        Acceptor::new(fd, policy)
    }

    #[test]
    fn accept_on_an_idle_listener_is_drained() {
        let mut r = acceptor();
        crate::sockets::start_listening(r.listener.as_fd(), 0).unwrap();
        crate::sockets::prepare_accept(&r.listener).unwrap();
        assert!(matches!(r.accept().unwrap(), Accepted::Drained));
    }
}
