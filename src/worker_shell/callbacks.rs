//! What runs when libuv calls: each callback asks the intake, has the
//! Shell do the I/O, and calls JS with no reference to the Shell held, so
//! JS may re-enter the channel (query, close) from its callback.

use std::ffi::{c_int, c_void};
use std::os::fd::{AsRawFd, OwnedFd};

use napi::bindgen_prelude::*;
use napi::sys;
use rs_cluster_core::error::Error;
use rs_cluster_core::page::monotonic_ns;
use rs_cluster_core::protocol::Handoff;

use super::{Js, Shell, ShellRef};
use crate::errors::js_error;
use crate::napi_raw::Scope;
use crate::worker_channel::ServerReply;

/// Runs a uv callback's work. A panic must not unwind into libuv: it
/// becomes the channel's error.
fn guarded(shell: ShellRef, work: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        finish(shell, Error::from_panic(payload));
    }
}

pub(super) unsafe extern "C" fn on_control(handle: *mut c_void, status: c_int, _events: c_int) {
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

pub(super) unsafe extern "C" fn on_handoff(handle: *mut c_void, _status: c_int, _events: c_int) {
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

pub(super) unsafe extern "C" fn on_check(handle: *mut c_void) {
    // SAFETY: libuv calls this only for the check handle, while open.
    let shell = unsafe { ShellRef::of(handle) };
    guarded(shell, || {
        shell.with(|s| {
            if let (Some(page), Some(js)) = (&s.page, &s.js) {
                page.turned(monotonic_ns());
                let closed = s.intake.on_turn(js.conn.closed());
                if closed != 0 {
                    page.closed(closed);
                }
            }
        })
    })
}

pub(super) unsafe extern "C" fn on_timer(handle: *mut c_void) {
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
