//! The primary's workers, by id: each one's `Link`, and the questions asked
//! of them all (who has room, who may take a listener's next connection).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::channel::Channel;
use crate::error::{Context, Error};

use super::acceptor::Queued;
use super::link::Link;
use super::policy::Candidate;

#[derive(Default)]
pub struct Workers {
    links: HashMap<u32, Link>,
}

impl Workers {
    /// Starts talking to a new worker over `fd`, in the lowest free slot: a
    /// worker respawned after one that died takes its place, and with it its
    /// sticky keys.
    pub fn add(&mut self, id: u32, fd: OwnedFd, now: Instant) -> Result<(), Error> {
        let slot = (0..)
            .find(|s| !self.links.values().any(|l| l.slot() == *s))
            .expect("fewer workers than slots");
        let chan = Channel::new(fd).during("fcntl")?;
        self.links.insert(id, Link::new(chan, slot, now)?);
        Ok(())
    }

    pub fn remove(&mut self, id: u32) -> Option<Link> {
        self.links.remove(&id)
    }

    pub fn get(&self, id: u32) -> Option<&Link> {
        self.links.get(&id)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Link> {
        self.links.get_mut(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Link)> {
        self.links.iter().map(|(&id, l)| (id, l))
    }

    /// Ids in order, for stable reports.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.links.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Reads every worker's page once per round.
    pub fn observe(&mut self, now: Instant) {
        for link in self.links.values_mut() {
            link.observe(now);
        }
    }

    pub fn any_room(&self, ids: &[u32], window: usize) -> bool {
        ids.iter()
            .any(|w| self.links.get(w).is_some_and(|l| l.has_room(window)))
    }

    /// Into `out`: the workers of `ids` that may get `q`: placeable, and
    /// not among those that refused it.
    pub fn candidates(&self, ids: &[u32], q: &Queued, window: usize, out: &mut Vec<Candidate>) {
        out.clear();
        out.extend(ids.iter().filter(|w| !q.refused_by.contains(w)).filter_map(|&w| {
            let l = self.links.get(&w).filter(|l| l.placeable())?;
            Some(Candidate {
                id: w,
                slot: l.slot(),
                load: l.load(),
                has_room: l.has_room(window),
            })
        }));
    }

    /// Worker `to` takes worker `from`'s slot, so its sticky keys; `from`
    /// (about to drain) gets `to`'s.
    pub fn swap_slots(&mut self, from: u32, to: u32) {
        let (Some(a), Some(b)) = (self.get(from).map(Link::slot), self.get(to).map(Link::slot)) else {
            return;
        };
        for (id, slot) in [(from, b), (to, a)] {
            if let Some(l) = self.links.get_mut(&id) {
                l.set_slot(slot);
            }
        }
    }
}
