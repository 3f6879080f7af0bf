//! Listening sockets the primary was started with (systemd's socket
//! activation, `LISTEN_FDS`): a worker's `listen()` on the address one of
//! them is bound to uses it instead of binding, so the app's unchanged
//! `listen(PORT)` serves on the socket the service manager holds.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

use crate::protocol::{Family, Query};
use crate::sockets;

/// Where an inherited socket is bound.
#[derive(Debug, PartialEq, Eq)]
enum Bound {
    Ip(SocketAddr),
    Path(String),
}

struct Socket {
    fd: OwnedFd,
    bound: Bound,
    /// SOCK_STREAM (TCP, unix) rather than SOCK_DGRAM (UDP).
    stream: bool,
    /// A handle uses it now.
    claimed: bool,
}

#[derive(Default)]
pub struct Inherited {
    sockets: Vec<Socket>,
}

impl Inherited {
    /// Takes `fds` (made close-on-exec, so no worker inherits them too);
    /// one whose address cannot be read serves no query.
    pub fn new(fds: Vec<OwnedFd>) -> Inherited {
        let sockets = fds
            .into_iter()
            .filter_map(|fd| {
                crate::channel::set_cloexec(std::os::fd::AsRawFd::as_raw_fd(&fd)).ok()?;
                let bound = match sockets::local_addr(fd.as_fd()) {
                    Ok(a) => Bound::Ip(a),
                    Err(_) => Bound::Path(sockets::local_path(fd.as_fd())?),
                };
                let stream = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SockType).ok()?
                    == nix::sys::socket::SockType::Stream;
                Some(Socket {
                    fd,
                    bound,
                    stream,
                    claimed: false,
                })
            })
            .collect();
        Inherited { sockets }
    }

    /// A duplicate of the inherited socket bound where `q` asks, if one is
    /// and no handle uses it yet; it is then claimed until `release`.
    pub fn claim(&mut self, q: &Query) -> Option<OwnedFd> {
        let s = self
            .sockets
            .iter_mut()
            .find(|s| !s.claimed && s.stream != q.family.is_udp() && matches(&s.bound, q))?;
        let fd = s.fd.try_clone().ok()?;
        s.claimed = true;
        Some(fd)
    }

    /// The handle that used the inherited socket `fd` closed.
    pub fn release(&mut self, fd: std::os::fd::BorrowedFd) {
        let bound = match sockets::local_addr(fd) {
            Ok(a) => Bound::Ip(a),
            Err(_) => match sockets::local_path(fd) {
                Some(p) => Bound::Path(p),
                None => return,
            },
        };
        if let Some(s) = self.sockets.iter_mut().find(|s| s.bound == bound) {
            s.claimed = false;
        }
    }
}

/// Whether a socket bound at `bound` is what `q` would bind.
fn matches(bound: &Bound, q: &Query) -> bool {
    match (bound, q.family) {
        (Bound::Ip(a), Family::Tcp4 | Family::Tcp6 | Family::Udp4 | Family::Udp6) => {
            if q.port <= 0 || i32::from(a.port()) != q.port {
                return false;
            }
            match q.address.as_deref() {
                // No host: `::` (or `0.0.0.0` where IPv6 is off), as Node binds.
                None => a.ip().is_unspecified(),
                Some(host) => host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip == a.ip()),
            }
        }
        (Bound::Path(p), Family::Pipe) => q.address.as_deref().is_some_and(|a| {
            a == p || std::path::Path::new(a).canonicalize().ok() == std::path::Path::new(p).canonicalize().ok()
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(address: Option<&str>, port: i32) -> Query {
        let mut q = Query::loopback("k", port);
        q.address = address.map(Into::into);
        q
    }

    #[test]
    fn a_listen_on_the_inherited_address_gets_it_once() {
        let fd = sockets::bind_tcp(Some("127.0.0.1"), 0, 0).unwrap();
        sockets::start_listening(fd.as_fd(), 0).unwrap();
        let port = sockets::local_addr(fd.as_fd()).unwrap().port() as i32;
        let mut inherited = Inherited::new(vec![fd]);
        assert!(inherited.claim(&tcp(Some("127.0.0.2"), port)).is_none(), "another host");
        assert!(
            inherited.claim(&tcp(Some("127.0.0.1"), port + 1)).is_none(),
            "another port"
        );
        assert!(
            inherited.claim(&tcp(Some("127.0.0.1"), 0)).is_none(),
            "port 0 is never one"
        );
        let got = inherited
            .claim(&tcp(Some("127.0.0.1"), port))
            .expect("the same address");
        assert!(inherited.claim(&tcp(Some("127.0.0.1"), port)).is_none(), "claimed");
        inherited.release(got.as_fd());
        assert!(inherited.claim(&tcp(Some("127.0.0.1"), port)).is_some(), "released");
    }

    #[test]
    fn no_host_matches_the_unspecified_address() {
        let fd = sockets::bind_tcp(None, 0, 0).unwrap();
        let port = sockets::local_addr(fd.as_fd()).unwrap().port() as i32;
        let mut inherited = Inherited::new(vec![fd]);
        assert!(inherited.claim(&tcp(Some("127.0.0.1"), port)).is_none());
        assert!(inherited.claim(&tcp(None, port)).is_some());
    }
}
