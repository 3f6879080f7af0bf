//! The claim board: a page of memory shared by the primary and one worker,
//! one atomic slot per connection the worker holds unacknowledged.
//!
//! Why: the primary hands out several connections per worker ahead of its
//! acknowledgements (a window), which is what makes batching fast. But a
//! worker whose event loop stalls would then sit on a whole window of
//! connections nobody serves. With the board, the worker *claims* each
//! connection (compare-and-swap SENT -> CLAIMED) the moment it reads it, and
//! the primary may *revoke* one that stayed unclaimed too long (SENT ->
//! REVOKED) and give it to another worker. Exactly one side wins each slot,
//! so a connection is never served twice and never dropped.
//!
//! A slot holds `seq << 2 | state`; the sequence number makes a stale claim
//! (for an older connection that used the same slot) fail.
//!
//! The board also decides who closes a connection last. The primary keeps
//! its copy of the fd until the worker acknowledges, and closing the last
//! copy of a socket is the expensive part of closing it (the kernel frees
//! it then). So the worker keeps a spare copy of each connection it claims
//! until the primary *releases* the slot (CLAIMED -> free), which the
//! primary does only after closing its own copy: the final close, and its
//! cost, stays in the worker, off the primary's single thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

const SENT: u64 = 1;
const CLAIMED: u64 = 2;
const REVOKED: u64 = 3;

/// Most slots a board has (and so the largest window).
pub const SLOTS: usize = 64;

pub struct Board {
    ptr: *mut AtomicU64,
    fd: OwnedFd,
}

// The mapping is plain shared memory accessed only through atomics.
unsafe impl Send for Board {}
unsafe impl Sync for Board {}

fn word(seq: u32, state: u64) -> u64 {
    ((seq as u64) << 2) | state
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn anonymous_file() -> io::Result<OwnedFd> {
    let fd = unsafe { libc::memfd_create(c"rs-cluster-board".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// No memfd here: an unlinked temporary file does the same job.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn anonymous_file() -> io::Result<OwnedFd> {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "rs-cluster-board-{}-{}",
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

const BYTES: usize = SLOTS * std::mem::size_of::<u64>();

impl Board {
    /// A fresh board (all slots free), owned by the primary.
    pub fn create() -> io::Result<Board> {
        let fd = anonymous_file()?;
        if unsafe { libc::ftruncate(fd.as_raw_fd(), BYTES as libc::off_t) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Board::map(fd)
    }

    /// Maps a board received from the primary.
    pub fn map(fd: OwnedFd) -> io::Result<Board> {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
            return Err(io::Error::last_os_error());
        }
        if (st.st_size as usize) < BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "claim board is too small"));
        }
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
        Ok(Board {
            ptr: ptr as *mut AtomicU64,
            fd,
        })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    fn slot(&self, i: u16) -> Option<&AtomicU64> {
        ((i as usize) < SLOTS).then(|| unsafe { &*self.ptr.add(i as usize) })
    }

    /// Primary: connection `seq` is about to be sent in slot `i`.
    pub fn mark_sent(&self, i: u16, seq: u32) {
        if let Some(s) = self.slot(i) {
            s.store(word(seq, SENT), Ordering::Release);
        }
    }

    /// Worker: take connection `seq`. False if the primary revoked it (or the
    /// slot does not hold it): the worker must then close its fd unused.
    pub fn claim(&self, i: u16, seq: u32) -> bool {
        self.slot(i).is_some_and(|s| {
            s.compare_exchange(word(seq, SENT), word(seq, CLAIMED), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    /// Primary: its copy of connection `seq` is closed; the worker may drop its spare.
    pub fn release(&self, i: u16, seq: u32) {
        if let Some(s) = self.slot(i) {
            let _ = s.compare_exchange(word(seq, CLAIMED), 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Worker: whether the primary still holds its copy of claimed connection `seq`.
    pub fn still_claimed(&self, i: u16, seq: u32) -> bool {
        self.slot(i)
            .is_some_and(|s| s.load(Ordering::Acquire) == word(seq, CLAIMED))
    }

    /// Primary: take connection `seq` back. False if the worker claimed it first.
    pub fn revoke(&self, i: u16, seq: u32) -> bool {
        self.slot(i).is_some_and(|s| {
            s.compare_exchange(word(seq, SENT), word(seq, REVOKED), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, BYTES) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_side_wins_each_slot() {
        let primary = Board::create().unwrap();
        let worker = Board::map(primary.fd().try_clone().unwrap()).unwrap();
        primary.mark_sent(3, 10);
        assert!(worker.claim(3, 10));
        assert!(!primary.revoke(3, 10), "claimed connections stay with the worker");
        primary.mark_sent(4, 11);
        assert!(primary.revoke(4, 11));
        assert!(!worker.claim(4, 11), "revoked connections are not served");
    }

    #[test]
    fn a_claim_is_held_until_the_primary_releases_it() {
        let primary = Board::create().unwrap();
        let worker = Board::map(primary.fd().try_clone().unwrap()).unwrap();
        primary.mark_sent(5, 7);
        assert!(!worker.still_claimed(5, 7), "sent is not claimed");
        assert!(worker.claim(5, 7));
        assert!(worker.still_claimed(5, 7));
        primary.release(5, 6);
        assert!(worker.still_claimed(5, 7), "releasing another seq changes nothing");
        primary.release(5, 7);
        assert!(!worker.still_claimed(5, 7));
        primary.mark_sent(5, 8);
        assert!(!worker.still_claimed(5, 7), "a reused slot is not the old claim");
    }

    #[test]
    fn a_stale_claim_for_a_reused_slot_fails() {
        let primary = Board::create().unwrap();
        let worker = Board::map(primary.fd().try_clone().unwrap()).unwrap();
        primary.mark_sent(0, 1);
        assert!(primary.revoke(0, 1));
        primary.mark_sent(0, 2);
        assert!(!worker.claim(0, 1));
        assert!(worker.claim(0, 2));
    }

    #[test]
    fn out_of_range_slots_are_refused() {
        let b = Board::create().unwrap();
        assert!(!b.claim(SLOTS as u16, 1));
        assert!(!b.revoke(u16::MAX, 1));
    }

    #[test]
    fn racing_claims_and_revokes_never_both_win() {
        let primary = std::sync::Arc::new(Board::create().unwrap());
        let worker = Board::map(primary.fd().try_clone().unwrap()).unwrap();
        for seq in 1..2000u32 {
            let slot = (seq % SLOTS as u32) as u16;
            primary.mark_sent(slot, seq);
            let p = primary.clone();
            let t = std::thread::spawn(move || p.revoke(slot, seq));
            let claimed = worker.claim(slot, seq);
            let revoked = t.join().unwrap();
            assert!(claimed ^ revoked, "seq {seq}: claimed {claimed}, revoked {revoked}");
        }
    }
}
