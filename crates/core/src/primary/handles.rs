//! The primary's table of server handles, keyed like Node's
//! (`address:port:addressType:fd:index`): created on the first query for a
//! key, closed when its last worker leaves.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::protocol::{Family, Query, SockName};
use crate::sockets;

use super::acceptor::Acceptor;
use super::group::Group;
use super::inherited::Inherited;
use super::policy::Policy;
use super::shared::Shared;
use super::Placement;

pub enum Kind {
    /// The primary accepts and its policy places each connection.
    Accepting(Acceptor),
    /// Every worker accepts on a copy (SCHED_NONE, and UDP always).
    Shared(Shared),
    /// Each worker accepts on its own socket of a group the kernel places
    /// connections in, steered by the primary.
    Placed(Group),
}

impl Kind {
    /// "primary", "kernel" (a steered group) or "shared" (one socket).
    pub fn placement(&self) -> &'static str {
        match self {
            Kind::Accepting(_) => "primary",
            Kind::Placed(_) => "kernel",
            Kind::Shared(_) => "shared",
        }
    }
}

pub struct Handle {
    pub id: u32,
    key: String,
    pub kind: Kind,
    pub workers: Vec<u32>,
    pub data: serde_json::Value,
    pub sockname: Option<SockName>,
    /// A unix socket file this handle created, removed when it closes (as
    /// libuv does for a pipe server it bound).
    unlink: Option<PathBuf>,
    /// For `listen({ fd })`: the primary's fd this handle serves.
    source_fd: Option<i32>,
    /// It serves a socket the primary was started with (`inherited.rs`).
    inherited: bool,
}

impl Handle {
    /// `host:port` (IPv6 hosts in brackets), or the unix socket's path.
    pub fn address(&self) -> String {
        match (&self.sockname, &self.unlink) {
            (Some(n), _) if n.family == "IPv6" => format!("[{}]:{}", n.address, n.port),
            (Some(n), _) => format!("{}:{}", n.address, n.port),
            (None, Some(path)) => path.to_string_lossy().into_owned(),
            (None, None) => self.key.clone(),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(p) = &self.unlink {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Binds the stream socket a query describes (TCP, unix path, or the primary's fd).
pub fn bind_stream(q: &Query) -> io::Result<std::os::fd::OwnedFd> {
    match q.family {
        Family::Tcp4 | Family::Tcp6 => sockets::bind_tcp(q.address.as_deref(), q.port, q.flags),
        Family::Pipe => {
            let path = q
                .address
                .as_deref()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            sockets::bind_pipe(&shortest_path(path), q.readable_all, q.writable_all, q.pipe_mode)
        }
        Family::Fd => sockets::dup_fd(q.fd),
        Family::Udp4 | Family::Udp6 => Err(io::Error::from_raw_os_error(libc::EPROTOTYPE)),
    }
}

/// sun_path holds ~100 bytes: use the path relative to our cwd when shorter,
/// as Node's primary does.
fn shortest_path(path: &str) -> String {
    let Ok(cwd) = std::env::current_dir() else {
        return path.to_string();
    };
    match Path::new(path).strip_prefix(&cwd) {
        Ok(rel) if rel.as_os_str().len() < path.len() && !rel.as_os_str().is_empty() => {
            rel.to_string_lossy().into_owned()
        }
        _ => path.to_string(),
    }
}

/// A handle on an inherited socket: the primary accepts on it, or the
/// workers share it.
fn adopt(fd: OwnedFd, schedule: Option<Box<dyn super::policy::Schedule>>) -> io::Result<(Kind, Option<SockName>)> {
    let name = sockets::sockname(fd.as_fd())?;
    Ok(match schedule {
        Some(schedule) => {
            sockets::prepare_accept(&fd)?;
            (Kind::Accepting(Acceptor::new(fd, schedule)), name)
        }
        None => (Kind::Shared(Shared { fd }), name),
    })
}

/// A listener the primary accepts on, bound and listening for `q`.
fn accepting(q: &Query, schedule: Box<dyn super::policy::Schedule>) -> io::Result<(Kind, Option<SockName>)> {
    let fd = bind_stream(q)?;
    sockets::start_listening(fd.as_fd(), q.backlog)?;
    sockets::prepare_accept(&fd)?;
    let name = sockets::sockname(fd.as_fd())?;
    Ok((Kind::Accepting(Acceptor::new(fd, schedule)), name))
}

#[derive(Default)]
pub struct Handles {
    by_key: HashMap<String, u32>,
    pub map: HashMap<u32, Handle>,
    next_id: u32,
    inherited: Inherited,
}

impl Handles {
    /// A table whose handles use the `inherited` sockets where they match.
    pub fn with_inherited(inherited: Inherited) -> Handles {
        Handles {
            inherited,
            ..Handles::default()
        }
    }

    /// The handle for `q.key`, created (bound, and listening if the primary
    /// accepts) on first use. On error nothing is stored, so another worker may retry.
    pub fn get_or_create(&mut self, q: &Query, policy: &Policy, placement: Placement) -> io::Result<&mut Handle> {
        if let Some(id) = self.by_key.get(&q.key) {
            return Ok(self.map.get_mut(id).expect("key table and handle map agree"));
        }
        let schedule = if q.family.is_udp() { None } else { policy.build() };
        // An accepting handle watches the primary's fd, and libuv refuses to
        // watch one fd twice: a second such handle on it fails as in Node.
        if schedule.is_some() && q.fd >= 0 && self.map.values().any(|h| h.source_fd == Some(q.fd)) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let adopted = self.inherited.claim(q);
        let placed = adopted.is_none()
            && schedule.is_some()
            && placement == Placement::Kernel
            && policy.info().kernel_places
            && matches!(q.family, Family::Tcp4 | Family::Tcp6)
            && q.fd < 0;
        let inherited = adopted.is_some();
        let (kind, sockname) = match (schedule, placed) {
            (schedule, _) if inherited => adopt(adopted.expect("adopted"), schedule)?,
            (Some(schedule), true) => match Group::bind(q, schedule) {
                Ok(group) => {
                    let name = sockets::sockname(group.first_fd())?;
                    (Kind::Placed(group), name)
                }
                // The kernel cannot steer a group here: the primary places.
                Err(e) if e.kind() == io::ErrorKind::Unsupported => accepting(q, policy.build().expect("it accepts"))?,
                Err(e) => return Err(e),
            },
            (Some(schedule), false) => accepting(q, schedule)?,
            (None, _) => {
                let shared = Shared::bind(q)?;
                let name = sockets::sockname(shared.fd.as_fd())?;
                (Kind::Shared(shared), name)
            }
        };
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = self.next_id;
        // A socket file the service manager made stays its own.
        let unlink =
            (q.family == Family::Pipe && !inherited).then(|| PathBuf::from(q.address.clone().unwrap_or_default()));
        let handle = Handle {
            id,
            key: q.key.clone(),
            kind,
            workers: Vec::new(),
            data: serde_json::Value::Null,
            sockname,
            unlink,
            source_fd: (q.fd >= 0).then_some(q.fd),
            inherited,
        };
        self.by_key.insert(q.key.clone(), id);
        Ok(self.map.entry(id).or_insert(handle))
    }

    /// Takes `worker` off handle `id`. Returns the handle if that was its last
    /// worker: the caller drops it, which closes the socket and any queued
    /// connections.
    pub fn leave(&mut self, id: u32, worker: u32) -> Option<Handle> {
        let h = self.map.get_mut(&id)?;
        h.workers.retain(|&w| w != worker);
        if let Kind::Placed(g) = &mut h.kind {
            g.leave(worker);
        }
        if !h.workers.is_empty() {
            return None;
        }
        let h = self.map.remove(&id)?;
        self.by_key.remove(&h.key);
        if h.inherited {
            match &h.kind {
                Kind::Accepting(a) => self.inherited.release(a.listener_fd()),
                Kind::Shared(s) => self.inherited.release(s.fd.as_fd()),
                Kind::Placed(_) => {}
            }
        }
        Some(h)
    }

    /// Duplicates of the listening sockets, for a primary taking over; a
    /// kernel-placed group is not handed over.
    pub fn export(&self) -> io::Result<Vec<OwnedFd>> {
        let mut out = Vec::new();
        for h in self.map.values() {
            match &h.kind {
                Kind::Accepting(a) => out.push(a.listener_fd().try_clone_to_owned()?),
                Kind::Shared(s) => out.push(s.fd.try_clone()?),
                Kind::Placed(_) => {}
            }
        }
        Ok(out)
    }

    pub fn ids_of(&self, worker: u32) -> Vec<u32> {
        self.map
            .values()
            .filter(|h| h.workers.contains(&worker))
            .map(|h| h.id)
            .collect()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(key: &str, port: i32) -> Query {
        Query::loopback(key, port)
    }

    #[test]
    fn same_key_same_handle_and_last_leave_closes() {
        let mut t = Handles::default();
        let a = {
            let h = t
                .get_or_create(&q("k", 0), &Policy::RoundRobin, Placement::Primary)
                .unwrap();
            h.workers.push(1);
            h.id
        };
        let b = {
            let h = t
                .get_or_create(&q("k", 0), &Policy::RoundRobin, Placement::Primary)
                .unwrap();
            h.workers.push(2);
            h.id
        };
        assert_eq!(a, b);
        assert!(t.leave(a, 1).is_none());
        assert_eq!(t.ids_of(2), vec![a]);
        assert!(t.leave(a, 2).is_some());
        assert!(t.is_empty());
        let c = t
            .get_or_create(&q("k", 0), &Policy::RoundRobin, Placement::Primary)
            .unwrap()
            .id;
        assert_ne!(a, c);
    }

    #[test]
    fn failed_bind_stores_nothing() {
        let mut t = Handles::default();
        let port = {
            let h = t
                .get_or_create(&q("a", 0), &Policy::RoundRobin, Placement::Primary)
                .unwrap();
            h.sockname.as_ref().unwrap().port as i32
        };
        let err = t
            .get_or_create(&q("b", port), &Policy::RoundRobin, Placement::Primary)
            .err()
            .unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
        assert_eq!(t.map.len(), 1);
    }

    #[test]
    fn udp_is_always_shared() {
        let mut t = Handles::default();
        let mut query = q("u", 0);
        query.family = Family::Udp4;
        let h = t.get_or_create(&query, &Policy::RoundRobin, Placement::Kernel).unwrap();
        assert!(matches!(h.kind, Kind::Shared(_)));
    }
}
