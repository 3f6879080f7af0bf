//! Creating the primary's server sockets the way libuv and Node's `net` would:
//! SO_REUSEADDR on TCP, `::` with a fallback to `0.0.0.0` when no host is
//! given, IPV6_V6ONLY on request, unix paths with optional chmod. Every socket
//! is close-on-exec.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    bind, getsockname, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage, UnixAddr,
};

use crate::protocol::{Family, SockName};

/// libuv's `UV_TCP_IPV6ONLY` / `UV_UDP_IPV6ONLY`.
pub const FLAG_IPV6ONLY: u32 = 1;
/// libuv's `UV_UDP_REUSEADDR`.
pub const FLAG_REUSEADDR: u32 = 4;

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn new_socket(af: AddressFamily, ty: SockType) -> io::Result<OwnedFd> {
    Ok(socket(af, ty, SockFlag::SOCK_CLOEXEC, None)?)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn new_socket(af: AddressFamily, ty: SockType) -> io::Result<OwnedFd> {
    let fd = socket(af, ty, SockFlag::empty(), None)?;
    crate::channel::set_cloexec(fd.as_raw_fd())?;
    Ok(fd)
}

/// How a socket may share its address.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reuse {
    None,
    /// SO_REUSEADDR, as libuv sets on TCP servers.
    Addr,
    /// SO_REUSEADDR and SO_REUSEPORT: a member of a reuseport group.
    Group,
}

fn ip_socket(ip: IpAddr, port: u16, ty: SockType, flags: u32, reuse: Reuse) -> io::Result<OwnedFd> {
    let af = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = new_socket(af, ty)?;
    if reuse != Reuse::None {
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    if reuse == Reuse::Group {
        setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    if ip.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &(flags & FLAG_IPV6ONLY != 0))?;
    }
    let addr = SockaddrStorage::from(SocketAddr::new(ip, port));
    bind(fd.as_raw_fd(), &addr)?;
    Ok(fd)
}

fn parse_ip(address: &str) -> io::Result<IpAddr> {
    address.parse().map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn port_u16(port: i32) -> io::Result<u16> {
    u16::try_from(port).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Binds a TCP socket (not yet listening). With no address, `::` is tried
/// first and `0.0.0.0` if IPv6 is unavailable, as Node's `net` does.
pub fn bind_tcp(address: Option<&str>, port: i32, flags: u32) -> io::Result<OwnedFd> {
    bind_tcp_as(address, port, flags, Reuse::Addr)
}

/// Binds the first socket of a reuseport group (SO_REUSEPORT), as `bind_tcp`.
pub fn bind_tcp_group(address: Option<&str>, port: i32, flags: u32) -> io::Result<OwnedFd> {
    bind_tcp_as(address, port, flags, Reuse::Group)
}

/// Binds another socket of the group whose first is bound at `at`.
pub fn join_tcp_group(at: SocketAddr, flags: u32) -> io::Result<OwnedFd> {
    ip_socket(at.ip(), at.port(), SockType::Stream, flags, Reuse::Group)
}

fn bind_tcp_as(address: Option<&str>, port: i32, flags: u32, reuse: Reuse) -> io::Result<OwnedFd> {
    let port = port_u16(port)?;
    match address {
        Some(a) => ip_socket(parse_ip(a)?, port, SockType::Stream, flags, reuse),
        None => ip_socket(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port, SockType::Stream, flags, reuse)
            .or_else(|_| ip_socket(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port, SockType::Stream, flags, reuse)),
    }
}

/// The socket's bound address, for the other members of its group.
pub fn local_addr(fd: BorrowedFd) -> io::Result<SocketAddr> {
    let ss: SockaddrStorage = getsockname(fd.as_raw_fd())?;
    if let Some(v4) = ss.as_sockaddr_in() {
        return Ok(SocketAddr::new(IpAddr::V4(v4.ip()), v4.port()));
    }
    ss.as_sockaddr_in6()
        .map(|v6| SocketAddr::new(IpAddr::V6(v6.ip()), v6.port()))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}

/// A unix socket's bound path, if it has one.
pub fn local_path(fd: BorrowedFd) -> Option<String> {
    let ss: SockaddrStorage = getsockname(fd.as_raw_fd()).ok()?;
    let path = ss.as_unix_addr()?.path()?;
    Some(path.to_string_lossy().into_owned())
}

/// The user id of the process at the other end of a unix socket.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn peer_uid(fd: BorrowedFd) -> Option<u32> {
    nix::sys::socket::getsockopt(&fd, sockopt::PeerCredentials)
        .ok()
        .map(|c| c.uid())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn peer_uid(_fd: BorrowedFd) -> Option<u32> {
    None
}

/// Attaches `program` (classic BPF) to the reuseport group of `fd`,
/// replacing the one it had: it picks the socket for each new connection.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn steer_group(fd: BorrowedFd, program: &[crate::primary::steer::Insn]) -> io::Result<()> {
    /// asm-generic/socket.h (every architecture but mips, parisc and sparc).
    const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        // The kernel only reads it; `Insn` is `struct sock_filter`'s layout.
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `program`, alive for the call, of `len` instructions.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        SO_ATTACH_REUSEPORT_CBPF,
        (&prog as *const libc::sock_fprog).cast(),
        std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t
    ))?;
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn steer_group(_fd: BorrowedFd, _program: &[crate::primary::steer::Insn]) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOPROTOOPT))
}

pub fn bind_udp(address: Option<&str>, port: i32, family: Family, flags: u32) -> io::Result<OwnedFd> {
    let ip = match (address, family) {
        (Some(a), _) => parse_ip(a)?,
        (None, Family::Udp6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        (None, _) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    ip_socket(
        ip,
        port_u16(port)?,
        SockType::Datagram,
        flags,
        if flags & FLAG_REUSEADDR != 0 {
            Reuse::Addr
        } else {
            Reuse::None
        },
    )
}

/// How `readableAll`/`writableAll` change a socket file's mode. libuv
/// changed this in 1.51, so the worker says which its Node does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PipeMode {
    /// libuv < 1.51: the bits are added to the file's mode.
    #[default]
    Add,
    /// libuv >= 1.51: the mode is set to exactly those bits.
    Exact,
}

/// Binds a unix stream socket at `path`, chmod'ed like libuv's `uv_pipe_chmod`.
pub fn bind_pipe(path: &str, readable_all: bool, writable_all: bool, how: PipeMode) -> io::Result<OwnedFd> {
    let fd = new_socket(AddressFamily::Unix, SockType::Stream)?;
    let addr = UnixAddr::new(path)?;
    match bind(fd.as_raw_fd(), &addr) {
        // libuv reports a missing directory as EACCES; so must we.
        Err(nix::errno::Errno::ENOENT) => return Err(io::Error::from_raw_os_error(libc::EACCES)),
        r => r?,
    }
    let mut mode = 0;
    if readable_all {
        mode |= 0o444;
    }
    if writable_all {
        mode |= 0o222;
    }
    if mode != 0 {
        use std::os::unix::fs::PermissionsExt;
        if how == PipeMode::Add {
            mode |= std::fs::metadata(path)?.permissions().mode();
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(fd)
}

/// `listen({ fd })`: the fd is the primary's own. A CLOEXEC duplicate is used
/// so closing the handle never closes the application's descriptor.
pub fn dup_fd(fd: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // An fd of the app's that may not be open: fcntl then fails with EBADF.
    let dup = syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, 3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

pub fn start_listening(fd: BorrowedFd, backlog: i32) -> io::Result<()> {
    let backlog = if backlog > 0 { backlog } else { 511 };
    let backlog = Backlog::new(backlog).unwrap_or(Backlog::MAXCONN);
    listen(&fd, backlog)?;
    Ok(())
}

/// The bound address as Node's `server.address()` reports it. `None` for
/// sockets that are not IP (unix paths report their path instead).
pub fn sockname(fd: BorrowedFd) -> io::Result<Option<SockName>> {
    let ss: SockaddrStorage = getsockname(fd.as_raw_fd())?;
    let name = |address: String, family: &str, port| SockName {
        address,
        family: family.into(),
        port,
    };
    if let Some(v4) = ss.as_sockaddr_in() {
        return Ok(Some(name(v4.ip().to_string(), "IPv4", v4.port())));
    }
    Ok(ss
        .as_sockaddr_in6()
        .map(|v6| name(v6.ip().to_string(), "IPv6", v6.port())))
}

/// A fresh unbound socket; the worker's shim wraps one once to learn Node's
/// handle constructors without reaching into Node's internals.
pub fn probe_socket(kind: &str) -> io::Result<RawFd> {
    let (af, ty) = match kind {
        "tcp" => (AddressFamily::Inet, SockType::Stream),
        "pipe" => (AddressFamily::Unix, SockType::Stream),
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    Ok(std::os::fd::IntoRawFd::into_raw_fd(new_socket(af, ty)?))
}

/// Sets the fd non-blocking for the accept loop.
pub fn prepare_accept(fd: &OwnedFd) -> io::Result<()> {
    crate::channel::set_nonblocking(fd.as_fd().as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gets_a_port_and_second_bind_is_in_use() {
        let a = bind_tcp(Some("127.0.0.1"), 0, 0).unwrap();
        start_listening(a.as_fd(), 0).unwrap();
        let name = sockname(a.as_fd()).unwrap().unwrap();
        assert_eq!(name.family, "IPv4");
        assert!(name.port > 0);
        let err = bind_tcp(Some("127.0.0.1"), name.port as i32, 0).and_then(|b| {
            start_listening(b.as_fd(), 0)?;
            Ok(b)
        });
        assert_eq!(err.unwrap_err().raw_os_error(), Some(libc::EADDRINUSE));
    }

    #[test]
    fn default_host_is_dual_stack_or_ipv4() {
        let a = bind_tcp(None, 0, 0).unwrap();
        let name = sockname(a.as_fd()).unwrap().unwrap();
        assert!(name.address == "::" || name.address == "0.0.0.0");
    }

    #[test]
    fn bad_address_is_einval() {
        let e = bind_tcp(Some("not-an-ip"), 80, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn pipe_too_long_is_an_error() {
        let long = format!("/tmp/{}", "x".repeat(200));
        assert!(bind_pipe(&long, false, false, PipeMode::Add).is_err());
    }

    #[test]
    fn pipe_chmod_adds_bits() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("rs-cluster-test-{}.sock", std::process::id()));
        let p = path.to_str().unwrap();
        let _ = std::fs::remove_file(p);
        let _fd = bind_pipe(p, true, true, PipeMode::Add).unwrap();
        let mode = std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode & 0o666, 0o666);
        std::fs::remove_file(p).unwrap();
        let _fd = bind_pipe(p, true, false, PipeMode::Exact).unwrap();
        let mode = std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        std::fs::remove_file(p).unwrap();
    }
}
