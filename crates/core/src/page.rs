//! The page a worker shares with the primary: counters the worker writes
//! and the primary reads, with no message and no system call on either side.
//!
//! - `taken`: connections the worker has read off its hand-off channel. The
//!   primary knows how many it sent, so the difference is how many wait in
//!   the worker's queue, unread: that is the window, and how a stall shows.
//! - `turns`: the worker's event-loop turns. A worker whose loop turns is
//!   alive; one whose count stands still while connections wait is stalled.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

#[repr(C)]
struct Counters {
    taken: AtomicU64,
    turns: AtomicU64,
}

const BYTES: usize = std::mem::size_of::<Counters>();

pub struct Page {
    ptr: *const Counters,
    fd: OwnedFd,
}

// SAFETY: the mapping is shared memory reached only through atomics, and it
// lives until `Drop` unmaps it.
unsafe impl Send for Page {}
// SAFETY: as above.
unsafe impl Sync for Page {}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn anonymous_file() -> io::Result<OwnedFd> {
    let fd = syscall!(memfd_create(c"rs-cluster-page".as_ptr(), libc::MFD_CLOEXEC))?;
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// No memfd here: an unlinked temporary file does the same job.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn anonymous_file() -> io::Result<OwnedFd> {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "rs-cluster-page-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file.into())
}

impl Page {
    /// A fresh page (all counters zero), created by the primary.
    pub fn create() -> io::Result<Page> {
        let fd = anonymous_file()?;
        syscall!(ftruncate(fd.as_raw_fd(), BYTES as libc::off_t))?;
        Page::map(fd)
    }

    /// Maps a page received from the primary.
    pub fn map(fd: OwnedFd) -> io::Result<Page> {
        // SAFETY: stat is plain data; all-zero is valid.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid out-pointer.
        syscall!(fstat(fd.as_raw_fd(), &mut st))?;
        if (st.st_size as usize) < BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "shared page is too small"));
        }
        // SAFETY: a fresh shared mapping of an fd we own; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Page {
            ptr: ptr as *const Counters,
            fd,
        })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    fn counters(&self) -> &Counters {
        // SAFETY: `ptr` is a live mapping of at least BYTES (checked in `map`),
        // page-aligned, and unmapped only in Drop.
        unsafe { &*self.ptr }
    }

    /// Worker: one more connection read off the hand-off channel.
    pub fn took_one(&self) {
        self.counters().taken.fetch_add(1, Ordering::Release);
    }

    pub fn taken(&self) -> u64 {
        self.counters().taken.load(Ordering::Acquire)
    }

    /// Worker: its event loop turned.
    pub fn turned(&self) {
        self.counters().turns.fetch_add(1, Ordering::Relaxed);
    }

    pub fn turns(&self) -> u64 {
        self.counters().turns.load(Ordering::Relaxed)
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: `ptr` is the mapping made in `map`, of BYTES, not used after this.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, BYTES) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_see_the_same_counters() {
        let primary = Page::create().unwrap();
        let worker = Page::map(primary.fd().try_clone().unwrap()).unwrap();
        worker.took_one();
        worker.took_one();
        worker.turned();
        assert_eq!((primary.taken(), primary.turns()), (2, 1));
    }

    #[test]
    fn a_short_file_is_refused() {
        let fd = anonymous_file().unwrap();
        assert!(Page::map(fd).is_err());
    }
}
