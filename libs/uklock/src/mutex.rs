//! The wait-queue mutex (`uklock.mutex = "waitqueue"`, the default): a
//! futex-style lock word plus a wait queue of its own.
//!
//! The word (Drepper, "Futexes Are Tricky", mutex 3) is `0` unlocked, `1`
//! locked, `2` locked and maybe contended. `lock` is one compare-and-swap
//! `0 → 1`; `unlock` one swap to `0`, which wakes a waiter only when the old
//! value was `2`. A contended locker swaps in `2` (taking the lock if the
//! old value was `0`) and sleeps on the wait queue while the word is still
//! `2` — checked *after* it is queued, so an `unlock` in between either is
//! seen by that check or finds the locker on the queue: no lost wake-up.
//! A woken locker swaps in `2` again (it cannot know whether others still
//! wait), so the last unlock may wake nobody: one spurious `wake_one`.

use crate::{BEFORE_SCHEDULER, NO_THREAD, current_thread_id};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use uksched::{Instant, WaitQueue, WaitResult};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// The raw wait-queue mutex behind [`waitqueue::Mutex`](crate::waitqueue::Mutex)
/// (and behind [`crate::RawMutex`] with `uklock.mutex = "waitqueue"`, the
/// default): a 4-byte lock word, the holder's 8-byte thread id and a wait
/// queue (its spinlock and list head).
///
/// It implements [`lock_api::RawMutex`] and [`lock_api::RawMutexTimed`]
/// (with [`Duration`] and [`uksched::Instant`]), and works without lock_api
/// through the same methods.
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
pub struct RawMutex {
    state: AtomicU32,
    /// The holder's thread id (0 when free). Written only
    /// by the holder, with plain (relaxed) stores: the lock word orders it.
    owner: AtomicU64,
    waiters: WaitQueue,
}

impl Default for RawMutex {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for RawMutex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawMutex")
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("owner", &self.owner())
            .finish_non_exhaustive()
    }
}

impl RawMutex {
    /// An unlocked mutex.
    pub const fn new() -> Self {
        Self { state: AtomicU32::new(UNLOCKED), owner: AtomicU64::new(NO_THREAD), waiters: WaitQueue::new() }
    }

    /// The id ([`uksched::Thread::id`]) of the thread holding it, if any
    /// (a snapshot: only the holder itself can rely on it). A lock taken
    /// before the scheduler started is held by `u64::MAX`.
    pub fn owner(&self) -> Option<u64> {
        match self.owner.load(Ordering::Relaxed) {
            NO_THREAD => None,
            id => Some(id),
        }
    }

    /// Whether some thread may be sleeping on it (the lock word is `2`).
    pub fn is_contended(&self) -> bool {
        self.state.load(Ordering::Relaxed) == CONTENDED
    }

    #[inline]
    fn acquired(&self, me: u64) {
        self.owner.store(me, Ordering::Relaxed);
    }

    /// The uncontended acquire: one compare-and-swap.
    #[inline]
    fn try_lock_fast(&self) -> bool {
        self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// The contended acquire: spin briefly, then sleep until the lock is
    /// ours or `deadline` passed. False: timed out.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn lock_contended(&self, me: u64, deadline: Option<Instant>) -> bool {
        // Only the holder writes its id here, and clears it before it
        // releases: reading our own id means we hold the lock.
        if me != BEFORE_SCHEDULER && self.owner.load(Ordering::Relaxed) == me {
            crate::self_deadlock("Mutex");
        }
        crate::spin_until(&self.state, |state| state != LOCKED);
        // Nobody was waiting: taking it as LOCKED keeps the unlock cheap.
        if self.try_lock_fast() {
            return true;
        }
        loop {
            // Announce a waiter and take the lock if it was free meanwhile.
            if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return true;
            }
            // Sleep while the word is still CONTENDED: checked after this
            // thread is on the queue, so an unlock either is seen here or
            // finds it there.
            let r = self.waiters.wait_with(|| self.state.load(Ordering::Relaxed) == CONTENDED, deadline);
            if r == WaitResult::TimedOut {
                // Not woken (the wait queue guarantees a wake-up reaches
                // exactly one of waker and timer), so no wake-up is lost by
                // leaving; one last try.
                return self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED;
            }
        }
    }

    /// Takes the lock, sleeping while another thread holds it.
    ///
    /// # Panics
    /// When the calling thread holds it already (a self-deadlock), naming
    /// the thread; when the lock is contended in an interrupt handler or
    /// with preemption disabled (the scheduler refuses to block there).
    #[inline]
    #[track_caller]
    pub fn lock(&self) {
        let me = current_thread_id();
        if !self.try_lock_fast() {
            self.lock_contended(me, None);
        }
        self.acquired(me);
    }

    /// Takes the lock if it is free; never sleeps.
    #[inline]
    pub fn try_lock(&self) -> bool {
        if self.try_lock_fast() {
            self.acquired(current_thread_id());
            true
        } else {
            false
        }
    }

    /// Takes the lock, sleeping at most until `deadline`; false when the
    /// deadline passed first.
    ///
    /// # Panics
    /// As [`lock`](Self::lock).
    #[track_caller]
    pub fn try_lock_until(&self, deadline: Instant) -> bool {
        let me = current_thread_id();
        if self.try_lock_fast() || self.lock_contended(me, Some(deadline)) {
            self.acquired(me);
            true
        } else {
            false
        }
    }

    /// Takes the lock, sleeping at most `timeout`; false when it passed.
    ///
    /// # Panics
    /// As [`lock`](Self::lock).
    #[track_caller]
    pub fn try_lock_for(&self, timeout: Duration) -> bool {
        self.try_lock_until(uktime::now() + timeout)
    }

    /// Releases the lock, waking one sleeping locker if there may be one.
    ///
    /// # Panics
    /// When the calling thread does not hold it, naming the thread and the
    /// holder.
    ///
    /// # Safety
    /// The lock is held (by the calling thread: other callers panic).
    #[inline]
    #[track_caller]
    pub unsafe fn unlock(&self) {
        let me = current_thread_id();
        let owner = self.owner.load(Ordering::Relaxed);
        if owner != me && me != BEFORE_SCHEDULER && owner != BEFORE_SCHEDULER {
            crate::not_the_owner("Mutex", owner);
        }
        self.owner.store(NO_THREAD, Ordering::Relaxed);
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            self.wake_one();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_one(&self) {
        self.waiters.wake_one();
    }

    /// Whether it is held.
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }
}

// SAFETY: the lock word admits one holder at a time: only a successful
// `0 → 1` compare-and-swap or a swap that returned `0` acquires it, and
// only `unlock` (by the holder) stores `0` again.
unsafe impl lock_api::RawMutex for RawMutex {
    #[allow(clippy::declare_interior_mutable_const, reason = "lock_api's INIT pattern")]
    const INIT: Self = Self::new();

    /// Guards stay with the thread that locked (the owner check would fail
    /// elsewhere); threads migrate between CPUs freely, guards with them.
    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    #[track_caller]
    fn lock(&self) {
        RawMutex::lock(self);
    }

    #[inline]
    fn try_lock(&self) -> bool {
        RawMutex::try_lock(self)
    }

    #[inline]
    #[track_caller]
    unsafe fn unlock(&self) {
        // SAFETY: forwarded contract: the lock is held by the caller.
        unsafe { RawMutex::unlock(self) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        RawMutex::is_locked(self)
    }
}

// SAFETY: as for `RawMutex`; a timed acquire succeeds only as `lock` does.
unsafe impl lock_api::RawMutexTimed for RawMutex {
    type Duration = Duration;
    type Instant = Instant;

    #[track_caller]
    fn try_lock_for(&self, timeout: Duration) -> bool {
        RawMutex::try_lock_for(self, timeout)
    }

    #[track_caller]
    fn try_lock_until(&self, deadline: Instant) -> bool {
        RawMutex::try_lock_until(self, deadline)
    }
}
