//! The private control channel: one end of a Unix stream socketpair per worker.
//!
//! It is never a path on the filesystem or a network port, so only the primary
//! and the worker it forked can reach it. Every fd it creates or receives is
//! close-on-exec, so nothing leaks into a worker's own child processes.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::protocol::Decoder;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: MsgFlags = MsgFlags::empty();

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const RECV_FLAGS: MsgFlags = MsgFlags::MSG_CMSG_CLOEXEC;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const RECV_FLAGS: MsgFlags = MsgFlags::empty();

/// A connected socketpair for one worker: `(primary end, worker end)`.
/// Both ends are CLOEXEC; the worker's end becomes the child's stdio fd through
/// libuv's dup2, which is the one place it is meant to cross an exec.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    let (a, b): (OwnedFd, OwnedFd) = (a.into(), b.into());
    no_sigpipe(a.as_raw_fd())?;
    no_sigpipe(b.as_raw_fd())?;
    Ok((a, b))
}

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
pub(crate) fn no_sigpipe(fd: RawFd) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::NoSigPipe};
    // SAFETY: callers pass an fd they own for the duration of the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    setsockopt(&fd, NoSigPipe, &true).map_err(io::Error::from)
}

/// Here `MSG_NOSIGNAL` on every send does the job.
#[cfg(not(any(target_os = "macos", target_os = "ios", target_os = "freebsd")))]
pub(crate) fn no_sigpipe(_fd: RawFd) -> io::Result<()> {
    Ok(())
}

pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: callers pass an fd that stays open for the duration of the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(())
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    // SAFETY: callers pass an fd that stays open for the duration of the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

pub enum Received {
    /// `drained`: the read did not fill the buffer and carried no fds, so the
    /// socket was empty after it (a read stops early only at an fd message).
    Data {
        drained: bool,
    },
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
        no_sigpipe(fd.as_raw_fd())?;
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

    /// One `recvmsg` into `dec`. Received fds are CLOEXEC before anyone
    /// sees them. If the fds did not all fit (this process is out of fds, or
    /// the peer sent more than any frame carries), the ones that arrived are
    /// kept and the decoder is told some went missing.
    pub fn recv(&mut self, dec: &mut Decoder) -> io::Result<Received> {
        let mut cmsg = [0u64; CMSG_WORDS];
        let got = match recv_fds(self.fd.as_raw_fd(), &mut self.rbuf, &mut cmsg, RECV_FLAGS.bits()) {
            Ok(got) => got,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(Received::WouldBlock),
            Err(e) => return Err(e),
        };
        let (bytes, fds) = (got.bytes, got.fds);
        let truncated = got.flags & libc::MSG_CTRUNC != 0;
        if bytes == 0 && fds.is_empty() && !truncated {
            return Ok(Received::Eof);
        }
        let drained = bytes < self.rbuf.len() && fds.is_empty() && !truncated;
        dec.push(&self.rbuf[..bytes], fds, truncated);
        Ok(Received::Data { drained })
    }
}

/// What one `recvmsg` brought.
pub(crate) struct Got {
    pub bytes: usize,
    /// Owned, and close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// The message's flags (MSG_CTRUNC: some fds did not fit).
    pub flags: i32,
}

/// One `recvmsg` on `fd` into `buf`, with room for fds in `cmsg` (u64 words
/// keep it aligned for cmsghdr); retried on EINTR. Received fds are
/// close-on-exec before anyone sees them.
pub(crate) fn recv_fds(fd: RawFd, buf: &mut [u8], cmsg: &mut [u64], flags: i32) -> io::Result<Got> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(cmsg) as _;
    let bytes = loop {
        // SAFETY: `msg` points at `iov` (`buf`) and `cmsg`, both alive here.
        match syscall!(recvmsg(fd, &mut msg, flags)) {
            Ok(n) => break n as usize,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    };
    // SAFETY: recvmsg succeeded and `cmsg` is alive.
    let fds = unsafe { take_rights(&msg) };
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        for fd in &fds {
            set_cloexec(fd.as_raw_fd())?;
        }
    }
    Ok(Got {
        bytes,
        fds,
        flags: msg.msg_flags,
    })
}

/// Room for a few fds: no control frame carries more than two, and a message
/// with more than fit is reported as truncated (then refused).
const CMSG_WORDS: usize = 8;

/// Every SCM_RIGHTS fd in a received message, owned.
///
/// # Safety
/// `msg` must come from a successful `recvmsg` whose control buffer is alive.
pub(crate) unsafe fn take_rights(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: the caller's contract: `msg` and its control buffer are a
    // message the kernel filled. The CMSG_* macros walk that buffer and stay
    // within `msg_controllen`; each header they return is non-null and in
    // it, and an SCM_RIGHTS payload holds `cmsg_len - CMSG_LEN(0)` bytes of
    // fds, read unaligned, that the kernel installed for this process alone,
    // so each is owned here exactly once.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for k in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(k))));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    fds
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode_close, encode_setup, Frame};

    fn is_cloexec(fd: RawFd) -> bool {
        // SAFETY: F_GETFD only reads the fd's flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn passes_fds_and_marks_them_cloexec() {
        let (a, b) = pair().unwrap();
        let (a, mut b) = (Channel::new(a).unwrap(), Channel::new(b).unwrap());
        let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut out = Vec::new();
        encode_setup(&mut out);
        encode_close(&mut out, 3);
        assert_eq!(a.send(&out, &[x.as_raw_fd(), y.as_raw_fd()]).unwrap(), out.len());
        let mut dec = Decoder::default();
        assert!(matches!(b.recv(&mut dec).unwrap(), Received::Data { drained: false }));
        match dec.next_frame().unwrap() {
            Some(Frame::Setup { page, handoff }) => {
                assert!(is_cloexec(page.as_raw_fd()) && is_cloexec(handoff.as_raw_fd()));
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
