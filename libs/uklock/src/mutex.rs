//! The wait-queue mutex (`uklock.mutex = "waitqueue"`, the default): the
//! same three-state lock word as the futex mutex (Drepper, "Futexes Are
//! Tricky", mutex 3: `0` unlocked, `1` locked, `2` locked and maybe
//! contended; see `futex_mutex.rs` for the algorithm and why it loses no
//! wake-up), whose contended lockers sleep on a [`WaitQueue`] inside the
//! mutex instead of in `posix-futex`'s hashed buckets. The queue's
//! [`wait_if`](WaitQueue::wait_if) checks the word under the queue's lock,
//! as a futex checks it under its bucket's: an `unlock` that swapped the
//! word either is seen by the check or finds the locker queued.
//!
//! The cost of the difference: 16 more bytes per mutex (the queue's lock
//! and list head), no hashing, and sleepers of different mutexes never
//! share a lock.

use crate::futex_mutex::{Sleep, ThreeStateMutex};
use crate::sys::{AtomicU32, Instant, Wait};
use core::sync::atomic::Ordering;
use uksched::{MATCH_ANY, WaitOutcome, WaitQueue};

/// The sleep of the wait-queue mutex: a wait queue of its own.
#[derive(Default)]
pub struct Queue(WaitQueue);

impl Sleep for Queue {
    const NEW: Self = Queue(WaitQueue::new());

    #[inline]
    fn wait(&self, word: &AtomicU32, val: u32, deadline: Option<Instant>) -> Wait {
        match self.0.wait_if(0, MATCH_ANY, || word.load(Ordering::Relaxed) == val, deadline) {
            WaitOutcome::NotQueued => Wait::Changed,
            WaitOutcome::Woken => Wait::Woken,
            WaitOutcome::TimedOut => Wait::TimedOut,
        }
    }

    #[inline]
    fn wake_one(&self, _word: &AtomicU32) {
        self.0.wake_one();
    }
}

/// The raw wait-queue mutex behind [`waitqueue::Mutex`](crate::waitqueue::Mutex)
/// (and behind [`crate::RawMutex`] with `uklock.mutex = "waitqueue"`, the
/// default): a 4-byte lock word, the holder's 8-byte thread id and a wait
/// queue (its spinlock and list head) — the [`ThreeStateMutex`] over a
/// [`Queue`].
///
/// It implements [`lock_api::RawMutex`] and [`lock_api::RawMutexTimed`]
/// (with [`Duration`](core::time::Duration) and [`uksched::Instant`]), and
/// works without lock_api through the same methods.
///
/// ```
/// use lock_api::{RawMutex as _, RawMutexTimed as _};
/// use uklock::waitqueue::RawMutex;
///
/// static RAW: RawMutex = RawMutex::new();
/// RAW.lock();
/// assert!(!RAW.try_lock());
/// // SAFETY: locked just above by this thread.
/// unsafe { RAW.unlock() };
/// assert!(RAW.try_lock_for(core::time::Duration::from_millis(1)));
/// // SAFETY: locked just above by this thread.
/// unsafe { RAW.unlock() };
/// ```
pub type RawMutex = ThreeStateMutex<Queue>;
