//! SCHED_LEAST: the worker with the fewest live connections (counted in the
//! pages the workers share with the primary); ties take turns.

use super::{rotate, Candidate, Choice, Queued, Schedule};

#[derive(Debug, Default)]
pub struct Least {
    next: usize,
}

impl Schedule for Least {
    fn choose(&mut self, _q: &Queued, cands: &[Candidate]) -> Choice {
        rotate(cands, &mut self.next, |c, best| c.load < best.load).map_or(Choice::Nobody, Choice::Worker)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{conn, workers};
    use super::*;

    #[test]
    fn least_picks_the_lightest_and_rotates_ties() {
        let mut l = Least::default();
        let mut c = workers(3);
        let q = conn(0);
        c[0].load = 5;
        c[1].load = 2;
        c[2].load = 2;
        assert_eq!(l.choose(&q, &c), Choice::Worker(101));
        assert_eq!(
            l.choose(&q, &c),
            Choice::Worker(102),
            "a tie goes to the next in rotation"
        );
        assert_eq!(l.choose(&q, &c), Choice::Worker(101));
        c[1].has_room = false;
        c[2].has_room = false;
        assert_eq!(l.choose(&q, &c), Choice::Worker(100), "only workers with room");
        c[0].has_room = false;
        assert_eq!(l.choose(&q, &c), Choice::Nobody);
    }
}
