//! The reactor driven by fake workers over real socketpairs and real TCP
//! clients on 127.0.0.1: routing, the window, refusal, stalls and death.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::*;
use crate::channel::{pair, Channel, Received};
use crate::handoff::{self, Received as Got};
use crate::page::Page;
use crate::protocol::{encode_close, encode_hello, encode_query, Decoder, Frame, Handoff, Query, Returned};

struct FakeWorker {
    chan: Channel,
    dec: Decoder,
    page: Option<Page>,
    handoff: Option<OwnedFd>,
}

impl FakeWorker {
    fn join(primary: &Primary, id: u32) -> FakeWorker {
        let (mine, theirs) = pair().unwrap();
        primary.send(Command::AddWorker { id, fd: mine, pid: 0 });
        let w = FakeWorker {
            chan: Channel::new(theirs).unwrap(),
            dec: Decoder::default(),
            page: None,
            handoff: None,
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

    /// The next control frame but the setup (kept), waiting up to 5 s.
    fn next(&mut self) -> Frame {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.dec.next_frame().unwrap() {
                Some(Frame::Setup { page, handoff }) => {
                    self.page = Some(Page::map(page).unwrap());
                    self.handoff = Some(handoff);
                }
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

    fn reply(&mut self) -> crate::protocol::Reply {
        match self.next() {
            Frame::Reply { reply, .. } => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// Reads one connection if one is queued, counting it as a worker does,
    /// and turns the loop.
    fn read_one(&self) -> Option<(Handoff, OwnedFd)> {
        let page = self.page.as_ref().expect("setup comes first");
        page.turned(crate::page::monotonic_ns());
        match handoff::recv_one(self.handoff.as_ref().unwrap().as_fd()).unwrap() {
            Got::Conn(h, fd) => {
                page.took_one();
                Some((h, fd))
            }
            _ => None,
        }
    }

    /// Reads `n` connections, waiting up to 5 s.
    fn take_conns(&self, n: usize) -> Vec<(Handoff, OwnedFd)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < n {
            match self.read_one() {
                Some(c) => got.push(c),
                None => {
                    assert!(Instant::now() < deadline, "got {} of {n} connections", got.len());
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        got
    }

    /// Gives a connection back to the primary.
    fn give_back(&self, (record, fd): (Handoff, OwnedFd), why: Returned) {
        let record = Handoff {
            returned: why,
            ..record
        };
        assert!(handoff::send_one(self.handoff.as_ref().unwrap().as_fd(), &record, fd.as_raw_fd()).unwrap());
    }

    /// How many connections wait unread in this worker's queue after
    /// `wait`; they are read (and counted) on the way.
    fn unread_after(&self, wait: Duration) -> usize {
        std::thread::sleep(wait);
        std::iter::from_fn(|| self.read_one()).count()
    }
}

fn start(window: usize) -> (Primary, mpsc::Receiver<Event>) {
    start_with(Policy::RoundRobin, window)
}

fn start_with(policy: Policy, window: usize) -> (Primary, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let sink: EventSink = Arc::new(move |e| {
        let _ = tx.lock().unwrap().send(e);
    });
    let p = Primary::start(
        Config {
            policy,
            window,
            placement: Placement::Primary,
            inherited: Vec::new(),
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
    let got_a = a.take_conns(5);
    let got_b = b.take_conns(5);
    assert!(got_a
        .iter()
        .all(|(h, _)| h.handle == ra.handle && h.returned == Returned::None));
    let mut tags: Vec<u8> = got_a.iter().chain(&got_b).map(|(_, fd)| read_tag(fd)).collect();
    tags.sort();
    assert_eq!(tags, (0..10).collect::<Vec<_>>());
    drop(clients);
}

#[test]
fn refused_connections_go_to_another_worker() {
    let (_p, _events, a, b, port) = two_workers();
    let _c1 = client(port, 7);
    let _c2 = client(port, 8);
    let mut first_a = a.take_conns(1);
    let first_b = b.take_conns(1);
    let refused_port = peer_port(&first_a[0].1);
    a.give_back(first_a.pop().unwrap(), Returned::Refused);
    let rerouted = b.take_conns(1);
    assert_eq!(refused_port, peer_port(&rerouted[0].1));
    assert_ne!(peer_port(&first_b[0].1), peer_port(&rerouted[0].1));
}

#[test]
fn a_connection_every_worker_refuses_is_closed() {
    let (_p, _events, a, b, port) = two_workers();
    let mut c = client(port, 1);
    let got = a.take_conns(1).pop().unwrap();
    a.give_back(got, Returned::Refused);
    let got = b.take_conns(1).pop().unwrap();
    b.give_back(got, Returned::Refused);
    assert_closed(&mut c);
}

#[test]
fn a_dead_worker_loses_only_what_it_read() {
    let (_p, _events, a, b, port) = two_workers();
    let mut clients: Vec<_> = (0..4).map(|i| client(port, i)).collect();
    // a reads one of its two and dies: the unread one goes to b.
    let (_, fd) = a.take_conns(1).pop().unwrap();
    let read_tag_a = read_tag(&fd);
    drop(fd);
    drop(a);
    assert_closed(&mut clients[read_tag_a as usize]);
    let served = b.take_conns(3);
    let mut tags: Vec<u8> = served.iter().map(|(_, fd)| read_tag(fd)).collect();
    tags.push(read_tag_a);
    tags.sort();
    assert_eq!(tags, vec![0, 1, 2, 3]);
}

#[test]
fn the_window_caps_unread_connections() {
    let (p, _events) = start(2);
    let mut a = FakeWorker::join(&p, 1);
    a.query("k", 0);
    let port = a.reply().sockname.unwrap().port;
    let _clients: Vec<_> = (0..4).map(|i| client(port, i)).collect();
    assert_eq!(
        a.unread_after(Duration::from_millis(300)),
        2,
        "only the window is handed out"
    );
    // unread_after read them (as a worker would): the other two follow.
    assert_eq!(a.take_conns(2).len(), 2);
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
            assert!(matches!(error, crate::error::Error::Protocol(_)), "{error}");
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
fn a_garbled_hand_off_message_cuts_off_only_the_sender() {
    let (_p, events, a, b, port) = two_workers();
    // A record with no fd on the hand-off channel.
    let record = Handoff {
        handle: 1,
        seq: 1,
        returned: Returned::Refused,
        accepted_ns: 0,
        key: 0,
    }
    .encode();
    let raw = a.handoff.as_ref().unwrap().as_raw_fd();
    // SAFETY: the buffer is alive for the call.
    let sent = unsafe { libc::send(raw, record.as_ptr().cast(), record.len(), 0) };
    assert_eq!(sent, record.len() as isize);
    match events.recv_timeout(Duration::from_secs(5)).unwrap() {
        Event::WorkerError { id, .. } => assert_eq!(id, 1),
        Event::Fatal { error } => panic!("reactor failed: {error}"),
    }
    let _c = client(port, 3);
    assert_eq!(read_tag(&b.take_conns(1)[0].1), 3);
}

#[test]
fn every_fd_the_core_opens_is_cloexec() {
    let (p, _events) = start(8);
    let mut a = FakeWorker::join(&p, 1);
    a.query("k", 0);
    let port = a.reply().sockname.unwrap().port;
    let _c = client(port, 1);
    let _held = a.take_conns(1);
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let fd: i32 = entry.unwrap().file_name().to_string_lossy().parse().unwrap();
        // SAFETY: F_GETFD on any number is harmless; a closed one gives -1.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        // Only sockets and the page are ours: the harness may inherit other
        // fds (and the directory listing's own fd reads as closed by now).
        let what = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
        let what = what.to_string_lossy();
        if flags >= 0 && (what.starts_with("socket:") || what.contains("rs-cluster-page")) {
            assert!(flags & libc::FD_CLOEXEC != 0, "fd {fd} ({what}) is not CLOEXEC");
        }
    }
}

#[test]
fn a_stalled_worker_loses_the_connections_it_never_read() {
    let (_p, _events, a, b, port) = two_workers();
    // a reads nothing: what was sent to it is taken back and served by b.
    let _clients: Vec<_> = (0..6).map(|i| client(port, i)).collect();
    let got = b.take_conns(6);
    let mut tags: Vec<u8> = got.iter().map(|(_, fd)| read_tag(fd)).collect();
    tags.sort();
    assert_eq!(tags, (0..6).collect::<Vec<_>>());
    // Nothing is left in a's queue: nothing can be served twice.
    assert_eq!(a.unread_after(Duration::ZERO), 0);
    // Once its loop turns again, a gets its share again.
    a.page.as_ref().unwrap().turned(crate::page::monotonic_ns());
    std::thread::sleep(Duration::from_millis(20));
    let _more: Vec<_> = (10..14).map(|i| client(port, i)).collect();
    let back = a.take_conns(2);
    assert!(back.iter().all(|(_, fd)| read_tag(fd) >= 10));
}

#[test]
fn a_worker_short_of_fds_pauses_and_its_queue_goes_elsewhere() {
    let (_p, _events, a, b, port) = two_workers();
    let _clients: Vec<_> = (0..4).map(|i| client(port, i)).collect();
    let one = a.take_conns(1).pop().unwrap();
    a.give_back(one, Returned::OutOfFds);
    let got = b.take_conns(4);
    let mut tags: Vec<u8> = got.iter().map(|(_, fd)| read_tag(fd)).collect();
    tags.sort();
    assert_eq!(tags, vec![0, 1, 2, 3], "b serves all, including what a had unread");
}

#[test]
fn a_disconnecting_worker_gets_nothing_new_and_its_queue_goes_elsewhere() {
    let (p, _events, a, b, port) = two_workers();
    let _clients: Vec<_> = (0..4).map(|i| client(port, i)).collect();
    std::thread::sleep(Duration::from_millis(50));
    p.send(Command::StopRouting { id: 1 });
    let got = b.take_conns(4);
    assert_eq!(got.len(), 4);
    assert_eq!(a.unread_after(Duration::from_millis(50)), 0);
}

fn stats(p: &Primary) -> stats::Stats {
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    p.send(Command::Stats { reply });
    answer.recv_timeout(Duration::from_secs(5)).unwrap()
}

#[test]
fn stats_count_what_each_worker_read_and_what_was_taken_back() {
    let (p, _events, a, b, port) = two_workers();
    let _clients: Vec<_> = (0..6).map(|i| client(port, i)).collect();
    // b reads everything; a nothing, so its share is taken back as stalled.
    let got = b.take_conns(6);
    for _ in &got {
        b.page.as_ref().unwrap().opened(1_000);
    }
    let s = stats(&p);
    let by_id = |id| s.workers.iter().find(|w| w.id == id).unwrap();
    assert_eq!(by_id(2).accepted, 6);
    assert_eq!(by_id(2).active, 6);
    assert_eq!(by_id(2).handoff[0], 6, "1 µs is in the first bucket");
    assert_eq!(by_id(1).accepted, 0);
    assert_eq!(by_id(1).pending, 0);
    assert!(by_id(1).stalled);
    assert_eq!(
        by_id(1).rerouted,
        s.rerouted.stalled,
        "what was taken back came from worker 1"
    );
    assert!(s.rerouted.stalled >= 1, "{:?}", s.rerouted);
    assert_eq!(s.listeners.len(), 1);
    let l = &s.listeners[0];
    assert_eq!((l.policy, l.accepted, l.queue), ("rr", Some(6), Some(0)));
    assert_eq!(l.address, format!("127.0.0.1:{port}"));
    drop(a);
    // A departed worker's counts are kept as retired totals.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = stats(&p);
        if s.workers.is_empty() {
            assert_eq!(s.retired.accepted, 6);
            break;
        }
        assert!(Instant::now() < deadline, "workers still listed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Workers 1 and 2 (and more) on one listener under `policy`.
fn workers_with(policy: Policy, n: u32) -> (Primary, Vec<FakeWorker>, u16) {
    let (p, _events) = start_with(policy, 8);
    let mut ws: Vec<FakeWorker> = (1..=n).map(|id| FakeWorker::join(&p, id)).collect();
    ws[0].query("k", 0);
    let port = ws[0].reply().sockname.unwrap().port;
    for w in &mut ws[1..] {
        w.query("k", 0);
        w.reply();
    }
    (p, ws, port)
}

/// Which worker (index) got each of `n` connections, reading them as they come.
fn who_gets(ws: &[FakeWorker], n: usize) -> Vec<(usize, OwnedFd)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(Instant::now() < deadline, "got {} of {n}", got.len());
        for (i, w) in ws.iter().enumerate() {
            if let Some((_, fd)) = w.read_one() {
                got.push((i, fd));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    got
}

#[test]
fn least_sends_new_connections_to_the_least_loaded_worker() {
    let (_p, ws, port) = workers_with(Policy::Least, 2);
    for _ in 0..3 {
        ws[0].page.as_ref().unwrap().opened(0);
    }
    // One at a time, so each choice sees the last one counted.
    let mut to = Vec::new();
    let mut keep = Vec::new();
    for i in 0..5 {
        keep.push(client(port, i));
        let (w, fd) = who_gets(&ws, 1).pop().unwrap();
        ws[w].page.as_ref().unwrap().opened(0);
        to.push(w);
        keep.push(TcpStream::from(fd));
    }
    assert_eq!(&to[..3], &[1, 1, 1], "worker 2 first, until it holds as many: {to:?}");
    assert!(to[3..].contains(&0), "then both: {to:?}");
}

/// Sends a request with header `x-session: <session>` on a new connection.
fn request_with(port: u16, session: &str) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        c,
        "GET /?sid={session} HTTP/1.1\r\nHost: x\r\nX-Session: {session}\r\n\r\n"
    )
    .unwrap();
    c
}

#[test]
fn sticky_by_header_keeps_each_session_on_one_worker_and_leaves_its_bytes_unread() {
    let spec = crate::primary::sticky::KeySpec::parse("header:x-session").unwrap();
    let (_p, ws, port) = workers_with(Policy::Sticky(spec), 3);
    let mut first = HashMap::new();
    let mut keep = Vec::new();
    for round in 0..3 {
        for s in 0..12 {
            keep.push(request_with(port, &format!("s{s}")));
            let (w, fd) = who_gets(&ws, 1).pop().unwrap();
            let mut head = vec![0u8; 200];
            let mut stream = TcpStream::from(fd);
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let n = stream.read(&mut head).unwrap();
            assert!(
                head[..n].starts_with(b"GET /?sid="),
                "the worker reads the whole request"
            );
            let prev = *first.entry(s).or_insert(w);
            assert_eq!(prev, w, "session s{s} moved in round {round}");
        }
    }
    let used: std::collections::HashSet<_> = first.values().collect();
    assert!(used.len() >= 2, "12 sessions spread over workers: {first:?}");
}

#[test]
fn sticky_by_ip_sends_one_client_address_to_one_worker() {
    let (_p, ws, port) = workers_with(Policy::Sticky(crate::primary::sticky::KeySpec::Ip), 3);
    let _c: Vec<_> = (0..9).map(|i| client(port, i)).collect();
    let got = who_gets(&ws, 9);
    assert!(
        got.iter().all(|(w, _)| *w == got[0].0),
        "all from 127.0.0.1 to one worker"
    );
}

#[test]
fn a_silent_client_holds_up_no_one_when_keys_are_in_the_head() {
    let spec = crate::primary::sticky::KeySpec::parse("query:sid").unwrap();
    let (_p, ws, port) = workers_with(Policy::Sticky(spec), 2);
    let silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let t0 = Instant::now();
    let _talk: Vec<_> = (0..4).map(|s| request_with(port, &format!("t{s}"))).collect();
    let got = who_gets(&ws, 4);
    assert!(
        t0.elapsed() < Duration::from_millis(40),
        "keyed requests waited {:?}",
        t0.elapsed()
    );
    // The silent one is handed over once its wait is up, keyed by its address.
    let late = who_gets(&ws, 1);
    assert_eq!(late.len(), 1);
    drop((silent, got));
}

#[test]
fn a_replacement_inherits_its_predecessors_sticky_keys() {
    let spec = crate::primary::sticky::KeySpec::parse("header:x-session").unwrap();
    let (p, mut ws, port) = workers_with(Policy::Sticky(spec), 2);
    let mut owner = HashMap::new();
    let mut keep = Vec::new();
    for s in 0..10 {
        keep.push(request_with(port, &format!("k{s}")));
        let (w, fd) = who_gets(&ws, 1).pop().unwrap();
        owner.insert(s, w);
        keep.push(TcpStream::from(fd));
    }
    // Worker 3 replaces worker 1 (index 0), which then drains.
    let mut w3 = FakeWorker::join(&p, 3);
    w3.query("k", 0);
    w3.reply();
    p.send(Command::Inherit { from: 1, to: 3 });
    p.send(Command::StopRouting { id: 1 });
    std::thread::sleep(Duration::from_millis(20));
    ws.push(w3);
    for s in 0..10 {
        keep.push(request_with(port, &format!("k{s}")));
        let (w, fd) = who_gets(&ws, 1).pop().unwrap();
        let expected = if owner[&s] == 0 { 2 } else { owner[&s] };
        assert_eq!(w, expected, "session k{s}: worker 1's keys go to 3, worker 2's stay");
        keep.push(TcpStream::from(fd));
    }
}

#[test]
fn silent_clients_past_the_limit_are_keyed_by_address_and_never_stop_accepting() {
    let spec = crate::primary::sticky::KeySpec::parse("header:x-session").unwrap();
    let (_p, ws, port) = workers_with(Policy::Sticky(spec), 2);
    let silent_n = crate::tuning::MAX_PEEKING + 40;
    let _silent: Vec<TcpStream> = (0..silent_n)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let t0 = Instant::now();
    let _talk: Vec<_> = (0..4).map(|s| request_with(port, &format!("t{s}"))).collect();
    let (mut keyed, mut evicted) = (0, 0);
    let early = silent_n - crate::tuning::MAX_PEEKING;
    // Well before PEEK_WAIT (1 s): nothing here waits for a silent client's time-out.
    let deadline = t0 + Duration::from_millis(700);
    while keyed < 4 || evicted < early {
        assert!(
            Instant::now() < deadline,
            "{keyed} of 4 keyed and {evicted} of {early} silent connections handed over in time"
        );
        for w in &ws {
            while let Some((_, fd)) = w.read_one() {
                let s = TcpStream::from(fd);
                s.set_nonblocking(true).unwrap();
                let mut b = [0u8; 1];
                match (&s).read(&mut b) {
                    Ok(1) => keyed += 1,
                    _ => evicted += 1,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
