//! The private control channel: one end of a Unix stream socketpair per worker.
//!
//! It is never a path on the filesystem or a network port, so only the primary
//! and the worker it forked can reach it. Every fd it creates or receives is
//! close-on-exec, so nothing leaks into a worker's own child processes.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::protocol::{Decoder, MAX_BATCH};

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: MsgFlags = MsgFlags::empty();

#[cfg(any(target_os = "linux", target_os = "android"))]
const RECV_FLAGS: MsgFlags = MsgFlags::MSG_CMSG_CLOEXEC;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const RECV_FLAGS: MsgFlags = MsgFlags::empty();

/// A connected socketpair for one worker: `(primary end, worker end)`.
/// Both ends are CLOEXEC; the worker's end becomes the child's stdio fd through
/// libuv's dup2, which is the one place it is meant to cross an exec.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    let (a, b): (OwnedFd, OwnedFd) = (a.into(), b.into());
    no_sigpipe(a.as_fd())?;
    no_sigpipe(b.as_fd())?;
    Ok((a, b))
}

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
fn no_sigpipe(fd: BorrowedFd) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::NoSigPipe};
    setsockopt(&fd, NoSigPipe, &true).map_err(io::Error::from)
}

#[cfg(not(any(target_os = "macos", target_os = "ios", target_os = "freebsd")))]
fn no_sigpipe(_fd: BorrowedFd) -> io::Result<()> {
    Ok(())
}

pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(())
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

pub enum Received {
    Data,
    WouldBlock,
    Eof,
}

pub struct Channel {
    fd: OwnedFd,
    rbuf: Box<[u8]>,
}

impl Channel {
    /// Takes a non-blocking, CLOEXEC end of `pair()`.
    pub fn new(fd: OwnedFd) -> io::Result<Channel> {
        set_cloexec(fd.as_raw_fd())?;
        set_nonblocking(fd.as_raw_fd())?;
        no_sigpipe(fd.as_fd())?;
        Ok(Channel {
            fd,
            rbuf: vec![0u8; 64 * 1024].into_boxed_slice(),
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// One `sendmsg` of `bytes` with `fds` attached. Returns how many bytes
    /// went; the fds go with the first byte, so a short write only leaves
    /// plain bytes to send later.
    pub fn send(&self, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
        let iov = [IoSlice::new(bytes)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        loop {
            match sendmsg::<()>(self.fd.as_raw_fd(), &iov, cmsgs, SEND_FLAGS, None) {
                Err(Errno::EINTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }

    /// Sends all of `bytes`, waiting for the socket to drain if it is full.
    /// Only for the worker's rare control frames, never the primary's loop.
    pub fn send_all_blocking(&self, mut bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let mut fds = fds;
        while !bytes.is_empty() {
            match self.send(bytes, fds) {
                Ok(n) => {
                    bytes = &bytes[n..];
                    fds = &[];
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_writable()?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn wait_writable(&self) -> io::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLOUT)];
        loop {
            match poll(&mut fds, PollTimeout::from(1000u16)) {
                Err(Errno::EINTR) => continue,
                Ok(0) => return Err(io::Error::from(io::ErrorKind::TimedOut)),
                r => return r.map(|_| ()).map_err(io::Error::from),
            }
        }
    }

    /// One `recvmsg` into `dec`. Received fds are CLOEXEC before anyone sees them.
    pub fn recv(&mut self, dec: &mut Decoder) -> io::Result<Received> {
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_BATCH + 4]);
        let raw = self.fd.as_raw_fd();
        let mut iov = [IoSliceMut::new(&mut self.rbuf)];
        let (bytes, fds, truncated) = loop {
            match recvmsg::<()>(raw, &mut iov, Some(&mut cmsg), RECV_FLAGS) {
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(Received::WouldBlock),
                Err(e) => return Err(e.into()),
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for c in msg.cmsgs().map_err(io::Error::from)? {
                        if let ControlMessageOwned::ScmRights(list) = c {
                            fds.extend(list.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                        }
                    }
                    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
                    break (msg.bytes, fds, truncated);
                }
            }
        };
        if !cfg!(any(target_os = "linux", target_os = "android")) {
            for fd in &fds {
                set_cloexec(fd.as_raw_fd())?;
            }
        }
        if truncated {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "control message truncated"));
        }
        if bytes == 0 && fds.is_empty() {
            return Ok(Received::Eof);
        }
        dec.push(&iov[0][..bytes], fds);
        Ok(Received::Data)
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode_close, encode_new_conns, Conn, Frame};

    fn is_cloexec(fd: RawFd) -> bool {
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn passes_fds_and_marks_them_cloexec() {
        let (a, b) = pair().unwrap();
        let (a, mut b) = (Channel::new(a).unwrap(), Channel::new(b).unwrap());
        let (x, _y) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut out = Vec::new();
        encode_new_conns(
            &mut out,
            &[Conn {
                handle: 3,
                seq: 1,
                slot: 0,
            }],
        );
        encode_close(&mut out, 3);
        assert_eq!(a.send(&out, &[x.as_raw_fd()]).unwrap(), out.len());
        let mut dec = Decoder::default();
        assert!(matches!(b.recv(&mut dec).unwrap(), Received::Data));
        match dec.next_frame().unwrap() {
            Some(Frame::NewConn(c)) => {
                assert_eq!(
                    c[0].0,
                    Conn {
                        handle: 3,
                        seq: 1,
                        slot: 0
                    }
                );
                assert!(is_cloexec(c[0].1.as_raw_fd()));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(dec.next_frame().unwrap(), Some(Frame::Close { handle: 3 })));
        assert!(matches!(b.recv(&mut dec).unwrap(), Received::WouldBlock));
        drop(a);
        assert!(matches!(b.recv(&mut dec).unwrap(), Received::Eof));
    }

    #[test]
    fn pair_is_cloexec() {
        let (a, b) = pair().unwrap();
        assert!(is_cloexec(a.as_raw_fd()) && is_cloexec(b.as_raw_fd()));
    }
}
