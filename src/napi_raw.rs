//! The raw N-API the worker's shell needs outside a `#[napi]` call (from
//! libuv callbacks), each behind a helper that keeps its rule: a handle
//! scope closed on drop, references and async contexts released on drop, a
//! JS function called as Node calls I/O callbacks, an Int32Array read and
//! written in place. This file is the only one with `napi_*` calls of the
//! worker's channel.

use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;

fn ok(status: sys::napi_status, what: &str) -> Result<()> {
    if status != sys::Status::napi_ok {
        return Err(napi::Error::new(Status::GenericFailure, format!("{what} failed")));
    }
    Ok(())
}

/// The libuv loop of `env`'s thread.
pub fn uv_loop(env: &Env) -> Option<*mut c_void> {
    let mut raw = ptr::null_mut();
    // SAFETY: a live env, on its thread; a valid out-pointer.
    let status = unsafe { sys::napi_get_uv_event_loop(env.raw(), &mut raw) };
    (status == sys::Status::napi_ok && !raw.is_null()).then_some(raw.cast())
}

/// A handle scope: the values made while it lives are freed when it drops.
/// Outside a `#[napi]` call (in a libuv callback) every JS value needs one.
pub struct Scope {
    env: sys::napi_env,
    raw: sys::napi_handle_scope,
}

impl Scope {
    /// None if the env cannot open one (it is being torn down).
    pub fn open(env: sys::napi_env) -> Option<Scope> {
        let mut raw = ptr::null_mut();
        // SAFETY: the shell only runs on the JS thread of `env`; `raw` is a
        // valid out-pointer.
        let status = unsafe { sys::napi_open_handle_scope(env, &mut raw) };
        (status == sys::Status::napi_ok).then_some(Scope { env, raw })
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // SAFETY: opened in `open` on this thread; scopes drop in reverse order.
        unsafe { sys::napi_close_handle_scope(self.env, self.raw) };
    }
}

/// A strong reference: keeps a JS value alive until dropped.
struct Ref {
    env: sys::napi_env,
    raw: sys::napi_ref,
}

impl Ref {
    fn new(env: sys::napi_env, value: sys::napi_value) -> Result<Ref> {
        let mut raw = ptr::null_mut();
        // SAFETY: `value` is a live value of `env`, on its thread.
        let status = unsafe { sys::napi_create_reference(env, value, 1, &mut raw) };
        ok(status, "napi_create_reference")?;
        Ok(Ref { env, raw })
    }

    fn get(&self, _scope: &Scope) -> Option<sys::napi_value> {
        let mut value = ptr::null_mut();
        // SAFETY: a live reference of this env, read inside an open scope.
        let status = unsafe { sys::napi_get_reference_value(self.env, self.raw, &mut value) };
        (status == sys::Status::napi_ok && !value.is_null()).then_some(value)
    }
}

impl Drop for Ref {
    fn drop(&mut self) {
        // SAFETY: made in `new`, deleted once, here.
        unsafe { sys::napi_delete_reference(self.env, self.raw) };
    }
}

/// The async context JS callbacks run in (async_hooks sees one resource).
pub struct AsyncContext {
    env: sys::napi_env,
    raw: sys::napi_async_context,
}

impl AsyncContext {
    pub fn new(env: &Env, name: &str) -> Result<AsyncContext> {
        let name = env.create_string(name)?;
        let mut raw = ptr::null_mut();
        // SAFETY: a live string of this env, a valid out-pointer.
        let status = unsafe { sys::napi_async_init(env.raw(), ptr::null_mut(), name.raw(), &mut raw) };
        ok(status, "napi_async_init")?;
        Ok(AsyncContext { env: env.raw(), raw })
    }
}

impl Drop for AsyncContext {
    fn drop(&mut self) {
        // SAFETY: made in `new`, destroyed once, here.
        unsafe { sys::napi_async_destroy(self.env, self.raw) };
    }
}

/// A JS function to call from libuv callbacks.
pub struct Callback(Ref);

impl Callback {
    pub fn new<'f>(env: &Env, func: &impl JsValue<'f>) -> Result<Callback> {
        Ok(Callback(Ref::new(env.raw(), func.raw())?))
    }

    /// Calls it with `args` (made in `scope`) through `napi_make_callback`,
    /// so promise jobs and nextTicks run after it as after any I/O callback.
    /// A throw becomes an uncaught exception, as with Node's own handles.
    pub fn call(&self, scope: &Scope, ctx: &AsyncContext, args: &[sys::napi_value]) {
        let Some(func) = self.0.get(scope) else { return };
        let env = scope.env;
        let (mut recv, mut result, mut exc) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        // SAFETY: on the env's thread inside `scope`; `func`, `args` and the
        // context are live values of this env; the out-pointers are locals.
        unsafe {
            if sys::napi_get_global(env, &mut recv) != sys::Status::napi_ok {
                return;
            }
            let status = sys::napi_make_callback(env, ctx.raw, recv, func, args.len(), args.as_ptr(), &mut result);
            if status == sys::Status::napi_pending_exception
                && sys::napi_get_and_clear_last_exception(env, &mut exc) == sys::Status::napi_ok
            {
                sys::napi_fatal_exception(env, exc);
            }
        }
    }
}

/// An Int32Array shared with JS, kept alive by a reference and read and
/// written in place, on the JS thread only.
pub struct SharedInts {
    _keep: Ref,
    ptr: *mut i32,
    len: usize,
}

impl SharedInts {
    /// Err(()) if `value` is not an Int32Array of at least `len` elements.
    pub fn new(env: &Env, value: &Unknown, len: usize) -> std::result::Result<SharedInts, ()> {
        let (mut kind, mut n, mut data, mut ab, mut offset) = (0, 0usize, ptr::null_mut(), ptr::null_mut(), 0usize);
        // SAFETY: `value` is a live value of this env; the out-pointers are locals.
        let status = unsafe {
            sys::napi_get_typedarray_info(
                env.raw(),
                value.raw(),
                &mut kind,
                &mut n,
                &mut data,
                &mut ab,
                &mut offset,
            )
        };
        if status != sys::Status::napi_ok || kind != sys::TypedarrayType::int32_array || n < len {
            return Err(());
        }
        Ok(SharedInts {
            _keep: Ref::new(env.raw(), value.raw()).map_err(|_| ())?,
            ptr: data as *mut i32,
            len,
        })
    }

    pub fn get(&self, i: usize) -> i32 {
        assert!(i < self.len);
        // SAFETY: in bounds; the backing store lives as long as the reference
        // held here, and only this thread (JS's) touches it.
        unsafe { *self.ptr.add(i) }
    }

    pub fn set(&self, i: usize, v: i32) {
        assert!(i < self.len);
        // SAFETY: as in `get`.
        unsafe { *self.ptr.add(i) = v }
    }
}
