//! The worker's ends of its two channels, read on the worker's own event
//! loop through libuv poll handles: the control channel (server replies) and
//! the hand-off channel (connections, one per loop turn). The decisions are
//! `rs_cluster_core::worker::Intake`'s; this file is the shell that does the
//! I/O, owns the libuv handles and calls into JS.
//!
//! Why poll handles and not a thread: a receive thread has to wake the JS
//! loop through a threadsafe function (a thread wakeup, then `uv_async`) for
//! every connection; a poll handle costs one readiness callback, on the loop
//! that runs the JS anyway.

use std::ffi::{c_char, c_int, c_void};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::ptr;
use std::time::Instant;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;
use rs_cluster_core::channel::{Channel, Received};
use rs_cluster_core::error::{Context, Error, ProtocolError};
use rs_cluster_core::handoff::{self, Received as Handed};
use rs_cluster_core::page::{monotonic_ns, Page};
use rs_cluster_core::protocol::{encode_close, encode_hello, encode_query, Decoder, Frame, Handoff, Query, Returned};
use rs_cluster_core::worker::{Intake, Step, TURN_AT_LEAST_EVERY};

use crate::errors::{invalid_arg, js_error, to_js};
use crate::uv::{self, Uv};

/// See `rs_cluster_core::worker::TURN_AT_LEAST_EVERY`.
const TURN_AT_LEAST_EVERY_MS: u64 = TURN_AT_LEAST_EVERY.as_millis() as u64;

fn napi_ok(s: sys::napi_status) -> Result<()> {
    if s != sys::Status::napi_ok {
        return Err(napi::Error::new(Status::GenericFailure, "N-API call failed"));
    }
    Ok(())
}

/// Everything the uv callbacks need, at a stable heap address stored in
/// each uv handle's `data` field.
struct Shell {
    env: sys::napi_env,
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
    control: uv::Handle,
    handoff_poll: Option<uv::Handle>,
    reading_handoff: bool,
    /// Marks each loop turn in the page.
    check: uv::Handle,
    /// Turns the loop when nothing else does, measures how late it fires
    /// (the loop's lag), and resumes reading after a pause.
    timer: uv::Handle,
    /// When the timer should fire next (`CLOCK_MONOTONIC`, ns).
    timer_due_ns: u64,
    callback: sys::napi_ref,
    async_ctx: sys::napi_async_context,
    /// Shared with JS: `[handle, fd, taken, closed]`: the connection being
    /// handed over, `taken` set to 1 by JS when its server takes the fd, and
    /// JS's wrapping count of connections closed.
    conn_ref: sys::napi_ref,
    conn: *mut i32,
    /// `closed` as last copied into the page.
    closed_seen: u32,
    replies: Vec<String>,
    closed: bool,
    scratch: Vec<u8>,
}

#[napi]
pub struct WorkerChannel {
    shell: Box<Shell>,
}

#[napi]
impl WorkerChannel {
    /// `conn` is an Int32Array(4) shared with Rust (see `Shell::conn`).
    /// `callback(hasConn, replies, error)` runs for each connection, for
    /// replies, and once with the error that closed the channel.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: Env,
        fd: i32,
        #[napi(ts_arg_type = "Int32Array")] conn: Unknown,
        #[napi(ts_arg_type = "(hasConn: number, replies: string[] | null, error: Error | null) => void")]
        callback: Function<Unknown, Unknown>,
    ) -> Result<Self> {
        if fd < 0 {
            return Err(invalid_arg(&env, "fd", fd));
        }
        let os = |e: Error| to_js(&env, &e);
        let uv = uv::uv().during("dlsym").map_err(os)?;
        // SAFETY: JS hands over the inherited channel fd, which nothing else uses.
        let chan = Channel::new(unsafe { OwnedFd::from_raw_fd(fd) })
            .during("fcntl")
            .map_err(os)?;
        let mut hello = Vec::new();
        encode_hello(&mut hello);
        chan.send_all_blocking(&hello, &[]).during("sendmsg").map_err(os)?;

        let raw = env.raw();
        let (mut kind, mut len, mut data, mut ab, mut offset) = (0, 0usize, ptr::null_mut(), ptr::null_mut(), 0usize);
        // SAFETY: `conn` is a live value of this env; the out-pointers are valid.
        napi_ok(unsafe {
            sys::napi_get_typedarray_info(raw, conn.raw(), &mut kind, &mut len, &mut data, &mut ab, &mut offset)
        })
        .map_err(|_| invalid_arg(&env, "conn", "not an Int32Array"))?;
        if kind != sys::TypedarrayType::int32_array || len < 4 {
            return Err(invalid_arg(&env, "conn", "not an Int32Array(4)"));
        }
        let (mut conn_ref, mut cb_ref, mut async_ctx, mut loop_) =
            (ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        let name = env.create_string("rs-cluster:channel")?;
        // SAFETY: live values of this env, valid out-pointers; the references
        // keep `conn` (so its backing store) and `callback` alive until close.
        unsafe {
            napi_ok(sys::napi_create_reference(raw, conn.raw(), 1, &mut conn_ref))?;
            napi_ok(sys::napi_create_reference(raw, callback.raw(), 1, &mut cb_ref))?;
            napi_ok(sys::napi_async_init(raw, ptr::null_mut(), name.raw(), &mut async_ctx))?;
            napi_ok(sys::napi_get_uv_event_loop(raw, &mut loop_))?;
        }
        let limit = fd_limit();
        let mut shell = Box::new(Shell {
            env: raw,
            uv,
            loop_: loop_ as *mut c_void,
            chan: Some(chan),
            dec: Decoder::default(),
            handoff: None,
            page: None,
            intake: Intake::new(limit),
            control: uv::Handle::new(uv, uv::POLL),
            handoff_poll: None,
            reading_handoff: false,
            check: uv::Handle::new(uv, uv::CHECK),
            timer: uv::Handle::new(uv, uv::TIMER),
            timer_due_ns: monotonic_ns() + TURN_AT_LEAST_EVERY_MS * 1_000_000,
            callback: cb_ref,
            async_ctx,
            conn_ref,
            conn: data as *mut i32,
            closed_seen: 0,
            replies: Vec::new(),
            closed: false,
            scratch: Vec::with_capacity(256),
        });
        shell.start().map_err(|e| to_js(&env, &e))?;
        Ok(WorkerChannel { shell })
    }

    /// Sends a `queryServer` (JSON of `protocol::Query`).
    #[napi(catch_unwind)]
    pub fn query(&mut self, env: Env, json: String) -> Result<()> {
        let q: Query = serde_json::from_str(&json).map_err(|e| invalid_arg(&env, "query", e.to_string()))?;
        self.shell.intake.query_sent();
        self.shell
            .send(|out| encode_query(out, &q))
            .map_err(|e| to_js(&env, &e))
    }

    #[napi(catch_unwind)]
    pub fn close_handle(&mut self, env: Env, handle: u32) -> Result<()> {
        self.shell
            .send(|out| encode_close(out, handle))
            .map_err(|e| to_js(&env, &e))
    }

    /// The control channel keeps the event loop alive only while a server
    /// listens through it (on), not when the app unrefs or closes its servers.
    #[napi(js_name = "ref", catch_unwind)]
    pub fn do_ref(&mut self) {
        self.shell.set_ref(true);
    }

    #[napi(catch_unwind)]
    pub fn unref(&mut self) {
        self.shell.set_ref(false);
    }

    /// Stops reading and closes both channels: the primary sees end of
    /// stream and takes back whatever this worker had not read.
    #[napi(catch_unwind)]
    pub fn close(&mut self) {
        self.shell.close();
    }
}

impl Drop for WorkerChannel {
    fn drop(&mut self) {
        self.shell.close();
    }
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

impl Shell {
    /// Starts the control poll (unref'd until a server listens), the turn
    /// counter and the timer (never keeping the loop alive).
    fn start(&mut self) -> std::result::Result<(), Error> {
        let me: *mut Shell = self;
        let uv = self.uv;
        let fd = self.chan.as_ref().map_or(-1, |c| c.raw());
        // SAFETY: fresh handles for this loop, each pointing back at this
        // Shell, which is boxed (stable address) and closes them before it goes.
        unsafe {
            uv::check((uv.poll_init)(self.loop_, self.control.point_at(me), fd)).during("uv_poll_init")?;
            uv::check((uv.check_init)(self.loop_, self.check.point_at(me))).during("uv_check_init")?;
            uv::check((uv.timer_init)(self.loop_, self.timer.point_at(me))).during("uv_timer_init")?;
            (uv.unref)(self.control.ptr);
            (uv.unref)(self.check.ptr);
            (uv.unref)(self.timer.ptr);
            uv::check((uv.check_start)(self.check.ptr, on_check)).during("uv_check_start")?;
            uv::check((uv.timer_start)(
                self.timer.ptr,
                on_timer,
                TURN_AT_LEAST_EVERY_MS,
                TURN_AT_LEAST_EVERY_MS,
            ))
            .during("uv_timer_start")?;
            uv::check((uv.poll_start)(
                self.control.ptr,
                uv::READABLE | uv::DISCONNECT,
                on_control,
            ))
            .during("uv_poll_start")?;
        }
        Ok(())
    }

    fn set_ref(&mut self, on: bool) {
        if self.closed {
            return;
        }
        // SAFETY: the control handle is initialised and open while not closed.
        unsafe {
            if on {
                (self.uv.ref_)(self.control.ptr)
            } else {
                (self.uv.unref)(self.control.ptr)
            }
        }
    }

    fn send(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> std::result::Result<(), Error> {
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

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // SAFETY: every handle below was initialised in `start` or
        // `on_setup` and is closed once (uv::Handle::close guards it).
        unsafe {
            self.control.close(self.uv);
            self.check.close(self.uv);
            self.timer.close(self.uv);
            if let Some(h) = &mut self.handoff_poll {
                h.close(self.uv);
            }
        }
        // Polling has stopped, so the fds can go: the primary sees end of
        // stream and takes back whatever this worker had not read.
        self.chan = None;
        self.handoff = None;
        self.page = None;
        // SAFETY: references and the async context made in `new`, released once.
        unsafe {
            sys::napi_delete_reference(self.env, self.callback);
            sys::napi_delete_reference(self.env, self.conn_ref);
            if !self.async_ctx.is_null() {
                sys::napi_async_destroy(self.env, self.async_ctx);
            }
        }
    }

    /// Reads the control channel dry: replies into `replies`, the setup
    /// into place. `Ok(true)` at end of stream.
    fn drain_control(&mut self) -> std::result::Result<bool, Error> {
        loop {
            while let Some(frame) = self.dec.next_frame()? {
                match frame {
                    Frame::Reply { reply, fd } => {
                        self.intake.reply_received();
                        let mut v = serde_json::to_value(&reply).map_err(ProtocolError::from)?;
                        v["fd"] = fd.map_or(-1, |f| f.into_raw_fd()).into();
                        self.replies.push(v.to_string());
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
        let h = uv::Handle::new(self.uv, uv::POLL);
        let me: *mut Shell = self;
        // SAFETY: a fresh handle on this loop pointing back at this boxed
        // Shell; it never keeps the loop alive (the control channel decides).
        unsafe {
            uv::check((self.uv.poll_init)(self.loop_, h.point_at(me), handoff.as_raw_fd())).during("uv_poll_init")?;
            (self.uv.unref)(h.ptr);
        }
        self.handoff = Some(handoff);
        self.handoff_poll = Some(h);
        self.read_handoff(true)
    }

    /// Starts or stops reading connections.
    fn read_handoff(&mut self, on: bool) -> std::result::Result<(), Error> {
        let Some(h) = &self.handoff_poll else {
            return Ok(());
        };
        if on == self.reading_handoff || self.closed {
            return Ok(());
        }
        // SAFETY: the handle was initialised in `on_setup` and is not closed.
        let r = unsafe {
            if on {
                (self.uv.poll_start)(h.ptr, uv::READABLE, on_handoff)
            } else {
                (self.uv.poll_stop)(h.ptr)
            }
        };
        uv::check(r).during("uv_poll_start")?;
        self.reading_handoff = on;
        Ok(())
    }

    /// Takes one connection off the hand-off channel, if one is there.
    fn take_one(&mut self) -> std::result::Result<Option<(Handoff, OwnedFd)>, Error> {
        let now = Instant::now();
        if !self.intake.may_read(now) {
            self.read_handoff(false)?;
            return Ok(None);
        }
        let (Some(end), Some(page)) = (&self.handoff, &self.page) else {
            return Ok(None);
        };
        let got = match handoff::recv_one(end.as_fd())? {
            Handed::Conn(record, fd) => {
                page.took_one();
                match self.intake.received(fd.as_raw_fd(), now) {
                    Step::Deliver => Some((record, fd)),
                    Step::GiveBack(why) => {
                        self.give_back(record, why, fd);
                        None
                    }
                }
            }
            Handed::Lost(_) => {
                page.took_one();
                self.intake.lost_one(now);
                None
            }
            Handed::Empty => None,
            Handed::Closed => {
                self.read_handoff(false)?;
                None
            }
        };
        if self.intake.paused_until().is_some() {
            self.read_handoff(false)?;
        }
        Ok(got)
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

/// Runs a uv callback's work for the Shell `handle` belongs to. A panic
/// must not unwind into libuv: it becomes the channel's error.
///
/// # Safety
/// `handle` must be one of a live Shell's handles (its `data` points at it).
unsafe fn guarded(handle: *mut c_void, work: impl FnOnce(*mut Shell)) {
    // SAFETY: per the contract, `data` (the first field) points at the Shell.
    let shell: *mut Shell = unsafe { *(handle as *mut *mut Shell) };
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(shell))) {
        // SAFETY: the Shell is alive while its handles run.
        unsafe { finish(shell, Error::from_panic(payload)) };
    }
}

unsafe extern "C" fn on_control(handle: *mut c_void, status: c_int, _events: c_int) {
    // SAFETY: libuv calls this only for the control handle, while open.
    unsafe {
        guarded(handle, |shell| {
            if (*shell).closed {
                return;
            }
            let read = if status < 0 {
                Err(Error::os("uv_poll", std::io::Error::from_raw_os_error(-status)))
            } else {
                (*shell).drain_control()
            };
            settle(shell, read)
        })
    }
}

/// Delivers pending replies, then closes the channel if reading ended it.
///
/// # Safety
/// `shell` must be live; JS may re-enter it, so no reference is held across.
unsafe fn settle(shell: *mut Shell, read: std::result::Result<bool, Error>) {
    // SAFETY: per the contract.
    unsafe {
        if !(*shell).replies.is_empty() {
            deliver(shell, 0);
        }
        match read {
            Ok(false) => {}
            Ok(true) => finish(shell, Error::Closed),
            Err(e) => finish(shell, e),
        }
    }
}

unsafe extern "C" fn on_handoff(handle: *mut c_void, _status: c_int, _events: c_int) {
    // SAFETY: libuv calls this only for the hand-off handle, while open.
    unsafe {
        guarded(handle, |shell| {
            if (*shell).closed {
                return;
            }
            if (*shell).intake.replies_first() {
                let read = (*shell).drain_control();
                let ended = !matches!(read, Ok(false));
                settle(shell, read);
                if ended || (*shell).closed {
                    return;
                }
            }
            match (*shell).take_one() {
                Ok(Some((record, fd))) => hand_over(shell, record, fd),
                Ok(None) => {}
                Err(e) => finish(shell, e),
            }
        })
    }
}

unsafe extern "C" fn on_check(handle: *mut c_void) {
    // SAFETY: libuv calls this only for the check handle, while open.
    unsafe {
        guarded(handle, |shell| {
            let s = &mut *shell;
            if let Some(page) = &s.page {
                page.turned(monotonic_ns());
                // SAFETY: `conn` is the live Int32Array(4) (see `hand_over`).
                let closed = *s.conn.add(3) as u32;
                if closed != s.closed_seen {
                    page.closed(closed.wrapping_sub(s.closed_seen));
                    s.closed_seen = closed;
                }
            }
        })
    }
}

unsafe extern "C" fn on_timer(handle: *mut c_void) {
    // SAFETY: libuv calls this only for the timer handle, while open.
    unsafe {
        guarded(handle, |shell| {
            let s = &mut *shell;
            let now = monotonic_ns();
            if let Some(page) = &s.page {
                page.lagged(now.saturating_sub(s.timer_due_ns));
            }
            s.timer_due_ns = now + TURN_AT_LEAST_EVERY_MS * 1_000_000;
            if !s.closed && !s.reading_handoff && s.intake.may_read(Instant::now()) {
                if let Err(e) = s.read_handoff(true) {
                    finish(shell, e);
                }
            }
        })
    }
}

/// Hands a connection to JS; if its server does not take it, it goes back.
///
/// # Safety
/// `shell` must be live; JS may re-enter it, so no reference is held across.
unsafe fn hand_over(shell: *mut Shell, record: Handoff, fd: OwnedFd) {
    // SAFETY: per the contract; `conn` points at the Int32Array(4) whose
    // backing store `conn_ref` keeps alive, and is only read or written here
    // and by JS on this thread.
    unsafe {
        let conn = (*shell).conn;
        *conn = record.handle as i32;
        *conn.add(1) = fd.as_raw_fd();
        *conn.add(2) = 0;
        deliver(shell, 1);
        if *conn.add(2) == 1 {
            // The server in JS owns it now.
            let _ = fd.into_raw_fd();
            if let Some(page) = &(*shell).page {
                page.opened(monotonic_ns().saturating_sub(record.accepted_ns));
            }
        } else {
            (*shell).give_back(record, Returned::Refused, fd);
        }
    }
}

/// Closes the channel and tells JS why, once.
///
/// # Safety
/// `shell` must be live.
unsafe fn finish(shell: *mut Shell, why: Error) {
    // SAFETY: per the contract; the callback is taken out before `close`
    // releases its reference.
    unsafe {
        if (*shell).closed {
            return;
        }
        let env = (*shell).env;
        let mut scope = ptr::null_mut();
        if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
            (*shell).close();
            return;
        }
        let mut func = ptr::null_mut();
        let got = sys::napi_get_reference_value(env, (*shell).callback, &mut func);
        let ctx = (*shell).async_ctx;
        (*shell).async_ctx = ptr::null_mut();
        (*shell).close();
        if got == sys::Status::napi_ok && !func.is_null() {
            let _ = call_js(env, ctx, func, 0, &[], Some(&why));
        }
        if !ctx.is_null() {
            sys::napi_async_destroy(env, ctx);
        }
        sys::napi_close_handle_scope(env, scope);
    }
}

/// `callback(hasConn, replies, null)` through `napi_make_callback`, so
/// promise jobs and nextTicks run after it as after any I/O callback.
///
/// # Safety
/// `shell` must be live.
unsafe fn deliver(shell: *mut Shell, has_conn: u32) {
    // SAFETY: per the contract.
    unsafe {
        let env = (*shell).env;
        let replies = std::mem::take(&mut (*shell).replies);
        let mut scope = ptr::null_mut();
        if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
            return;
        }
        let mut func = ptr::null_mut();
        if sys::napi_get_reference_value(env, (*shell).callback, &mut func) == sys::Status::napi_ok && !func.is_null() {
            let _ = call_js(env, (*shell).async_ctx, func, has_conn, &replies, None);
        }
        sys::napi_close_handle_scope(env, scope);
    }
}

/// A throw from the callback becomes an uncaught exception, as with Node's
/// own handles.
///
/// # Safety
/// `env` must be the current env and `func` a function value of it, inside
/// an open handle scope.
unsafe fn call_js(
    env: sys::napi_env,
    ctx: sys::napi_async_context,
    func: sys::napi_value,
    has_conn: u32,
    replies: &[String],
    error: Option<&Error>,
) -> Result<()> {
    // SAFETY: per the contract; every out-pointer is a local.
    unsafe {
        let mut argv = [ptr::null_mut(); 3];
        napi_ok(sys::napi_create_uint32(env, has_conn, &mut argv[0]))?;
        if replies.is_empty() {
            napi_ok(sys::napi_get_null(env, &mut argv[1]))?;
        } else {
            napi_ok(sys::napi_create_array_with_length(env, replies.len(), &mut argv[1]))?;
            for (i, r) in replies.iter().enumerate() {
                let mut s = ptr::null_mut();
                napi_ok(sys::napi_create_string_utf8(
                    env,
                    r.as_ptr() as *const c_char,
                    r.len() as isize,
                    &mut s,
                ))?;
                napi_ok(sys::napi_set_element(env, argv[1], i as u32, s))?;
            }
        }
        match error {
            None => napi_ok(sys::napi_get_null(env, &mut argv[2]))?,
            Some(e) => argv[2] = js_error(&Env::from_raw(env), e)?.raw(),
        }
        let mut recv = ptr::null_mut();
        napi_ok(sys::napi_get_global(env, &mut recv))?;
        let mut result = ptr::null_mut();
        let status = sys::napi_make_callback(env, ctx, recv, func, 3, argv.as_ptr(), &mut result);
        if status == sys::Status::napi_pending_exception {
            let mut exc = ptr::null_mut();
            if sys::napi_get_and_clear_last_exception(env, &mut exc) == sys::Status::napi_ok {
                sys::napi_fatal_exception(env, exc);
            }
        }
        Ok(())
    }
}
