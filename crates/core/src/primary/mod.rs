//! The primary side of rs-cluster: a reactor thread that owns every worker's
//! control channel and every server handle. The JS thread talks to it only
//! through `Primary`'s methods; per-connection work never reaches JS.

mod busy;
mod handles;
mod link;
mod reactor;
mod round_robin;
mod schedule;
mod shared;
pub mod stats;
pub mod sticky;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use handles::Policy;

use crate::error::Error;

/// How many connections may wait unread in a worker's hand-off queue. Node
/// hands over one at a time, which costs a round trip per connection. The
/// primary rests between rounds under load (`reactor.rs`), so the window must
/// hold a round's worth of connections per worker; a stalled worker does not
/// keep them, as the primary takes back whatever it has not read.
pub const DEFAULT_WINDOW: usize = 32;

/// The largest window: well within what a hand-off socket's send buffer holds.
pub const MAX_WINDOW: usize = 64;

#[derive(Clone, Debug)]
pub struct Config {
    pub policy: Policy,
    pub window: usize,
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
