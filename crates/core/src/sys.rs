//! The one wrapper for raw libc calls: `syscall!(name(args...))` runs the
//! call and turns a `-1` return into the `io::Error` of `errno`. Used where
//! nix has no safe equivalent for what the call needs (ancillary data with
//! per-message fds, `sendmmsg`, `memfd_create`, `mmap`, `accept4` flags);
//! nix serves everything else.

macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: each caller documents why its arguments are valid for `$fn`.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
