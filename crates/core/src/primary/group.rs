//! A listener the kernel places connections on (placement `kernel`): a
//! reuseport group, one listening socket per worker bound to the same
//! address, steered by a program (`steer.rs`) that gives each new connection
//! to one of the workers that may take work. Each worker accepts on its own
//! socket through libuv, as under SCHED_NONE: nothing of rs-cluster runs per
//! connection. The primary holds every socket, so it keeps the guarantees:
//! a worker that died, drains or stalls is left out of the program at once,
//! and what already waits in its socket's queue the primary accepts and
//! hands to another worker (`dispatch.rs`), as it does for its own listeners.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use crate::protocol::Query;
use crate::sockets;
use crate::tuning::{FD_PAUSE, MAX_WAITING, STALL};

use super::acceptor::{accept_from, Accepted, Queued};
use super::policy::{Candidate, Choice, Schedule};
use super::rescue::Why;
use super::steer;
use super::workers::Workers;

/// One socket of the group, and the worker that accepts on it.
struct Member {
    fd: OwnedFd,
    worker: Option<u32>,
    /// Its worker's loop stood still, or it accepted nothing, with
    /// connections waiting: the loop turn (by the page) it was left out at.
    stalled_at_turn: Option<u64>,
    /// The worker's count of connections it accepted itself, as last seen,
    /// and since when its queue has waited with that count unchanged.
    placed: u64,
    waiting_since: Option<Instant>,
}

pub struct Group {
    members: Vec<Member>,
    /// Where the others bind: the first socket's address.
    addr: SocketAddr,
    flags: u32,
    backlog: i32,
    /// The sockets that may get new connections, by group index; the rest
    /// are left out, and the primary empties their queues.
    open: Vec<u32>,
    /// The `open` the attached program was made for (None before the
    /// first attach, or while attaching fails: retried each watch).
    steered: Option<Vec<u32>>,
    /// Taken from left-out sockets, waiting for a worker with room.
    queue: VecDeque<Queued>,
    /// Which worker a rescued connection goes to.
    policy: Box<dyn Schedule>,
    /// Connections the primary took from left-out sockets.
    rescued: u64,
    paused_until: Option<Instant>,
}

impl Group {
    /// Binds the group's first socket for `q` (not yet given to a worker).
    pub fn bind(q: &Query, policy: Box<dyn Schedule>) -> io::Result<Group> {
        let fd = sockets::bind_tcp_group(q.address.as_deref(), q.port, q.flags)?;
        let addr = sockets::local_addr(fd.as_fd())?;
        sockets::start_listening(fd.as_fd(), q.backlog)?;
        sockets::prepare_accept(&fd)?;
        let mut g = Group {
            members: Vec::new(),
            addr,
            flags: q.flags,
            backlog: q.backlog,
            open: Vec::new(),
            steered: None,
            queue: VecDeque::new(),
            policy,
            rescued: 0,
            paused_until: None,
        };
        g.members.push(Member::new(fd));
        // Nobody may take work yet: whatever arrives waits for the first worker.
        g.steer_to(Vec::new()).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOPROTOOPT | libc::EINVAL | libc::EOPNOTSUPP) => io::Error::from(io::ErrorKind::Unsupported),
            _ => e,
        })?;
        Ok(g)
    }

    /// The first socket: its name is the listener's.
    pub fn first_fd(&self) -> BorrowedFd<'_> {
        self.members[0].fd.as_fd()
    }

    /// A socket for `worker`: a free one of the group, or a new member. The
    /// caller sends the worker a duplicate.
    pub fn join(&mut self, worker: u32) -> io::Result<BorrowedFd<'_>> {
        let i = match self.members.iter().position(|m| m.worker.is_none()) {
            Some(i) => i,
            None => {
                let fd = sockets::join_tcp_group(self.addr, self.flags)?;
                sockets::start_listening(fd.as_fd(), self.backlog)?;
                sockets::prepare_accept(&fd)?;
                self.members.push(Member::new(fd));
                self.members.len() - 1
            }
        };
        let m = &mut self.members[i];
        m.worker = Some(worker);
        m.stalled_at_turn = None;
        m.waiting_since = None;
        Ok(m.fd.as_fd())
    }

    /// `worker` no longer accepts here (it closed its server, drains or
    /// died): its socket is free, left out, and its queue rescued.
    pub fn leave(&mut self, worker: u32) {
        for m in self.members.iter_mut().filter(|m| m.worker == Some(worker)) {
            m.worker = None;
        }
    }

    /// Leaves out of the program every socket whose worker may not take
    /// work: gone, not routing, or stalled (a loop that stood still, or a
    /// queue that waited `STALL` with nothing accepted). A stalled one is
    /// back once its loop turns again.
    pub fn watch(&mut self, workers: &Workers, now: Instant) -> io::Result<()> {
        let mut open = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            let Some(link) = m.worker.and_then(|w| workers.get(w)) else {
                continue;
            };
            if !link.routing() || !link.greeted() {
                continue;
            }
            let page = link.page();
            if m.stalled_at_turn.is_some_and(|t| t != page.turn_ns()) {
                m.stalled_at_turn = None;
                m.waiting_since = None;
            }
            let placed = page.placed_count();
            if placed != m.placed {
                m.placed = placed;
                m.waiting_since = None;
            }
            if m.stalled_at_turn.is_none() {
                let waiting = stats_queue(m.fd.as_fd()) > 0;
                m.waiting_since = if waiting { m.waiting_since.or(Some(now)) } else { None };
                if m.waiting_since.is_some_and(|t| now.duration_since(t) >= STALL) {
                    m.stalled_at_turn = Some(page.turn_ns());
                }
            }
            if m.stalled_at_turn.is_none() {
                open.push(i as u32);
            }
        }
        self.steer_to(open)
    }

    fn steer_to(&mut self, open: Vec<u32>) -> io::Result<()> {
        self.open = open;
        if self.steered.as_ref() == Some(&self.open) {
            return Ok(());
        }
        self.steered = None;
        sockets::steer_group(self.first_fd(), &steer::program(&self.open))?;
        self.steered = Some(self.open.clone());
        Ok(())
    }

    /// Sockets whose queue the primary empties: those left out.
    pub fn left_out(&self) -> impl Iterator<Item = (usize, BorrowedFd<'_>)> {
        self.members
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.open.contains(&(*i as u32)))
            .map(|(i, m)| (i, m.fd.as_fd()))
    }

    /// Whether `worker`'s socket is left out: rescued connections avoid it.
    pub fn is_left_out(&self, worker: u32) -> bool {
        self.members
            .iter()
            .enumerate()
            .any(|(i, m)| m.worker == Some(worker) && !self.open.contains(&(i as u32)))
    }

    /// Why member `i`'s socket is left out: its worker is gone, drains, or stalled.
    pub fn why(&self, i: usize, workers: &Workers) -> Why {
        match self.members[i].worker.and_then(|w| workers.get(w)) {
            None => Why::Died,
            Some(link) if !link.routing() => Why::Draining,
            Some(_) => Why::Stalled,
        }
    }

    /// Accepts one connection waiting on member `i`'s socket.
    pub fn rescue_one(&mut self, i: usize) -> io::Result<Accepted> {
        let got = accept_from(self.members[i].fd.as_raw_fd(), false)?;
        if matches!(got, Accepted::Conn(..)) {
            self.rescued += 1;
        }
        Ok(got)
    }

    pub fn choose(&mut self, q: &Queued, cands: &[Candidate]) -> Choice {
        self.policy.choose(q, cands)
    }

    pub fn push(&mut self, q: Queued) {
        self.queue.push_back(q);
    }

    pub fn pop(&mut self) -> Option<Queued> {
        self.queue.pop_front()
    }

    pub fn push_front(&mut self, q: Queued) {
        self.queue.push_front(q);
    }

    pub fn has_queue(&self) -> bool {
        !self.queue.is_empty()
    }

    pub fn has_space(&self) -> bool {
        self.queue.len() < MAX_WAITING
    }

    pub fn may_rescue(&mut self, now: Instant) -> bool {
        if self.paused_until.is_some_and(|t| t > now) {
            return false;
        }
        self.paused_until = None;
        true
    }

    pub fn pause(&mut self, now: Instant) {
        self.paused_until = Some(now + FD_PAUSE);
    }

    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|&t| t > now)
    }

    /// Rescued so far.
    pub fn rescued(&self) -> u64 {
        self.rescued
    }

    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Every socket's accept queue, summed: (waiting, limit).
    pub fn accept_queue(&self) -> Option<(u32, u32)> {
        self.members
            .iter()
            .map(|m| super::stats::accept_queue(m.fd.as_fd()))
            .try_fold((0, 0), |(w, l), q| q.map(|(a, b)| (w + a, l + b)))
    }
}

impl Member {
    fn new(fd: OwnedFd) -> Member {
        Member {
            fd,
            worker: None,
            stalled_at_turn: None,
            placed: 0,
            waiting_since: None,
        }
    }
}

/// Connections waiting in a listening socket's accept queue.
fn stats_queue(fd: BorrowedFd) -> u32 {
    super::stats::accept_queue(fd).map_or(0, |q| q.0)
}
