//! The wire protocol on the private control channel between the primary and a worker.
//!
//! This file is the only place that knows the byte layout. A frame is
//! `u32 LE body length | u8 kind | body`. The per-connection frames (`NewConn`,
//! `Ack`) are fixed-size binary records so the primary's hot path never builds
//! or parses JSON; the rare control frames (`Query`, `Reply`) carry JSON bodies
//! described by the serde types below. File descriptors travel as SCM_RIGHTS
//! on the same `sendmsg` as the frame that owns them; the decoder hands them
//! out in order, so a frame never waits for fds that belong to a later one.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;

/// Bumped whenever a frame's layout or meaning changes. A worker built from a
/// different version is refused at `Hello` instead of being misunderstood.
/// 2: acceptances are acknowledged in batches and the claim board is
/// authoritative; the primary releases a claimed slot after closing its copy.
pub const VERSION: u16 = 2;

/// Largest body accepted. Control frames are small; anything bigger is hostile
/// or garbled, and refusing it bounds the decoder's memory.
pub const MAX_BODY: usize = 64 * 1024;

/// Most fds one `NewConn` frame carries (one `sendmsg`).
pub const MAX_BATCH: usize = 32;

const HEADER: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Hello = 1,
    Query = 2,
    Reply = 3,
    NewConn = 4,
    Ack = 5,
    Close = 6,
    Board = 7,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Query,
            3 => Kind::Reply,
            4 => Kind::NewConn,
            5 => Kind::Ack,
            6 => Kind::Close,
            7 => Kind::Board,
            _ => return None,
        })
    }
}

/// What a worker listens on, as Node's `net`/`dgram` describe it to cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Tcp4,
    Tcp6,
    Pipe,
    Udp4,
    Udp6,
    /// `listen({ fd })`: an fd number in the primary's own process.
    Fd,
}

impl Family {
    pub fn is_udp(self) -> bool {
        matches!(self, Family::Udp4 | Family::Udp6)
    }
}

/// A worker asks for a server handle (Node's `queryServer`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    pub seq: u32,
    /// Node's handle key (`address:port:addressType:fd:index`), built by the worker.
    pub key: String,
    pub family: Family,
    pub address: Option<String>,
    pub port: i32,
    pub fd: i32,
    /// libuv bind flags: `UV_TCP_IPV6ONLY`/`UV_UDP_IPV6ONLY` = 1, `UV_UDP_REUSEADDR` = 4.
    pub flags: u32,
    pub backlog: i32,
    #[serde(default)]
    pub readable_all: bool,
    #[serde(default)]
    pub writable_all: bool,
    #[serde(default)]
    pub pipe_mode: crate::sockets::PipeMode,
    /// Opaque server data (TLS ticket keys): the first worker's wins, all get it back.
    #[serde(default)]
    pub data: serde_json::Value,
}

#[cfg(test)]
impl Query {
    /// A TCP query for 127.0.0.1, as the tests need them.
    pub fn loopback(key: &str, port: i32) -> Query {
        Query {
            seq: 1,
            key: key.into(),
            family: Family::Tcp4,
            address: Some("127.0.0.1".into()),
            port,
            fd: -1,
            flags: 0,
            backlog: 0,
            readable_all: false,
            writable_all: false,
            pipe_mode: Default::default(),
            data: serde_json::Value::Null,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SockName {
    pub address: String,
    pub family: String,
    pub port: u16,
}

/// The primary's answer to a `Query`. `shared` replies carry the listening fd.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub seq: u32,
    /// 0, or a negative errno as libuv reports it.
    pub errno: i32,
    pub handle: u32,
    pub shared: bool,
    pub sockname: Option<SockName>,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// A connection handed to a worker: which server it is for, the ticket the
/// worker acknowledges it with, and its slot on the claim board (`board.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    pub handle: u32,
    pub seq: u32,
    pub slot: u16,
}

const CONN_BYTES: usize = 10;

/// What a worker did with a connection it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not taken (server closed, `maxConnections`, no fd room): route it elsewhere.
    Refused = 0,
    Accepted = 1,
    /// Revoked by the primary before this worker read it (`board.rs`); the
    /// answer only tells the primary the worker is reading again.
    Revoked = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub seq: u32,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub enum Frame {
    Hello {
        version: u16,
    },
    Query(Query),
    /// `fd` is None if the reply is not shared, or its fd could not be received.
    Reply {
        reply: Reply,
        fd: Option<OwnedFd>,
    },
    /// A connection's fd is None when this process had no room for it: the
    /// worker refuses it and the primary gives it to someone else.
    NewConn(Vec<(Conn, Option<OwnedFd>)>),
    Ack(Vec<Ack>),
    Close {
        handle: u32,
    },
    /// The worker's claim board (shared memory), sent once before any connection.
    Board(OwnedFd),
}

fn header(out: &mut Vec<u8>, kind: Kind, body_len: usize) {
    out.extend_from_slice(&((body_len + 1) as u32).to_le_bytes());
    out.push(kind as u8);
}

fn json_frame<T: Serialize>(out: &mut Vec<u8>, kind: Kind, value: &T) {
    let body = serde_json::to_vec(value).expect("protocol types always serialize");
    header(out, kind, body.len());
    out.extend_from_slice(&body);
}

pub fn encode_hello(out: &mut Vec<u8>) {
    header(out, Kind::Hello, 2);
    out.extend_from_slice(&VERSION.to_le_bytes());
}

pub fn encode_query(out: &mut Vec<u8>, q: &Query) {
    json_frame(out, Kind::Query, q);
}

/// The listening fd of a shared reply is sent alongside by the caller.
pub fn encode_reply(out: &mut Vec<u8>, r: &Reply) {
    json_frame(out, Kind::Reply, r);
}

/// One frame for a batch; the caller sends the batch's fds in the same order.
pub fn encode_new_conns(out: &mut Vec<u8>, conns: &[Conn]) {
    header(out, Kind::NewConn, conns.len() * CONN_BYTES);
    for c in conns {
        out.extend_from_slice(&c.handle.to_le_bytes());
        out.extend_from_slice(&c.seq.to_le_bytes());
        out.extend_from_slice(&c.slot.to_le_bytes());
    }
}

/// The board's fd is sent alongside by the caller.
pub fn encode_board(out: &mut Vec<u8>) {
    header(out, Kind::Board, 0);
}

pub fn encode_acks(out: &mut Vec<u8>, acks: impl ExactSizeIterator<Item = Ack>) {
    header(out, Kind::Ack, acks.len() * 5);
    for a in acks {
        out.extend_from_slice(&a.seq.to_le_bytes());
        out.push(a.outcome as u8);
    }
}

pub fn encode_close(out: &mut Vec<u8>, handle: u32) {
    header(out, Kind::Close, 4);
    out.extend_from_slice(&handle.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reassembles frames from a byte stream plus the fds that came with it.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    fds: VecDeque<OwnedFd>,
    /// The kernel dropped fds of the last message (no room for them here):
    /// the next frame that carries fds is short of some.
    lost_fds: bool,
    /// The primary's decoder: nothing a worker sends carries fds.
    refuse_fds: bool,
    poisoned: bool,
}

impl Decoder {
    /// A decoder for the worker-to-primary direction, where any fd is an attack.
    pub fn refusing_fds() -> Decoder {
        Decoder {
            refuse_fds: true,
            ..Decoder::default()
        }
    }

    /// Adds received bytes and fds; `truncated` if the kernel had to drop fds.
    pub fn push(&mut self, bytes: &[u8], fds: impl IntoIterator<Item = OwnedFd>, truncated: bool) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        let before = self.fds.len();
        self.fds.extend(fds);
        if self.refuse_fds && (truncated || self.fds.len() > before) {
            self.fds.clear();
            self.poisoned = true;
        }
        self.lost_fds |= truncated;
    }

    /// Exactly `n` fds; after a truncated message the tail the kernel dropped
    /// is None (it installs fds in order and drops the rest).
    fn take_fds(&mut self, n: usize) -> Result<Vec<Option<OwnedFd>>, ProtocolError> {
        if self.fds.len() < n && !self.lost_fds {
            return Err(ProtocolError::MissingFds);
        }
        let have = n.min(self.fds.len());
        let mut out: Vec<Option<OwnedFd>> = self.fds.drain(..have).map(Some).collect();
        if have < n {
            out.resize_with(n, || None);
            self.lost_fds = false;
        }
        Ok(out)
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        if self.poisoned {
            return Err(ProtocolError::UnexpectedFds);
        }
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER {
            return self.check_stray_fds(avail.is_empty()).map(|()| None);
        }
        let len = u32_at(avail, 0) as usize;
        if len == 0 || len - 1 > MAX_BODY {
            return Err(ProtocolError::BadLength(len));
        }
        if avail.len() < 4 + len {
            return Ok(None);
        }
        let kind = Kind::from_byte(avail[4]).ok_or(ProtocolError::UnknownKind(avail[4]))?;
        let body = avail[HEADER..4 + len].to_vec();
        self.start += 4 + len;
        self.decode_body(kind, &body).map(Some)
    }

    /// fds never arrive after the bytes of their frame, so once every byte is
    /// consumed any fd still queued was sent where none belonged.
    fn check_stray_fds(&mut self, drained: bool) -> Result<(), ProtocolError> {
        if drained && !self.fds.is_empty() {
            self.fds.clear();
            return Err(ProtocolError::UnexpectedFds);
        }
        Ok(())
    }

    fn decode_body(&mut self, kind: Kind, body: &[u8]) -> Result<Frame, ProtocolError> {
        match kind {
            Kind::Hello => {
                if body.len() != 2 {
                    return Err(ProtocolError::BadBody("hello"));
                }
                Ok(Frame::Hello {
                    version: u16::from_le_bytes([body[0], body[1]]),
                })
            }
            Kind::Query => Ok(Frame::Query(serde_json::from_slice(body)?)),
            Kind::Reply => {
                let reply: Reply = serde_json::from_slice(body)?;
                let fd = if reply.shared && reply.errno == 0 {
                    self.take_fds(1)?.pop().flatten()
                } else {
                    None
                };
                Ok(Frame::Reply { reply, fd })
            }
            Kind::NewConn => {
                if body.is_empty() || !body.len().is_multiple_of(CONN_BYTES) || body.len() / CONN_BYTES > MAX_BATCH {
                    return Err(ProtocolError::BadBody("newconn"));
                }
                let n = body.len() / CONN_BYTES;
                let fds = self.take_fds(n)?;
                let conns = (0..n).map(|i| {
                    let at = i * CONN_BYTES;
                    Conn {
                        handle: u32_at(body, at),
                        seq: u32_at(body, at + 4),
                        slot: u16::from_le_bytes([body[at + 8], body[at + 9]]),
                    }
                });
                Ok(Frame::NewConn(conns.zip(fds).collect()))
            }
            Kind::Ack => {
                if body.is_empty() || !body.len().is_multiple_of(5) {
                    return Err(ProtocolError::BadBody("ack"));
                }
                let acks = body.chunks_exact(5).map(|c| {
                    let outcome = match c[4] {
                        0 => Outcome::Refused,
                        1 => Outcome::Accepted,
                        2 => Outcome::Revoked,
                        _ => return Err(ProtocolError::BadBody("ack")),
                    };
                    Ok(Ack {
                        seq: u32_at(c, 0),
                        outcome,
                    })
                });
                Ok(Frame::Ack(acks.collect::<Result<_, _>>()?))
            }
            Kind::Board => {
                if !body.is_empty() {
                    return Err(ProtocolError::BadBody("board"));
                }
                let fd = self.take_fds(1)?.pop().flatten();
                Ok(Frame::Board(fd.ok_or(ProtocolError::MissingFds)?))
            }
            Kind::Close => {
                if body.len() != 4 {
                    return Err(ProtocolError::BadBody("close"));
                }
                Ok(Frame::Close {
                    handle: u32_at(body, 0),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn fd() -> OwnedFd {
        UnixStream::pair().unwrap().0.into()
    }

    fn query() -> Query {
        Query::loopback("k", 0)
    }

    #[test]
    fn round_trips_every_frame_kind() {
        let mut out = Vec::new();
        encode_hello(&mut out);
        encode_query(&mut out, &query());
        encode_new_conns(
            &mut out,
            &[
                Conn {
                    handle: 1,
                    seq: 2,
                    slot: 0,
                },
                Conn {
                    handle: 1,
                    seq: 3,
                    slot: 1,
                },
            ],
        );
        encode_acks(
            &mut out,
            [
                Ack {
                    seq: 2,
                    outcome: Outcome::Accepted,
                },
                Ack {
                    seq: 3,
                    outcome: Outcome::Refused,
                },
            ]
            .into_iter(),
        );
        encode_close(&mut out, 9);
        let mut d = Decoder::default();
        d.push(&out, [fd(), fd()], false);
        assert!(matches!(
            d.next_frame().unwrap(),
            Some(Frame::Hello { version: VERSION })
        ));
        match d.next_frame().unwrap() {
            Some(Frame::Query(q)) => assert_eq!(q, query()),
            other => panic!("{other:?}"),
        }
        match d.next_frame().unwrap() {
            Some(Frame::NewConn(c)) => {
                assert_eq!(c.len(), 2);
                assert_eq!(
                    c[1].0,
                    Conn {
                        handle: 1,
                        seq: 3,
                        slot: 1
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        match d.next_frame().unwrap() {
            Some(Frame::Ack(a)) => assert_eq!(
                a[1],
                Ack {
                    seq: 3,
                    outcome: Outcome::Refused
                }
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(d.next_frame().unwrap(), Some(Frame::Close { handle: 9 })));
        assert!(d.next_frame().unwrap().is_none());
    }

    #[test]
    fn byte_by_byte_delivery_yields_the_same_frames() {
        let mut out = Vec::new();
        encode_close(&mut out, 1);
        encode_close(&mut out, 2);
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &out {
            d.push(std::slice::from_ref(b), [], false);
            while let Some(Frame::Close { handle }) = d.next_frame().unwrap() {
                got.push(handle);
            }
        }
        assert_eq!(got, vec![1, 2]);
    }

    #[test]
    fn shared_reply_takes_its_fd() {
        let reply = Reply {
            seq: 1,
            errno: 0,
            handle: 4,
            shared: true,
            sockname: None,
            data: serde_json::Value::Null,
        };
        let mut out = Vec::new();
        encode_reply(&mut out, &reply);
        let f = fd();
        let raw = f.as_raw_fd();
        let mut d = Decoder::default();
        d.push(&out, [f], false);
        match d.next_frame().unwrap() {
            Some(Frame::Reply {
                reply: r,
                fd: Some(got),
            }) => {
                assert_eq!(r, reply);
                assert_eq!(got.as_raw_fd(), raw);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_garbage() {
        let cases: Vec<(Vec<u8>, usize)> = vec![
            (vec![0, 0, 0, 0, 1], 0),
            (vec![255, 255, 255, 255, 1], 0),
            (vec![1, 0, 0, 0, 99], 0),
            (vec![2, 0, 0, 0, 1, 0], 0),
            (vec![2, 0, 0, 0, 2, b'{'], 0),
            (vec![11, 0, 0, 0, 4, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0], 0),
            (vec![1, 0, 0, 0, 7], 0),
            (vec![5, 0, 0, 0, 6, 0, 0, 0, 0], 1),
            (vec![6, 0, 0, 0, 5, 1, 0, 0, 0, 9], 0),
        ];
        for (bytes, nfds) in cases {
            let mut d = Decoder::default();
            d.push(&bytes, (0..nfds).map(|_| fd()), false);
            let outcome = std::iter::from_fn(|| match d.next_frame() {
                Ok(Some(_)) => Some(Ok(())),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            });
            assert!(outcome.into_iter().any(|r| r.is_err()), "accepted {bytes:?}");
        }
    }

    /// Hostile input: valid frames mutated at random, random bytes, random
    /// chunking and stray fds. The decoder may refuse, never panic or hang.
    #[test]
    fn mutated_and_random_input_never_panics() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut valid = Vec::new();
        encode_hello(&mut valid);
        encode_query(&mut valid, &query());
        encode_new_conns(
            &mut valid,
            &[Conn {
                handle: 1,
                seq: 2,
                slot: 0,
            }],
        );
        encode_acks(
            &mut valid,
            [Ack {
                seq: 2,
                outcome: Outcome::Accepted,
            }]
            .into_iter(),
        );
        encode_close(&mut valid, 3);
        for round in 0..20_000 {
            let mut bytes = if round % 4 == 0 {
                (0..rand() % 64).map(|_| rand() as u8).collect()
            } else {
                valid.clone()
            };
            for _ in 0..(rand() % 4) {
                if !bytes.is_empty() {
                    let at = rand() as usize % bytes.len();
                    bytes[at] = rand() as u8;
                }
            }
            if rand() % 3 == 0 {
                bytes.truncate(rand() as usize % (bytes.len() + 1));
            }
            let mut d = Decoder::default();
            let mut fds = (0..rand() % 3).map(|_| fd()).collect::<Vec<_>>();
            let mut rest = &bytes[..];
            'feed: while !rest.is_empty() {
                let n = 1 + rand() as usize % rest.len();
                d.push(&rest[..n], fds.drain(..), rand() % 8 == 0);
                rest = &rest[n..];
                for _ in 0..100 {
                    match d.next_frame() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }
    }

    #[test]
    fn fds_the_kernel_dropped_become_none_for_the_tail() {
        let mut out = Vec::new();
        let conns: Vec<Conn> = (0..3)
            .map(|i| Conn {
                handle: 1,
                seq: i,
                slot: i as u16,
            })
            .collect();
        encode_new_conns(&mut out, &conns);
        let mut d = Decoder::default();
        d.push(&out, [fd()], true);
        match d.next_frame().unwrap() {
            Some(Frame::NewConn(c)) => {
                let present: Vec<bool> = c.iter().map(|(_, f)| f.is_some()).collect();
                assert_eq!(present, vec![true, false, false]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_primary_refuses_any_fd_from_a_worker() {
        let mut out = Vec::new();
        encode_close(&mut out, 1);
        let mut d = Decoder::refusing_fds();
        d.push(&out, [fd()], false);
        assert!(matches!(d.next_frame(), Err(ProtocolError::UnexpectedFds)));
        let mut d = Decoder::refusing_fds();
        d.push(&out, [], true);
        assert!(d.next_frame().is_err(), "a truncated (fd flood) message is refused too");
    }
}
