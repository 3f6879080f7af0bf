//! The shell of the worker's channel: its two channels read on the worker's
//! own event loop through libuv poll handles, the control channel (server
//! replies) and the hand-off channel (connections). It carries out what
//! `rs_cluster_core::worker::Intake` decides: it does the I/O, runs the
//! libuv handles and calls into JS, and decides nothing itself.
//!
//! Why poll handles and not a thread: a receive thread has to wake the JS
//! loop through a threadsafe function (a thread wakeup, then `uv_async`) for
//! every connection; a poll handle costs one readiness callback, on the loop
//! that runs the JS anyway.

use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::ptr::NonNull;
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::sys;
use rs_cluster_core::channel::{Channel, Received};
use rs_cluster_core::error::{Context, Error, ProtocolError};
use rs_cluster_core::handoff::{self, Received as Read};
use rs_cluster_core::page::{monotonic_ns, Page};
use rs_cluster_core::protocol::{Decoder, Frame, Handoff, Returned};
use rs_cluster_core::worker::{Got, Handed, Intake, Step};

use crate::napi_raw::{self, AsyncContext, Callback};
use crate::uv::{self, Uv};
use crate::worker_channel::{Conn, ServerReply};

mod callbacks;
use callbacks::{on_check, on_control, on_handoff, on_timer};

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

/// The soft open-files limit, which Node has already raised to the hard one.
fn fd_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    rl.rlim_cur
}

/// The Shell, owned by the `WorkerChannel`; closed and freed when it goes.
pub struct Owner(ShellRef);

impl Owner {
    /// Starts the control poll (unref'd until a server listens), the turn
    /// counter and the timer (never keeping the loop alive).
    pub fn start(env: &Env, chan: Channel, js: Js) -> std::result::Result<Owner, Error> {
        let uv = uv::uv().during("dlsym")?;
        let loop_ = napi_raw::uv_loop(env)
            .ok_or_else(|| Error::os("napi_get_uv_event_loop", std::io::Error::other("no loop")))?;
        let fd = chan.raw();
        let shell = Box::new(Shell {
            uv,
            loop_,
            chan: Some(chan),
            dec: Decoder::default(),
            handoff: None,
            page: None,
            intake: Intake::new(fd_limit(), monotonic_ns()),
            control: None,
            handoff_poll: None,
            polling: false,
            check: None,
            timer: None,
            js: Some(Rc::new(js)),
            replies: Vec::new(),
            closed: false,
            scratch: Vec::with_capacity(256),
        });
        let me = ShellRef(NonNull::from(Box::leak(shell)));
        let owner = Owner(me);
        let started = me.with(|s| -> std::result::Result<(), Error> {
            let (ptr, loop_) = (me.0.as_ptr(), s.loop_);
            // SAFETY: this thread's loop; the handles point at the Shell,
            // which closes them before it is freed.
            let (control, check, timer) = unsafe {
                (
                    uv::Handle::poll(uv, loop_, fd, ptr).during("uv_poll_init")?,
                    uv::Handle::check(uv, loop_, ptr).during("uv_check_init")?,
                    uv::Handle::timer(uv, loop_, ptr).during("uv_timer_init")?,
                )
            };
            for h in [&control, &check, &timer] {
                h.set_ref(false);
            }
            check.start_check(on_check).during("uv_check_start")?;
            timer
                .start_timer(on_timer, Intake::timer_period_ms())
                .during("uv_timer_start")?;
            control
                .start_poll(uv::READABLE | uv::DISCONNECT, on_control)
                .during("uv_poll_start")?;
            (s.control, s.check, s.timer) = (Some(control), Some(check), Some(timer));
            Ok(())
        });
        started.map(|()| owner)
    }

    pub fn with<R>(&mut self, f: impl FnOnce(&mut Shell) -> R) -> R {
        self.0.with(f)
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.with(Shell::close);
        // SAFETY: the Box leaked in `start`; its handles are closed, so no
        // callback reaches it any more, and this is its one owner.
        drop(unsafe { Box::from_raw(self.0 .0.as_ptr()) });
    }
}

/// A live Shell, on the JS thread.
#[derive(Clone, Copy)]
struct ShellRef(NonNull<Shell>);

impl ShellRef {
    /// The Shell of a uv handle's callback.
    ///
    /// # Safety
    /// `handle` is one of a live Shell's open handles (`data` points at it).
    unsafe fn of(handle: *mut c_void) -> ShellRef {
        // SAFETY: per the contract; `data` is the first field of a uv handle.
        ShellRef(unsafe { NonNull::new_unchecked(*(handle as *mut *mut Shell)) })
    }

    /// The one way to the Shell: no reference to it outlives `f`, and `f`
    /// never calls JS, so JS re-entering the channel finds none alive.
    fn with<R>(self, f: impl FnOnce(&mut Shell) -> R) -> R {
        // SAFETY: a ShellRef exists only for a live Shell (its owner frees it
        // after closing every handle), used on the JS thread; per the above,
        // this is the only reference at the time.
        f(unsafe { &mut *self.0.as_ptr() })
    }
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
