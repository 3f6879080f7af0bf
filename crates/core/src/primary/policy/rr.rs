//! SCHED_RR: strict rotation, as node:cluster's round-robin. A worker that is
//! skipped (no room) keeps its place and is first in line once it has room,
//! so shares stay even.

use super::{rotate, Candidate, Choice, Queued, Schedule};

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl Schedule for RoundRobin {
    fn choose(&mut self, _q: &Queued, cands: &[Candidate]) -> Choice {
        rotate(cands, &mut self.next, |_, _| false).map_or(Choice::Nobody, Choice::Worker)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{conn, workers};
    use super::*;

    #[test]
    fn rotation_is_strict_and_skips_full_workers() {
        let mut r = RoundRobin::default();
        let mut ws = workers(3);
        let q = conn(0);
        let picks: Vec<_> = (0..6).map(|_| r.choose(&q, &ws)).collect();
        let w = Choice::Worker;
        assert_eq!(picks, vec![w(100), w(101), w(102), w(100), w(101), w(102)]);
        ws[0].has_room = false;
        assert_eq!(r.choose(&q, &ws), w(101));
        ws[0].has_room = true;
        ws[2].has_room = false;
        assert_eq!(r.choose(&q, &ws), w(100), "the skipped one is next once it has room");
        ws.iter_mut().for_each(|c| c.has_room = false);
        assert_eq!(r.choose(&q, &ws), Choice::Nobody);
        assert_eq!(r.choose(&q, &[]), Choice::Nobody);
    }
}
