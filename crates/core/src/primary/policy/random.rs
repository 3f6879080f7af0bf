//! SCHED_RANDOM: two workers drawn at random, the one with fewer live
//! connections gets the connection (nginx's `random two least_conn`): nearly
//! as even as `least` without every connection going to the one worker that
//! looks lightest while its count lags behind.

use super::{Candidate, Choice, Queued, Schedule};
use crate::primary::sticky::mix;

#[derive(Debug)]
pub struct Random {
    /// A splitmix64 counter: plenty for spreading load, no crate needed.
    state: u64,
}

impl Random {
    pub fn new() -> Random {
        let seed = crate::page::monotonic_ns() ^ u64::from(std::process::id()).rotate_left(32);
        Random::seeded(seed)
    }

    fn seeded(seed: u64) -> Random {
        Random { state: seed }
    }

    /// A number below `n` (> 0).
    fn below(&mut self, n: usize) -> usize {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        ((u128::from(mix(self.state)) * n as u128) >> 64) as usize
    }
}

impl Schedule for Random {
    fn choose(&mut self, _q: &Queued, cands: &[Candidate]) -> Choice {
        let room = cands.iter().filter(|c| c.has_room).count();
        let nth = |i: usize| cands.iter().filter(|c| c.has_room).nth(i).expect("i < room");
        let pick = match room {
            0 => return Choice::Nobody,
            1 => nth(0),
            _ => {
                let a = self.below(room);
                // A second, different one: uniform among the others.
                let b = (a + 1 + self.below(room - 1)) % room;
                let (a, b) = (nth(a), nth(b));
                if b.load < a.load {
                    b
                } else {
                    a
                }
            }
        };
        Choice::Worker(pick.id)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{conn, workers};
    use super::*;

    fn counts(r: &mut Random, c: &[Candidate], n: usize) -> Vec<usize> {
        let mut got = vec![0; c.len()];
        for _ in 0..n {
            if let Choice::Worker(id) = r.choose(&conn(0), c) {
                got[(id - 100) as usize] += 1;
            }
        }
        got
    }

    #[test]
    fn equal_workers_share_evenly() {
        let mut r = Random::seeded(1);
        let got = counts(&mut r, &workers(4), 40_000);
        for n in got {
            assert!((9_000..11_000).contains(&n), "{n}");
        }
    }

    #[test]
    fn the_lighter_of_two_wins_so_the_heaviest_gets_nothing() {
        let mut r = Random::seeded(2);
        let mut c = workers(3);
        c[0].load = 9;
        c[1].load = 1;
        c[2].load = 5;
        let got = counts(&mut r, &c, 3_000);
        assert_eq!(got[0], 0, "the heaviest loses every draw it is in");
        // The lightest wins every draw it is in: two of three pairs.
        assert!((1_800..2_200).contains(&got[1]), "{got:?}");
    }

    #[test]
    fn only_workers_with_room_are_drawn() {
        let mut r = Random::seeded(3);
        let mut c = workers(3);
        c[1].has_room = false;
        let got = counts(&mut r, &c, 1_000);
        assert_eq!(got[1], 0);
        c[0].has_room = false;
        assert_eq!(counts(&mut r, &c, 100)[2], 100, "one left: always it");
        c[2].has_room = false;
        assert_eq!(r.choose(&conn(0), &c), Choice::Nobody);
    }
}
