//! SCHED_STICKY: a client's connections to one worker, by a key (`KeySpec`:
//! its address, or a header, cookie or query parameter of its first request,
//! which `peek.rs` finds). A new key goes to a worker by rendezvous hashing
//! under a load bound, and stays there while that worker's slot serves.

use std::collections::{HashMap, VecDeque};

use super::{Candidate, Choice, Queued, Schedule};
use crate::primary::sticky::{mix, KeySpec};
use crate::tuning::{BALANCE_FACTOR, MAX_KEYS};

#[derive(Debug)]
pub struct Sticky {
    spec: KeySpec,
    table: Table,
}

impl Sticky {
    pub fn new(spec: KeySpec) -> Sticky {
        Sticky {
            spec,
            table: Table::default(),
        }
    }
}

impl Schedule for Sticky {
    fn choose(&mut self, q: &Queued, cands: &[Candidate]) -> Choice {
        match self.table.place(q.key, q.follows, cands) {
            Placed::Worker(w) => Choice::Worker(w),
            Placed::Wait => Choice::Wait,
            Placed::None => Choice::Nobody,
        }
    }

    fn wants_address(&self) -> bool {
        true
    }

    fn head_key(&self) -> Option<&KeySpec> {
        self.spec.needs_head().then_some(&self.spec)
    }

    fn keys(&self) -> usize {
        self.table.affinity.len()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Placed {
    Worker(u32),
    /// The key's worker lives but has no room now: keep the connection
    /// queued for it rather than break stickiness.
    Wait,
    None,
}

/// Keys to slots. A key seen before goes where it went, while that slot's
/// worker can serve; a new key goes to the slot that ranks it highest
/// (rendezvous hashing: adding a worker moves only the keys it now ranks
/// first, removing one moves only its own) among those under the load bound.
#[derive(Debug, Default)]
struct Table {
    affinity: HashMap<u64, u32>,
    /// Keys in order of first placement, for eviction past MAX_KEYS.
    order: VecDeque<u64>,
}

fn rank(key: u64, slot: u32) -> u64 {
    mix(key ^ (slot as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

impl Table {
    /// `cands` are the workers that serve this listener and may get new
    /// connections (a stalled or draining one is not among them). A key not
    /// seen before that `follows` another (a session id, and the client
    /// address its first requests came from) goes where that one goes: the
    /// worker that handed out the session is the one its client reached.
    fn place(&mut self, key: u64, follows: Option<u64>, cands: &[Candidate]) -> Placed {
        if let Some(&slot) = self.affinity.get(&key) {
            if let Some(c) = cands.iter().find(|c| c.slot == slot) {
                return if c.has_room { Placed::Worker(c.id) } else { Placed::Wait };
            }
        }
        let chosen = match follows.filter(|&f| f != key) {
            Some(origin) => {
                let placed = self.place(origin, None, cands);
                let slot = self.affinity.get(&origin).copied();
                if let Some(slot) = slot {
                    self.remember(key, slot);
                }
                return placed;
            }
            None => pick(key, cands),
        };
        let Some(c) = chosen else {
            return Placed::None;
        };
        self.remember(key, c.slot);
        if c.has_room {
            Placed::Worker(c.id)
        } else {
            Placed::Wait
        }
    }

    fn remember(&mut self, key: u64, slot: u32) {
        if self.affinity.insert(key, slot).is_none() {
            self.order.push_back(key);
            if self.order.len() > MAX_KEYS {
                if let Some(old) = self.order.pop_front() {
                    self.affinity.remove(&old);
                }
            }
        }
    }
}

/// Rendezvous choice under the load bound: every worker ranks the key, and
/// the best-ranked one below `BALANCE_FACTOR` times the average takes it.
fn pick(key: u64, cands: &[Candidate]) -> Option<Candidate> {
    if cands.is_empty() {
        return None;
    }
    let total: u64 = cands.iter().map(|c| c.load).sum();
    let bound = (BALANCE_FACTOR * (total + 1) as f64 / cands.len() as f64).ceil() as u64;
    let mut ranked: Vec<&Candidate> = cands.iter().collect();
    ranked.sort_by_key(|c| std::cmp::Reverse(rank(key, c.slot)));
    ranked.iter().find(|c| c.load < bound).or(ranked.first()).map(|c| **c)
}

#[cfg(test)]
mod tests {
    use super::super::workers;
    use super::*;

    /// Where 10,000 fresh keys land, no load counted.
    fn placement(cands: &[Candidate]) -> Vec<u32> {
        (0..10_000u64).map(|k| pick(mix(k), cands).unwrap().slot).collect()
    }

    #[test]
    fn replacing_a_worker_moves_no_other_workers_keys() {
        let before = placement(&workers(8));
        // Worker in slot 3 replaced: same slot, another id.
        let mut after_w = workers(8);
        after_w[3].id = 999;
        assert_eq!(
            placement(&after_w),
            before,
            "a slot keeps its keys across a replacement"
        );
        // Worker in slot 3 gone for good: only its keys move.
        let without: Vec<Candidate> = workers(8).into_iter().filter(|c| c.slot != 3).collect();
        let after = placement(&without);
        for (b, a) in before.iter().zip(&after) {
            if *b != 3 {
                assert_eq!(a, b, "a key of another worker moved");
            }
        }
    }

    #[test]
    fn adding_a_worker_moves_about_its_share_of_keys() {
        let before = placement(&workers(8));
        let after = placement(&workers(9));
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!(
            after.iter().zip(&before).all(|(a, b)| a == b || *a == 8),
            "keys only move to the new worker"
        );
        assert!(moved as f64 <= 10_000.0 * (1.0 / 8.0 + 0.02), "moved {moved}");
        // Each of 9 workers gets about a ninth.
        for slot in 0..9 {
            let n = after.iter().filter(|&&s| s == slot).count();
            assert!((900..1330).contains(&n), "slot {slot} has {n}");
        }
    }

    #[test]
    fn a_known_key_stays_and_a_full_worker_makes_it_wait() {
        let mut s = Table::default();
        let mut c = workers(4);
        let Placed::Worker(first) = s.place(42, None, &c) else {
            panic!()
        };
        c.iter_mut().filter(|w| w.id == first).for_each(|w| w.load = 50);
        assert_eq!(
            s.place(42, None, &c),
            Placed::Worker(first),
            "stickiness first, balance second"
        );
        c.iter_mut().filter(|w| w.id == first).for_each(|w| w.has_room = false);
        assert_eq!(s.place(42, None, &c), Placed::Wait);
        // Its worker stalled or gone: the key moves, and then stays there.
        let others: Vec<Candidate> = c.iter().copied().filter(|w| w.id != first).collect();
        let Placed::Worker(second) = s.place(42, None, &others) else {
            panic!()
        };
        assert_ne!(second, first);
        assert_eq!(s.place(42, None, &c), Placed::Worker(second));
    }

    #[test]
    fn new_keys_respect_the_load_bound() {
        let mut s = Table::default();
        let mut c = workers(4);
        for k in 0..4_000u64 {
            if let Placed::Worker(id) = s.place(mix(k), None, &c) {
                c.iter_mut().filter(|w| w.id == id).for_each(|w| w.load += 1);
            }
        }
        let avg = 1_000.0;
        for w in &c {
            assert!((w.load as f64) <= avg * BALANCE_FACTOR + 1.0, "{w:?}");
        }
        assert_eq!(s.affinity.len(), 4_000);
    }

    #[test]
    fn a_new_session_key_goes_where_its_clients_first_requests_went() {
        let mut s = Table::default();
        let c = workers(8);
        let address = 7;
        let Placed::Worker(first) = s.place(address, None, &c) else {
            panic!()
        };
        for session in 100..120 {
            assert_eq!(s.place(session, Some(address), &c), Placed::Worker(first));
            // And stays there, whatever its own hash says.
            assert_eq!(s.place(session, None, &c), Placed::Worker(first));
        }
    }

    #[test]
    fn old_keys_are_forgotten_past_the_limit() {
        let mut s = Table::default();
        let c = workers(2);
        for k in 0..(MAX_KEYS as u64 + 10) {
            s.place(k, None, &c);
        }
        assert_eq!(s.affinity.len(), MAX_KEYS);
    }
}
