//! Sub-millisecond wake-ups for the open loop, on one generator thread's runtime.
//!
//! tokio's timers tick in milliseconds, so paced senders would all wake on the same tick and send
//! a millisecond's worth of messages as one burst, and the latency measured would be mostly that
//! burst queueing. A timerfd ticking every [`TICK`] wakes the senders due in that tick instead.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

pub const TICK: Duration = Duration::from_micros(100);
/// A sleep ends, and a paced sender sends, this early at most: half a tick.
pub const SLACK: Duration = Duration::from_micros(50);

/// Sleepers of one thread, woken by [`FineClock::run`].
#[derive(Default)]
pub struct FineClock {
    sleepers: RefCell<BinaryHeap<Sleeper>>,
}

struct Sleeper {
    deadline: Instant,
    waker: Waker,
}

impl PartialEq for Sleeper {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}

impl Eq for Sleeper {}

impl PartialOrd for Sleeper {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sleeper {
    /// Reversed: the heap's top is the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other.deadline.cmp(&self.deadline)
    }
}

impl FineClock {
    /// Completes at `deadline`, give or take one tick, while [`FineClock::run`] is running on
    /// the same thread.
    pub fn sleep_until(self: &Rc<Self>, deadline: Instant) -> FineSleep {
        FineSleep {
            clock: Rc::clone(self),
            deadline,
            registered: false,
        }
    }

    /// Ticks until dropped (the run's end drops it with the rest of the thread's tasks).
    pub async fn run(self: Rc<Self>) -> io::Result<()> {
        // SAFETY: the OwnedFd keeps its descriptor open, and always returns the same one, for as
        // long as the AsyncFd owns it.
        let timer =
            unsafe { AsyncFd::register_with_interest(periodic_timerfd(TICK)?, Interest::READABLE) }
                .map_err(|e| io::Error::other(e.to_string()))?;
        loop {
            let mut ready = timer.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reading 8 bytes into an 8-byte buffer from a timerfd we own.
            let read = unsafe {
                libc::read(
                    timer.get_ref().as_raw_fd(),
                    expirations.as_mut_ptr().cast(),
                    expirations.len(),
                )
            };
            if read < 0 {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::WouldBlock {
                    return Err(error);
                }
            }
            ready.clear_ready();
            self.wake_due(Instant::now());
        }
    }

    /// Wakes every sleeper due within [`SLACK`] of `now`.
    fn wake_due(&self, now: Instant) {
        let horizon = now + SLACK;
        let mut sleepers = self.sleepers.borrow_mut();
        while sleepers.peek().is_some_and(|s| s.deadline <= horizon) {
            if let Some(sleeper) = sleepers.pop() {
                sleeper.waker.wake();
            }
        }
    }
}

pub struct FineSleep {
    clock: Rc<FineClock>,
    deadline: Instant,
    registered: bool,
}

impl Future for FineSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() + SLACK >= self.deadline {
            return Poll::Ready(());
        }
        // One entry per sleep: a task polled again for another reason keeps its place. A sleep
        // dropped early leaves an entry that wakes its task once, spuriously, at the deadline.
        if !self.registered {
            self.registered = true;
            self.clock.sleepers.borrow_mut().push(Sleeper {
                deadline: self.deadline,
                waker: cx.waker().clone(),
            });
        }
        Poll::Pending
    }
}

fn periodic_timerfd(period: Duration) -> io::Result<OwnedFd> {
    // SAFETY: timerfd_create takes no pointers; the result is checked before use.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let interval = libc::timespec {
        tv_sec: 0,
        tv_nsec: i64::from(period.subsec_nanos()),
    };
    let spec = libc::itimerspec {
        it_interval: interval,
        it_value: interval,
    };
    // SAFETY: spec is a valid itimerspec; the old value is not asked for.
    if unsafe { libc::timerfd_settime(owned.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_ticks_every_hundred_microseconds() {
        let fd = periodic_timerfd(TICK).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut expirations = [0u8; 8];
        // SAFETY: reading 8 bytes into an 8-byte buffer from a timerfd we own.
        let read = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
        assert_eq!(read, 8);
        // The kernel counts expirations even when the thread is not scheduled.
        let ticks = u64::from_ne_bytes(expirations);
        assert!((450..=1000).contains(&ticks), "{ticks} ticks in 50+ ms");
    }

    #[test]
    fn sleeps_end_at_their_deadline_and_not_before() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let clock = Rc::new(FineClock::default());
            let ticker = tokio::task::spawn_local(Rc::clone(&clock).run());
            for step in 1..=20u64 {
                let deadline = Instant::now() + Duration::from_micros(130 * step % 700 + 80);
                clock.sleep_until(deadline).await;
                assert!(Instant::now() + SLACK >= deadline);
            }
            // Only sleeps that ended on a poll of their own, before the tick that was due to
            // wake them, leave an entry, and the next tick removes it.
            assert!(clock.sleepers.borrow().len() <= 3);
            ticker.abort();
        });
    }

    #[test]
    fn earliest_deadline_is_woken_first_and_later_ones_wait() {
        let clock = FineClock::default();
        let now = Instant::now();
        let woken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for offset_ms in [50u64, 0, 100] {
            clock.sleepers.borrow_mut().push(Sleeper {
                deadline: now + Duration::from_millis(offset_ms),
                waker: counting_waker(&woken),
            });
        }
        clock.wake_due(now);
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 1);
        clock.wake_due(now + Duration::from_millis(60));
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(clock.sleepers.borrow().len(), 1);
    }

    fn counting_waker(count: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Waker {
        struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        Waker::from(std::sync::Arc::new(Count(std::sync::Arc::clone(count))))
    }
}
