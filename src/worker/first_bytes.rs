//! Watches connections a worker has received but not yet claimed for their
//! client's first bytes, so that one is claimed the moment its request
//! arrives instead of on the next timer tick (a millisecond later, which a
//! client making one request after another would pay on every request).
//!
//! One private epoll set, itself watched by a single uv poll handle on the
//! worker's loop: two `epoll_ctl`s (in, out) for each connection that arrived
//! before its request, and nothing for the others; a silent client costs no
//! further syscalls while it stays silent. Where there is no epoll, the
//! receiver's timer tick peeks instead.

use std::io;
use std::os::fd::RawFd;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    pub struct FirstBytes {
        ep: OwnedFd,
    }

    impl FirstBytes {
        pub fn new() -> io::Result<FirstBytes> {
            let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if ep < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(FirstBytes {
                ep: unsafe { OwnedFd::from_raw_fd(ep) },
            })
        }

        pub fn raw(&self) -> RawFd {
            self.ep.as_raw_fd()
        }

        /// Reported once, when `fd` has input, a hang-up or an error.
        pub fn watch(&self, fd: RawFd) -> io::Result<()> {
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
                u64: fd as u64,
            };
            if unsafe { libc::epoll_ctl(self.raw(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Before the fd goes to Node, or away: no stale event may follow it.
        pub fn unwatch(&self, fd: RawFd) {
            unsafe { libc::epoll_ctl(self.raw(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        }

        /// Takes the reported fds off the set, so the uv handle watching it
        /// goes quiet. Each is reported once (one-shot) and stays in the set,
        /// disarmed, until `unwatch`.
        pub fn drain(&self, mut arrived: impl FnMut(RawFd)) {
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
            loop {
                let n = unsafe { libc::epoll_wait(self.raw(), events.as_mut_ptr(), events.len() as i32, 0) };
                for ev in &events[..n.max(0) as usize] {
                    arrived(ev.u64 as RawFd);
                }
                if n < events.len() as i32 {
                    return;
                }
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::io;
    use std::os::fd::RawFd;

    pub enum FirstBytes {}

    impl FirstBytes {
        pub fn new() -> io::Result<FirstBytes> {
            Err(io::ErrorKind::Unsupported.into())
        }

        pub fn raw(&self) -> RawFd {
            match *self {}
        }

        pub fn watch(&self, _fd: RawFd) -> io::Result<()> {
            match *self {}
        }

        pub fn unwatch(&self, _fd: RawFd) {
            match *self {}
        }

        pub fn drain(&self, _arrived: impl FnMut(RawFd)) {
            match *self {}
        }
    }
}

pub use imp::FirstBytes;

/// Whether the peer has sent data, closed, or failed: anything Node should see.
pub fn has_input(fd: RawFd) -> bool {
    let mut byte = 0u8;
    let n = unsafe {
        libc::recv(
            fd,
            &mut byte as *mut u8 as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn ready(w: &FirstBytes) -> bool {
        let mut p = libc::pollfd {
            fd: w.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn a_watched_connection_is_reported_once_its_peer_writes() {
        let w = FirstBytes::new().unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        assert!(!has_input(ours.as_raw_fd()));
        w.watch(ours.as_raw_fd()).unwrap();
        assert!(!ready(&w), "nothing sent yet");
        theirs.write_all(b"G").unwrap();
        assert!(ready(&w));
        assert!(has_input(ours.as_raw_fd()), "peeking leaves the byte for Node");
        assert!(has_input(ours.as_raw_fd()));
        let mut reported = Vec::new();
        w.drain(|fd| reported.push(fd));
        assert_eq!(reported, vec![ours.as_raw_fd()]);
        theirs.write_all(b"ET").unwrap();
        assert!(!ready(&w), "one-shot: reported once, then quiet");
        w.unwatch(ours.as_raw_fd());
    }

    #[test]
    fn a_hang_up_counts_as_input() {
        let w = FirstBytes::new().unwrap();
        let (ours, theirs) = UnixStream::pair().unwrap();
        w.watch(ours.as_raw_fd()).unwrap();
        drop(theirs);
        assert!(ready(&w));
        assert!(has_input(ours.as_raw_fd()));
    }
}
