//! Under `least`: whether a worker that has read none of its queued
//! connections for a while is busy (its event loop stuck in a long callback)
//! or only waiting for a CPU. The first should lose what it has not read to a
//! free worker; the second will read it as soon as it runs, and taking its
//! queue away would leave it idle. They look alike from the page (the loop
//! turns in neither), so the primary asks the kernel how long the worker's
//! main thread was on a CPU meanwhile (`/proc/<pid>/schedstat`, one `pread`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// A worker whose queue has waited this long is busy if it ran meanwhile.
/// Long enough that a worker reading one connection per loop turn is never
/// suspected; short enough that a fast request does not wait out a 20 ms one.
pub const BUSY: Duration = Duration::from_millis(2);

/// The worker's main thread's time on a CPU, from the kernel.
pub struct CpuClock {
    schedstat: File,
}

impl CpuClock {
    /// `None` where `/proc` cannot tell (then time alone decides).
    pub fn open(pid: u32) -> Option<CpuClock> {
        CpuClock::at(&format!("/proc/{pid}/schedstat"))
    }

    fn at(path: &str) -> Option<CpuClock> {
        let schedstat = File::open(path).ok()?;
        Some(CpuClock { schedstat })
    }

    /// Nanoseconds on a CPU: the first field of `schedstat`.
    pub fn on_cpu_ns(&self) -> Option<u64> {
        let mut buf = [0u8; 64];
        let n = self.schedstat.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        text.split_ascii_whitespace().next()?.parse().ok()
    }
}

/// One worker's current suspicion: since when its queue waits, and its CPU
/// time when that was first looked at.
#[derive(Debug, Default)]
pub struct Busy {
    baseline: Option<(Instant, Instant, u64)>,
}

impl Busy {
    /// `waiting_since`: when the worker last read from a non-empty queue;
    /// `on_cpu`: reads its CPU time (called only while it is suspected).
    /// Busy once its queue has waited `BUSY` and the worker was on a CPU for
    /// at least a quarter of the time since it was first suspected (one
    /// only waiting for a CPU ran next to nothing; a busy one on a crowded
    /// machine shares its CPU).
    pub fn check(
        &mut self,
        waiting_since: Option<Instant>,
        now: Instant,
        on_cpu: impl FnOnce() -> Option<u64>,
    ) -> bool {
        let Some(since) = waiting_since.filter(|&t| now.duration_since(t) >= BUSY / 2) else {
            self.baseline = None;
            return false;
        };
        let Some(cpu) = on_cpu() else {
            return now.duration_since(since) >= BUSY;
        };
        match self.baseline {
            Some((episode, at, cpu0)) if episode == since => {
                let elapsed = now.duration_since(at);
                let ran = Duration::from_nanos(cpu.saturating_sub(cpu0));
                now.duration_since(since) >= BUSY && elapsed >= BUSY / 2 && ran * 4 >= elapsed
            }
            _ => {
                self.baseline = Some((since, now, cpu));
                false
            }
        }
    }

    /// When the next look is due, for a queue waiting since `since`.
    pub fn next_look(since: Instant, now: Instant) -> Instant {
        if now < since + BUSY / 2 {
            since + BUSY / 2
        } else {
            since + BUSY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_worker_that_reads_is_never_suspected() {
        let t0 = Instant::now();
        let mut b = Busy::default();
        let mut read = false;
        assert!(!b.check(None, t0 + 10 * MS, || {
            read = true;
            Some(0)
        }));
        assert!(!b.check(Some(t0), t0 + BUSY / 4, || {
            read = true;
            Some(0)
        }));
        assert!(!read, "no CPU time is read before a queue waits BUSY/2");
    }

    #[test]
    fn running_all_along_is_busy() {
        let t0 = Instant::now();
        let mut b = Busy::default();
        assert!(
            !b.check(Some(t0), t0 + MS, || Some(5_000_000)),
            "first look: a baseline"
        );
        assert!(
            b.check(Some(t0), t0 + 2 * MS, || Some(5_300_000)),
            "ran 0.3 of 1 ms: a shared CPU"
        );
    }

    #[test]
    fn waiting_for_a_cpu_is_not_busy() {
        let t0 = Instant::now();
        let mut b = Busy::default();
        assert!(!b.check(Some(t0), t0 + MS, || Some(5_000_000)));
        assert!(!b.check(Some(t0), t0 + 2 * MS, || Some(5_100_000)), "ran 0.1 of 1 ms");
        assert!(!b.check(Some(t0), t0 + 3 * MS, || Some(5_400_000)), "ran 0.2 of 2 ms");
        assert!(!b.check(Some(t0), t0 + 6 * MS, || Some(5_200_000)), "still off the CPU");
        assert!(
            b.check(Some(t0), t0 + 12 * MS, || Some(12_000_000)),
            "then ran most of the time"
        );
    }

    #[test]
    fn a_new_wait_starts_a_new_baseline() {
        let t0 = Instant::now();
        let mut b = Busy::default();
        assert!(!b.check(Some(t0), t0 + MS, || Some(0)));
        let t1 = t0 + 3 * MS;
        assert!(
            !b.check(Some(t1), t1 + 3 * MS, || Some(10_000_000)),
            "progress at t1: look again first"
        );
        assert!(b.check(Some(t1), t1 + 4 * MS, || Some(11_000_000)));
    }

    #[test]
    fn without_proc_time_alone_decides() {
        let t0 = Instant::now();
        let mut b = Busy::default();
        assert!(!b.check(Some(t0), t0 + MS, || None));
        assert!(b.check(Some(t0), t0 + BUSY, || None));
    }

    #[test]
    fn reads_this_threads_cpu_time() {
        // This test's thread, not the process's main one.
        let clock = CpuClock::at("/proc/thread-self/schedstat").expect("schedstat");
        let a = clock.on_cpu_ns().unwrap();
        let spin = Instant::now();
        while spin.elapsed() < 5 * MS {
            std::hint::spin_loop();
        }
        assert!(clock.on_cpu_ns().unwrap() > a);
    }

    #[test]
    fn looks_again_at_half_then_at_busy() {
        let t0 = Instant::now();
        assert_eq!(Busy::next_look(t0, t0), t0 + BUSY / 2);
        assert_eq!(Busy::next_look(t0, t0 + BUSY / 2), t0 + BUSY);
    }

    #[test]
    fn no_such_worker_no_clock() {
        assert!(CpuClock::open(u32::MAX).is_none());
    }
}
