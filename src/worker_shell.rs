//! The shell of the worker's channel: its two channels read on the worker's
//! own event loop through libuv poll handles, the control channel (server
//! replies) and the hand-off channel (connections). It carries out what
//! `rs_cluster_core::worker::Intake` decides: it does the I/O, runs the
//! libuv handles and calls into JS, and decides nothing itself. Its libuv
//! callbacks (below) call JS holding no reference to the Shell, so JS may
//! re-enter the channel (query, close) from its callback; how the Shell is
//! started, reached and freed is `owner.rs`.
//!
//! Why poll handles and not a thread: a receive thread has to wake the JS
//! loop through a threadsafe function (a thread wakeup, then `uv_async`) for
//! every connection; a poll handle costs one readiness callback, on the loop
//! that runs the JS anyway.

use std::ffi::{c_int, c_void};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::sys;
use rs_cluster_core::channel::{Channel, Received};
use rs_cluster_core::error::{Context, Error, ProtocolError};
use rs_cluster_core::handoff::{self, Received as Read};
use rs_cluster_core::page::{monotonic_ns, Page};
use rs_cluster_core::protocol::{Decoder, Frame, Handoff, Returned};
use rs_cluster_core::worker::{Got, Handed, Intake, Step};

use crate::errors::js_error;
use crate::napi_raw::{AsyncContext, Callback, Scope};
use crate::uv::{self, Uv};
use crate::worker_channel::{Conn, ServerReply};

mod owner;
pub use owner::Owner;
use owner::ShellRef;

/// What calls into JS need. Shared: a call holds its own count, so JS may
/// close the channel during the call without pulling this from under it.
pub struct Js {
    pub env: sys::napi_env,
    pub ctx: AsyncContext,
    pub on_connection: Callback,
    pub on_control: Callback,
    pub conn: Conn,
}

/// Everything the uv callbacks need, at a stable heap address stored in
/// each uv handle's `data` field.
pub struct Shell {
    uv: &'static Uv,
    loop_: *mut c_void,
    /// None once closed.
    chan: Option<Channel>,
    dec: Decoder,
    /// This worker's end of the hand-off channel and the shared page, from
    /// the primary's `Setup` frame.
    handoff: Option<OwnedFd>,
    page: Option<Page>,
    intake: Intake,
    control: Option<uv::Handle>,
    handoff_poll: Option<uv::Handle>,
    /// Whether `handoff_poll` is started (it follows `intake.reading()`).
    polling: bool,
    /// Marks each loop turn in the page.
    check: Option<uv::Handle>,
    /// Turns the loop when nothing else does, measures how late it fires
    /// (the loop's lag), and resumes reading after a pause.
    timer: Option<uv::Handle>,
    /// None once closed.
    js: Option<Rc<Js>>,
    replies: Vec<ServerReply>,
    closed: bool,
    scratch: Vec<u8>,
}

impl Shell {
    pub fn set_ref(&mut self, on: bool) {
        if let Some(h) = &self.control {
            h.set_ref(on);
        }
    }

    pub fn send_query(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> std::result::Result<(), Error> {
        self.intake.query_sent();
        self.send(encode)
    }

    pub fn send(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> std::result::Result<(), Error> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        encode(&mut out);
        let r = match &self.chan {
            Some(chan) => chan.send_all_blocking(&out, &[]).during("sendmsg"),
            None => Err(Error::Closed),
        };
        self.scratch = out;
        r
    }

    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Dropping a handle closes it: its callback never runs again.
        (self.control, self.check, self.timer, self.handoff_poll) = (None, None, None, None);
        // Polling has stopped, so the fds can go: the primary sees end of
        // stream and takes back whatever this worker had not read.
        (self.chan, self.handoff, self.page) = (None, None, None);
        self.js = None;
    }

    /// Reads the control channel dry: replies into `replies`, the setup
    /// into place. `Ok(true)` at end of stream.
    fn drain_control(&mut self) -> std::result::Result<bool, Error> {
        loop {
            while let Some(frame) = self.dec.next_frame()? {
                match frame {
                    Frame::Reply { reply, fd } => {
                        self.intake.reply_received();
                        let fd = fd.map_or(-1, |f| f.into_raw_fd());
                        self.replies.push(ServerReply::new(reply, fd));
                    }
                    Frame::Setup { page, handoff } => self.on_setup(page, handoff)?,
                    _ => return Err(ProtocolError::WrongDirection.into()),
                }
            }
            let Some(chan) = self.chan.as_mut() else {
                return Ok(true);
            };
            match chan.recv(&mut self.dec).during("recvmsg")? {
                Received::Data { .. } => {}
                Received::WouldBlock => return Ok(false),
                Received::Eof => return Ok(true),
            }
        }
    }

    fn on_setup(&mut self, page: OwnedFd, handoff: OwnedFd) -> std::result::Result<(), Error> {
        if self.page.is_some() {
            return Err(ProtocolError::BadBody("second setup").into());
        }
        self.page = Some(Page::map(page).during("mmap")?);
        let me: *mut Shell = self;
        // SAFETY: this thread's loop; the handle points at this Shell, which
        // closes it before it is freed.
        let h = unsafe { uv::Handle::poll(self.uv, self.loop_, handoff.as_raw_fd(), me) }.during("uv_poll_init")?;
        // It never keeps the loop alive: the control channel decides.
        h.set_ref(false);
        self.handoff = Some(handoff);
        self.handoff_poll = Some(h);
        self.intake.set_up();
        self.follow_intake()
    }

    /// Starts or stops polling the hand-off channel as the intake decided.
    fn follow_intake(&mut self) -> std::result::Result<(), Error> {
        let want = self.intake.reading();
        let (Some(h), false) = (&self.handoff_poll, self.closed) else {
            return Ok(());
        };
        if want != self.polling {
            if want {
                h.start_poll(uv::READABLE, on_handoff).during("uv_poll_start")?;
            } else {
                h.stop_poll().during("uv_poll_stop")?;
            }
            self.polling = want;
        }
        Ok(())
    }

    /// Reads one connection off the hand-off channel; Some if it is for JS.
    fn take_one(&mut self, read_one: bool, now: u64) -> std::result::Result<Option<(Handoff, OwnedFd)>, Error> {
        let (Some(end), Some(page), true) = (&self.handoff, &self.page, read_one && !self.closed) else {
            return self.follow_intake().map(|()| None);
        };
        let (got, conn) = match handoff::recv_one(end.as_fd())? {
            Read::Conn(record, fd) => (Got::Conn { fd: fd.as_raw_fd() }, Some((record, fd))),
            Read::Lost(_) => (Got::Lost, None),
            Read::Empty => (Got::Empty, None),
            Read::Closed => (Got::Closed, None),
        };
        if got.is_connection() {
            page.took_one();
        }
        let step = self.intake.on_read(got, now);
        self.follow_intake()?;
        match (step, conn) {
            (Step::Deliver, conn) => Ok(conn),
            (Step::GiveBack(why), Some((record, fd))) => {
                self.give_back(record, why, fd);
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// JS was offered the connection; `taken` if a server took it.
    fn handed(&mut self, record: Handoff, fd: OwnedFd, taken: bool) {
        match self.intake.on_handed(taken, record.accepted_ns, monotonic_ns()) {
            Handed::Opened { latency_ns } => {
                // The server in JS owns it now.
                let _ = fd.into_raw_fd();
                if let Some(page) = &self.page {
                    page.opened(latency_ns);
                }
            }
            Handed::GiveBack(why) => self.give_back(record, why, fd),
        }
    }

    /// Sends a connection back to the primary. If even that fails (the
    /// primary is gone), closing it is all that is left.
    fn give_back(&self, record: Handoff, why: Returned, fd: OwnedFd) {
        if let Some(end) = &self.handoff {
            let record = Handoff {
                returned: why,
                ..record
            };
            let _ = handoff::send_one(end.as_fd(), &record, fd.as_raw_fd());
        }
    }
}

/// Runs a uv callback's work. A panic must not unwind into libuv: it
/// becomes the channel's error.
fn guarded(shell: ShellRef, work: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        finish(shell, Error::from_panic(payload));
    }
}

unsafe extern "C" fn on_control(handle: *mut c_void, status: c_int, _events: c_int) {
    // SAFETY: libuv calls this only for the control handle, while open.
    let shell = unsafe { ShellRef::of(handle) };
    guarded(shell, || {
        let read = shell.with(|s| match (s.closed, status < 0) {
            (true, _) => None,
            (false, true) => Some(Err(Error::os("uv_poll", std::io::Error::from_raw_os_error(-status)))),
            (false, false) => Some(s.drain_control()),
        });
        if let Some(read) = read {
            settle(shell, read);
        }
    })
}

unsafe extern "C" fn on_handoff(handle: *mut c_void, _status: c_int, _events: c_int) {
    // SAFETY: libuv calls this only for the hand-off handle, while open.
    let shell = unsafe { ShellRef::of(handle) };
    guarded(shell, || {
        let now = monotonic_ns();
        let Some(turn) = shell.with(|s| (!s.closed).then(|| s.intake.on_readable(now))) else {
            return;
        };
        if turn.replies_first {
            let read = shell.with(Shell::drain_control);
            let ended = !matches!(read, Ok(false));
            settle(shell, read);
            if ended {
                return;
            }
        }
        match shell.with(|s| s.take_one(turn.read_one, now)) {
            Ok(Some((record, fd))) => hand_over(shell, record, fd),
            Ok(None) => {}
            Err(e) => finish(shell, e),
        }
    })
}

unsafe extern "C" fn on_check(handle: *mut c_void) {
    // SAFETY: libuv calls this only for the check handle, while open.
    let shell = unsafe { ShellRef::of(handle) };
    guarded(shell, || {
        shell.with(|s| {
            if let (Some(page), Some(js)) = (&s.page, &s.js) {
                page.turned(monotonic_ns());
                let (closed, placed) = s.intake.on_turn(js.conn.closed(), js.conn.placed());
                if placed != 0 {
                    page.placed(placed);
                }
                if closed != 0 {
                    page.closed(closed);
                }
            }
        })
    })
}

unsafe extern "C" fn on_timer(handle: *mut c_void) {
    // SAFETY: libuv calls this only for the timer handle, while open.
    let shell = unsafe { ShellRef::of(handle) };
    guarded(shell, || {
        let resumed = shell.with(|s| {
            let lag = s.intake.on_timer(monotonic_ns());
            if let Some(page) = &s.page {
                page.lagged(lag);
            }
            s.follow_intake()
        });
        if let Err(e) = resumed {
            finish(shell, e);
        }
    })
}

/// Delivers pending replies, then closes the channel if reading ended it.
fn settle(shell: ShellRef, read: std::result::Result<bool, Error>) {
    let (js, replies) = shell.with(|s| (s.js.clone(), std::mem::take(&mut s.replies)));
    if let (Some(js), false) = (js, replies.is_empty()) {
        call_control(&js, Some(replies), None);
    }
    match read {
        Ok(false) => {}
        Ok(true) => finish(shell, Error::Closed),
        Err(e) => finish(shell, e),
    }
}

/// Offers a connection to JS; if no server takes it, it goes back.
fn hand_over(shell: ShellRef, record: Handoff, fd: OwnedFd) {
    let taken = shell.with(|s| s.js.clone()).is_some_and(|js| {
        js.conn.offer(record.handle, fd.as_raw_fd());
        if let Some(scope) = Scope::open(js.env) {
            js.on_connection.call(&scope, &js.ctx, &[]);
        }
        js.conn.taken()
    });
    shell.with(|s| s.handed(record, fd, taken));
}

/// Closes the channel and tells JS why, once.
fn finish(shell: ShellRef, why: Error) {
    let js = shell.with(|s| {
        let js = s.js.take();
        s.close();
        js
    });
    if let Some(js) = js {
        call_control(&js, None, Some(why));
    }
}

/// `onControl(replies, error)`.
fn call_control(js: &Js, replies: Option<Vec<ServerReply>>, error: Option<Error>) {
    let env = js.env;
    let Some(scope) = Scope::open(env) else { return };
    let made = (|| -> Result<[sys::napi_value; 2]> {
        // SAFETY: values made on the env's thread, inside `scope`.
        unsafe {
            Ok([
                ToNapiValue::to_napi_value(env, replies)?,
                match &error {
                    None => Null::to_napi_value(env, Null)?,
                    Some(e) => js_error(&Env::from_raw(env), e)?.raw(),
                },
            ])
        }
    })();
    if let Ok(args) = made {
        js.on_control.call(&scope, &js.ctx, &args);
    }
}
