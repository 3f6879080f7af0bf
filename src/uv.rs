//! libuv, from the Node binary that loaded us (Node exports libuv's symbols
//! to addons): the few functions the worker's channel needs, looked up once
//! at run time, and the handles it runs (`Handle`). This file is the only
//! one that calls libuv.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::io;

use once_cell::sync::OnceCell;

const POLL: c_int = 8;
const CHECK: c_int = 2;
const TIMER: c_int = 13;
pub const READABLE: c_int = 1;
pub const DISCONNECT: c_int = 4;

pub type PollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
/// The callback of check and timer handles.
pub type TickCb = unsafe extern "C" fn(*mut c_void);
type CloseCb = unsafe extern "C" fn(*mut c_void);

pub struct Uv {
    handle_size: unsafe extern "C" fn(c_int) -> usize,
    poll_init: unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int,
    poll_start: unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int,
    poll_stop: unsafe extern "C" fn(*mut c_void) -> c_int,
    check_init: unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int,
    check_start: unsafe extern "C" fn(*mut c_void, TickCb) -> c_int,
    timer_init: unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int,
    timer_start: unsafe extern "C" fn(*mut c_void, TickCb, u64, u64) -> c_int,
    close: unsafe extern "C" fn(*mut c_void, Option<CloseCb>),
    ref_: unsafe extern "C" fn(*mut c_void),
    unref: unsafe extern "C" fn(*mut c_void),
    err_name: unsafe extern "C" fn(c_int) -> *const c_char,
    strerror: unsafe extern "C" fn(c_int) -> *const c_char,
}

/// A libuv function from the process that loaded us.
///
/// # Safety
/// `F` must be the function pointer type of the symbol `name`.
unsafe fn sym<F: Copy>(name: &CStr) -> io::Result<F> {
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name is always safe to call.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if p.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("libuv symbol {name:?} not found"),
        ));
    }
    // SAFETY: the caller guarantees F is this symbol's function pointer type,
    // which has the size of a data pointer.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
}

pub fn uv() -> io::Result<&'static Uv> {
    static UV: OnceCell<Uv> = OnceCell::new();
    // SAFETY: each type below is the C signature of the libuv function named.
    UV.get_or_try_init(|| unsafe {
        Ok(Uv {
            handle_size: sym(c"uv_handle_size")?,
            poll_init: sym(c"uv_poll_init")?,
            poll_start: sym(c"uv_poll_start")?,
            poll_stop: sym(c"uv_poll_stop")?,
            check_init: sym(c"uv_check_init")?,
            check_start: sym(c"uv_check_start")?,
            timer_init: sym(c"uv_timer_init")?,
            timer_start: sym(c"uv_timer_start")?,
            close: sym(c"uv_close")?,
            ref_: sym(c"uv_ref")?,
            unref: sym(c"uv_unref")?,
            err_name: sym(c"uv_err_name")?,
            strerror: sym(c"uv_strerror")?,
        })
    })
}

/// A libuv status (0 or a negative errno) as a Result.
pub fn check(r: c_int) -> io::Result<()> {
    if r < 0 {
        return Err(io::Error::from_raw_os_error(-r));
    }
    Ok(())
}

/// Node's name and description of an errno (`EMFILE`, "too many open
/// files"), from the libuv Node itself uses; None where libuv is not found.
pub fn describe_errno(errno: i32) -> Option<(String, String)> {
    let uv = uv().ok()?;
    // SAFETY: both return pointers to static NUL-terminated strings for any
    // argument (unknown errnos get a generic text).
    unsafe {
        let name = CStr::from_ptr((uv.err_name)(-errno)).to_string_lossy().into_owned();
        let text = CStr::from_ptr((uv.strerror)(-errno)).to_string_lossy().into_owned();
        Some((name, text))
    }
}

/// One uv handle, initialised on the loop of this thread: ours until
/// closed (on drop at the latest), then libuv's until its close callback
/// frees the memory. The handle's first field, `data`, points at the owner
/// its callbacks get while it runs, and carries the allocation's size once
/// it is closing.
pub struct Handle {
    ptr: *mut c_void,
    /// Size in u64 words, which keep it 8-aligned, as uv handles need.
    words: usize,
    kind: c_int,
    uv: &'static Uv,
    closed: bool,
}

impl Handle {
    /// A poll handle on `fd`.
    ///
    /// # Safety
    /// `loop_` is this thread's loop; `owner` stays valid until the handle is
    /// closed (its callbacks get it through `data`).
    pub unsafe fn poll<T>(uv: &'static Uv, loop_: *mut c_void, fd: c_int, owner: *mut T) -> io::Result<Handle> {
        // SAFETY: per the contract; the allocation is a fresh poll handle.
        Handle::init(uv, POLL, owner, |h| unsafe { (uv.poll_init)(loop_, h, fd) })
    }

    /// # Safety
    /// As for `poll`.
    pub unsafe fn check<T>(uv: &'static Uv, loop_: *mut c_void, owner: *mut T) -> io::Result<Handle> {
        // SAFETY: per the contract; the allocation is a fresh check handle.
        Handle::init(uv, CHECK, owner, |h| unsafe { (uv.check_init)(loop_, h) })
    }

    /// # Safety
    /// As for `poll`.
    pub unsafe fn timer<T>(uv: &'static Uv, loop_: *mut c_void, owner: *mut T) -> io::Result<Handle> {
        // SAFETY: per the contract; the allocation is a fresh timer handle.
        Handle::init(uv, TIMER, owner, |h| unsafe { (uv.timer_init)(loop_, h) })
    }

    fn init<T>(
        uv: &'static Uv,
        kind: c_int,
        owner: *mut T,
        init: impl FnOnce(*mut c_void) -> c_int,
    ) -> io::Result<Handle> {
        // SAFETY: uv_handle_size accepts any handle type constant.
        let words = unsafe { (uv.handle_size)(kind) }.div_ceil(8);
        let ptr = Box::into_raw(vec![0u64; words].into_boxed_slice()) as *mut c_void;
        // SAFETY: the allocation is at least one word and `data` is the first
        // field of every uv handle (uv's init functions leave it alone).
        unsafe { *(ptr as *mut *mut T) = owner };
        if let Err(e) = check(init(ptr)) {
            // SAFETY: libuv refused it, so the allocation is still only ours.
            unsafe { free(ptr, words) };
            return Err(e);
        }
        Ok(Handle {
            ptr,
            words,
            kind,
            uv,
            closed: false,
        })
    }

    pub fn start_poll(&self, events: c_int, cb: PollCb) -> io::Result<()> {
        assert_eq!(self.kind, POLL);
        if self.closed {
            return Ok(());
        }
        // SAFETY: an open, initialised poll handle.
        check(unsafe { (self.uv.poll_start)(self.ptr, events, cb) })
    }

    pub fn stop_poll(&self) -> io::Result<()> {
        assert_eq!(self.kind, POLL);
        if self.closed {
            return Ok(());
        }
        // SAFETY: an open, initialised poll handle.
        check(unsafe { (self.uv.poll_stop)(self.ptr) })
    }

    pub fn start_check(&self, cb: TickCb) -> io::Result<()> {
        assert_eq!(self.kind, CHECK);
        // SAFETY: an open (never started while closed: only called right
        // after init), initialised check handle.
        check(unsafe { (self.uv.check_start)(self.ptr, cb) })
    }

    pub fn start_timer(&self, cb: TickCb, every_ms: u64) -> io::Result<()> {
        assert_eq!(self.kind, TIMER);
        // SAFETY: as in `start_check`, for a timer handle.
        check(unsafe { (self.uv.timer_start)(self.ptr, cb, every_ms, every_ms) })
    }

    /// Whether the handle keeps the loop alive.
    pub fn set_ref(&self, on: bool) {
        if self.closed {
            return;
        }
        // SAFETY: an open, initialised handle.
        unsafe {
            if on {
                (self.uv.ref_)(self.ptr)
            } else {
                (self.uv.unref)(self.ptr)
            }
        }
    }

    /// Stops and closes the handle; its callback never runs again. The memory
    /// is freed by libuv's close callback, later.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // SAFETY: an open, initialised handle; `data` is no longer read by us.
        unsafe {
            *(self.ptr as *mut usize) = self.words;
            (self.uv.close)(self.ptr, Some(on_close));
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close();
    }
}

/// # Safety
/// `ptr` came from the Box made in `Handle::init`, `words` long, and
/// nothing uses it any more.
unsafe fn free(ptr: *mut c_void, words: usize) {
    // SAFETY: per the contract.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr as *mut u64, words)) });
}

/// Frees a handle's memory once libuv is done with it.
unsafe extern "C" fn on_close(handle: *mut c_void) {
    // SAFETY: `close` stored the allocation's size in `data`; libuv is done.
    unsafe { free(handle, *(handle as *mut usize)) }
}
