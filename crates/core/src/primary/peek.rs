//! Sticky keys in the first request's head: a connection whose key is a
//! header, cookie or query parameter waits in the primary, unread, until its
//! head has arrived (`MSG_PEEK`: nothing is consumed, the worker reads it
//! all), then joins its listener's queue with its key.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::acceptor::Queued;
use super::sticky::{self, Head, KeySpec};
use crate::tuning::{MAX_PEEKING, PARTIAL_RECHECK, PEEK_WAIT};

/// A connection waiting for its head.
struct Peek {
    q: Queued,
    /// Past this, its address is its key.
    deadline: Instant,
    /// Some of the head is there, not all: looked at again shortly rather
    /// than polled (its unread bytes keep it readable).
    partial: bool,
}

#[derive(Default)]
pub struct Peeking {
    list: Vec<Peek>,
}

enum Peeked {
    Bytes(usize),
    Nothing,
    Closed,
}

impl Peeking {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Looks at a connection just accepted: most clients have sent their
    /// head by then. Returns it keyed, or keeps it to wait (past
    /// `MAX_PEEKING`, the one waiting longest is keyed by its address and
    /// joins `queue`).
    pub fn start(
        &mut self,
        spec: &KeySpec,
        q: Queued,
        buf: &mut [u8],
        now: Instant,
        queue: &mut VecDeque<Queued>,
    ) -> Option<Queued> {
        let mut p = Peek {
            q,
            deadline: now + PEEK_WAIT,
            partial: false,
        };
        if let Some(key) = decide(spec, &mut p, buf, now) {
            p.q.key = key;
            return Some(p.q);
        }
        if self.list.len() >= MAX_PEEKING {
            if let Some(i) = (0..self.list.len()).min_by_key(|&i| self.list[i].deadline) {
                queue.push_back(self.list.swap_remove(i).q);
            }
        }
        self.list.push(p);
        None
    }

    /// Looks again at those that became readable (`readable`: sorted fds),
    /// those with part of a head, and those out of time; each that is
    /// decided joins `queue` with its key.
    pub fn settle(
        &mut self,
        spec: &KeySpec,
        readable: &[i32],
        buf: &mut [u8],
        now: Instant,
        queue: &mut VecDeque<Queued>,
    ) {
        let mut i = 0;
        while i < self.list.len() {
            let p = &mut self.list[i];
            if !(p.partial || p.deadline <= now || readable.binary_search(&p.q.fd.as_raw_fd()).is_ok()) {
                i += 1;
                continue;
            }
            match decide(spec, p, buf, now) {
                Some(key) => {
                    let mut p = self.list.swap_remove(i);
                    p.q.key = key;
                    queue.push_back(p.q);
                }
                None => i += 1,
            }
        }
    }

    /// For the poll set: each connection's fd if it is to be polled, and
    /// when it must be looked at anyway.
    pub fn watch(&self, now: Instant) -> impl Iterator<Item = (Option<i32>, Instant)> + '_ {
        self.list.iter().map(move |p| {
            if p.partial {
                (None, now + PARTIAL_RECHECK)
            } else {
                (Some(p.q.fd.as_raw_fd()), p.deadline)
            }
        })
    }
}

/// The key of a connection waiting for its head, if it can be decided now.
fn decide(spec: &KeySpec, p: &mut Peek, buf: &mut [u8], now: Instant) -> Option<u64> {
    match peek(p.q.fd.as_raw_fd(), buf) {
        Peeked::Bytes(n) => match sticky::find_key(spec, &buf[..n]) {
            Head::Key(k) => {
                p.q.follows = spec.follows_address().then_some(p.q.key);
                Some(sticky::hash(k))
            }
            Head::NoKey => Some(p.q.key),
            Head::Partial if p.deadline <= now => Some(p.q.key),
            // Part of the head, still in time: looked at again shortly.
            Head::Partial => {
                p.partial = n > 0;
                None
            }
        },
        Peeked::Nothing if p.deadline > now => None,
        // Gone, failed, or silent too long: its address decides.
        Peeked::Nothing | Peeked::Closed => Some(p.q.key),
    }
}

/// The start of a connection's bytes, left in place.
fn peek(fd: i32, buf: &mut [u8]) -> Peeked {
    // SAFETY: `buf` is a live buffer of the length given.
    match syscall!(recv(
        fd,
        buf.as_mut_ptr().cast(),
        buf.len(),
        libc::MSG_PEEK | libc::MSG_DONTWAIT
    )) {
        Ok(0) => Peeked::Closed,
        Ok(n) => Peeked::Bytes(n as usize),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Peeked::Nothing,
        Err(_) => Peeked::Closed,
    }
}
