//! Interrupt-saving wrapper for any raw lock: Linux's `spin_lock_irqsave`.

use crate::irq;
use crate::sync::{preempt_off, preempt_on};

/// A raw lock `R` taken with interrupts disabled on this CPU: the
/// `spin_lock_irqsave` / `spin_unlock_irqrestore` of Linux, for any kind.
///
/// Acquiring disables interrupts first ([`irq::push_off`]), then takes `R`;
/// releasing drops `R`, then restores the interrupt state from before
/// ([`irq::pop_off`]), and only then lets preemption back (so a reschedule
/// never runs with interrupts still off). Like every lock here it raises
/// the preemption counter by one while held. It implements
/// [`lock_api::RawMutex`] (and `RawMutexFair`) when `R` does and
/// [`lock_api::RawRwLock`] when `R` does, so it plugs into lock_api-generic
/// code: [`SpinLockIrq`](crate::SpinLockIrq),
/// [`RwSpinLockIrq`](crate::RwSpinLockIrq), or
/// `lock_api::Mutex<IrqSave<RawMcsLock>, T>` for a chosen kind.
///
/// **When:** for data an interrupt handler also touches. With a plain
/// spinlock, an interrupt arriving on the CPU that holds the lock, whose
/// handler then takes the same lock, spins forever (the holder cannot run
/// until the handler returns). Disabling interrupts while holding closes
/// that window. Data never touched from interrupt context needs no
/// irqsave: it only lengthens interrupt latency. Inside an interrupt
/// handler (interrupts already off) both forms behave the same.
///
/// The previous state is kept per CPU, not in the lock (see [`irq`]): the
/// locks may be released in any order, and a read lock shared by several
/// CPUs works like an exclusive one. The wrapper adds no field: it is as
/// large as `R`.
///
/// On the host the interrupt flag is simulated per thread (see [`irq`]).
///
/// ```
/// use ukspin::{IrqSave, RawMcsLock, SpinLockIrq, irq};
///
/// static SHARED_WITH_HANDLER: SpinLockIrq<u32> = SpinLockIrq::new(0);
/// assert!(irq::enabled());
/// {
///     let mut n = SHARED_WITH_HANDLER.lock();
///     assert!(!irq::enabled(), "interrupts off while held");
///     *n += 1;
/// }
/// assert!(irq::enabled(), "and restored after");
///
/// // A chosen kind, irqsave:
/// let lock: lock_api::Mutex<IrqSave<RawMcsLock>, ()> = lock_api::Mutex::new(());
/// drop(lock.lock());
/// ```
#[derive(Debug, Default)]
pub struct IrqSave<R> {
    inner: R,
}

impl<R> IrqSave<R> {
    /// Wraps `inner` (use `lock_api::RawMutex::INIT` in `const` contexts).
    pub const fn new(inner: R) -> Self {
        Self { inner }
    }

    /// The wrapped lock.
    pub const fn inner(&self) -> &R {
        &self.inner
    }
}

/// Disables interrupts (before `R` raises the preemption counter).
#[inline(always)]
fn enter() {
    irq::push_off();
}

/// Releases with `unlock` (which lowers the preemption counter), then
/// restores interrupts, and only then lets preemption back: a reschedule
/// requested meanwhile runs with interrupts back on. The extra raise keeps
/// `R`'s release from reaching zero (and calling the scheduler) while
/// interrupts are still off; the counter is raised by one while held, as
/// for every lock.
#[inline(always)]
fn release(unlock: impl FnOnce()) {
    preempt_off();
    unlock();
    irq::pop_off();
    preempt_on();
}

// SAFETY: mutual exclusion is `R`'s; the wrapper only brackets it with
// interrupt and preemption control on the acquiring CPU.
unsafe impl<R: lock_api::RawMutex> lock_api::RawMutex for IrqSave<R> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self { inner: R::INIT };
    // Interrupt state and preemption counter are per CPU.
    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    fn lock(&self) {
        enter();
        self.inner.lock();
    }

    #[inline]
    fn try_lock(&self) -> bool {
        enter();
        let taken = self.inner.try_lock();
        if !taken {
            irq::pop_off();
        }
        taken
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: forwarded caller contract (the lock is held).
        release(|| unsafe { self.inner.unlock() });
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

// SAFETY: as for `RawMutex`; fairness is `R`'s.
unsafe impl<R: lock_api::RawMutexFair> lock_api::RawMutexFair for IrqSave<R> {
    #[inline]
    unsafe fn unlock_fair(&self) {
        // SAFETY: forwarded caller contract.
        release(|| unsafe { self.inner.unlock_fair() });
    }
}

// SAFETY: reader/writer exclusion is `R`'s; the wrapper only brackets every
// acquisition (shared or exclusive) with interrupt and preemption control.
unsafe impl<R: lock_api::RawRwLock> lock_api::RawRwLock for IrqSave<R> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self { inner: R::INIT };
    // Interrupt state and preemption counter are per CPU.
    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    fn lock_shared(&self) {
        enter();
        self.inner.lock_shared();
    }

    #[inline]
    fn try_lock_shared(&self) -> bool {
        enter();
        let taken = self.inner.try_lock_shared();
        if !taken {
            irq::pop_off();
        }
        taken
    }

    #[inline]
    unsafe fn unlock_shared(&self) {
        // SAFETY: forwarded caller contract.
        release(|| unsafe { self.inner.unlock_shared() });
    }

    #[inline]
    fn lock_exclusive(&self) {
        enter();
        self.inner.lock_exclusive();
    }

    #[inline]
    fn try_lock_exclusive(&self) -> bool {
        enter();
        let taken = self.inner.try_lock_exclusive();
        if !taken {
            irq::pop_off();
        }
        taken
    }

    #[inline]
    unsafe fn unlock_exclusive(&self) {
        // SAFETY: forwarded caller contract.
        release(|| unsafe { self.inner.unlock_exclusive() });
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    #[inline]
    fn is_locked_exclusive(&self) -> bool {
        self.inner.is_locked_exclusive()
    }
}

// SAFETY: the held lock stays held (now shared); interrupt and preemption
// state are unchanged.
unsafe impl<R: lock_api::RawRwLockDowngrade> lock_api::RawRwLockDowngrade for IrqSave<R> {
    #[inline]
    unsafe fn downgrade(&self) {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.downgrade() }
    }
}
