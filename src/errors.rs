//! The one place core errors become JS errors: Node's `code`, and for a
//! failed system call `errno` (negative, as Node reports it) and `syscall`,
//! named by Node's own libuv.

use napi::bindgen_prelude::*;
use rs_cluster_core::error::Error;

/// What JS sees of an error.
pub struct Described {
    pub code: String,
    pub message: String,
    pub errno: Option<i32>,
    pub syscall: Option<String>,
}

pub fn describe(e: &Error) -> Described {
    let fixed = |code: &str| Described {
        code: code.into(),
        message: e.to_string(),
        errno: None,
        syscall: None,
    };
    match e {
        Error::Protocol(_) => fixed("ERR_RS_CLUSTER_PROTOCOL"),
        Error::Closed => fixed("ERR_IPC_CHANNEL_CLOSED"),
        Error::Panic(_) => fixed("ERR_RS_CLUSTER_INTERNAL"),
        Error::Os { syscall, source } => match source.raw_os_error() {
            Some(errno) => {
                let (name, text) = crate::uv::describe_errno(errno)
                    .unwrap_or_else(|| (format!("Unknown system error {}", -errno), source.to_string()));
                Described {
                    message: format!("{syscall} {name}: {text}"),
                    code: name,
                    errno: Some(-errno),
                    syscall: Some((*syscall).into()),
                }
            }
            // Not from the OS (a short file, an unsupported platform).
            None => fixed("ERR_RS_CLUSTER_INTERNAL"),
        },
    }
}

/// A JS `Error` carrying `code` (and `errno`, `syscall`), ready to throw.
pub fn to_js(env: &Env, e: &Error) -> napi::Error {
    match js_error(env, e) {
        Ok(value) => napi::Error::from(value),
        Err(fallback) => fallback,
    }
}

/// The same, as a value (to pass to a callback).
pub fn js_error<'e>(env: &'e Env, e: &Error) -> Result<Unknown<'e>> {
    build(env, &describe(e))
}

fn build<'e>(env: &'e Env, d: &Described) -> Result<Unknown<'e>> {
    let mut err = env.create_error(napi::Error::new(Status::GenericFailure, &d.message))?;
    err.set_named_property("code", d.code.as_str())?;
    if let Some(errno) = d.errno {
        err.set_named_property("errno", errno)?;
    }
    if let Some(syscall) = &d.syscall {
        err.set_named_property("syscall", syscall.as_str())?;
    }
    err.into_unknown(env)
}

/// An argument error as Node raises it (`TypeError`, `ERR_INVALID_ARG_VALUE`).
pub fn invalid_arg(env: &Env, name: &str, value: impl std::fmt::Debug) -> napi::Error {
    invalid_value(env, &format!("The argument '{name}' is invalid. Received {value:?}"))
}

/// The same error with a message of its own.
pub fn invalid_value(env: &Env, message: &str) -> napi::Error {
    let made = (|| {
        let code = env.create_string("ERR_INVALID_ARG_VALUE")?;
        let text = env.create_string(message)?;
        let mut value = std::ptr::null_mut();
        // SAFETY: both strings are live napi_values of this env, on its thread.
        let status = unsafe { napi::sys::napi_create_type_error(env.raw(), code.raw(), text.raw(), &mut value) };
        if status != napi::sys::Status::napi_ok {
            return Err(napi::Error::new(Status::GenericFailure, message));
        }
        let mut err = Object::from_raw(env.raw(), value);
        err.set_named_property("code", "ERR_INVALID_ARG_VALUE")?;
        err.into_unknown(env)
    })();
    match made {
        Ok(value) => napi::Error::from(value),
        Err(fallback) => fallback,
    }
}
