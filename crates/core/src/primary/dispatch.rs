//! Handing out connections: for a listener the primary accepts on, first
//! what waits in its queue, then new connections from the kernel while some
//! worker has room; each goes where the listener's policy chooses, and each
//! worker's share of a round leaves in one `sendmmsg`. After a busy round the
//! listeners rest (`REST`), so the next round finds a batch.

use std::time::Instant;

use crate::handoff::{self, Batch};
use crate::tuning::{BUSY_ROUND, MAX_HEAD, REST};

use super::acceptor::{Accepted, Placing, Queued};
use super::group::Group;
use super::handles::{Handles, Kind};
use super::policy::{Candidate, Choice};
use super::rescue::{push_queued, Rescue};
use super::workers::Workers;

pub struct Dispatch {
    batch: Batch,
    /// Fds of connections sent in this round, closed together after it.
    sent_fds: Vec<i32>,
    /// Workers given connections in this round.
    touched: Vec<u32>,
    /// Candidates for a policy's choice, reused.
    cands: Vec<Candidate>,
    /// Where a connection's first bytes are peeked into.
    peek_buf: Vec<u8>,
    next_seq: u32,
    /// Connections handed out in this round.
    round_sent: usize,
    /// Whether the last round was followed by a rest.
    rested: bool,
    /// Until when listeners are left unread.
    rest_until: Option<Instant>,
    /// False once another primary took over the listeners: what waits here
    /// still goes out, nothing new is accepted.
    accepting: bool,
}

impl Dispatch {
    pub fn new() -> Dispatch {
        Dispatch {
            batch: Batch::default(),
            sent_fds: Vec::new(),
            touched: Vec::new(),
            cands: Vec::new(),
            peek_buf: vec![0; MAX_HEAD],
            next_seq: 0,
            round_sent: 0,
            rested: false,
            rest_until: None,
            accepting: true,
        }
    }

    pub fn accepting(&self) -> bool {
        self.accepting
    }

    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    pub fn peek_buf(&mut self) -> &mut [u8] {
        &mut self.peek_buf
    }

    /// Until when listeners rest, if they do now.
    pub fn resting(&self, now: Instant) -> Option<Instant> {
        self.rest_until.filter(|&t| t > now)
    }

    pub fn begin_round(&mut self) {
        self.round_sent = 0;
    }

    /// A round that handed out at least `BUSY_ROUND` connections, or any
    /// right after a rest, is followed by one. A round that ran while
    /// resting (commands, writes) changes nothing.
    pub fn end_round(&mut self, was_resting: bool) {
        if was_resting {
            return;
        }
        self.rested = self.round_sent >= BUSY_ROUND || (self.rested && self.round_sent > 0);
        if self.rested {
            self.rest_until = Some(Instant::now() + REST);
        }
    }

    /// Dispatches every listener that has connections waiting.
    pub fn queued(&mut self, window: usize, handles: &mut Handles, workers: &mut Workers, rescue: &mut Rescue) {
        let queued: Vec<(u32, bool)> = handles
            .map
            .values()
            .filter_map(|h| match &h.kind {
                Kind::Accepting(a) if a.has_queue() => Some((h.id, false)),
                Kind::Placed(g) if g.has_queue() => Some((h.id, true)),
                _ => None,
            })
            .collect();
        for (id, placed) in queued {
            if placed {
                self.group(id, None, window, handles, workers, rescue);
            } else {
                self.listener(id, window, handles, workers, rescue);
            }
        }
    }

    /// Hands out what group `id` rescued, then takes what waits in its
    /// left-out socket `member` (if given) while some other worker has room.
    pub fn group(
        &mut self,
        id: u32,
        member: Option<usize>,
        window: usize,
        handles: &mut Handles,
        workers: &mut Workers,
        rescue: &mut Rescue,
    ) {
        let Some(h) = handles.map.get_mut(&id) else {
            return;
        };
        let Kind::Placed(g) = &mut h.kind else {
            return;
        };
        let ids = &h.workers;
        let mut sent = 0;
        let mut give = |g: &mut Group, workers: &mut Workers, cands: &mut Vec<Candidate>, q: Queued| {
            workers.candidates(ids, &q, window, cands);
            cands.retain(|c| !g.is_left_out(c.id));
            match g.choose(&q, cands) {
                Choice::Worker(w) => {
                    sent += 1;
                    assign(workers, &mut self.touched, w, id, q);
                    true
                }
                Choice::Wait | Choice::Nobody => {
                    g.push_front(q);
                    false
                }
            }
        };
        while let Some(q) = g.pop() {
            if !give(g, workers, &mut self.cands, q) {
                break;
            }
        }
        let now = Instant::now();
        if let Some(i) = member.filter(|_| !g.has_queue() && g.may_rescue(now)) {
            let why = g.why(i, workers);
            while g.has_space() && workers.any_room(ids, window) {
                match g.rescue_one(i) {
                    Ok(Accepted::Conn(fd, _)) => {
                        rescue.count(why, 1);
                        let q = fresh(&mut self.next_seq, fd, None);
                        if !give(g, workers, &mut self.cands, q) {
                            break;
                        }
                    }
                    Ok(Accepted::Drained) => break,
                    Ok(Accepted::OutOfFds) | Err(_) => {
                        g.pause(Instant::now());
                        break;
                    }
                }
            }
        }
        self.round_sent += sent;
        self.flush(handles, workers, rescue);
    }

    /// Hands out listener `id`'s queued connections, then accepts new ones
    /// while some worker has room, and sends each worker its batch.
    pub fn listener(
        &mut self,
        id: u32,
        window: usize,
        handles: &mut Handles,
        workers: &mut Workers,
        rescue: &mut Rescue,
    ) {
        let Some(h) = handles.map.get_mut(&id) else {
            return;
        };
        let Kind::Accepting(acceptor) = &mut h.kind else {
            return;
        };
        let ids = &h.workers;
        let (cands, touched) = (&mut self.cands, &mut self.touched);
        let mut sent = 0;
        let mut assign = |workers: &mut Workers, w: u32, q: Queued| {
            sent += 1;
            assign(workers, touched, w, id, q);
        };
        acceptor.drain_queue(|policy, q| {
            // Every worker refused it: closed, rather than passed around forever.
            if ids.iter().all(|w| q.refused_by.contains(w)) {
                rescue.forget(q.seq);
                return Placing::Done;
            }
            workers.candidates(ids, &q, window, cands);
            match policy.choose(&q, cands) {
                Choice::Worker(w) => {
                    assign(workers, w, q);
                    Placing::Done
                }
                Choice::Wait => Placing::Wait(q),
                Choice::Nobody => Placing::Stop(q),
            }
        });
        let now = Instant::now();
        // Accepted to wait for their head: busy all the same, so the round
        // that hands them out comes after a rest.
        let mut peeked = 0;
        if self.accepting && acceptor.may_accept(now) {
            while acceptor.has_space() && workers.any_room(ids, window) {
                match acceptor.accept() {
                    Ok(Accepted::Conn(fd, addr_key)) => {
                        let q = fresh(&mut self.next_seq, fd, addr_key);
                        let Some(q) = acceptor.key_by_head(q, &mut self.peek_buf, Instant::now()) else {
                            peeked += 1;
                            continue;
                        };
                        workers.candidates(ids, &q, window, cands);
                        match acceptor.choose(&q, cands) {
                            Choice::Worker(w) => assign(workers, w, q),
                            Choice::Wait | Choice::Nobody => acceptor.push(q),
                        }
                    }
                    Ok(Accepted::Drained) => break,
                    // Out of fds, or the listener itself failed (closed under
                    // us): pause rather than spin.
                    Ok(Accepted::OutOfFds) | Err(_) => {
                        acceptor.pause(Instant::now());
                        break;
                    }
                }
            }
        }
        self.round_sent += sent + peeked;
        self.flush(handles, workers, rescue);
    }

    /// Sends each touched worker its batch; what a full socket did not take
    /// goes back on its listener's queue.
    fn flush(&mut self, handles: &mut Handles, workers: &mut Workers, rescue: &mut Rescue) {
        let now = Instant::now();
        for w in std::mem::take(&mut self.touched) {
            let Some(link) = workers.get_mut(w) else {
                continue;
            };
            let (unsent, failed) = link.flush_batch(&mut self.batch, &mut self.sent_fds, now);
            for (handle, q) in unsent {
                push_queued(handles, handle, q);
            }
            if let Some(e) = failed {
                rescue.write_failed(w, e, workers, handles);
            }
        }
        handoff::close_all(&mut self.sent_fds);
    }
}

/// A connection just accepted, numbered from `seq`. Its key is its client's
/// address when it has one (sticky by ip); else any worker will do.
fn fresh(seq: &mut u32, fd: std::os::fd::OwnedFd, addr_key: Option<u64>) -> Queued {
    *seq = seq.wrapping_add(1);
    Queued {
        fd,
        seq: *seq,
        refused_by: Vec::new(),
        accepted_ns: crate::page::monotonic_ns(),
        key: addr_key.unwrap_or_else(|| super::sticky::mix(u64::from(*seq))),
        follows: None,
    }
}

/// Assigns `q` of listener `handle` to worker `w`, sent with the round's batch.
fn assign(workers: &mut Workers, touched: &mut Vec<u32>, w: u32, handle: u32, q: Queued) {
    workers.get_mut(w).expect("chosen workers have links").assign(handle, q);
    if !touched.contains(&w) {
        touched.push(w);
    }
}
