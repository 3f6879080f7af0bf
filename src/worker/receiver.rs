//! The worker's end of the control channel, read on the worker's own event
//! loop through a libuv poll handle.
//!
//! Why not a thread: a receive thread has to wake the JS loop through a
//! threadsafe function (thread wakeup, then uv_async), about 25-30 µs per
//! connection when measured here, which capped throughput below Node's own
//! shared-handle mode. A `uv_poll_t` on the channel costs one readiness
//! callback per batch, on the loop that will run the JS anyway. This file is
//! the only user of libuv: its symbols are looked up at run time from the
//! Node binary that loaded us (Node exports libuv to addons).
//!
//! A batch is not taken whole: its connections wait in `pending` and are
//! claimed one per loop turn, each once its client has sent something
//! (`claim_turn` says why). An idle handle keeps the loop turning while some
//! are ready; a timer looks again while clients are silent, and closes the
//! spare copies of claimed connections once the primary has let go of its
//! own (`board.rs`).

use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::ptr;
use std::time::{Duration, Instant};

use napi::sys;
use once_cell::sync::OnceCell;

use super::first_bytes::{has_input, FirstBytes};
use crate::board::Board;
use crate::channel::{Channel, Received};
use crate::error::{Error, ProtocolError};
use crate::protocol::{
    encode_acks, encode_close, encode_hello, encode_query, Ack, Conn, Decoder, Frame, Outcome, Query,
};

const UV_IDLE: c_int = 6;
const UV_POLL: c_int = 8;
const UV_TIMER: c_int = 13;
const UV_READABLE: c_int = 1;
const UV_DISCONNECT: c_int = 4;

/// Acceptances held back at most this many before they are sent.
const ACK_BATCH: usize = 16;

/// How often spare copies are checked for release, and pending connections
/// for their client's first bytes, when nothing else turns the loop.
const TICK_MS: u64 = 1;

/// A connection whose client has sent nothing is claimed after this long
/// anyway: the protocol may be one where the server speaks first.
const UNREAD_CLAIM_AFTER: Duration = Duration::from_millis(10);

type PollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
/// The callback of idle and timer handles.
type TickCb = unsafe extern "C" fn(*mut c_void);
type CloseCb = unsafe extern "C" fn(*mut c_void);

struct Uv {
    handle_size: unsafe extern "C" fn(c_int) -> usize,
    poll_init: unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int,
    poll_start: unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int,
    idle_init: unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int,
    idle_start: unsafe extern "C" fn(*mut c_void, TickCb) -> c_int,
    idle_stop: unsafe extern "C" fn(*mut c_void) -> c_int,
    timer_init: unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int,
    timer_start: unsafe extern "C" fn(*mut c_void, TickCb, u64, u64) -> c_int,
    timer_stop: unsafe extern "C" fn(*mut c_void) -> c_int,
    close: unsafe extern "C" fn(*mut c_void, Option<CloseCb>),
    ref_: unsafe extern "C" fn(*mut c_void),
    unref: unsafe extern "C" fn(*mut c_void),
}

/// A libuv function from the process that loaded us.
///
/// # Safety
/// `F` must be the function pointer type of the symbol `name`.
unsafe fn sym<F: Copy>(name: &CStr) -> io::Result<F> {
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    let p = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
    if p.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("libuv symbol {name:?} not found"),
        ));
    }
    Ok(std::mem::transmute_copy::<*mut c_void, F>(&p))
}

fn uv() -> io::Result<&'static Uv> {
    static UV: OnceCell<Uv> = OnceCell::new();
    UV.get_or_try_init(|| unsafe {
        Ok(Uv {
            handle_size: sym(c"uv_handle_size")?,
            poll_init: sym(c"uv_poll_init")?,
            poll_start: sym(c"uv_poll_start")?,
            idle_init: sym(c"uv_idle_init")?,
            idle_start: sym(c"uv_idle_start")?,
            idle_stop: sym(c"uv_idle_stop")?,
            timer_init: sym(c"uv_timer_init")?,
            timer_start: sym(c"uv_timer_start")?,
            timer_stop: sym(c"uv_timer_stop")?,
            close: sym(c"uv_close")?,
            ref_: sym(c"uv_ref")?,
            unref: sym(c"uv_unref")?,
        })
    })
}

fn uv_check(r: c_int) -> io::Result<()> {
    if r < 0 {
        return Err(io::Error::from_raw_os_error(-r));
    }
    Ok(())
}

fn napi_check(s: sys::napi_status) -> napi::Result<()> {
    if s != sys::Status::napi_ok {
        return Err(napi::Error::new(napi::Status::GenericFailure, "N-API call failed"));
    }
    Ok(())
}

/// Everything the poll callback needs, at a stable heap address stored in
/// the uv handle's `data` field (the first field of every uv handle).
struct Inner {
    env: sys::napi_env,
    /// None once closed: the fd is closed as soon as polling stops.
    chan: Option<Channel>,
    dec: Decoder,
    /// Where this worker claims each connection before taking it (`board.rs`).
    board: Option<Board>,
    poll: UvHandle,
    callback: sys::napi_ref,
    async_ctx: sys::napi_async_context,
    /// Shared with JS: `[handle, seq, fd]` per connection. JS overwrites the
    /// fd slot with 1/0 (accepted or not) before calling `ack`.
    conns: sys::napi_ref,
    conns_ptr: *mut i32,
    conns_cap: usize,
    conns_len: usize,
    replies: Vec<String>,
    /// Connections read from the channel but not claimed yet.
    pending: VecDeque<Pending>,
    /// Nothing pending could be claimed on the last turn: no client has sent
    /// anything yet. The timer, not the idle handle, looks again.
    waiting_for_input: bool,
    /// Active while `pending` holds connections ready to claim, so the loop
    /// turns again without waiting for I/O.
    idle: UvHandle,
    idle_on: bool,
    /// Acknowledgements not sent yet.
    acks: Vec<Ack>,
    /// A spare copy of each claimed connection, until the primary releases
    /// its slot (see `board.rs`): `(slot, seq, fd)`.
    held: Vec<(u16, u32, OwnedFd)>,
    /// Runs while `held` is not empty, so spares go even when nothing else
    /// turns this loop.
    timer: UvHandle,
    timer_on: bool,
    /// Wakes the loop when a pending connection's client sends its first
    /// bytes; None where there is no epoll (the timer looks instead).
    first_bytes: Option<FirstBytes>,
    /// Its uv poll handle.
    fb_poll: Option<UvHandle>,
    closed: bool,
    scratch: Vec<u8>,
}

struct Pending {
    conn: Conn,
    fd: Option<OwnedFd>,
    arrived: Instant,
    input: Input,
}

/// What is known of a pending connection's first bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Not looked at, or not watchable: peek.
    Unknown,
    /// None yet; in `first_bytes`' set, which reports when they come.
    Watched,
    /// `first_bytes` reported them (or a hang-up).
    Arrived,
}

pub struct Receiver {
    inner: Box<Inner>,
}

impl Receiver {
    /// # Safety
    /// `env` must be the current env, `callback` a function and `conns` an
    /// Int32Array, all from the JS thread that owns this receiver.
    pub unsafe fn new(
        env: sys::napi_env,
        fd: i32,
        conns: sys::napi_value,
        callback: sys::napi_value,
    ) -> napi::Result<Receiver> {
        let uv = uv().map_err(io_to_napi)?;
        let chan = Channel::new(OwnedFd::from_raw_fd(fd)).map_err(io_to_napi)?;
        let mut hello = Vec::new();
        encode_hello(&mut hello);
        chan.send_all_blocking(&hello, &[]).map_err(io_to_napi)?;

        let mut kind = 0;
        let mut len = 0usize;
        let mut data: *mut c_void = ptr::null_mut();
        let mut ab = ptr::null_mut();
        let mut offset = 0usize;
        napi_check(sys::napi_get_typedarray_info(
            env,
            conns,
            &mut kind,
            &mut len,
            &mut data,
            &mut ab,
            &mut offset,
        ))?;
        if kind != sys::TypedarrayType::int32_array || len < 3 {
            return Err(napi::Error::new(
                napi::Status::InvalidArg,
                "conns must be an Int32Array",
            ));
        }
        let mut conns_ref = ptr::null_mut();
        napi_check(sys::napi_create_reference(env, conns, 1, &mut conns_ref))?;
        let mut cb_ref = ptr::null_mut();
        napi_check(sys::napi_create_reference(env, callback, 1, &mut cb_ref))?;
        let mut name = ptr::null_mut();
        let label = c"rs-cluster:channel";
        napi_check(sys::napi_create_string_utf8(
            env,
            label.as_ptr(),
            label.count_bytes() as isize,
            &mut name,
        ))?;
        let mut async_ctx = ptr::null_mut();
        napi_check(sys::napi_async_init(env, ptr::null_mut(), name, &mut async_ctx))?;

        let mut loop_ = ptr::null_mut();
        napi_check(sys::napi_get_uv_event_loop(env, &mut loop_))?;
        let first_bytes = FirstBytes::new().ok();
        let fb_poll = first_bytes.as_ref().map(|_| UvHandle::new(uv, UV_POLL));

        let raw_fd = chan.raw();
        let mut inner = Box::new(Inner {
            env,
            chan: Some(chan),
            dec: Decoder::default(),
            board: None,
            poll: UvHandle::new(uv, UV_POLL),
            callback: cb_ref,
            async_ctx,
            conns: conns_ref,
            conns_ptr: data as *mut i32,
            conns_cap: len / 3,
            conns_len: 0,
            replies: Vec::new(),
            pending: VecDeque::new(),
            waiting_for_input: false,
            idle: UvHandle::new(uv, UV_IDLE),
            idle_on: false,
            acks: Vec::new(),
            held: Vec::new(),
            timer: UvHandle::new(uv, UV_TIMER),
            timer_on: false,
            first_bytes,
            fb_poll,
            closed: false,
            scratch: Vec::with_capacity(256),
        });
        let loop_ = loop_ as *mut c_void;
        let me: *mut Inner = &mut *inner;
        uv_check((uv.poll_init)(loop_, inner.poll.point_at(me), raw_fd)).map_err(io_to_napi)?;
        uv_check((uv.idle_init)(loop_, inner.idle.point_at(me))).map_err(io_to_napi)?;
        uv_check((uv.timer_init)(loop_, inner.timer.point_at(me))).map_err(io_to_napi)?;
        // Only the channel's poll handle decides whether the loop stays alive.
        (uv.unref)(inner.idle.ptr);
        (uv.unref)(inner.timer.ptr);
        if let (Some(fb), Some(h)) = (&inner.first_bytes, &inner.fb_poll) {
            uv_check((uv.poll_init)(loop_, h.point_at(me), fb.raw())).map_err(io_to_napi)?;
            uv_check((uv.poll_start)(h.ptr, UV_READABLE, on_first_bytes)).map_err(io_to_napi)?;
            (uv.unref)(h.ptr);
        }
        uv_check((uv.poll_start)(inner.poll.ptr, UV_READABLE | UV_DISCONNECT, on_poll)).map_err(io_to_napi)?;
        Ok(Receiver { inner })
    }

    pub fn query(&mut self, q: &Query) -> Result<(), Error> {
        self.send(|out| encode_query(out, q))
    }

    pub fn close_handle(&mut self, handle: u32) -> Result<(), Error> {
        self.send(|out| encode_close(out, handle))
    }

    /// Acknowledges the first `n` connections of the last batch, reading the
    /// accepted flags JS wrote into the shared buffer. Acceptances are sent
    /// in batches (see `turn`): the claim board already tells the primary who
    /// owns each connection; the acknowledgement only lets it close its copy
    /// and send more. A refusal goes at once, so the connection is re-routed
    /// promptly.
    pub fn ack(&mut self, n: usize) -> Result<(), Error> {
        let n = n.min(self.inner.conns_cap);
        let slots = unsafe { std::slice::from_raw_parts(self.inner.conns_ptr, n * 3) };
        let mut refused = false;
        for s in slots.chunks_exact(3) {
            refused |= s[2] == 0;
            self.inner.acks.push(Ack {
                seq: s[1] as u32,
                outcome: if s[2] != 0 { Outcome::Accepted } else { Outcome::Refused },
            });
        }
        if refused || self.inner.acks.len() >= ACK_BATCH {
            flush_acks(&mut self.inner)?;
        }
        Ok(())
    }

    fn send(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        send_frame(&mut self.inner, encode)
    }

    /// Whether the poll handle keeps the event loop alive: on while a server
    /// listens through it, off when the app unrefs or closes its servers.
    pub fn set_ref(&mut self, on: bool) {
        if self.inner.closed {
            return;
        }
        if let Ok(uv) = uv() {
            unsafe {
                if on {
                    (uv.ref_)(self.inner.poll.ptr)
                } else {
                    (uv.unref)(self.inner.poll.ptr)
                }
            }
        }
    }

    /// Stops polling and closes the channel; the primary sees end of stream
    /// and re-routes anything this worker had not acknowledged.
    pub fn close(&mut self) {
        close_inner(&mut self.inner);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        close_inner(&mut self.inner);
    }
}

fn close_inner(inner: &mut Inner) {
    if inner.closed {
        return;
    }
    inner.closed = true;
    // Best effort: what it does not get, the primary learns from the board.
    let _ = flush_acks(inner);
    if let Ok(uv) = uv() {
        unsafe {
            inner.poll.close(uv);
            inner.idle.close(uv);
            inner.timer.close(uv);
            if let Some(h) = &inner.fb_poll {
                h.close(uv);
            }
        }
    }
    // Polling has stopped, so the fd can go now: the primary sees end of
    // stream and re-routes whatever this worker had not claimed.
    inner.chan = None;
    inner.pending.clear();
    inner.held.clear();
    inner.first_bytes = None;
    unsafe {
        sys::napi_delete_reference(inner.env, inner.callback);
        sys::napi_delete_reference(inner.env, inner.conns);
        if !inner.async_ctx.is_null() {
            sys::napi_async_destroy(inner.env, inner.async_ctx);
        }
    }
}

/// The memory of one uv handle: ours until `close`, then libuv's until its
/// close callback frees it. Its first field, `data`, points at Inner while
/// the handle runs and carries the allocation's size once it is closing.
struct UvHandle {
    ptr: *mut c_void,
    /// Size in u64 words, which keep it 8-aligned, as uv handles need.
    words: usize,
}

impl UvHandle {
    fn new(uv: &Uv, kind: c_int) -> UvHandle {
        let words = unsafe { (uv.handle_size)(kind) }.div_ceil(8);
        UvHandle {
            ptr: Box::into_raw(vec![0u64; words].into_boxed_slice()) as *mut c_void,
            words,
        }
    }

    /// Sets `data` to `inner` (uv's init functions leave it alone) and
    /// returns the handle, for the init call.
    unsafe fn point_at(&self, inner: *mut Inner) -> *mut c_void {
        *(self.ptr as *mut *mut Inner) = inner;
        self.ptr
    }

    /// `uv_close` stops the handle first, so its callback never runs again.
    unsafe fn close(&self, uv: &Uv) {
        *(self.ptr as *mut usize) = self.words;
        (uv.close)(self.ptr, Some(on_close));
    }
}

unsafe extern "C" fn on_close(handle: *mut c_void) {
    let words = *(handle as *mut usize);
    drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
        handle as *mut u64,
        words,
    )));
}

fn send_frame(inner: &mut Inner, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
    let mut out = std::mem::take(&mut inner.scratch);
    out.clear();
    encode(&mut out);
    let r = match &inner.chan {
        Some(chan) => chan.send_all_blocking(&out, &[]).map_err(Error::from),
        None => Err(Error::Closed),
    };
    inner.scratch = out;
    r
}

fn flush_acks(inner: &mut Inner) -> Result<(), Error> {
    if inner.acks.is_empty() {
        return Ok(());
    }
    let acks = std::mem::take(&mut inner.acks);
    let r = send_frame(inner, |out| encode_acks(out, acks.iter().copied()));
    inner.acks = acks;
    inner.acks.clear();
    r
}

/// Runs a uv callback's work for the receiver `handle` belongs to. A panic
/// must not unwind into libuv: it becomes the receiver's error.
unsafe fn guarded(handle: *mut c_void, work: impl FnOnce(*mut Inner)) {
    let inner: *mut Inner = *(handle as *mut *mut Inner);
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(inner))) {
        finish(inner, Error::from_panic(payload));
    }
}

unsafe extern "C" fn on_poll(handle: *mut c_void, status: c_int, _events: c_int) {
    guarded(handle, |inner| poll_ready(inner, status));
}

/// The idle handle's and the timer's callback: a turn with nothing new read.
unsafe extern "C" fn on_tick(handle: *mut c_void) {
    guarded(handle, |inner| turn(inner, Ok(false)));
}

unsafe extern "C" fn on_first_bytes(handle: *mut c_void, _status: c_int, _events: c_int) {
    guarded(handle, |inner| {
        if let Some(fb) = &(*inner).first_bytes {
            let pending = &mut (*inner).pending;
            fb.drain(|fd| {
                if let Some(p) = pending
                    .iter_mut()
                    .find(|p| p.fd.as_ref().map(|f| f.as_raw_fd()) == Some(fd))
                {
                    p.input = Input::Arrived;
                }
            });
        }
        turn(inner, Ok(false))
    });
}

unsafe fn poll_ready(inner: *mut Inner, status: c_int) {
    if (*inner).closed {
        return;
    }
    let read = if status < 0 {
        Err(Error::Io(io::Error::from_raw_os_error(-status)))
    } else {
        drain(&mut *inner)
    };
    turn(inner, read);
}

/// One loop turn's work: claim this turn's connections, hand them and any
/// replies to JS, then deal with how reading went (`Ok(true)`: end of stream).
///
/// JS may re-enter this receiver (ack, close) from inside `deliver`, so no
/// Rust reference to Inner is held across a call into JS.
unsafe fn turn(inner: *mut Inner, read: Result<bool, Error>) {
    if (*inner).closed {
        return;
    }
    drop_spares(&mut *inner);
    let claimed = claim_turn(&mut *inner);
    if (*inner).conns_len > 0 || !(*inner).replies.is_empty() {
        deliver(inner);
    }
    if (*inner).closed {
        return;
    }
    // Nothing more to claim on the next turn: what was accepted is told now,
    // so the primary closes its copies and sends more without waiting.
    let idle = (*inner).pending.is_empty() || (*inner).waiting_for_input;
    let flushed = if idle { flush_acks(&mut *inner) } else { Ok(()) };
    let result = claimed.and(flushed).and(read);
    match result {
        Ok(false) => set_handles(&mut *inner),
        Ok(true) => finish(inner, Error::Closed),
        Err(e) => finish(inner, e),
    }
}

/// Closes the receiver and tells JS why, once.
unsafe fn finish(inner: *mut Inner, why: Error) {
    if (*inner).closed {
        return;
    }
    // The callback reference is released by close, so take the function first.
    let env = (*inner).env;
    let mut scope = ptr::null_mut();
    if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
        return;
    }
    let mut func = ptr::null_mut();
    let got = sys::napi_get_reference_value(env, (*inner).callback, &mut func);
    let ctx = (*inner).async_ctx;
    (*inner).async_ctx = ptr::null_mut();
    close_inner(&mut *inner);
    if got == sys::Status::napi_ok && !func.is_null() {
        let _ = call_js(env, ctx, func, 0, &[], Some(why));
    }
    if !ctx.is_null() {
        sys::napi_async_destroy(env, ctx);
    }
    sys::napi_close_handle_scope(env, scope);
}

/// The idle handle runs while connections are ready to be claimed; the
/// timer while some wait for their client, or spares for the primary's release.
fn set_handles(inner: &mut Inner) {
    let Ok(uv) = uv() else {
        return;
    };
    let idle = !inner.pending.is_empty() && !inner.waiting_for_input;
    if idle != inner.idle_on {
        unsafe {
            if idle {
                (uv.idle_start)(inner.idle.ptr, on_tick);
            } else {
                (uv.idle_stop)(inner.idle.ptr);
            }
        }
        inner.idle_on = idle;
    }
    let timer = !inner.held.is_empty() || inner.waiting_for_input;
    if timer != inner.timer_on {
        unsafe {
            if timer {
                (uv.timer_start)(inner.timer.ptr, on_tick, TICK_MS, TICK_MS);
            } else {
                (uv.timer_stop)(inner.timer.ptr);
            }
        }
        inner.timer_on = timer;
    }
}

/// Closes the spares whose slots the primary has released.
fn drop_spares(inner: &mut Inner) {
    if let Some(board) = inner.board.as_ref() {
        inner.held.retain(|(slot, seq, _)| board.still_claimed(*slot, *seq));
    }
}

/// Claims at most one pending connection per loop turn, and only one the
/// client has already sent something on (or that has waited
/// `UNREAD_CLAIM_AFTER`). Why: a connection this worker claims is its own to
/// serve, so if its loop then blocks, every connection it claimed waits
/// with it, while unclaimed ones the primary takes back after a while and
/// gives to another worker. One per turn, with its request already there,
/// is served on the very next turn; Node's own round-robin gets the same
/// bound from a round trip through the primary per connection.
fn claim_turn(inner: &mut Inner) -> Result<(), Error> {
    let Some(board) = inner.board.as_ref() else {
        return Ok(());
    };
    let buf = unsafe { std::slice::from_raw_parts_mut(inner.conns_ptr, inner.conns_cap * 3) };
    let now = Instant::now();
    let mut revoked = false;
    let mut looked = 0;
    while inner.conns_len == 0 && looked < inner.pending.len() {
        let Some(mut p) = inner.pending.pop_front() else {
            break;
        };
        let due = now.duration_since(p.arrived) >= UNREAD_CLAIM_AFTER;
        let fd = p.fd.as_ref().map(|f| f.as_raw_fd());
        let ready = due
            || match p.input {
                Input::Arrived => true,
                Input::Watched => false,
                Input::Unknown => fd.is_none_or(has_input),
            };
        if !ready {
            if let (Input::Unknown, Some(fb), Some(fd)) = (p.input, &inner.first_bytes, fd) {
                // If this fails, the timer's next tick peeks again.
                if fb.watch(fd).is_ok() {
                    p.input = Input::Watched;
                }
            }
            inner.pending.push_back(p);
            looked += 1;
            continue;
        }
        if let (Input::Watched | Input::Arrived, Some(fb), Some(fd)) = (p.input, &inner.first_bytes, fd) {
            fb.unwatch(fd);
        }
        // Revoked while this worker was not reading: another worker has it
        // now; dropping our copy closes nothing of theirs.
        if !board.claim(p.conn.slot, p.conn.seq) {
            inner.acks.push(Ack {
                seq: p.conn.seq,
                outcome: Outcome::Revoked,
            });
            revoked = true;
            continue;
        }
        if let Some(spare) = p.fd.as_ref().and_then(|f| f.try_clone().ok()) {
            inner.held.push((p.conn.slot, p.conn.seq, spare));
        }
        buf[0] = p.conn.handle as i32;
        buf[1] = p.conn.seq as i32;
        // -1: no room for the fd here; JS refuses it so it is re-routed.
        buf[2] = p.fd.map_or(-1, |f| f.into_raw_fd());
        inner.conns_len = 1;
    }
    inner.waiting_for_input = inner.conns_len == 0 && !inner.pending.is_empty();
    // The primary sends nothing new to a worker it revoked from until it hears back.
    if revoked {
        flush_acks(inner)?;
    }
    Ok(())
}

/// Reads everything available: replies into `replies`, connections into
/// `pending`. `Ok(true)` at end of stream.
fn drain(inner: &mut Inner) -> Result<bool, Error> {
    loop {
        while let Some(frame) = inner.dec.next_frame()? {
            match frame {
                Frame::Reply { reply, fd } => {
                    let mut v = serde_json::to_value(&reply).map_err(ProtocolError::from)?;
                    v["fd"] = fd.map(|f| f.into_raw_fd()).unwrap_or(-1).into();
                    inner.replies.push(v.to_string());
                }
                Frame::Board(fd) => {
                    if inner.board.is_some() {
                        return Err(ProtocolError::BadBody("second claim board").into());
                    }
                    inner.board = Some(Board::map(fd)?);
                }
                Frame::NewConn(conns) => {
                    if inner.board.is_none() {
                        return Err(ProtocolError::BadBody("newconn before the claim board").into());
                    }
                    // The primary never has more in flight than the board has slots.
                    if inner.pending.len() + conns.len() > crate::board::SLOTS {
                        return Err(ProtocolError::BadBody("more connections than claim slots").into());
                    }
                    let arrived = Instant::now();
                    inner.pending.extend(conns.into_iter().map(|(conn, fd)| Pending {
                        conn,
                        fd,
                        arrived,
                        input: Input::Unknown,
                    }));
                }
                _ => return Err(ProtocolError::WrongDirection.into()),
            }
        }
        let Some(chan) = inner.chan.as_mut() else {
            return Ok(true);
        };
        match chan.recv(&mut inner.dec)? {
            Received::Data { .. } => {}
            Received::WouldBlock => return Ok(false),
            Received::Eof => return Ok(true),
        }
    }
}

/// Hands a batch to JS: `callback(nConns, replies, null)` through `napi_make_callback`, so
/// promise jobs and nextTicks run after it as after any I/O callback. A throw
/// becomes an uncaught exception, as with Node's own handles.
unsafe fn deliver(inner: *mut Inner) {
    let env = (*inner).env;
    let n = (*inner).conns_len;
    (*inner).conns_len = 0;
    let replies = std::mem::take(&mut (*inner).replies);
    let mut scope = ptr::null_mut();
    if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
        return;
    }
    let mut func = ptr::null_mut();
    if sys::napi_get_reference_value(env, (*inner).callback, &mut func) == sys::Status::napi_ok && !func.is_null() {
        let _ = call_js(env, (*inner).async_ctx, func, n, &replies, None);
    }
    sys::napi_close_handle_scope(env, scope);
}

unsafe fn call_js(
    env: sys::napi_env,
    ctx: sys::napi_async_context,
    func: sys::napi_value,
    n: usize,
    replies: &[String],
    error: Option<Error>,
) -> napi::Result<()> {
    let mut argv = [ptr::null_mut(); 3];
    napi_check(sys::napi_create_uint32(env, n as u32, &mut argv[0]))?;
    if replies.is_empty() {
        napi_check(sys::napi_get_null(env, &mut argv[1]))?;
    } else {
        napi_check(sys::napi_create_array_with_length(env, replies.len(), &mut argv[1]))?;
        for (i, r) in replies.iter().enumerate() {
            let mut s = ptr::null_mut();
            napi_check(sys::napi_create_string_utf8(
                env,
                r.as_ptr() as *const c_char,
                r.len() as isize,
                &mut s,
            ))?;
            napi_check(sys::napi_set_element(env, argv[1], i as u32, s))?;
        }
    }
    match error {
        None => napi_check(sys::napi_get_null(env, &mut argv[2]))?,
        Some(e) => argv[2] = js_error(env, &e)?,
    }
    let mut recv = ptr::null_mut();
    napi_check(sys::napi_get_global(env, &mut recv))?;
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

unsafe fn js_error(env: sys::napi_env, e: &Error) -> napi::Result<sys::napi_value> {
    let msg = e.to_string();
    let code = e.code();
    let mut m = ptr::null_mut();
    let mut c = ptr::null_mut();
    napi_check(sys::napi_create_string_utf8(
        env,
        msg.as_ptr() as *const c_char,
        msg.len() as isize,
        &mut m,
    ))?;
    napi_check(sys::napi_create_string_utf8(
        env,
        code.as_ptr() as *const c_char,
        code.len() as isize,
        &mut c,
    ))?;
    let mut err = ptr::null_mut();
    napi_check(sys::napi_create_error(env, c, m, &mut err))?;
    Ok(err)
}

pub fn io_to_napi(e: io::Error) -> napi::Error {
    crate::binding::to_js_error(Error::Io(e))
}
