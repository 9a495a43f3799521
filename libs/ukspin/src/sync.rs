//! What the lock algorithms are written against: atomics, spin-wait hints
//! and the preemption counter, each swapped for loom's model (or for
//! nothing) under `cfg(loom)`.
//!
//! The model checker needs its own atomics (it explores their orderings),
//! a yield in every spin loop (a loop that only loads would be explored
//! forever), and no per-CPU state (its threads all run on one OS thread,
//! and its atomics cannot be built in a `const`).

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32};
pub(crate) use core::sync::atomic::{Ordering, compiler_fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32};

/// Defines a constructor that is a `const fn` normally and a plain `fn`
/// under loom (whose atomics and mutex have no `const` constructor). The
/// `cfg(loom)` is the calling crate's: exported for the crates above whose
/// loom models run the same way (`uklock`).
#[doc(hidden)]
#[macro_export]
macro_rules! const_fn_unless_loom {
    ($(#[$meta:meta])* $vis:vis fn $name:ident() -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[cfg(not(loom))]
        $vis const fn $name() -> $ret $body

        $(#[$meta])*
        #[cfg(loom)]
        $vis fn $name() -> $ret $body
    };
}
pub(crate) use crate::const_fn_unless_loom as const_fn;

/// The waiting part of a spin loop: `pause`, plus what the host and loom
/// need (zero-sized in the guest).
///
/// * Guest: `pause` only.
/// * Host builds (tests) also yield the OS thread every
///   [`HOST_YIELD_EVERY`] polls: test threads are preemptible OS threads,
///   often more of them than cores, and a FIFO lock handed to a descheduled
///   waiter would otherwise stall every spinner for a whole time slice (the
///   guest disables preemption while spinning, so there it cannot happen).
/// * loom: every poll is a `yield_now` (loom must know the thread waits for
///   another), and after `LOOM_POLLS` fruitless polls the execution stops
///   branching (`loom::skip_branch`) and runs on deterministically, which
///   lets the holder finish. Without that, loom explores two spinners
///   yielding to each other forever (tokio-rs/loom#53). A poll has no side
///   effect, so executions with more polls only stutter: their outcomes are
///   those of executions with fewer polls and the same other steps.
pub(crate) struct Spin {
    #[cfg(not(target_os = "none"))]
    polls: u32,
}

/// Host builds: polls between two yields of the OS thread.
#[cfg(all(not(target_os = "none"), not(loom)))]
pub(crate) const HOST_YIELD_EVERY: u32 = 64;

/// loom: fruitless polls of one spin loop before the execution stops
/// branching.
#[cfg(loom)]
pub(crate) const LOOM_POLLS: u32 = 4;

impl Spin {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(target_os = "none"))]
            polls: 0,
        }
    }

    /// One poll of a spin-wait loop: one `pause`.
    #[inline(always)]
    pub(crate) fn wait(&mut self) {
        self.pause(1);
    }

    /// Waits `iterations` × `pause` (under loom a single poll: the model
    /// gains nothing from counting pauses).
    #[inline(always)]
    pub(crate) fn pause(&mut self, iterations: u32) {
        #[cfg(loom)]
        {
            let _ = iterations;
            self.polls += 1;
            if self.polls == LOOM_POLLS {
                loom::skip_branch();
            }
            loom::thread::yield_now();
        }
        #[cfg(not(loom))]
        {
            for _ in 0..iterations {
                ukarch::barrier::spin_hint();
            }
            #[cfg(not(target_os = "none"))]
            {
                self.polls += 1;
                if self.polls.is_multiple_of(HOST_YIELD_EVERY) {
                    extern crate std;
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// Raises this CPU's preemption counter (nothing under loom).
#[inline(always)]
pub(crate) fn preempt_off() {
    #[cfg(not(loom))]
    ukplat::cpu::preempt_disable();
}

/// Lowers this CPU's preemption counter (nothing under loom).
#[inline(always)]
pub(crate) fn preempt_on() {
    #[cfg(not(loom))]
    ukplat::cpu::preempt_enable();
}

/// Reports a lock taken again by the CPU that holds it, in an image built
/// for one CPU (see the crate documentation, "One CPU"). Out of line and
/// cold: the fast paths only test a flag.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn self_deadlock(kind: &str, lock: *const ()) -> ! {
    panic!(
        "ukspin: {kind} spinlock at {lock:p} taken again while this CPU holds it \
         (self-deadlock: with one CPU nobody else can release it)"
    )
}

/// Implements `lock_api::RawMutex` (and, with `fair`, `RawMutexFair`, whose
/// `unlock` already hands over in FIFO order) for a raw lock by forwarding to
/// its inherent `new`, `lock`, `try_lock`, `unlock` and `is_locked`. The
/// guards are `!Send`: the preemption counter (and the MCS node pool) is per
/// CPU, so a guard must be dropped where it was created.
///
/// The invocation carries the lock's mutual-exclusion argument, which is
/// what makes the `unsafe impl` sound: `forward_raw_mutex!(Type, fair,
/// safety = "...")`.
macro_rules! forward_raw_mutex {
    ($ty:ident, fair, safety = $why:literal) => {
        crate::sync::forward_raw_mutex!($ty, safety = $why);
        crate::sync::forward_raw_mutex!(@fair $ty);
    };
    ($ty:ident, safety = $why:literal) => {
        #[cfg(not(loom))]
        #[doc = concat!("SAFETY: ", $why)]
        // SAFETY: see the doc line above: the lock's own argument, given at
        // the macro's invocation.
        unsafe impl lock_api::RawMutex for $ty {
            #[allow(clippy::declare_interior_mutable_const)]
            const INIT: Self = Self::new();
            type GuardMarker = lock_api::GuardNoSend;

            #[inline]
            fn lock(&self) {
                $ty::lock(self);
            }

            #[inline]
            fn try_lock(&self) -> bool {
                $ty::try_lock(self)
            }

            #[inline]
            unsafe fn unlock(&self) {
                // SAFETY: forwarded caller contract (the lock is held here).
                unsafe { $ty::unlock(self) }
            }

            #[inline]
            fn is_locked(&self) -> bool {
                $ty::is_locked(self)
            }
        }
    };
    (@fair $ty:ident) => {
        #[cfg(not(loom))]
        // SAFETY: `unlock` already hands the lock to the longest waiter.
        unsafe impl lock_api::RawMutexFair for $ty {
            #[inline]
            unsafe fn unlock_fair(&self) {
                // SAFETY: forwarded caller contract.
                unsafe { $ty::unlock(self) }
            }
        }
    };
}
pub(crate) use forward_raw_mutex;
