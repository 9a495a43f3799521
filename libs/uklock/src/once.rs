//! One-time initialisation for threads, on a futex word.
//!
//! The word holds one of four states:
//!
//! | state | meaning |
//! |---|---|
//! | `INCOMPLETE` (0) | nobody ran the closure (or it panicked: host builds) |
//! | `RUNNING` (1) | a thread runs it; nobody waits |
//! | `QUEUED` (2) | a thread runs it; others may sleep on the word |
//! | `COMPLETE` (3) | done; never changes again |
//!
//! The first caller moves `INCOMPLETE → RUNNING` (a compare-and-swap,
//! Acquire) and runs the closure; a later caller that finds `RUNNING`
//! moves it to `QUEUED` and sleeps with `futex_wait(word, QUEUED)`, as does
//! one that finds `QUEUED`. The runner ends with a swap to `COMPLETE`
//! (Release: what the closure wrote is visible to whoever reads
//! `COMPLETE` with Acquire) and wakes every sleeper only if the old value
//! was `QUEUED`. A sleeper checks the word under the futex bucket's lock,
//! so it either sees `COMPLETE` (and does not sleep) or is queued before
//! the runner's wake: no lost wake-up. The uncontended `call_once` of a
//! completed `Once` is one Acquire load; a runner nobody waited for pays no
//! futex call.

use crate::sys::{self, AtomicU32, const_fn};
use core::sync::atomic::Ordering;

const INCOMPLETE: u32 = 0;
const RUNNING: u32 = 1;
const QUEUED: u32 = 2;
const COMPLETE: u32 = 3;

/// Runs a closure once, whichever and however many threads call
/// [`call_once`](Self::call_once): the first runs it, the others sleep on
/// the `Once`'s futex word until it finished, and every later call returns
/// at once. Everything the closure wrote is visible to each caller after
/// `call_once` returns. 4 bytes, `const`-constructible, available whatever
/// `uklock.mutex` says.
///
/// Callers that may wait must be threads (after the scheduler started):
/// a `Once` that is already complete, or that nobody else is running, never
/// sleeps. The closure must not call `call_once` on the same `Once` (that
/// would sleep forever). If it panics (host builds: the guest aborts on a
/// panic), the `Once` is left incomplete and the next caller runs its own
/// closure — no poisoning.
///
/// ```no_run
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use uklock::Once;
///
/// static INIT: Once = Once::new();
/// static TABLE_SIZE: AtomicU32 = AtomicU32::new(0);
///
/// fn table_size() -> u32 {
///     // The first caller computes it; callers meanwhile sleep until it is done.
///     INIT.call_once(|| TABLE_SIZE.store(64 * ukplat::cpu::count() as u32, Ordering::Relaxed));
///     TABLE_SIZE.load(Ordering::Relaxed)
/// }
///
/// let threads: Vec<_> = (0..8).map(|_| uksched::spawn(table_size)).collect();
/// let sizes: Vec<u32> = threads.into_iter().map(|t| t.join()).collect();
/// assert!(sizes.iter().all(|&s| s == sizes[0] && s != 0));
/// assert!(INIT.is_completed());
/// ```
pub struct Once {
    state: AtomicU32,
}

impl Default for Once {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Once {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Once").field("completed", &self.is_completed()).finish()
    }
}

/// Puts the state back to `INCOMPLETE` (waking any sleeper) if the closure
/// unwinds.
struct ResetOnUnwind<'a>(&'a Once);

impl Drop for ResetOnUnwind<'_> {
    fn drop(&mut self) {
        if self.0.state.swap(INCOMPLETE, Ordering::Release) == QUEUED {
            sys::wake(&self.0.state, usize::MAX);
        }
    }
}

impl Once {
    const_fn! {
        /// A `Once` whose closure has not run.
        pub fn new() -> Self {
            Self { state: AtomicU32::new(INCOMPLETE) }
        }
    }

    /// Whether a `call_once` finished running its closure (then every
    /// later `call_once` returns at once, and what the closure wrote is
    /// visible to the caller).
    #[inline]
    pub fn is_completed(&self) -> bool {
        self.state.load(Ordering::Acquire) == COMPLETE
    }

    /// Runs `f` if no call ran it yet; otherwise waits until the call that
    /// runs it finished (sleeping on the futex word), or returns at once if
    /// it did.
    ///
    /// # Panics
    /// When it has to wait in an interrupt handler or with preemption
    /// disabled (the scheduler refuses to sleep there); what `f` panics
    /// with.
    #[inline]
    pub fn call_once<F: FnOnce()>(&self, f: F) {
        if self.is_completed() {
            return;
        }
        let mut f = Some(f);
        self.call_once_slow(&mut || {
            if let Some(f) = f.take() {
                f();
            }
        });
    }

    #[cold]
    #[inline(never)]
    fn call_once_slow(&self, f: &mut dyn FnMut()) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            match state {
                COMPLETE => return,
                INCOMPLETE => {
                    match self.state.compare_exchange(
                        INCOMPLETE,
                        RUNNING,
                        Ordering::Acquire,
                        Ordering::Acquire,
                    ) {
                        Err(now) => state = now,
                        Ok(_) => {
                            let reset = ResetOnUnwind(self);
                            f();
                            core::mem::forget(reset);
                            if self.state.swap(COMPLETE, Ordering::Release) == QUEUED {
                                sys::wake(&self.state, usize::MAX);
                            }
                            return;
                        }
                    }
                }
                RUNNING => {
                    // Tell the runner to wake us when it is done.
                    match self.state.compare_exchange(RUNNING, QUEUED, Ordering::Acquire, Ordering::Acquire) {
                        Err(now) => state = now,
                        Ok(_) => state = QUEUED,
                    }
                }
                _ => {
                    // QUEUED: sleep while it still is (checked under the
                    // futex bucket's lock), then look again.
                    sys::wait(&self.state, QUEUED, None);
                    state = self.state.load(Ordering::Acquire);
                }
            }
        }
    }

    /// The futex word (what the tests look at).
    #[cfg(all(feature = "uktest", not(loom)))]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.state
    }
}
