//! The N-API surface: type conversion, the threadsafe function for primary
//! events, and Rust errors turned into JS errors with a `code`. No cluster
//! logic lives here.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue};
use napi_derive::napi;

use crate::error::Error;
use crate::primary::{Command, Config, Event, Policy, Primary, DEFAULT_WINDOW};
use crate::protocol::Query;
use crate::worker::receiver::{io_to_napi, Receiver};

pub fn to_js_error(e: Error) -> napi::Error {
    napi::Error::new(napi::Status::GenericFailure, format!("{}: {e}", e.code()))
}

fn take_fd(fd: i32) -> Result<OwnedFd> {
    if fd < 0 {
        return Err(napi::Error::new(Status::InvalidArg, "EBADF: invalid file descriptor"));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new control channel: `[primaryEnd, workerEnd]`, both CLOEXEC.
#[napi(catch_unwind)]
pub fn control_pair() -> Result<Vec<i32>> {
    let (a, b) = crate::channel::pair().map_err(io_to_napi)?;
    Ok(vec![a.into_raw_fd(), b.into_raw_fd()])
}

#[napi(catch_unwind)]
pub fn close_fd(fd: i32) -> Result<()> {
    drop(take_fd(fd)?);
    Ok(())
}

/// Makes an inherited fd (the worker's end of the channel) close-on-exec so
/// the worker's own children never inherit it.
#[napi(catch_unwind)]
pub fn set_cloexec(fd: i32) -> Result<()> {
    crate::channel::set_cloexec(fd).map_err(io_to_napi)
}

/// A fresh unbound socket of `kind` ('tcp' or 'pipe'), for learning Node's
/// handle constructors.
#[napi(catch_unwind)]
pub fn probe_socket(kind: String) -> Result<i32> {
    crate::sockets::probe_socket(&kind).map_err(io_to_napi)
}

#[napi(object)]
pub struct PrimaryEvent {
    pub kind: String,
    pub worker_id: u32,
    pub code: String,
    pub message: String,
}

type EventFn = ThreadsafeFunction<PrimaryEvent, UnknownReturnValue, PrimaryEvent, Status, false, true>;

/// The primary's reactor thread. Its event callback is weak: it never keeps
/// the primary alive (the workers' IPC channels do that, as in Node).
#[napi]
pub struct PrimaryReactor {
    inner: Option<Primary>,
}

#[napi]
impl PrimaryReactor {
    /// `policy`: 1 = SCHED_NONE, 2 = SCHED_RR (Node's constants).
    #[napi(constructor, catch_unwind)]
    pub fn new(
        policy: u32,
        #[napi(ts_arg_type = "(event: PrimaryEvent) => void")] on_event: Function<PrimaryEvent, UnknownReturnValue>,
    ) -> Result<Self> {
        let tsfn: Arc<EventFn> = Arc::new(
            on_event
                .build_threadsafe_function::<PrimaryEvent>()
                .callee_handled::<false>()
                .weak::<true>()
                .build()?,
        );
        let policy = if policy == 1 { Policy::None } else { Policy::RoundRobin };
        let sink = Arc::new(move |e: Event| {
            let (kind, worker_id, error) = match e {
                Event::WorkerError { id, error } => ("workerError", id, error),
                Event::Fatal { error } => ("fatal", 0, error),
            };
            let ev = PrimaryEvent {
                kind: kind.into(),
                worker_id,
                code: error.code().into(),
                message: error.to_string(),
            };
            tsfn.call(ev, ThreadsafeFunctionCallMode::NonBlocking);
        });
        let config = Config {
            policy,
            window: DEFAULT_WINDOW,
        };
        let primary = Primary::start(config, sink).map_err(io_to_napi)?;
        Ok(PrimaryReactor { inner: Some(primary) })
    }

    fn send(&self, c: Command) -> Result<()> {
        match &self.inner {
            Some(p) => {
                p.send(c);
                Ok(())
            }
            None => Err(to_js_error(Error::Closed)),
        }
    }

    /// Takes ownership of the primary's end of a worker's channel.
    #[napi(catch_unwind)]
    pub fn add_worker(&self, id: u32, fd: i32) -> Result<()> {
        self.send(Command::AddWorker { id, fd: take_fd(fd)? })
    }

    #[napi(catch_unwind)]
    pub fn stop_routing(&self, id: u32) -> Result<()> {
        self.send(Command::StopRouting { id })
    }

    #[napi(catch_unwind)]
    pub fn worker_exited(&self, id: u32) -> Result<()> {
        self.send(Command::WorkerExited { id })
    }

    /// Connections a worker may hold unacknowledged (default 32).
    #[napi(catch_unwind)]
    pub fn set_window(&self, window: u32) -> Result<()> {
        self.send(Command::SetWindow {
            window: window as usize,
        })
    }

    #[napi(catch_unwind)]
    pub fn close(&mut self) {
        if let Some(mut p) = self.inner.take() {
            p.shutdown();
        }
    }
}

/// The worker's end of the control channel, polled on the worker's event loop.
#[napi]
pub struct WorkerChannel {
    inner: Receiver,
}

#[napi]
impl WorkerChannel {
    /// `conns` is shared with Rust, which writes `[handle, seq, fd]` per
    /// connection it hands over (one per loop turn); JS overwrites the fd slot
    /// with 1 (accepted) or 0 and calls `ack(n)`. `callback(nConns, replies,
    /// error)` runs once per hand-over.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: Env,
        fd: i32,
        #[napi(ts_arg_type = "Int32Array")] conns: Unknown,
        #[napi(ts_arg_type = "(nConns: number, replies: string[] | null, error: Error | null) => void")]
        callback: Unknown,
    ) -> Result<Self> {
        let inner = unsafe { Receiver::new(env.raw(), fd, conns.raw(), callback.raw())? };
        Ok(WorkerChannel { inner })
    }

    /// Sends a `queryServer` (JSON of `protocol::Query`).
    #[napi(catch_unwind)]
    pub fn query(&mut self, json: String) -> Result<()> {
        let q: Query =
            serde_json::from_str(&json).map_err(|e| napi::Error::new(Status::InvalidArg, format!("bad query: {e}")))?;
        self.inner.query(&q).map_err(to_js_error)
    }

    #[napi(catch_unwind)]
    pub fn close_handle(&mut self, handle: u32) -> Result<()> {
        self.inner.close_handle(handle).map_err(to_js_error)
    }

    #[napi(catch_unwind)]
    pub fn ack(&mut self, n: u32) -> Result<()> {
        self.inner.ack(n as usize).map_err(to_js_error)
    }

    #[napi(js_name = "ref", catch_unwind)]
    pub fn do_ref(&mut self) {
        self.inner.set_ref(true);
    }

    #[napi(catch_unwind)]
    pub fn unref(&mut self) {
        self.inner.set_ref(false);
    }

    #[napi(catch_unwind)]
    pub fn close(&mut self) {
        self.inner.close();
    }
}
