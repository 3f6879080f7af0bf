//! The primary side of rs-cluster: a reactor thread that owns every worker's
//! control channel and every server handle. The JS thread talks to it only
//! through `Primary`'s methods; per-connection work never reaches JS.
//!
//! One connection, accept to worker: `reactor.rs` polls the listener,
//! `dispatch.rs` accepts it (`acceptor.rs`) and asks the listener's policy
//! (`policy/`) for a worker, `link.rs` sends it on that worker's hand-off
//! channel; the worker's side is `crate::worker` and the binding's
//! `worker_channel.rs`. What a worker leaves unread, `rescue.rs` takes back.

mod acceptor;
mod busy;
mod dispatch;
mod group;
mod handles;
mod inherited;
mod link;
mod peek;
pub mod policy;
mod query;
mod reactor;
mod rescue;
mod shared;
mod snapshot;
pub mod stats;
pub mod steer;
pub mod sticky;
mod window;
mod workers;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use crate::tuning::{DEFAULT_WINDOW, MAX_WINDOW};
pub use policy::{Policy, PolicyInfo, POLICIES};

use crate::error::Error;

#[derive(Debug)]
pub struct Config {
    pub policy: Policy,
    pub window: usize,
    pub placement: Placement,
    /// Listening sockets the primary was started with (systemd's LISTEN_FDS).
    pub inherited: Vec<OwnedFd>,
}

/// Who puts a connection in a worker's hands, where the policy lets the
/// kernel decide (`PolicyInfo::kernel_places`): RS_CLUSTER_PLACEMENT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The primary accepts and hands each connection over (`acceptor.rs`).
    Primary,
    /// The kernel queues it at the worker's own socket (`group.rs`).
    Kernel,
}

impl Placement {
    pub fn parse(s: &str) -> Option<Placement> {
        match s {
            "primary" => Some(Placement::Primary),
            "kernel" => Some(Placement::Kernel),
            _ => None,
        }
    }
}

pub enum Command {
    AddWorker {
        id: u32,
        fd: OwnedFd,
        /// Its process, 0 if unknown (see `busy.rs`).
        pid: u32,
    },
    /// The worker is disconnecting: no new connections or servers for it.
    StopRouting {
        id: u32,
    },
    /// The worker process is gone: read what it left, then re-route the rest.
    WorkerExited {
        id: u32,
    },
    SetWindow {
        window: usize,
    },
    /// Worker `to` replaces worker `from`: it takes over its sticky keys.
    Inherit {
        from: u32,
        to: u32,
    },
    /// A snapshot of the counters, sent back on `reply`.
    Stats {
        reply: std::sync::mpsc::SyncSender<stats::Stats>,
    },
    /// Accept no more: a primary that took over accepts on the same sockets.
    /// What was accepted still goes to the workers.
    StopAccepting,
    /// Duplicates of every listening socket, for a primary taking over
    /// (kernel-placed groups are not handed over).
    Export {
        reply: std::sync::mpsc::SyncSender<std::io::Result<Vec<OwnedFd>>>,
    },
    /// Each worker's event-loop lag (ns) by id, sent back on `reply`.
    Lags {
        reply: std::sync::mpsc::SyncSender<Vec<(u32, u64)>>,
    },
    Shutdown,
}

#[derive(Debug)]
pub enum Event {
    /// A worker broke the protocol or its channel failed; it has been cut off.
    WorkerError { id: u32, error: Error },
    /// The reactor itself failed; no more connections are routed.
    Fatal { error: Error },
}

pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

pub struct Inbox {
    commands: Mutex<Vec<Command>>,
}

pub struct Primary {
    inbox: Arc<Inbox>,
    wake_tx: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl Primary {
    pub fn start(config: Config, sink: EventSink) -> std::io::Result<Primary> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let inbox = Arc::new(Inbox {
            commands: Mutex::new(Vec::new()),
        });
        let reactor = reactor::Reactor::new(config, sink, inbox.clone(), wake_rx);
        let thread = std::thread::Builder::new()
            .name("rs-cluster-primary".into())
            .spawn(move || reactor.run())?;
        Ok(Primary {
            inbox,
            wake_tx,
            thread: Some(thread),
        })
    }

    pub fn send(&self, c: Command) {
        self.inbox.commands.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        // A full wake socket already has a wakeup pending: nothing is lost.
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// Stops the reactor and closes every handle and channel it owns.
    pub fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            self.send(Command::Shutdown);
            let _ = t.join();
        }
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests;
