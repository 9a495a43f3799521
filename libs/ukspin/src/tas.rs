//! Test-and-test-and-set spinlock with bounded exponential backoff.

use crate::SINGLE_CPU;
use crate::sync::{AtomicBool, Ordering, Spin, compiler_fence, const_fn, preempt_off, preempt_on};

/// Pauses after the first failed attempt in the contended path.
pub const TAS_BACKOFF_MIN: u32 = 1;
/// Most pauses between two attempts: the backoff doubles from
/// [`TAS_BACKOFF_MIN`] up to this cap.
///
/// One `pause` costs about 10 cycles on pre-Skylake Intel and Zen, about 140
/// on Skylake and later Intel cores, so 1024 pauses are roughly 10 000 to
/// 140 000 cycles (3–50 µs at 3 GHz). The cap bounds the time a waiter can
/// stay asleep in its backoff after the lock became free (the price of
/// backoff), while 10 doublings already spread the retries of dozens of
/// CPUs far enough apart that the lock's cache line stops bouncing on every
/// release.
pub const TAS_BACKOFF_MAX: u32 = 1024;

/// Test-and-test-and-set spinlock: one byte, unfair, cheapest when
/// uncontended.
///
/// * **Acquire:** one `lock cmpxchg` when free. Otherwise the contended path
///   (`tas_lock_contended`) spins *reading* the byte (the line stays
///   shared in every waiter's cache, no bus traffic while the lock is held),
///   retries the `cmpxchg` when it reads "free", and after each lost race waits
///   an exponentially growing number of `pause`s ([`TAS_BACKOFF_MIN`] →
///   [`TAS_BACKOFF_MAX`]).
/// * **Release:** a plain store (`mov`), no atomic read-modify-write.
/// * **Fairness:** none. Whoever's `cmpxchg` lands first after a release wins;
///   the releasing CPU, whose cache holds the line, often re-acquires at
///   once, and a waiter deep in its backoff can starve. Use
///   [`RawTicketLock`](crate::RawTicketLock) or
///   [`RawMcsLock`](crate::RawMcsLock) where waiting time must be bounded.
/// * **Memory:** 1 byte.
///
/// Preemption is disabled while the lock is held (and while waiting).
///
/// ```
/// use lock_api::RawMutex;
/// use ukspin::RawTasLock;
///
/// static RAW: RawTasLock = RawTasLock::new();
/// RAW.lock();
/// assert!(!RAW.try_lock());
/// // SAFETY: locked just above, on this thread.
/// unsafe { RAW.unlock() };
///
/// // Usually through lock_api's Mutex (alias ukspin::TasLock):
/// static COUNTER: ukspin::TasLock<u64> = ukspin::TasLock::new(0);
/// *COUNTER.lock() += 1;
/// assert_eq!(*COUNTER.lock(), 1);
/// ```
pub struct RawTasLock {
    locked: AtomicBool,
}

impl RawTasLock {
    /// The configuration name of this kind (`ukspin.kind = "tas"`).
    pub const NAME: &'static str = "tas";

    const_fn! {
        /// An unlocked lock.
        pub fn new() -> Self {
            Self { locked: AtomicBool::new(false) }
        }
    }

    /// Acquires the lock, spinning until it is free (preemption disabled
    /// from here until [`unlock`](Self::unlock)).
    #[inline]
    pub fn lock(&self) {
        preempt_off();
        if SINGLE_CPU {
            self.up_lock();
        } else if !try_set(&self.locked) {
            tas_lock_contended(&self.locked);
        }
    }

    /// Acquires the lock if it is free; never waits. Preemption stays
    /// disabled only on success.
    #[inline]
    pub fn try_lock(&self) -> bool {
        preempt_off();
        let taken = if SINGLE_CPU {
            self.up_try_lock()
        } else {
            // Test first: a failing `cmpxchg` would still take the line
            // exclusive.
            !self.locked.load(Ordering::Relaxed) && try_set(&self.locked)
        };
        if !taken {
            preempt_on();
        }
        taken
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The lock is held, by this CPU (the one that acquired it).
    #[inline]
    pub unsafe fn unlock(&self) {
        // A plain store in both modes (x86 stores have release semantics).
        self.locked.store(false, Ordering::Release);
        preempt_on();
    }

    /// Whether some CPU holds the lock (a snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }

    /// One CPU: a plain load and store of the flag, no `xchg` (see the crate
    /// documentation, "One CPU").
    #[inline(always)]
    pub(crate) fn up_lock(&self) {
        if !self.up_try_lock() {
            crate::sync::self_deadlock(Self::NAME, core::ptr::from_ref(self).cast());
        }
    }

    #[inline(always)]
    pub(crate) fn up_try_lock(&self) -> bool {
        if self.locked.load(Ordering::Relaxed) {
            return false;
        }
        self.locked.store(true, Ordering::Relaxed);
        compiler_fence(Ordering::Acquire);
        true
    }
}

impl Default for RawTasLock {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for RawTasLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawTasLock").field("locked", &self.is_locked()).finish()
    }
}

/// The contended path of [`RawTasLock::lock`]: test, test-and-set, back off.
/// Out of line (and named after its kind) so that an image's symbol table
/// shows which algorithm is linked.
#[inline(never)]
#[cold]
fn tas_lock_contended(locked: &AtomicBool) {
    let mut spin = Spin::new();
    let mut backoff = TAS_BACKOFF_MIN;
    loop {
        // Test: wait with loads only until the lock looks free.
        while locked.load(Ordering::Relaxed) {
            spin.wait();
        }
        // Test-and-set.
        if try_set(locked) {
            return;
        }
        // Lost the race against another waiter: back off before reading
        // again, so the winners' line is not hammered.
        spin.pause(backoff);
        backoff = (backoff * 2).min(TAS_BACKOFF_MAX);
    }
}

/// The test-and-set: false → true, Acquire on success. A CAS rather than
/// `xchg`: the same cost on x86 (both lock the line), and a failed attempt
/// stores nothing (an `xchg` would rewrite `true`, which also leaves loom's
/// model unable to order it against the holder's release).
#[inline(always)]
fn try_set(locked: &AtomicBool) -> bool {
    locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
}

crate::sync::forward_raw_mutex!(
    RawTasLock,
    safety = "`lock` returns only once this CPU's CAS turned the flag from false to true (or, with one CPU, the flag was false and no other CPU exists), and only the holder clears it: mutual exclusion. Acquire/Release orderings order the critical sections."
);
