//! The futex mutex: Drepper's three-state mutex ("Futexes Are Tricky",
//! mutex 3, as also used by Rust's `std` on Linux) on a bare 32-bit word,
//! sleeping through `posix-futex`.
//!
//! The word is `0` unlocked, `1` locked, `2` locked and maybe contended:
//!
//! * `lock`: one compare-and-swap `0 → 1`. Failing that (the contended
//!   path, out of line): spin a little while the word is `1`; if it is `0`
//!   by then, try `0 → 1` once more; then loop: unless the word already
//!   reads `2`, swap in `2` — an old value `0` means the lock is ours (held
//!   as `2`); then `futex_wait(word, 2)` and look again.
//! * `unlock`: swap in `0`; if the old value was `2`, `futex_wake(word, 1)`.
//!
//! **Mutual exclusion.** The lock is acquired only by a successful
//! `0 → 1` compare-and-swap or by a swap that returned `0`, and only the
//! holder's `unlock` writes `0`: one holder at a time.
//!
//! **No lost wake-up.** Every sleeper sleeps only after the futex saw the
//! word equal to `2` under its bucket lock. The word leaves `2` only
//! through an `unlock` (a swap to `0`), which then wakes one sleeper; a
//! waker that swapped before the sleeper's check makes the check fail
//! (`EAGAIN`: the sleeper loops), one that swapped after finds it queued.
//! A woken thread swaps `2` in again before it does anything else (or
//! reads `2` there already), whether it gets the lock or sleeps again: it
//! cannot know whether others still sleep, so it keeps the word at `2`
//! and the next `unlock` wakes the next one. So whenever a thread sleeps on
//! the word, either the word is `2` (its holder's `unlock` will wake one),
//! or an `unlock` that saw `2` is about to wake one, or a woken thread is
//! about to swap `2` in. The one compare-and-swap `0 → 1` of the contended
//! path is taken only before a thread ever slept: a thread that was woken
//! must not take the lock as `1`, or its `unlock` would wake nobody while
//! others sleep. A timed wait ends by a wake-up or by its deadline, never
//! both (posix-futex guarantees it), so a thread that times out consumed no
//! wake-up; it swaps `2` in a last time and leaves. The price is a
//! spurious wake-up: the last of several sleepers takes the lock as `2` and
//! its `unlock` wakes nobody.
//!
//! **Why a swap rather than Drepper's decrement.** Drepper's `unlock` is
//! `if atomic_dec(word) != 1 { word = 0; futex_wake(word, 1) }`: an atomic
//! decrement, then a plain store. Between the two the word reads `1`, so a
//! new locker may swap `2` in and sleep, and the store then overwrites
//! that `2` with `0`; it is still correct (the wake-up that follows finds
//! a sleeper, which swaps `2` back in), but it costs a second write and a
//! window in which the word understates its sleepers. The single swap
//! releases and reads the old value in one atomic instruction, and the
//! decision to wake is made on exactly the value it replaced.
//!
//! **The condition variable's requeue** relies on this: waiters moved from
//! a [`Condvar`](crate::futex::Condvar) onto the word were never woken, and
//! the one waiter that `notify_all` woke re-takes the mutex through
//! [`RawMutex::lock_after_wake`], the contended path without the `0 → 1`
//! attempt: it leaves the word at `2`, so the `unlock` of whoever holds the
//! mutex then wakes the first of the moved ones, which does the same.

use crate::sys::{self, AtomicU32, AtomicU64, Instant, Wait, const_fn};
use crate::{BEFORE_SCHEDULER, NO_THREAD, current_thread_id};
use core::sync::atomic::Ordering;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// Where the contended lockers of a [`ThreeStateMutex`] sleep: `posix-futex`'s
/// hashed buckets ([`Futex`], no memory of its own) or a wait queue inside
/// the mutex (`waitqueue::RawMutex`'s). Either way the word is checked
/// under the sleep's lock, so an `unlock` that swapped the word either is
/// seen by the check or finds the sleeper.
pub trait Sleep: Sync {
    /// A new, empty one (for `const` construction).
    #[allow(clippy::declare_interior_mutable_const, reason = "a const initialiser, as lock_api's INIT")]
    const NEW: Self;

    /// Sleeps while `word` holds `val` (checked under the sleep's lock),
    /// until a wake-up or `deadline`.
    fn wait(&self, word: &AtomicU32, val: u32, deadline: Option<Instant>) -> Wait;

    /// Wakes one thread sleeping on `word`.
    fn wake_one(&self, word: &AtomicU32);
}

/// The sleep of the futex mutex: `posix-futex`, keyed by the word's
/// address (nothing stored in the mutex).
#[derive(Debug, Default)]
pub struct Futex;

impl Sleep for Futex {
    const NEW: Self = Futex;

    #[inline]
    fn wait(&self, word: &AtomicU32, val: u32, deadline: Option<Instant>) -> Wait {
        sys::wait(word, val, deadline)
    }

    #[inline]
    fn wake_one(&self, word: &AtomicU32) {
        sys::wake(word, 1);
    }
}

/// The raw futex mutex behind [`futex::Mutex`](crate::futex::Mutex) (and
/// behind [`crate::RawMutex`] with `uklock.mutex = "futex"`): a 4-byte futex
/// word and the holder's 8-byte thread id — 16 bytes, no queue of its own
/// (sleepers wait in `posix-futex`'s hashed buckets).
///
/// The same interface as the wait-queue [`waitqueue::RawMutex`](crate::waitqueue::RawMutex)
/// — the same [`ThreeStateMutex`] over another [`Sleep`]:
/// [`lock_api::RawMutex`] and [`lock_api::RawMutexTimed`] (with
/// [`Duration`](core::time::Duration) and [`uksched::Instant`]), the same
/// owner checks and reports, and the same inherent methods.
///
/// ```
/// use lock_api::{RawMutex as _, RawMutexTimed as _};
/// use uklock::futex::RawMutex;
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
pub type RawMutex = ThreeStateMutex<Futex>;

/// Drepper's three-state mutex (see the module documentation) over a
/// [`Sleep`]: a 4-byte word, the holder's 8-byte thread id, and the sleep
/// (nothing for [`Futex`], a wait queue for the wait-queue mutex).
pub struct ThreeStateMutex<S: Sleep> {
    /// The futex word: [`UNLOCKED`], [`LOCKED`] or [`CONTENDED`].
    state: AtomicU32,
    /// The holder's thread id (0 when free). Written only by the holder,
    /// with plain (relaxed) stores: the lock word orders it.
    owner: AtomicU64,
    sleep: S,
}

impl<S: Sleep> Default for ThreeStateMutex<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Sleep> core::fmt::Debug for ThreeStateMutex<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ThreeStateMutex")
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("owner", &self.owner())
            .finish()
    }
}

impl<S: Sleep> ThreeStateMutex<S> {
    const_fn! {
        /// An unlocked mutex.
        pub fn new() -> Self {
            Self { state: AtomicU32::new(UNLOCKED), owner: AtomicU64::new(NO_THREAD), sleep: S::NEW }
        }
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

    /// Whether some thread may be sleeping on it (the futex word is `2`).
    pub fn is_contended(&self) -> bool {
        self.state.load(Ordering::Relaxed) == CONTENDED
    }

    /// The futex word (0 unlocked, 1 locked, 2 locked and maybe
    /// contended): what the condition variable requeues onto, and what
    /// the tests look at.
    #[inline]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.state
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

    /// Reads the word while it is [`LOCKED`] (a holder that may be about
    /// to release it on another CPU), at most [`SPINS`](crate::SPINS)
    /// times; returns the last value read. loom: one read (the reads have
    /// no effect on the outcome, only on how many states loom explores).
    #[inline]
    fn spin(&self) -> u32 {
        let mut spins = if cfg!(loom) { 0 } else { crate::SPINS };
        loop {
            let state = self.state.load(Ordering::Relaxed);
            if state != LOCKED || spins == 0 {
                return state;
            }
            core::hint::spin_loop();
            spins -= 1;
        }
    }

    /// The contended acquire: spin briefly, then sleep on the futex until
    /// the lock is ours or `deadline` passed. False: timed out. `woken`:
    /// the caller was woken from a futex (the condition variable's wait) —
    /// it must leave the word at `2`, so it skips the `0 → 1` attempt.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn lock_contended(&self, me: u64, deadline: Option<Instant>, woken: bool) -> bool {
        // Only the holder writes its id here, and clears it before it
        // releases: reading our own id means we hold the lock.
        if me != BEFORE_SCHEDULER && self.owner.load(Ordering::Relaxed) == me {
            crate::self_deadlock("Mutex");
        }
        let mut state = self.spin();
        // Nobody has slept yet on our behalf: taking it as LOCKED keeps the
        // unlock cheap.
        if !woken && state == UNLOCKED {
            match self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
        loop {
            // Announce a (possible) sleeper, taking the lock if it was free
            // meanwhile. A word already at 2 needs no write: its holder's
            // unlock will wake one.
            if state != CONTENDED && self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return true;
            }
            // Sleep while the word is still 2 (checked under the futex
            // bucket's lock: an unlock either is seen here or finds us).
            if self.sleep.wait(&self.state, CONTENDED, deadline) == Wait::TimedOut {
                // Not woken (a wake-up reaches exactly one of waker and
                // timer), so no wake-up is lost by leaving; one last try.
                return self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED;
            }
            // Woken, or the word changed: from here on this thread may hold
            // a wake-up, so it only ever swaps 2 in.
            state = self.spin();
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
            self.lock_contended(me, None, false);
        }
        self.acquired(me);
    }

    /// Takes the lock after a futex wake-up (the condition variable's
    /// wait): the contended path without the `0 → 1` attempt, so the word
    /// stays `2` and the next `unlock` wakes whoever a `notify_all`
    /// requeued onto it.
    ///
    /// # Panics
    /// As [`lock`](Self::lock).
    #[track_caller]
    pub(crate) fn lock_after_wake(&self) {
        let me = current_thread_id();
        self.lock_contended(me, None, true);
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
    /// deadline passed first. The futex wait gets the absolute deadline
    /// (`futex_wait_bitset` on the monotonic clock).
    ///
    /// # Panics
    /// As [`lock`](Self::lock).
    #[track_caller]
    pub fn try_lock_until(&self, deadline: Instant) -> bool {
        let me = current_thread_id();
        if self.try_lock_fast() || self.lock_contended(me, Some(deadline), false) {
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
    #[cfg(not(loom))]
    #[track_caller]
    pub fn try_lock_for(&self, timeout: core::time::Duration) -> bool {
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
        self.check_owner();
        self.owner.store(NO_THREAD, Ordering::Relaxed);
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            self.wake_one();
        }
    }

    /// The owner check of `unlock`.
    #[inline]
    #[track_caller]
    fn check_owner(&self) {
        let me = current_thread_id();
        let owner = self.owner.load(Ordering::Relaxed);
        if owner != me && me != BEFORE_SCHEDULER && owner != BEFORE_SCHEDULER {
            crate::not_the_owner("Mutex", owner);
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_one(&self) {
        self.sleep.wake_one(&self.state);
    }

    /// Whether it is held.
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }

    /// loom's negative controls: `unlock` with a bug the models must catch
    /// (see `tests/loom_futex.rs`). Not in other builds.
    ///
    /// # Safety
    /// As [`unlock`](Self::unlock).
    #[cfg(loom)]
    pub unsafe fn unlock_broken(&self, bug: BrokenUnlock) {
        self.check_owner();
        self.owner.store(NO_THREAD, Ordering::Relaxed);
        match bug {
            BrokenUnlock::NoWake => {
                self.state.swap(UNLOCKED, Ordering::Release);
            }
            BrokenUnlock::WakeBeforeRelease => {
                if self.state.load(Ordering::Relaxed) == CONTENDED {
                    self.wake_one();
                }
                self.state.store(UNLOCKED, Ordering::Release);
            }
        }
    }
}

/// loom only: which bug [`RawMutex::unlock_broken`] has.
#[cfg(loom)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokenUnlock {
    /// Releases the word but never wakes a sleeper.
    NoWake,
    /// Wakes a sleeper while the word is still `2`, then stores `0`: the
    /// woken thread finds the lock held, sleeps again, and nobody wakes
    /// it.
    WakeBeforeRelease,
}

// SAFETY: the futex word admits one holder at a time: only a successful
// `0 → 1` compare-and-swap or a swap that returned `0` acquires it, and
// only `unlock` (by the holder) stores `0` again.
#[cfg(not(loom))]
unsafe impl<S: Sleep> lock_api::RawMutex for ThreeStateMutex<S> {
    #[allow(clippy::declare_interior_mutable_const, reason = "lock_api's INIT pattern")]
    const INIT: Self = Self::new();

    /// Guards stay with the thread that locked (the owner check would fail
    /// elsewhere); threads migrate between CPUs freely, guards with them.
    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    #[track_caller]
    fn lock(&self) {
        ThreeStateMutex::lock(self);
    }

    #[inline]
    fn try_lock(&self) -> bool {
        ThreeStateMutex::try_lock(self)
    }

    #[inline]
    #[track_caller]
    unsafe fn unlock(&self) {
        // SAFETY: forwarded contract: the lock is held by the caller.
        unsafe { ThreeStateMutex::unlock(self) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        ThreeStateMutex::is_locked(self)
    }
}

// SAFETY: as for `RawMutex`; a timed acquire succeeds only as `lock` does.
#[cfg(not(loom))]
unsafe impl<S: Sleep> lock_api::RawMutexTimed for ThreeStateMutex<S> {
    type Duration = core::time::Duration;
    type Instant = Instant;

    #[track_caller]
    fn try_lock_for(&self, timeout: core::time::Duration) -> bool {
        ThreeStateMutex::try_lock_for(self, timeout)
    }

    #[track_caller]
    fn try_lock_until(&self, deadline: Instant) -> bool {
        ThreeStateMutex::try_lock_until(self, deadline)
    }
}
