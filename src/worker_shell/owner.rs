//! The Shell's lifetime: started with its handles by the `WorkerChannel`,
//! closed and freed when that goes, and reached from libuv callbacks only
//! through `ShellRef::with`.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::rc::Rc;

use napi::bindgen_prelude::*;
use rs_cluster_core::channel::Channel;
use rs_cluster_core::error::{Context, Error};
use rs_cluster_core::page::monotonic_ns;
use rs_cluster_core::protocol::Decoder;
use rs_cluster_core::worker::Intake;

use super::{on_check, on_control, on_timer, Js, Shell};
use crate::napi_raw;
use crate::uv;

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
pub(super) struct ShellRef(NonNull<Shell>);

impl ShellRef {
    /// The Shell of a uv handle's callback.
    ///
    /// # Safety
    /// `handle` is one of a live Shell's open handles (`data` points at it).
    pub(super) unsafe fn of(handle: *mut c_void) -> ShellRef {
        // SAFETY: per the contract; `data` is the first field of a uv handle.
        ShellRef(unsafe { NonNull::new_unchecked(*(handle as *mut *mut Shell)) })
    }

    /// The one way to the Shell: no reference to it outlives `f`, and `f`
    /// never calls JS, so JS re-entering the channel finds none alive.
    pub(super) fn with<R>(self, f: impl FnOnce(&mut Shell) -> R) -> R {
        // SAFETY: a ShellRef exists only for a live Shell (its owner frees it
        // after closing every handle), used on the JS thread; per the above,
        // this is the only reference at the time.
        f(unsafe { &mut *self.0.as_ptr() })
    }
}
