//! libuv, from the Node binary that loaded us (Node exports libuv's symbols
//! to addons): the few functions the worker's channel needs, looked up once
//! at run time, and the memory of a uv handle. This file and
//! `worker_channel.rs` are the only users of libuv.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::io;

use once_cell::sync::OnceCell;

pub const POLL: c_int = 8;
pub const CHECK: c_int = 2;
pub const TIMER: c_int = 13;
pub const READABLE: c_int = 1;
pub const DISCONNECT: c_int = 4;

pub type PollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
/// The callback of check and timer handles.
pub type TickCb = unsafe extern "C" fn(*mut c_void);
type CloseCb = unsafe extern "C" fn(*mut c_void);

pub struct Uv {
    handle_size: unsafe extern "C" fn(c_int) -> usize,
    pub poll_init: unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int,
    pub poll_start: unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int,
    pub poll_stop: unsafe extern "C" fn(*mut c_void) -> c_int,
    pub check_init: unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int,
    pub check_start: unsafe extern "C" fn(*mut c_void, TickCb) -> c_int,
    pub timer_init: unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int,
    pub timer_start: unsafe extern "C" fn(*mut c_void, TickCb, u64, u64) -> c_int,
    close: unsafe extern "C" fn(*mut c_void, Option<CloseCb>),
    pub ref_: unsafe extern "C" fn(*mut c_void),
    pub unref: unsafe extern "C" fn(*mut c_void),
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

/// The memory of one uv handle: ours until `close`, then libuv's until its
/// close callback frees it. Its first field, `data`, points at the owner
/// while the handle runs and carries the allocation's size once it is closing.
pub struct Handle {
    pub ptr: *mut c_void,
    /// Size in u64 words, which keep it 8-aligned, as uv handles need.
    words: usize,
    closed: bool,
}

impl Handle {
    pub fn new(uv: &Uv, kind: c_int) -> Handle {
        // SAFETY: uv_handle_size accepts any handle type constant.
        let words = unsafe { (uv.handle_size)(kind) }.div_ceil(8);
        Handle {
            ptr: Box::into_raw(vec![0u64; words].into_boxed_slice()) as *mut c_void,
            words,
            closed: false,
        }
    }

    /// Sets `data` to `owner` (uv's init functions leave it alone) and
    /// returns the handle, for the init call.
    pub fn point_at<T>(&self, owner: *mut T) -> *mut c_void {
        // SAFETY: the allocation is at least one word and `data` is the first
        // field of every uv handle.
        unsafe { *(self.ptr as *mut *mut T) = owner };
        self.ptr
    }

    /// Stops and closes the handle; its callback never runs again. The memory
    /// is freed by libuv's close callback, later.
    ///
    /// # Safety
    /// The handle must have been initialised on its loop.
    pub unsafe fn close(&mut self, uv: &Uv) {
        if self.closed {
            return;
        }
        self.closed = true;
        // SAFETY: the allocation is ours; `data` is no longer read by us.
        unsafe {
            *(self.ptr as *mut usize) = self.words;
            (uv.close)(self.ptr, Some(on_close));
        }
    }
}

/// Frees a handle's memory once libuv is done with it.
unsafe extern "C" fn on_close(handle: *mut c_void) {
    // SAFETY: `close` stored the allocation's size in `data`, and the pointer
    // came from the Box made in `Handle::new`.
    unsafe {
        let words = *(handle as *mut usize);
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
            handle as *mut u64,
            words,
        )));
    }
}
