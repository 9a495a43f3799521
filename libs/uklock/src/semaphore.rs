//! The counting semaphore.
//!
//! `permits` counts what is available; `sleepers` counts threads that are
//! about to sleep or sleeping on the queue. An acquirer that finds no permit
//! registers in `sleepers` and, once queued, sleeps only if `permits` is
//! still zero; a releaser adds its permits and wakes only when `sleepers` is
//! non-zero. Both sides' update-then-read are sequentially consistent (the
//! Dekker pattern): either the acquirer's check sees the new permits, or the
//! releaser sees the acquirer and wakes it. So an uncontended release is
//! one atomic add and one load, and never touches the queue.

use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use uksched::{Instant, WaitQueue, WaitResult};

/// A counting semaphore: [`acquire`](Self::acquire) takes a permit,
/// sleeping while there is none; [`release`](Self::release) returns one
/// and wakes a sleeper. Permits are not tied to threads: any thread may
/// release. Not fair: a thread arriving as a permit is released may take
/// it before the woken sleeper, which then queues again at the back.
///
/// ```no_run
/// use uklock::Semaphore;
///
/// // At most two threads in the section at once.
/// static SLOTS: Semaphore = Semaphore::new(2);
/// let workers: Vec<_> = (0..6)
///     .map(|i| {
///         uksched::spawn(move || {
///             let _slot = SLOTS.acquire_guard(); // released when dropped
///             i * 10
///         })
///     })
///     .collect();
/// let sum: u32 = workers.into_iter().map(|w| w.join()).sum();
/// assert_eq!(sum, 150);
/// assert_eq!(SLOTS.available(), 2);
///
/// // A signal with a timeout:
/// static DONE: Semaphore = Semaphore::new(0);
/// assert!(!DONE.acquire_timeout(core::time::Duration::from_millis(1)), "nobody released");
/// DONE.release();
/// assert!(DONE.try_acquire());
/// ```
pub struct Semaphore {
    permits: AtomicUsize,
    sleepers: AtomicUsize,
    queue: WaitQueue,
}

impl core::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Semaphore")
            .field("available", &self.available())
            .field("sleepers", &self.sleepers.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Semaphore {
    /// A semaphore with `permits` available.
    pub const fn new(permits: usize) -> Self {
        Self { permits: AtomicUsize::new(permits), sleepers: AtomicUsize::new(0), queue: WaitQueue::new() }
    }

    /// Permits available now (a snapshot).
    pub fn available(&self) -> usize {
        self.permits.load(Ordering::Relaxed)
    }

    /// Takes a permit if one is available; never sleeps.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let mut n = self.permits.load(Ordering::Relaxed);
        while n > 0 {
            match self.permits.compare_exchange_weak(n, n - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }

    /// Takes a permit, sleeping until one is available.
    ///
    /// # Panics
    /// When it has to sleep in an interrupt handler or with preemption
    /// disabled (the scheduler refuses).
    pub fn acquire(&self) {
        if !self.try_acquire() {
            self.acquire_slow(None);
        }
    }

    /// Takes a permit, sleeping at most `timeout`; false when it passed
    /// with no permit taken. Never returns false earlier than `timeout`.
    ///
    /// # Panics
    /// As [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_until(uktime::now() + timeout)
    }

    /// Takes a permit, sleeping at most until `deadline`; false when it
    /// passed with no permit taken.
    ///
    /// # Panics
    /// As [`acquire`](Self::acquire).
    pub fn acquire_until(&self, deadline: Instant) -> bool {
        self.try_acquire() || self.acquire_slow(Some(deadline))
    }

    #[cold]
    #[inline(never)]
    fn acquire_slow(&self, deadline: Option<Instant>) -> bool {
        loop {
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            // Sleep only if there is still no permit, checked once queued.
            let r = self.queue.wait_with(|| self.permits.load(Ordering::SeqCst) == 0, deadline);
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            if self.try_acquire() {
                return true;
            }
            if r == WaitResult::TimedOut {
                // The timer, not a releaser, ended the wait: no wake-up
                // was spent on this thread.
                return false;
            }
        }
    }

    /// Takes a permit like [`acquire`](Self::acquire) and returns a guard
    /// that releases it when dropped.
    ///
    /// # Panics
    /// As [`acquire`](Self::acquire).
    pub fn acquire_guard(&self) -> SemaphoreGuard<'_> {
        self.acquire();
        SemaphoreGuard { sem: self }
    }

    /// [`try_acquire`](Self::try_acquire) with a guard.
    pub fn try_acquire_guard(&self) -> Option<SemaphoreGuard<'_>> {
        // Lazily: a guard built for nothing would release on drop.
        self.try_acquire().then(|| SemaphoreGuard { sem: self })
    }

    /// Returns one permit, waking a sleeper if there is one.
    #[inline]
    pub fn release(&self) {
        self.release_n(1);
    }

    /// Returns `n` permits, waking up to `n` sleepers.
    ///
    /// # Panics
    /// When the count would overflow `usize`.
    pub fn release_n(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Checked before the count changes: an overflow leaves it intact.
        if self.permits.fetch_update(Ordering::SeqCst, Ordering::Relaxed, |p| p.checked_add(n)).is_err() {
            panic!("uklock: Semaphore permit count overflow");
        }
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            self.wake(n);
        }
    }

    #[cold]
    #[inline(never)]
    fn wake(&self, n: usize) {
        self.queue.wake_n(n);
    }
}

/// A permit of a [`Semaphore`], released when dropped
/// ([`Semaphore::acquire_guard`]).
///
/// ```
/// static POOL: uklock::Semaphore = uklock::Semaphore::new(1);
/// let permit = POOL.acquire_guard();
/// assert!(POOL.try_acquire_guard().is_none());
/// drop(permit);
/// assert_eq!(POOL.available(), 1);
/// ```
#[must_use = "dropping the guard releases the permit at once"]
#[derive(Debug)]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit: the semaphore has one less for good.
    pub fn forget(self) {
        core::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        self.sem.release();
    }
}
