//! The page a worker shares with the primary: counters the worker writes
//! and the primary reads, with no message and no system call on either side.
//!
//! - `taken`: connections the worker has read off its hand-off channel. The
//!   primary knows how many it sent, so the difference is how many wait in
//!   the worker's queue, unread: that is the window, and how a stall shows.
//! - `turn_ns`: when the worker's event loop last turned (`CLOCK_MONOTONIC`).
//!   A loop that turns is alive; one that stands still while connections
//!   wait is stalled. `lag_ns`: how late the worker's own timer last fired.
//! - `placed`: connections the worker accepted itself, from its own socket
//!   of a listener the kernel places connections on (`primary/group.rs`).
//! - `active`: connections the worker's servers hold open.
//! - `handoff`: a histogram of the time from accept in the primary to the
//!   worker's `connection` event.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds of the hand-off latency buckets, in ns; one more bucket
/// (+Inf) follows. From 50 µs (a connection read on the very next loop
/// turn) to 1 s (a worker busy for that long).
pub const HANDOFF_BOUNDS_NS: [u64; 12] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

pub const HANDOFF_BUCKETS: usize = HANDOFF_BOUNDS_NS.len() + 1;

#[repr(C)]
struct Counters {
    taken: AtomicU64,
    turn_ns: AtomicU64,
    lag_ns: AtomicU64,
    active: AtomicI64,
    handoff_sum_ns: AtomicU64,
    handoff: [AtomicU64; HANDOFF_BUCKETS],
    placed: AtomicU64,
}

const BYTES: usize = std::mem::size_of::<Counters>();

/// What the primary reads of a worker's page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub taken: u64,
    pub turn_ns: u64,
    pub lag_ns: u64,
    pub active: u64,
    pub handoff_sum_ns: u64,
    /// Per bucket, not cumulative.
    pub handoff: [u64; HANDOFF_BUCKETS],
    pub placed: u64,
}

/// `CLOCK_MONOTONIC` in ns: the same clock in every process of the machine.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

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

    /// Worker: its event loop turned, now.
    pub fn turned(&self, now_ns: u64) {
        self.counters().turn_ns.store(now_ns, Ordering::Relaxed);
    }

    pub fn turn_ns(&self) -> u64 {
        self.counters().turn_ns.load(Ordering::Relaxed)
    }

    /// Worker: its timer fired this late.
    pub fn lagged(&self, ns: u64) {
        self.counters().lag_ns.store(ns, Ordering::Relaxed);
    }

    /// Worker: a server took a connection, `latency_ns` after the primary
    /// accepted it.
    pub fn opened(&self, latency_ns: u64) {
        let c = self.counters();
        c.active.fetch_add(1, Ordering::Relaxed);
        c.handoff_sum_ns.fetch_add(latency_ns, Ordering::Relaxed);
        let bucket = HANDOFF_BOUNDS_NS
            .iter()
            .position(|&le| latency_ns <= le)
            .unwrap_or(HANDOFF_BOUNDS_NS.len());
        c.handoff[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Worker: `n` more connections its servers took are closed.
    /// `n` connections accepted from the worker's own socket: live, and
    /// never in the hand-off histogram.
    pub fn placed(&self, n: u32) {
        let c = self.counters();
        c.placed.fetch_add(u64::from(n), Ordering::Relaxed);
        c.active.fetch_add(i64::from(n), Ordering::Relaxed);
    }

    pub fn placed_count(&self) -> u64 {
        self.counters().placed.load(Ordering::Relaxed)
    }

    pub fn closed(&self, n: u32) {
        self.counters().active.fetch_sub(i64::from(n), Ordering::Relaxed);
    }

    pub fn active(&self) -> u64 {
        self.counters().active.load(Ordering::Relaxed).max(0) as u64
    }

    /// Primary: everything at once. The worker's values are trusted only as
    /// data: a broken worker can make its own figures wrong, nothing else.
    pub fn snapshot(&self) -> Snapshot {
        let c = self.counters();
        Snapshot {
            taken: c.taken.load(Ordering::Acquire),
            turn_ns: c.turn_ns.load(Ordering::Relaxed),
            lag_ns: c.lag_ns.load(Ordering::Relaxed),
            active: self.active(),
            handoff_sum_ns: c.handoff_sum_ns.load(Ordering::Relaxed),
            handoff: std::array::from_fn(|i| c.handoff[i].load(Ordering::Relaxed)),
            placed: c.placed.load(Ordering::Relaxed),
        }
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
        worker.turned(7);
        worker.opened(70_000);
        worker.opened(3_000_000_000);
        worker.closed(1);
        let s = primary.snapshot();
        assert_eq!((s.taken, s.turn_ns, s.active), (2, 7, 1));
        assert_eq!(s.handoff_sum_ns, 3_000_070_000);
        assert_eq!(s.handoff[1], 1, "70 µs is in the <= 100 µs bucket");
        assert_eq!(s.handoff[HANDOFF_BUCKETS - 1], 1, "3 s is in +Inf");
    }

    #[test]
    fn active_never_reads_below_zero() {
        let p = Page::create().unwrap();
        p.closed(1);
        assert_eq!(p.active(), 0);
    }

    #[test]
    fn a_short_file_is_refused() {
        let fd = anonymous_file().unwrap();
        assert!(Page::map(fd).is_err());
    }
}
