//! The worker's channel as JS sees it: the `WorkerChannel` class, the query
//! and reply objects of a server's `listen()`, and the named slots of the
//! Int32Array connections are handed over in. The work is done by
//! `worker_shell.rs` (I/O, libuv) on decisions of
//! `rs_cluster_core::worker::Intake`.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use rs_cluster_core::channel::Channel;
use rs_cluster_core::error::{Context, Error};
use rs_cluster_core::protocol::{encode_close, encode_hello, encode_query, Query, Reply, SockName};
use serde::de::{DeserializeOwned, IntoDeserializer};

use crate::errors::{invalid_arg, to_js};
use crate::napi_raw::{AsyncContext, Callback, SharedInts};
use crate::worker_shell::{Js, Owner};

/// The slots of `conn`, the Int32Array(5) a worker's JS shares with its
/// channel: the connection being handed over (its server's `Handle` and its
/// `Fd`), `Taken` set to 1 by JS when a server takes the fd, and JS's
/// wrapping counts of connections `Closed` and of those its servers
/// accepted themselves from kernel-placed sockets (`Placed`), copied into
/// the shared page once per loop turn (no call into the addon for either).
#[napi]
#[derive(Clone, Copy)]
pub enum ConnSlot {
    Handle = 0,
    Fd = 1,
    Taken = 2,
    Closed = 3,
    Placed = 4,
}

const CONN_SLOTS: usize = ConnSlot::Placed as usize + 1;

/// `conn`, by name.
pub struct Conn(SharedInts);

impl Conn {
    /// Puts a connection in the slots for JS to take.
    pub fn offer(&self, handle: u32, fd: RawFd) {
        self.0.set(ConnSlot::Handle as usize, handle as i32);
        self.0.set(ConnSlot::Fd as usize, fd);
        self.0.set(ConnSlot::Taken as usize, 0);
    }

    pub fn taken(&self) -> bool {
        self.0.get(ConnSlot::Taken as usize) == 1
    }

    pub fn closed(&self) -> i32 {
        self.0.get(ConnSlot::Closed as usize)
    }

    pub fn placed(&self) -> i32 {
        self.0.get(ConnSlot::Placed as usize)
    }
}

/// A server's `listen()` in this worker, as Node's `net`/`dgram` describe
/// it to cluster (the fields of `protocol::Query`).
#[napi(object)]
pub struct ServerQuery {
    pub seq: u32,
    /// Node's handle key (`address:port:addressType:fd:index`).
    pub key: String,
    /// `tcp4`, `tcp6`, `pipe`, `udp4`, `udp6` or `fd`.
    pub family: String,
    pub address: Option<String>,
    pub port: i32,
    pub fd: i32,
    pub flags: u32,
    pub backlog: i32,
    pub readable_all: bool,
    pub writable_all: bool,
    /// `add` or `exact`: how this Node's libuv applies readableAll/writableAll.
    pub pipe_mode: String,
    /// The server's `_getServerData()` (TLS ticket keys), or null.
    pub data: serde_json::Value,
}

/// A named value of the protocol's, read with its serde names (no copy of them here).
fn by_name<T: DeserializeOwned>(name: &str) -> std::result::Result<T, serde::de::value::Error> {
    T::deserialize(name.into_deserializer())
}

impl ServerQuery {
    fn into_query(self) -> std::result::Result<Query, serde::de::value::Error> {
        Ok(Query {
            seq: self.seq,
            key: self.key,
            family: by_name(&self.family)?,
            address: self.address,
            port: self.port,
            fd: self.fd,
            flags: self.flags,
            backlog: self.backlog,
            readable_all: self.readable_all,
            writable_all: self.writable_all,
            pipe_mode: by_name(&self.pipe_mode)?,
            data: self.data,
        })
    }
}

#[napi(object)]
pub struct ServerAddress {
    pub address: String,
    pub family: String,
    pub port: u32,
}

/// The primary's answer to a `ServerQuery` (the fields of `protocol::Reply`).
#[napi(object)]
pub struct ServerReply {
    pub seq: u32,
    /// 0, or a negative errno as libuv reports it.
    pub errno: i32,
    pub handle: u32,
    pub shared: bool,
    /// The fd is this worker's own socket of a kernel-placed group.
    pub placed: bool,
    pub sockname: Option<ServerAddress>,
    pub data: serde_json::Value,
    /// A shared reply's listening fd, now this process's; -1 if none (or
    /// the kernel had no fd left for it).
    pub fd: i32,
}

impl ServerReply {
    pub fn new(r: Reply, fd: RawFd) -> ServerReply {
        ServerReply {
            seq: r.seq,
            errno: r.errno,
            handle: r.handle,
            shared: r.shared,
            placed: r.placed,
            sockname: r.sockname.map(|SockName { address, family, port }| ServerAddress {
                address,
                family,
                port: port.into(),
            }),
            data: r.data,
            fd,
        }
    }
}

#[napi]
pub struct WorkerChannel {
    shell: Owner,
}

#[napi]
impl WorkerChannel {
    /// `conn` is the Int32Array(4) of `ConnSlot`s. `onConnection()` runs for
    /// each connection offered there; `onControl(replies, error)` for
    /// replies, and once with the error that closed the channel.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: Env,
        fd: i32,
        #[napi(ts_arg_type = "Int32Array")] conn: Unknown,
        #[napi(ts_arg_type = "() => void")] on_connection: Unknown,
        #[napi(ts_arg_type = "(replies: ServerReply[] | null, error: Error | null) => void")] on_control: Unknown,
    ) -> Result<Self> {
        if fd < 0 {
            return Err(invalid_arg(&env, "fd", fd));
        }
        let conn =
            SharedInts::new(&env, &conn, CONN_SLOTS).map_err(|()| invalid_arg(&env, "conn", "not an Int32Array(5)"))?;
        let js = Js {
            env: env.raw(),
            ctx: AsyncContext::new(&env, "rs-cluster:channel")?,
            on_connection: Callback::new(&env, &on_connection)?,
            on_control: Callback::new(&env, &on_control)?,
            conn: Conn(conn),
        };
        let os = |e: Error| to_js(&env, &e);
        // SAFETY: JS hands over the inherited channel fd, which nothing else uses.
        let chan = Channel::new(unsafe { OwnedFd::from_raw_fd(fd) })
            .during("fcntl")
            .map_err(os)?;
        let mut hello = Vec::new();
        encode_hello(&mut hello);
        chan.send_all_blocking(&hello, &[]).during("sendmsg").map_err(os)?;
        let shell = Owner::start(&env, chan, js).map_err(os)?;
        Ok(WorkerChannel { shell })
    }

    /// Sends a `queryServer`.
    #[napi(catch_unwind)]
    pub fn query(&mut self, env: Env, query: ServerQuery) -> Result<()> {
        let q = query
            .into_query()
            .map_err(|e| invalid_arg(&env, "query", e.to_string()))?;
        self.shell
            .with(|s| s.send_query(|out| encode_query(out, &q)))
            .map_err(|e| to_js(&env, &e))
    }

    #[napi(catch_unwind)]
    pub fn close_handle(&mut self, env: Env, handle: u32) -> Result<()> {
        self.shell
            .with(|s| s.send(|out| encode_close(out, handle)))
            .map_err(|e| to_js(&env, &e))
    }

    /// The control channel keeps the event loop alive only while a server
    /// listens through it (on), not when the app unrefs or closes its servers.
    #[napi(js_name = "ref", catch_unwind)]
    pub fn do_ref(&mut self) {
        self.shell.with(|s| s.set_ref(true));
    }

    #[napi(catch_unwind)]
    pub fn unref(&mut self) {
        self.shell.with(|s| s.set_ref(false));
    }

    /// Stops reading and closes both channels: the primary sees end of
    /// stream and takes back whatever this worker had not read.
    #[napi(catch_unwind)]
    pub fn close(&mut self) {
        self.shell.with(|s| s.close());
    }
}
