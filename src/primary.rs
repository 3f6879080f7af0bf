//! The primary's reactor thread as a JS class, and the small fd helpers the
//! JS shim needs. Its event callback is weak: it never keeps the primary
//! alive (the workers' IPC channels do that, as in Node).

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue};
use napi_derive::napi;
use rs_cluster_core::error::{Context, Error};
use rs_cluster_core::primary::sticky::KeySpec;
use rs_cluster_core::primary::{Command, Config, Event, Placement, Policy, Primary, DEFAULT_WINDOW, POLICIES};

use crate::errors::{describe, invalid_arg, invalid_value, to_js};
use crate::stats::{ReactorStats, WorkerLag};

fn take_fd(env: &Env, fd: i32) -> Result<OwnedFd> {
    if fd < 0 {
        return Err(invalid_arg(env, "fd", fd));
    }
    // SAFETY: JS hands over an fd it owns and will not use again.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new control channel: `[primaryEnd, workerEnd]`, both CLOEXEC.
#[napi(catch_unwind)]
pub fn control_pair(env: Env) -> Result<Vec<i32>> {
    let (a, b) = rs_cluster_core::channel::pair()
        .during("socketpair")
        .map_err(|e| to_js(&env, &e))?;
    Ok(vec![a.into_raw_fd(), b.into_raw_fd()])
}

#[napi(catch_unwind)]
pub fn close_fd(env: Env, fd: i32) -> Result<()> {
    drop(take_fd(&env, fd)?);
    Ok(())
}

/// Makes an inherited fd (the worker's end of the channel) close-on-exec so
/// the worker's own children never inherit it.
#[napi(catch_unwind)]
pub fn set_cloexec(env: Env, fd: i32) -> Result<()> {
    rs_cluster_core::channel::set_cloexec(fd)
        .during("fcntl")
        .map_err(|e| to_js(&env, &e))
}

/// A fresh unbound socket of `kind` ('tcp' or 'pipe'), for learning Node's
/// handle constructors.
#[napi(catch_unwind)]
pub fn probe_socket(env: Env, kind: String) -> Result<i32> {
    if kind != "tcp" && kind != "pipe" {
        return Err(invalid_arg(&env, "kind", kind));
    }
    rs_cluster_core::sockets::probe_socket(&kind)
        .during("socket")
        .map_err(|e| to_js(&env, &e))
}

/// Sends `message` to the service manager's notification socket (the
/// value of NOTIFY_SOCKET: a path, or `@` and an abstract name).
#[napi(catch_unwind)]
pub fn sd_notify(env: Env, socket: String, message: String) -> Result<()> {
    rs_cluster_core::notify::notify(&socket, &message)
        .during("sendto")
        .map_err(|e| to_js(&env, &e))
}

/// Where listening socket `fd` is bound, as the stats name a listener
/// (`host:port`, `[v6]:port`, or a unix path); null if it is not bound.
#[napi(catch_unwind)]
pub fn socket_name(fd: i32) -> Option<String> {
    if fd < 0 {
        return None;
    }
    // SAFETY: a non-negative fd, only borrowed for the calls below (one that
    // is not open makes them fail with EBADF).
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    match rs_cluster_core::sockets::local_addr(fd) {
        Ok(a) => Some(a.to_string()),
        Err(_) => rs_cluster_core::sockets::local_path(fd),
    }
}

/// Sends `line` with the sockets `fds` (which it closes) on connected
/// socket `to`: a hand-over's answer.
#[napi(catch_unwind)]
pub fn send_sockets(env: Env, to: i32, line: String, fds: Vec<i32>) -> Result<()> {
    let owned = fds
        .into_iter()
        .map(|fd| take_fd(&env, fd))
        .collect::<Result<Vec<_>>>()?;
    if to < 0 {
        return Err(invalid_arg(&env, "to", to));
    }
    // SAFETY: a non-negative fd that JS keeps open for the call.
    let to = unsafe { std::os::fd::BorrowedFd::borrow_raw(to) };
    rs_cluster_core::takeover::send_sockets(to, line.as_bytes(), owned)
        .during("sendmsg")
        .map_err(|e| to_js(&env, &e))
}

/// The answer and sockets of the primary at control socket `path`, asked
/// with `request` (one line); blocks up to 10 s.
#[napi(object)]
pub struct FetchedSockets {
    pub line: String,
    pub fds: Vec<i32>,
}

#[napi(catch_unwind)]
pub fn fetch_sockets(env: Env, path: String, request: String) -> Result<FetchedSockets> {
    let (line, fds) = rs_cluster_core::takeover::fetch_sockets(std::path::Path::new(&path), request.as_bytes())
        .during("connect")
        .map_err(|e| to_js(&env, &e))?;
    Ok(FetchedSockets {
        line,
        fds: fds.into_iter().map(IntoRawFd::into_raw_fd).collect(),
    })
}

/// The user id of the process at the other end of unix socket `fd`
/// (SO_PEERCRED); null where the kernel does not say.
#[napi(catch_unwind)]
pub fn peer_uid(fd: i32) -> Option<u32> {
    if fd < 0 {
        return None;
    }
    // SAFETY: a non-negative fd, only borrowed for the call (one that is not
    // open makes it fail with EBADF).
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rs_cluster_core::sockets::peer_uid(fd)
}

/// A scheduling policy's numbers and names (`rs_cluster_core::primary::POLICIES`).
#[napi(object)]
pub struct PolicyEntry {
    /// NODE_CLUSTER_SCHED_POLICY's value, `--policy`'s word, the stats' name.
    pub name: String,
    /// The value of `cluster[constant]`.
    pub sched: u32,
    /// `SCHED_RR` …
    pub constant: String,
    /// Whether the primary accepts and chooses the worker.
    pub primary_accepts: bool,
}

/// Every scheduling policy, Node's two first: the one table JS, the command
/// and the types follow.
#[napi]
pub fn policies() -> Vec<PolicyEntry> {
    POLICIES
        .iter()
        .map(|p| PolicyEntry {
            name: p.name.into(),
            sched: p.sched,
            constant: p.constant.into(),
            primary_accepts: p.primary_accepts,
        })
        .collect()
}

fn sticky_key(env: &Env, spec: &str) -> Result<KeySpec> {
    KeySpec::parse(spec).map_err(|e| invalid_value(env, &format!("The argument 'sticky' is invalid: {e}")))
}

/// Checks a sticky key spec (`ip`, `header:NAME`, `cookie:NAME`,
/// `query:NAME`), throwing ERR_INVALID_ARG_VALUE if it is not one.
#[napi(catch_unwind)]
pub fn check_sticky_key(env: Env, spec: String) -> Result<()> {
    sticky_key(&env, &spec).map(drop)
}

#[napi(object)]
pub struct PrimaryEvent {
    pub kind: String,
    pub worker_id: u32,
    pub code: String,
    pub message: String,
    pub errno: Option<i32>,
    pub syscall: Option<String>,
}

type EventFn = ThreadsafeFunction<PrimaryEvent, UnknownReturnValue, PrimaryEvent, Status, false, true>;

#[napi]
pub struct PrimaryReactor {
    inner: Option<Primary>,
}

/// How the reactor routes, and what it starts with.
#[napi(object)]
pub struct ReactorOptions {
    /// A `sched` of `policies()`.
    pub policy: u32,
    /// SCHED_STICKY's key (default `ip`).
    pub sticky: Option<String>,
    /// 'kernel' or 'primary' (default), where the policy lets the kernel
    /// place connections.
    #[napi(ts_type = "'kernel' | 'primary'")]
    pub placement: Option<String>,
    /// Listening sockets the primary was started with (LISTEN_FDS), now the
    /// reactor's: a worker's listen() on one's address uses it.
    pub inherited: Option<Vec<i32>>,
}

#[napi]
impl PrimaryReactor {
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: Env,
        options: ReactorOptions,
        #[napi(ts_arg_type = "(event: PrimaryEvent) => void")] on_event: Function<PrimaryEvent, UnknownReturnValue>,
    ) -> Result<Self> {
        let ReactorOptions {
            policy,
            sticky,
            placement,
            inherited,
        } = options;
        let mut policy = Policy::from_sched(policy, KeySpec::Ip).ok_or_else(|| invalid_arg(&env, "policy", policy))?;
        if let Policy::Sticky(key) = &mut policy {
            *key = sticky_key(&env, sticky.as_deref().unwrap_or("ip"))?;
        }
        let inherited = inherited
            .unwrap_or_default()
            .into_iter()
            .map(|fd| take_fd(&env, fd))
            .collect::<Result<Vec<_>>>()?;
        let tsfn: Arc<EventFn> = Arc::new(
            on_event
                .build_threadsafe_function::<PrimaryEvent>()
                .callee_handled::<false>()
                .weak::<true>()
                .build()?,
        );
        let sink = Arc::new(move |e: Event| {
            let (kind, worker_id, error) = match e {
                Event::WorkerError { id, error } => ("workerError", id, error),
                Event::Fatal { error } => ("fatal", 0, error),
            };
            let d = describe(&error);
            let ev = PrimaryEvent {
                kind: kind.into(),
                worker_id,
                code: d.code,
                message: d.message,
                errno: d.errno,
                syscall: d.syscall,
            };
            tsfn.call(ev, ThreadsafeFunctionCallMode::NonBlocking);
        });
        let placement = match placement.as_deref() {
            None => Placement::Primary,
            Some(p) => Placement::parse(p).ok_or_else(|| {
                invalid_value(
                    &env,
                    &format!("The argument 'placement' must be 'kernel' or 'primary'. Received {p:?}"),
                )
            })?,
        };
        let config = Config {
            policy,
            window: DEFAULT_WINDOW,
            placement,
            inherited,
        };
        let primary = Primary::start(config, sink)
            .during("socketpair")
            .map_err(|e| to_js(&env, &e))?;
        Ok(PrimaryReactor { inner: Some(primary) })
    }

    fn send(&self, env: &Env, c: Command) -> Result<()> {
        match &self.inner {
            Some(p) => {
                p.send(c);
                Ok(())
            }
            None => Err(to_js(env, &Error::Closed)),
        }
    }

    /// Takes ownership of the primary's end of a worker's channel; `pid` is
    /// the worker's process, 0 if unknown.
    #[napi(catch_unwind)]
    pub fn add_worker(&self, env: Env, id: u32, fd: i32, pid: u32) -> Result<()> {
        let fd = take_fd(&env, fd)?;
        self.send(&env, Command::AddWorker { id, fd, pid })
    }

    #[napi(catch_unwind)]
    pub fn stop_routing(&self, env: Env, id: u32) -> Result<()> {
        self.send(&env, Command::StopRouting { id })
    }

    #[napi(catch_unwind)]
    pub fn worker_exited(&self, env: Env, id: u32) -> Result<()> {
        self.send(&env, Command::WorkerExited { id })
    }

    /// Worker `to` replaces worker `from` (a reload or respawn): it takes
    /// over `from`'s sticky keys.
    #[napi(catch_unwind)]
    pub fn inherit(&self, env: Env, from: u32, to: u32) -> Result<()> {
        self.send(&env, Command::Inherit { from, to })
    }

    /// Connections that may wait unread in a worker's queue (default 32).
    #[napi(catch_unwind)]
    pub fn set_window(&self, env: Env, window: u32) -> Result<()> {
        self.send(
            &env,
            Command::SetWindow {
                window: window as usize,
            },
        )
    }

    /// Asks the reactor thread a question; None if it does not answer
    /// within a second.
    fn ask<T>(&self, env: &Env, question: impl FnOnce(SyncSender<T>) -> Command) -> Result<Option<T>> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.send(env, question(reply))?;
        Ok(answer.recv_timeout(std::time::Duration::from_secs(1)).ok())
    }

    /// A snapshot of the counters, taken on the reactor thread; null if it
    /// does not answer within a second.
    #[napi(catch_unwind)]
    pub fn stats(&self, env: Env) -> Result<Option<ReactorStats>> {
        Ok(self
            .ask(&env, |reply| Command::Stats { reply })?
            .as_ref()
            .map(ReactorStats::from))
    }

    /// Accepts no more on the listeners (another primary took them over);
    /// what was accepted still goes to the workers.
    #[napi(catch_unwind)]
    pub fn stop_accepting(&self, env: Env) -> Result<()> {
        self.send(&env, Command::StopAccepting)
    }

    /// Duplicates of every listening socket (fds this process now owns), for
    /// a primary taking over; null if the reactor does not answer.
    #[napi(catch_unwind)]
    pub fn export_listeners(&self, env: Env) -> Result<Option<Vec<i32>>> {
        match self.ask(&env, |reply| Command::Export { reply })? {
            None => Ok(None),
            Some(Ok(fds)) => Ok(Some(fds.into_iter().map(IntoRawFd::into_raw_fd).collect())),
            Some(Err(e)) => Err(to_js(&env, &Error::os("dup", e))),
        }
    }

    /// Each worker's event-loop lag, for the hang watch (up to every 50 ms):
    /// the reactor reads the pages' lags alone, no snapshot is built. Null if
    /// it does not answer within a second.
    #[napi(catch_unwind)]
    pub fn lags(&self, env: Env) -> Result<Option<Vec<WorkerLag>>> {
        let lags = self.ask(&env, |reply| Command::Lags { reply })?;
        Ok(lags.map(|l| {
            l.into_iter()
                .map(|(id, ns)| WorkerLag { id, lag_ns: ns as f64 })
                .collect()
        }))
    }

    #[napi(catch_unwind)]
    pub fn close(&mut self) {
        if let Some(mut p) = self.inner.take() {
            p.shutdown();
        }
    }
}
