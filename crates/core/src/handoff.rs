//! The hand-off channel: a `SOCK_SEQPACKET` socketpair per worker (datagrams
//! where there is no SEQPACKET) that carries connections only, one message
//! each: a `Handoff` record and the connection's fd.
//!
//! Why a channel of its own, and why the primary keeps the worker's end open
//! as well as its own: a message the worker has not read yet stays in the
//! worker end's receive queue, and the kernel gives each message to exactly
//! one reader. So when a worker dies or stalls, the primary reads its
//! unread connections back out of that queue and serves them elsewhere, and
//! a connection can never be served twice. That needs no copy of each fd in
//! the primary, no acknowledgement and no claim: the primary closes its fd as
//! soon as the message is sent, while the message holds the socket open.
//!
//! The worker sends a connection back the same way (to the primary's end)
//! when it cannot take it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::protocol::{Handoff, HANDOFF_BYTES};

#[cfg(any(target_os = "linux", target_os = "android"))]
const KIND: libc::c_int = libc::SOCK_SEQPACKET;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const KIND: libc::c_int = libc::SOCK_DGRAM;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT;

#[cfg(any(target_os = "linux", target_os = "android"))]
const RECV_FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const RECV_FLAGS: libc::c_int = libc::MSG_DONTWAIT;

/// Control buffer for one fd, in u64 words so it is aligned for cmsghdr.
type OneFd = [u64; 4];
/// Room for a few fds on receive, so a message that carries more than one
/// (a broken peer) is seen whole and every fd it brought is closed.
type SomeFds = [u64; 8];

/// `(primary end, worker end)`, both close-on-exec. Non-blocking is not set
/// on the sockets: the worker's end is one open file shared by two processes,
/// so every call says `MSG_DONTWAIT` instead.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds socketpair writes.
    syscall!(socketpair(libc::AF_UNIX, KIND, 0, fds.as_mut_ptr()))?;
    // SAFETY: socketpair succeeded, so both fds are open and ours alone.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    crate::channel::set_cloexec(a.as_raw_fd())?;
    crate::channel::set_cloexec(b.as_raw_fd())?;
    crate::channel::no_sigpipe(a.as_raw_fd())?;
    crate::channel::no_sigpipe(b.as_raw_fd())?;
    Ok((a, b))
}

/// Fills `msg` to send `record` with `fd` attached. The pointers stay valid
/// while `record`, `iov` and `cmsg` do.
fn fill(msg: &mut libc::msghdr, iov: &mut libc::iovec, record: &mut [u8; HANDOFF_BYTES], cmsg: &mut OneFd, fd: RawFd) {
    iov.iov_base = record.as_mut_ptr().cast();
    iov.iov_len = HANDOFF_BYTES;
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as _;
    // SAFETY: msg_control points at `cmsg`, which is larger than CMSG_SPACE(one fd),
    // so the first header and its data fit in it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
    }
}

/// Buffers reused by `send_batch`, so a round allocates nothing.
#[derive(Default)]
pub struct Batch {
    records: Vec<[u8; HANDOFF_BYTES]>,
    fds: Vec<RawFd>,
    iovs: Vec<libc::iovec>,
    cmsgs: Vec<OneFd>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in the buffers are rebuilt before every send and
// never dereferenced otherwise.
unsafe impl Send for Batch {}

impl Batch {
    pub fn clear(&mut self) {
        self.records.clear();
        self.fds.clear();
    }

    pub fn push(&mut self, record: &Handoff, fd: RawFd) {
        self.records.push(record.encode());
        self.fds.push(fd);
    }

    /// Sends the messages in order, as many as the socket takes, in one
    /// `sendmmsg` where there is one. Returns how many went; `Ok(0)` if the
    /// socket is full.
    pub fn send(&mut self, to: BorrowedFd) -> io::Result<usize> {
        let n = self.records.len();
        // SAFETY: iovec and the u64 words are plain data; all-zero is valid.
        self.iovs.resize(n, unsafe { std::mem::zeroed() });
        self.cmsgs.resize(n, [0; 4]);
        self.send_built(to, n)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn send_built(&mut self, to: BorrowedFd, n: usize) -> io::Result<usize> {
        // SAFETY: mmsghdr is plain data; all-zero is valid.
        self.hdrs.resize(n, unsafe { std::mem::zeroed() });
        for i in 0..n {
            fill(
                &mut self.hdrs[i].msg_hdr,
                &mut self.iovs[i],
                &mut self.records[i],
                &mut self.cmsgs[i],
                self.fds[i],
            );
        }
        loop {
            // SAFETY: every header points into this Batch's buffers, filled above
            // and not moved until the call returns.
            match syscall!(sendmmsg(to.as_raw_fd(), self.hdrs.as_mut_ptr(), n as u32, SEND_FLAGS)) {
                Ok(sent) => return Ok(sent as usize),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Ok(0),
                    _ => return Err(e),
                },
            }
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn send_built(&mut self, to: BorrowedFd, n: usize) -> io::Result<usize> {
        for i in 0..n {
            // SAFETY: msghdr is plain data; all-zero is valid.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            fill(
                &mut msg,
                &mut self.iovs[i],
                &mut self.records[i],
                &mut self.cmsgs[i],
                self.fds[i],
            );
            loop {
                // SAFETY: `msg` points into this Batch's buffers, filled above.
                match syscall!(sendmsg(to.as_raw_fd(), &msg, SEND_FLAGS)) {
                    Ok(_) => break,
                    Err(e) => match e.raw_os_error() {
                        Some(libc::EINTR) => continue,
                        Some(libc::EAGAIN) => return Ok(i),
                        _ if i > 0 => return Ok(i),
                        _ => return Err(e),
                    },
                }
            }
        }
        Ok(n)
    }
}

/// Closes `fds`, whose ownership the caller gives up, and empties it: one
/// `close_range` per run of consecutive numbers where the kernel has it.
/// The primary accepts a round's connections back to back and fds are
/// numbered lowest-free-first, so a round's fds are mostly one run. Only fds
/// in `fds` make a run, so no one else's fd is ever closed.
pub fn close_all(fds: &mut Vec<RawFd>) {
    fds.sort_unstable();
    let mut i = 0;
    while i < fds.len() {
        let mut j = i;
        while j + 1 < fds.len() && fds[j + 1] == fds[j] + 1 {
            j += 1;
        }
        if j == i || !close_range(fds[i], fds[j]) {
            for &fd in &fds[i..=j] {
                // SAFETY: the caller gave up ownership of these fds to this call.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        i = j + 1;
    }
    fds.clear();
}

/// `close_range(first, last)`; false where the kernel lacks it (Linux < 5.9).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn close_range(first: RawFd, last: RawFd) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static MISSING: AtomicBool = AtomicBool::new(false);
    if MISSING.load(Ordering::Relaxed) {
        return false;
    }
    // Through syscall(2): older C libraries have no wrapper.
    match syscall!(syscall(
        libc::SYS_close_range,
        first as libc::c_uint,
        last as libc::c_uint,
        0 as libc::c_uint
    )) {
        Ok(_) => true,
        Err(_) => {
            MISSING.store(true, Ordering::Relaxed);
            false
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn close_range(_first: RawFd, _last: RawFd) -> bool {
    false
}

/// Sends one connection (a worker giving one back). `Ok(false)` if the
/// socket is full.
pub fn send_one(to: BorrowedFd, record: &Handoff, fd: RawFd) -> io::Result<bool> {
    let mut batch = Batch::default();
    batch.push(record, fd);
    Ok(batch.send(to)? == 1)
}

#[derive(Debug)]
pub enum Received {
    Conn(Handoff, OwnedFd),
    /// The kernel could not install the fd here (this process is out of
    /// fds) and closed it: the connection is gone.
    Lost(Handoff),
    /// Nothing queued.
    Empty,
    /// The other end is gone: stop reading.
    Closed,
}

/// Reads one message. A message that is not exactly one record with one fd
/// is a protocol error; whatever fds it carried are closed.
pub fn recv_one(from: BorrowedFd) -> Result<Received, crate::error::Error> {
    use crate::error::{Context, ProtocolError};
    let mut buf = [0u8; HANDOFF_BYTES + 1];
    let mut cmsg: SomeFds = [0; 8];
    let got = match crate::channel::recv_fds(from.as_raw_fd(), &mut buf, &mut cmsg, RECV_FLAGS) {
        Ok(got) => got,
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(Received::Empty),
        Err(e) => return Err(e).during("recvmsg"),
    };
    let (n, mut fds) = (got.bytes, got.fds);
    if n == 0 && fds.is_empty() {
        // Every copy of the other end is closed (or, on a datagram channel, a
        // peer sent an empty message, which nothing here does).
        return Ok(Received::Closed);
    }
    let record = Handoff::decode(&buf[..n])?;
    let truncated = got.flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0;
    match (fds.len(), truncated) {
        (1, false) => Ok(Received::Conn(record, fds.pop().expect("one fd"))),
        (0, true) => Ok(Received::Lost(record)),
        _ => Err(ProtocolError::BadBody("handoff").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Returned;
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, IntoRawFd};
    use std::os::unix::net::UnixStream;

    fn record(handle: u32) -> Handoff {
        Handoff {
            handle,
            seq: handle,
            returned: Returned::None,
            accepted_ns: 42,
            key: 7,
        }
    }

    #[test]
    fn a_batch_arrives_one_message_per_connection_in_order() {
        let (p, w) = pair().unwrap();
        let socks: Vec<(UnixStream, UnixStream)> = (0..5).map(|_| UnixStream::pair().unwrap()).collect();
        let mut batch = Batch::default();
        for (i, (a, _)) in socks.iter().enumerate() {
            batch.push(&record(i as u32), a.as_raw_fd());
        }
        assert_eq!(batch.send(p.as_fd()).unwrap(), 5);
        for (i, (_, b)) in socks.iter().enumerate() {
            match recv_one(w.as_fd()).unwrap() {
                Received::Conn(r, fd) => {
                    assert_eq!(r, record(i as u32));
                    let mut s = UnixStream::from(fd);
                    s.write_all(&[i as u8]).unwrap();
                    let mut got = [0u8];
                    (&*b).read_exact(&mut got).unwrap();
                    assert_eq!(got[0], i as u8, "the fd is the connection sent with it");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(recv_one(w.as_fd()).unwrap(), Received::Empty));
    }

    #[test]
    fn closing_sent_fds_closes_those_and_no_other() {
        // Twelve sockets whose only fds are dups made back to back, so their
        // numbers run consecutively (unless another test's thread takes one
        // in between: then runs are shorter, and the test holds all the same).
        // A socket is seen closed by its peer reading end of stream, which an
        // fd number reused by another thread cannot fake.
        let pairs: Vec<(UnixStream, UnixStream)> = (0..12).map(|_| UnixStream::pair().unwrap()).collect();
        let mut ours: Vec<Option<OwnedFd>> = pairs
            .iter()
            .map(|(a, _)| Some(a.as_fd().try_clone_to_owned().unwrap()))
            .collect();
        let peers: Vec<UnixStream> = pairs
            .into_iter()
            .map(|(_, b)| {
                b.set_nonblocking(true).unwrap();
                b
            })
            .collect();
        // A run of three, a lone one and a run of two, out of order.
        let picked = [8, 0, 2, 5, 1, 7];
        let mut fds: Vec<RawFd> = picked.iter().map(|&i| ours[i].take().unwrap().into_raw_fd()).collect();
        close_all(&mut fds);
        assert!(fds.is_empty());
        for (i, peer) in peers.iter().enumerate() {
            let closed = matches!((&*peer).read(&mut [0u8; 1]), Ok(0));
            assert_eq!(closed, picked.contains(&i), "socket {i}");
        }
        drop(ours);
    }

    #[test]
    fn two_readers_of_one_end_never_get_the_same_message() {
        let (p, w) = pair().unwrap();
        let w2 = w.try_clone().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        for round in 0..200u32 {
            let mut batch = Batch::default();
            batch.push(&record(round), a.as_raw_fd());
            assert_eq!(batch.send(p.as_fd()).unwrap(), 1);
            let other = std::thread::scope(|s| {
                let t = s.spawn(|| matches!(recv_one(w2.as_fd()).unwrap(), Received::Conn(..)));
                let mine = matches!(recv_one(w.as_fd()).unwrap(), Received::Conn(..));
                (mine, t.join().unwrap())
            });
            assert!(other.0 ^ other.1, "round {round}: exactly one reader gets it");
        }
    }

    #[test]
    fn received_fds_are_cloexec_and_garbage_is_refused() {
        let (p, w) = pair().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(send_one(p.as_fd(), &record(1), a.as_raw_fd()).unwrap());
        match recv_one(w.as_fd()).unwrap() {
            Received::Conn(_, fd) => {
                // SAFETY: fcntl on an fd we own.
                let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
                assert!(flags & libc::FD_CLOEXEC != 0);
            }
            other => panic!("{other:?}"),
        }
        // A record with no fd, and a short message, are both refused.
        // SAFETY: the buffer is alive for the call.
        let sent = unsafe { libc::send(p.as_raw_fd(), record(2).encode().as_ptr().cast(), HANDOFF_BYTES, 0) };
        assert_eq!(sent, HANDOFF_BYTES as isize);
        assert!(recv_one(w.as_fd()).is_err());
        // SAFETY: as above.
        unsafe { libc::send(p.as_raw_fd(), [1u8, 2, 3].as_ptr().cast(), 3, 0) };
        assert!(recv_one(w.as_fd()).is_err());
    }
}
