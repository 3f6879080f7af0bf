//! Scheduling policies: which worker gets a connection the primary accepted.
//! Each policy is one file holding only its own state, behind `Schedule`;
//! `POLICIES` is the one table of their numbers and names, which the binding
//! hands to JavaScript (cluster.SCHED_*, NODE_CLUSTER_SCHED_POLICY, the
//! command's `--policy`). This file is the only place that matches on
//! `Policy`.

mod least;
mod random;
mod rr;
mod sticky;

use super::acceptor::Queued;
use super::sticky::KeySpec;

/// A worker that may take connections of a listener, as a policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: u32,
    /// The worker's place for sticky keys: a replacement inherits it.
    pub slot: u32,
    /// Its live connections, plus those sent or assigned and not yet read.
    pub load: u64,
    /// It can take one now (else a sticky key waits for it).
    pub has_room: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    Worker(u32),
    /// The connection's own worker has no room now: it waits for it.
    Wait,
    /// Nobody can take it now.
    Nobody,
}

/// One listener's scheduling policy and its state.
pub trait Schedule: Send {
    /// The worker for `q` among `cands`: the listener's workers, in the
    /// order they joined, that may get new connections and have not refused
    /// this one.
    fn choose(&mut self, q: &Queued, cands: &[Candidate]) -> Choice;

    /// Whether it needs the client's address at accept (a sticky key).
    fn wants_address(&self) -> bool {
        false
    }

    /// The key to look for in the first request's head, if any.
    fn head_key(&self) -> Option<&KeySpec> {
        None
    }

    /// Sticky keys it remembers.
    fn keys(&self) -> usize {
        0
    }
}

/// A policy as configured: Node's two and rs-cluster's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// SCHED_NONE: the kernel spreads connections over the workers.
    None,
    /// SCHED_RR: strict rotation.
    RoundRobin,
    /// SCHED_LEAST: the fewest live connections.
    Least,
    /// SCHED_STICKY: a client's connections to one worker, by `KeySpec`.
    Sticky(KeySpec),
    /// SCHED_RANDOM: the less loaded of two workers drawn at random.
    Random,
}

/// A policy's numbers and names, for JavaScript and the stats.
#[derive(Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Its word for NODE_CLUSTER_SCHED_POLICY, `--policy` and the stats.
    pub name: &'static str,
    /// Its `cluster.SCHED_*` value: Node's for none and rr; rs-cluster's
    /// own far from Node's, so a future Node constant cannot collide.
    pub sched: u32,
    /// The `cluster` property holding `sched`.
    pub constant: &'static str,
    /// Whether the primary accepts (every policy but the kernel's).
    pub primary_accepts: bool,
    /// Whether a busy worker's unread connections go to a free one
    /// (`busy.rs`): only where load is what the policy weighs.
    pub takes_back_busy: bool,
    /// Whether the kernel can place its connections (`group.rs`): it needs
    /// nothing the kernel cannot see at the SYN, and no count it cannot read.
    pub kernel_places: bool,
}

/// `info(name, sched, constant, [primary_accepts, takes_back_busy, kernel_places])`.
const fn info(name: &'static str, sched: u32, constant: &'static str, flags: [bool; 3]) -> PolicyInfo {
    let [primary_accepts, takes_back_busy, kernel_places] = flags;
    PolicyInfo {
        name,
        sched,
        constant,
        primary_accepts,
        takes_back_busy,
        kernel_places,
    }
}

pub const POLICIES: [PolicyInfo; 5] = [
    info("none", 1, "SCHED_NONE", [false, false, false]),
    info("rr", 2, "SCHED_RR", [true, false, true]),
    info("least", 101, "SCHED_LEAST", [true, true, false]),
    info("sticky", 102, "SCHED_STICKY", [true, false, false]),
    info("random", 103, "SCHED_RANDOM", [true, true, false]),
];

impl Policy {
    /// The policy numbered `sched` (`sticky` keys SCHED_STICKY), or None.
    pub fn from_sched(sched: u32, sticky: KeySpec) -> Option<Policy> {
        Some(match POLICIES.iter().find(|p| p.sched == sched)?.name {
            "none" => Policy::None,
            "rr" => Policy::RoundRobin,
            "least" => Policy::Least,
            "sticky" => Policy::Sticky(sticky),
            "random" => Policy::Random,
            _ => return None,
        })
    }

    pub fn info(&self) -> &'static PolicyInfo {
        let name = match self {
            Policy::None => "none",
            Policy::RoundRobin => "rr",
            Policy::Least => "least",
            Policy::Sticky(_) => "sticky",
            Policy::Random => "random",
        };
        POLICIES
            .iter()
            .find(|p| p.name == name)
            .expect("every policy is in the table")
    }

    /// A listener's own instance, None where the kernel decides.
    pub fn build(&self) -> Option<Box<dyn Schedule>> {
        Some(match self {
            Policy::None => return None,
            Policy::RoundRobin => Box::new(rr::RoundRobin::default()),
            Policy::Least => Box::new(least::Least::default()),
            Policy::Sticky(spec) => Box::new(sticky::Sticky::new(spec.clone())),
            Policy::Random => Box::new(random::Random::new()),
        })
    }
}

/// The next candidate with room at or after `*next` in rotation, which then
/// moves past it: rr's order, and the tie-break of the others.
fn rotate(cands: &[Candidate], next: &mut usize, better: impl Fn(&Candidate, &Candidate) -> bool) -> Option<u32> {
    let n = cands.len();
    let mut best: Option<usize> = None;
    for i in 0..n {
        let idx = (*next + i) % n;
        let c = &cands[idx];
        if c.has_room && best.is_none_or(|b| better(c, &cands[b])) {
            best = Some(idx);
        }
    }
    let idx = best?;
    *next = (idx + 1) % n;
    Some(cands[idx].id)
}

#[cfg(test)]
fn workers(n: u32) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            id: 100 + i,
            slot: i,
            load: 0,
            has_room: true,
        })
        .collect()
}

#[cfg(test)]
fn conn(key: u64) -> Queued {
    Queued::for_test(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_round_trips_and_has_no_duplicates() {
        for p in [
            Policy::None,
            Policy::RoundRobin,
            Policy::Least,
            Policy::Sticky(KeySpec::Ip),
            Policy::Random,
        ] {
            let info = p.info();
            assert_eq!(Policy::from_sched(info.sched, KeySpec::Ip), Some(p.clone()));
            assert_eq!(p.build().is_some(), info.primary_accepts, "{}", info.name);
            assert_eq!(info.constant, format!("SCHED_{}", info.name.to_uppercase()));
        }
        for (i, a) in POLICIES.iter().enumerate() {
            for b in &POLICIES[i + 1..] {
                assert!(a.name != b.name && a.sched != b.sched);
            }
        }
        assert_eq!(Policy::from_sched(0, KeySpec::Ip), None);
    }
}
