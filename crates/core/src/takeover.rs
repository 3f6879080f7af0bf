//! Handing listening sockets from a running primary to a new one over the
//! control socket (`rs-cluster --takeover <path>`): one line of JSON and the
//! sockets as SCM_RIGHTS in a single message, so no socket is ever closed in
//! between and the kernel's accept queues carry over.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// The most sockets one hand-over carries (the kernel's SCM_MAX_FD is 253).
pub const MAX_SOCKETS: usize = 250;

/// Sends `line` with `fds` attached on connected socket `to`, waiting for
/// room if it is non-blocking; `fds` are closed here once sent.
pub fn send_sockets(to: BorrowedFd, line: &[u8], fds: Vec<OwnedFd>) -> io::Result<()> {
    if fds.len() > MAX_SOCKETS {
        return Err(io::Error::from_raw_os_error(libc::E2BIG));
    }
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let iov = [io::IoSlice::new(line)];
    loop {
        match sendmsg::<()>(to.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) if n == line.len() => return Ok(()),
            Ok(_) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Err(nix::errno::Errno::EAGAIN) => {
                let mut p = libc::pollfd {
                    fd: to.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one live pollfd.
                syscall!(poll(&mut p, 1, 1000))?;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Asks the primary at `path` for its listening sockets: its answer line
/// and the sockets, close-on-exec.
pub fn fetch_sockets(path: &Path, request: &[u8]) -> io::Result<(String, Vec<OwnedFd>)> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    stream.write_all(request)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = vec![0u64; (MAX_SOCKETS * 4 + 64) / 8];
    let got = crate::channel::recv_fds(
        stream.as_raw_fd(),
        &mut buf,
        &mut cmsg,
        crate::channel::RECV_FLAGS.bits(),
    )?;
    let (n, fds) = (got.bytes, got.fds);
    let text = String::from_utf8_lossy(&buf[..n]);
    let line = text.split('\n').next().unwrap_or_default().to_string();
    Ok((line, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixListener;

    #[test]
    fn sockets_cross_with_their_line_and_stay_the_same_sockets() {
        let dir = std::env::temp_dir().join(format!("rs-cluster-takeover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl");
        let _ = std::fs::remove_file(&path);
        let server = UnixListener::bind(&path).unwrap();
        let listener = crate::sockets::bind_tcp(Some("127.0.0.1"), 0, 0).unwrap();
        let addr = crate::sockets::local_addr(listener.as_fd()).unwrap();
        let copy = listener.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            let (conn, _) = server.accept().unwrap();
            let mut req = String::new();
            BufReader::new(&conn).read_line(&mut req).unwrap();
            assert_eq!(req, "{\"command\":\"listeners\"}\n");
            send_sockets(conn.as_fd(), b"{\"ok\":true}\n", vec![copy]).unwrap();
        });
        let (line, fds) = fetch_sockets(&path, b"{\"command\":\"listeners\"}\n").unwrap();
        t.join().unwrap();
        assert_eq!(line, "{\"ok\":true}");
        assert_eq!(fds.len(), 1);
        assert_eq!(crate::sockets::local_addr(fds[0].as_fd()).unwrap(), addr);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nobody_at_the_path_is_an_error() {
        assert!(fetch_sockets(Path::new("/nonexistent/rs-cluster/ctl"), b"x\n").is_err());
    }
}
