//! The wait-queue condition variable (`uklock.mutex = "waitqueue"`, the
//! default).
//!
//! A waiter, holding the mutex, puts itself on the condition variable's
//! wait queue and only *then* releases the mutex (in the queue's
//! `before_sleep` step), then sleeps. A notifier that changed the state
//! under the mutex and notifies after taking it (or while holding it) can
//! therefore not miss the waiter: the waiter was queued before the mutex
//! was free. `sleepers` counts threads between registering and waking, so
//! a notification with nobody waiting is one load.

use crate::mutex::RawMutex;
use crate::waitqueue::MutexGuard;
use core::sync::atomic::{AtomicUsize, Ordering};
use uksched::{Instant, WaitQueue, WaitResult};

/// A condition variable for [`waitqueue::Mutex`](crate::waitqueue::Mutex)
/// (and [`crate::Condvar`] with `uklock.mutex = "waitqueue"`, the default):
/// a thread waits (releasing the mutex while it sleeps) until another
/// notifies it.
/// Wake-ups may be spurious — always re-check the condition, or use
/// [`wait_while`](Self::wait_while).
///
/// ```no_run
/// use uklock::waitqueue::{Condvar, Mutex};
///
/// static QUEUE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// static NOT_EMPTY: Condvar = Condvar::new();
///
/// let consumer = uksched::spawn(|| {
///     let mut q = QUEUE.lock();
///     NOT_EMPTY.wait_while(&mut q, |q| q.is_empty());
///     q.pop()
/// });
/// QUEUE.lock().push(42);
/// NOT_EMPTY.notify_one();
/// assert_eq!(consumer.join(), Some(42));
///
/// // With a timeout, when nobody notifies:
/// let mut q = QUEUE.lock();
/// let r = NOT_EMPTY.wait_timeout_while(&mut q, core::time::Duration::from_millis(2), |q| q.is_empty());
/// assert!(r.timed_out());
/// ```
pub struct Condvar {
    sleepers: AtomicUsize,
    queue: WaitQueue,
}

impl Default for Condvar {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Condvar")
            .field("sleepers", &self.sleepers.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

condvar_waits!(MutexGuard<'_, T>);

impl Condvar {
    /// A condition variable nobody waits on.
    pub const fn new() -> Self {
        Self { sleepers: AtomicUsize::new(0), queue: WaitQueue::new() }
    }

    /// The one wait the methods of `condvar_waits!` use: true when it
    /// timed out.
    #[track_caller]
    fn wait_guard<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>, deadline: Option<Instant>) -> bool {
        self.wait_inner(guard, deadline) == WaitResult::TimedOut
    }

    fn wait_inner<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>, deadline: Option<Instant>) -> WaitResult {
        // SAFETY: the raw mutex is only used to release and retake the
        // lock this guard holds, leaving it held again before returning, as
        // `MutexGuard::unlocked` does; the guard's `&mut` keeps the data
        // unborrowed meanwhile.
        let raw: &RawMutex = unsafe { lock_api::MutexGuard::mutex(guard).raw() };
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        // Queued first, then the mutex is released: a notifier that takes
        // the mutex after this finds this thread on the queue.
        let r = self.queue.wait_with(
            || {
                // SAFETY: the guard holds the lock in this thread.
                unsafe { raw.unlock() };
                true
            },
            deadline,
        );
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        raw.lock();
        r
    }

    /// Wakes one waiting thread, if any; returns whether one was woken.
    pub fn notify_one(&self) -> bool {
        self.sleepers.load(Ordering::SeqCst) != 0 && self.queue.wake_one()
    }

    /// Wakes every thread waiting now; returns how many.
    pub fn notify_all(&self) -> usize {
        if self.sleepers.load(Ordering::SeqCst) == 0 { 0 } else { self.queue.wake_all() }
    }
}
