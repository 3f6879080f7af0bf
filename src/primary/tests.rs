//! The reactor driven by fake workers over real socketpairs and real TCP
//! clients on 127.0.0.1: routing, acknowledgement, refusal and death.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::*;
use crate::board::Board;
use crate::channel::{pair, Channel, Received};
use crate::protocol::{
    encode_acks, encode_close, encode_hello, encode_query, Ack, Conn, Decoder, Frame, Outcome, Query,
};

struct FakeWorker {
    chan: Channel,
    dec: Decoder,
    board: Option<Board>,
}

impl FakeWorker {
    fn join(primary: &Primary, id: u32) -> FakeWorker {
        let (mine, theirs) = pair().unwrap();
        primary.send(Command::AddWorker { id, fd: mine });
        let w = FakeWorker {
            chan: Channel::new(theirs).unwrap(),
            dec: Decoder::default(),
            board: None,
        };
        let mut out = Vec::new();
        encode_hello(&mut out);
        w.chan.send_all_blocking(&out, &[]).unwrap();
        w
    }

    fn send(&self, bytes: &[u8]) {
        self.chan.send_all_blocking(bytes, &[]).unwrap();
    }

    fn query(&self, key: &str, port: i32) {
        let mut out = Vec::new();
        let q = Query {
            data: serde_json::json!({ "from": key }),
            ..Query::loopback(key, port)
        };
        encode_query(&mut out, &q);
        self.send(&out);
    }

    /// The next frame but the claim board (kept), waiting up to 5 s.
    fn next(&mut self) -> Frame {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.dec.next_frame().unwrap() {
                Some(Frame::Board(fd)) => self.board = Some(Board::map(fd).unwrap()),
                Some(f) => return f,
                None => {}
            }
            match self.chan.recv(&mut self.dec).unwrap() {
                Received::Data { .. } => {}
                Received::WouldBlock => {
                    assert!(Instant::now() < deadline, "no frame within 5 s");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Received::Eof => panic!("primary closed the channel"),
            }
        }
    }

    /// Gathers `n` connections, acknowledging each with `accept`.
    fn take_conns(&mut self, n: usize, accept: bool) -> Vec<(u32, OwnedFd)> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.next() {
                Frame::NewConn(conns) => {
                    let board = self.board.as_ref().expect("the board comes first");
                    let conns: Vec<_> = conns.into_iter().filter(|(c, _)| board.claim(c.slot, c.seq)).collect();
                    let mut out = Vec::new();
                    encode_acks(
                        &mut out,
                        conns.iter().map(|(c, _)| Ack {
                            seq: c.seq,
                            outcome: if accept { Outcome::Accepted } else { Outcome::Refused },
                        }),
                    );
                    self.send(&out);
                    got.extend(
                        conns
                            .into_iter()
                            .map(|(c, fd)| (c.handle, fd.expect("room for every fd"))),
                    );
                }
                other => panic!("expected connections, got {other:?}"),
            }
        }
        got
    }

    /// Reads for `period`, claiming and acknowledging nothing.
    fn receive_for(&mut self, period: Duration) -> Vec<(Conn, Option<OwnedFd>)> {
        let deadline = Instant::now() + period;
        let mut got = Vec::new();
        while Instant::now() < deadline {
            let _ = self.chan.recv(&mut self.dec);
            while let Ok(Some(frame)) = self.dec.next_frame() {
                match frame {
                    Frame::Board(fd) => self.board = Some(Board::map(fd).unwrap()),
                    Frame::NewConn(conns) => got.extend(conns),
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        got
    }

    /// Reads for `period` without acknowledging: the connections this worker
    /// managed to claim, and how many it found revoked.
    fn hold_for(&mut self, period: Duration) -> (Vec<(Conn, Option<OwnedFd>)>, usize) {
        let got = self.receive_for(period);
        let board = self.board.as_ref().expect("the board comes first");
        let (held, revoked): (Vec<_>, Vec<_>) = got.into_iter().partition(|(c, _)| board.claim(c.slot, c.seq));
        (held, revoked.len())
    }

    fn reply(&mut self) -> crate::protocol::Reply {
        match self.next() {
            Frame::Reply { reply, .. } => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

fn start(window: usize) -> (Primary, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let sink: EventSink = Arc::new(move |e| {
        let _ = tx.lock().unwrap().send(e);
    });
    let p = Primary::start(
        Config {
            policy: Policy::RoundRobin,
            window,
        },
        sink,
    )
    .unwrap();
    (p, rx)
}

/// A primary with workers 1 and 2 both serving one round-robin handle.
fn two_workers() -> (Primary, mpsc::Receiver<Event>, FakeWorker, FakeWorker, u16) {
    let (p, events) = start(8);
    let mut a = FakeWorker::join(&p, 1);
    let mut b = FakeWorker::join(&p, 2);
    a.query("k", 0);
    let port = a.reply().sockname.unwrap().port;
    b.query("k", 0);
    b.reply();
    (p, events, a, b, port)
}

/// Writes a tag on a fresh client connection and returns the client.
fn client(port: u16, tag: u8) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(&[tag]).unwrap();
    c
}

/// The server side of `c` is gone: end of stream or reset, not a timeout.
fn assert_closed(c: &mut TcpStream) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    match c.read(&mut [0u8; 1]) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("connection still open: {other:?}"),
    }
}

fn peer_port(fd: &OwnedFd) -> u16 {
    std::net::TcpStream::from(fd.try_clone().unwrap())
        .peer_addr()
        .unwrap()
        .port()
}

fn read_tag(fd: &OwnedFd) -> u8 {
    let mut s = std::net::TcpStream::from(fd.try_clone().unwrap());
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    b[0]
}

#[test]
fn round_robin_spreads_connections_evenly() {
    let (p, _events) = start(8);
    let mut a = FakeWorker::join(&p, 1);
    let mut b = FakeWorker::join(&p, 2);
    a.query("k", 0);
    let ra = a.reply();
    assert_eq!(ra.errno, 0);
    assert!(!ra.shared);
    assert_eq!(ra.data, serde_json::json!({ "from": "k" }));
    let port = ra.sockname.unwrap().port;
    b.query("k", 0);
    let rb = b.reply();
    assert_eq!(rb.handle, ra.handle, "same key, same handle");
    assert_eq!(
        rb.data,
        serde_json::json!({ "from": "k" }),
        "first worker's data is shared"
    );
    let clients: Vec<_> = (0..10).map(|i| client(port, i)).collect();
    let got_a = a.take_conns(5, true);
    let got_b = b.take_conns(5, true);
    let mut tags: Vec<u8> = got_a.iter().chain(&got_b).map(|(_, fd)| read_tag(fd)).collect();
    tags.sort();
    assert_eq!(tags, (0..10).collect::<Vec<_>>());
    drop(clients);
}

#[test]
fn refused_connections_go_to_another_worker() {
    let (_p, _events, mut a, mut b, port) = two_workers();
    let _c1 = client(port, 7);
    let _c2 = client(port, 8);
    let first_a = a.take_conns(1, false);
    let first_b = b.take_conns(1, true);
    let rerouted = b.take_conns(1, true);
    assert_eq!(peer_port(&first_a[0].1), peer_port(&rerouted[0].1));
    assert_ne!(peer_port(&first_b[0].1), peer_port(&rerouted[0].1));
}

#[test]
fn a_dead_worker_loses_only_what_it_claimed() {
    let (_p, _events, mut a, mut b, port) = two_workers();
    let mut clients: Vec<_> = (0..4).map(|i| client(port, i)).collect();
    // a receives its two, claims one and dies without acknowledging either.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < 2 {
        assert!(Instant::now() < deadline, "a got {} connections", got.len());
        got.extend(a.receive_for(Duration::from_millis(10)));
    }
    let (claimed, _) = &got[0];
    assert!(a.board.as_ref().unwrap().claim(claimed.slot, claimed.seq));
    let claimed_tag = read_tag(got[0].1.as_ref().unwrap());
    drop(got);
    drop(a);
    // The one it claimed may have been read: it is closed, never re-routed.
    let lost = &mut clients[claimed_tag as usize];
    assert_closed(lost);
    // The one it never claimed is still the primary's, and goes to b.
    let served = b.take_conns(3, true);
    let mut tags: Vec<u8> = served.iter().map(|(_, fd)| read_tag(fd)).collect();
    tags.push(claimed_tag);
    tags.sort();
    assert_eq!(tags, vec![0, 1, 2, 3]);
}

#[test]
fn the_window_caps_unacknowledged_connections() {
    let (p, _events) = start(2);
    let mut a = FakeWorker::join(&p, 1);
    a.query("k", 0);
    let port = a.reply().sockname.unwrap().port;
    let _clients: Vec<_> = (0..4).map(|i| client(port, i)).collect();
    let (held, revoked) = a.hold_for(Duration::from_millis(300));
    assert_eq!(
        (held.len(), revoked),
        (2, 0),
        "only the window is handed out before any ack"
    );
    let mut out = Vec::new();
    encode_acks(
        &mut out,
        held.iter().map(|(c, _)| Ack {
            seq: c.seq,
            outcome: Outcome::Accepted,
        }),
    );
    a.send(&out);
    assert_eq!(a.take_conns(2, true).len(), 2);
}

#[test]
fn last_worker_closing_frees_the_port() {
    let (p, _events) = start(8);
    let mut a = FakeWorker::join(&p, 1);
    a.query("k", 0);
    let r = a.reply();
    let port = r.sockname.unwrap().port;
    let mut out = Vec::new();
    encode_close(&mut out, r.handle);
    a.send(&out);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "port still open");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn bind_errors_come_back_as_negative_errno() {
    let (p, _events) = start(8);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut a = FakeWorker::join(&p, 1);
    a.query("k", taken.local_addr().unwrap().port() as i32);
    assert_eq!(a.reply().errno, -libc::EADDRINUSE);
}

#[test]
fn garbage_cuts_off_only_the_sender() {
    let (p, events) = start(8);
    let mut good = FakeWorker::join(&p, 1);
    let mut bad = FakeWorker::join(&p, 2);
    bad.send(&[4, 0, 0, 0, 42, 1, 2, 3]);
    match events.recv_timeout(Duration::from_secs(5)).unwrap() {
        Event::WorkerError { id, error } => {
            assert_eq!(id, 2);
            assert_eq!(error.code(), "ERR_RS_CLUSTER_PROTOCOL");
        }
        Event::Fatal { error } => panic!("reactor failed: {error}"),
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match bad.chan.recv(&mut bad.dec) {
            Ok(Received::Eof) | Err(_) => break,
            _ => assert!(Instant::now() < deadline, "bad worker still connected"),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    good.query("k", 0);
    assert_eq!(good.reply().errno, 0);
}

#[test]
fn every_fd_the_core_opens_is_cloexec() {
    let (p, _events) = start(8);
    let mut a = FakeWorker::join(&p, 1);
    a.query("k", 0);
    let port = a.reply().sockname.unwrap().port;
    let _c = client(port, 1);
    let _held = a.take_conns(1, true);
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let fd: i32 = entry.unwrap().file_name().to_string_lossy().parse().unwrap();
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        // Only sockets are ours: the harness may inherit other fds (and the
        // directory listing's own fd reads as closed by now).
        let what = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
        if flags >= 0 && what.to_string_lossy().starts_with("socket:") {
            assert!(flags & libc::FD_CLOEXEC != 0, "fd {fd} ({what:?}) is not CLOEXEC");
        }
    }
}

#[test]
fn a_stalled_worker_loses_the_connections_it_never_read() {
    let (_p, _events, mut a, mut b, port) = two_workers();
    // a stops reading: whatever was sent to it is revoked and served by b.
    let _clients: Vec<_> = (0..6).map(|i| client(port, i)).collect();
    let got = b.take_conns(6, true);
    let mut tags: Vec<u8> = got.iter().map(|(_, fd)| read_tag(fd)).collect();
    tags.sort();
    assert_eq!(tags, (0..6).collect::<Vec<_>>());
    // When a wakes up, its stale copies fail to claim: nothing is served twice.
    let (held, revoked) = a.hold_for(Duration::from_millis(300));
    assert!(held.is_empty() && revoked > 0, "held {}, revoked {revoked}", held.len());
}

#[test]
fn an_accepted_connection_is_released_once_the_primary_let_go() {
    let (p, _events) = start(8);
    let mut a = FakeWorker::join(&p, 1);
    a.query("k", 0);
    let port = a.reply().sockname.unwrap().port;
    let mut c = client(port, 9);
    let mut got = Vec::new();
    while got.is_empty() {
        got = a.receive_for(Duration::from_millis(10));
    }
    let (conn, fd) = got.pop().unwrap();
    let board = a.board.as_ref().unwrap();
    assert!(board.claim(conn.slot, conn.seq));
    let mut out = Vec::new();
    encode_acks(
        &mut out,
        std::iter::once(Ack {
            seq: conn.seq,
            outcome: Outcome::Accepted,
        }),
    );
    a.send(&out);
    let deadline = Instant::now() + Duration::from_secs(5);
    while board.still_claimed(conn.slot, conn.seq) {
        assert!(Instant::now() < deadline, "the slot was never released");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Released means the primary's copy is closed: ours was the last.
    drop(fd);
    assert_closed(&mut c);
}
