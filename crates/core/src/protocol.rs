//! The wire protocol on the private control channel between the primary and a worker.
//!
//! This file is the only place that knows the byte layout, of both channels.
//!
//! The control channel (a stream) carries frames `u32 LE body length | u8 kind
//! | body`: the rare control frames (`Query`, `Reply`) have JSON bodies
//! described by the serde types below. File descriptors travel as SCM_RIGHTS
//! on the same `sendmsg` as the frame that owns them; the decoder hands them
//! out in order, so a frame never waits for fds that belong to a later one.
//!
//! Connections do not use it: each goes alone, as one fixed-size `Handoff`
//! record with its fd, on the hand-off channel (`handoff.rs`), so the hot path
//! never builds or parses a frame.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;

/// Bumped whenever a frame's layout or meaning changes. A worker built from a
/// different version is refused at `Hello` instead of being misunderstood.
/// 3: connections travel on their own hand-off channel, one message each,
/// with no acknowledgement; `Setup` replaces the claim board. 4: a hand-off
/// carries its sticky key.
pub const VERSION: u16 = 4;

/// Largest body accepted. Control frames are small; anything bigger is hostile
/// or garbled, and refusing it bounds the decoder's memory.
pub const MAX_BODY: usize = 64 * 1024;

const HEADER: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Hello = 1,
    Query = 2,
    Reply = 3,
    Close = 6,
    Setup = 8,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Query,
            3 => Kind::Reply,
            6 => Kind::Close,
            8 => Kind::Setup,
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
    /// With `shared`: the fd is the worker's own socket of a group the
    /// kernel places connections on; the primary may also hand it some.
    #[serde(default)]
    pub placed: bool,
    pub sockname: Option<SockName>,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// One connection on the hand-off channel: which server it is for, its
/// number (the primary's, to remember who refused it), when the primary
/// accepted it (`CLOCK_MONOTONIC`, ns), and its sticky key's hash (0 if
/// none). The same record goes back from a worker that cannot take it (or
/// is read back by the primary), with `returned` saying why, so the
/// connection keeps its key on its way to another worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handoff {
    pub handle: u32,
    pub seq: u32,
    pub returned: Returned,
    pub accepted_ns: u64,
    pub key: u64,
}

/// Why a worker gives a connection back (`None` on the way to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Returned {
    None = 0,
    /// Its server is closed here, or at `maxConnections`: another worker serves it.
    Refused = 1,
    /// This worker is about to run out of fds: it takes no more for a while.
    OutOfFds = 2,
}

pub const HANDOFF_BYTES: usize = 28;

impl Handoff {
    pub fn encode(&self) -> [u8; HANDOFF_BYTES] {
        let mut b = [0u8; HANDOFF_BYTES];
        b[0..4].copy_from_slice(&self.handle.to_le_bytes());
        b[4..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&(self.returned as u32).to_le_bytes());
        b[12..20].copy_from_slice(&self.accepted_ns.to_le_bytes());
        b[20..28].copy_from_slice(&self.key.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Handoff, ProtocolError> {
        if b.len() != HANDOFF_BYTES {
            return Err(ProtocolError::BadBody("handoff"));
        }
        let returned = match u32_at(b, 8) {
            0 => Returned::None,
            1 => Returned::Refused,
            2 => Returned::OutOfFds,
            _ => return Err(ProtocolError::BadBody("handoff")),
        };
        Ok(Handoff {
            handle: u32_at(b, 0),
            seq: u32_at(b, 4),
            returned,
            accepted_ns: u64::from_le_bytes(b[12..20].try_into().expect("8 bytes")),
            key: u64::from_le_bytes(b[20..28].try_into().expect("8 bytes")),
        })
    }
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
    Close {
        handle: u32,
    },
    /// Sent once, before any connection: the page this worker shares with the
    /// primary (`page.rs`) and its end of the hand-off channel (`handoff.rs`).
    Setup {
        page: OwnedFd,
        handoff: OwnedFd,
    },
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

/// The page's and the hand-off channel's fds are sent alongside, in that order.
pub fn encode_setup(out: &mut Vec<u8>) {
    header(out, Kind::Setup, 0);
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
            Kind::Setup => {
                if !body.is_empty() {
                    return Err(ProtocolError::BadBody("setup"));
                }
                let mut fds = self.take_fds(2)?.into_iter();
                match (fds.next().flatten(), fds.next().flatten()) {
                    (Some(page), Some(handoff)) => Ok(Frame::Setup { page, handoff }),
                    _ => Err(ProtocolError::MissingFds),
                }
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
        encode_setup(&mut out);
        encode_close(&mut out, 9);
        let mut d = Decoder::default();
        let (page, handoff) = (fd(), fd());
        let raws = (page.as_raw_fd(), handoff.as_raw_fd());
        d.push(&out, [page, handoff], false);
        assert!(matches!(
            d.next_frame().unwrap(),
            Some(Frame::Hello { version: VERSION })
        ));
        match d.next_frame().unwrap() {
            Some(Frame::Query(q)) => assert_eq!(q, query()),
            other => panic!("{other:?}"),
        }
        match d.next_frame().unwrap() {
            Some(Frame::Setup { page, handoff }) => assert_eq!((page.as_raw_fd(), handoff.as_raw_fd()), raws),
            other => panic!("{other:?}"),
        }
        assert!(matches!(d.next_frame().unwrap(), Some(Frame::Close { handle: 9 })));
        assert!(d.next_frame().unwrap().is_none());
    }

    #[test]
    fn handoff_records_round_trip_and_refuse_garbage() {
        let h = Handoff {
            handle: 7,
            seq: 3,
            returned: Returned::OutOfFds,
            accepted_ns: 0x0102_0304_0506_0708,
            key: u64::MAX - 1,
        };
        assert_eq!(Handoff::decode(&h.encode()).unwrap(), h);
        let mut bad = h.encode();
        bad[8] = 9;
        assert!(Handoff::decode(&bad).is_err(), "unknown reason");
        assert!(
            Handoff::decode(&h.encode()[..HANDOFF_BYTES - 1]).is_err(),
            "short record"
        );
        assert!(Handoff::decode(&[0u8; HANDOFF_BYTES + 1]).is_err(), "long record");
    }

    #[test]
    fn setup_without_both_fds_is_refused() {
        let mut out = Vec::new();
        encode_setup(&mut out);
        let mut d = Decoder::default();
        d.push(&out, [fd()], false);
        assert!(d.next_frame().is_err());
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
            placed: false,
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
        encode_setup(&mut valid);
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
    fn fds_the_kernel_dropped_make_the_frame_fail() {
        let mut out = Vec::new();
        encode_setup(&mut out);
        let mut d = Decoder::default();
        d.push(&out, [fd()], true);
        assert!(matches!(d.next_frame(), Err(ProtocolError::MissingFds)));
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
