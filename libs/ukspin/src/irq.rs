//! Nested interrupt disabling for the interrupt-saving locks
//! ([`IrqSave`](crate::IrqSave)).
//!
//! [`push_off`] disables interrupts and counts; [`pop_off`] counts down and,
//! when the count returns to zero, restores the interrupt state from before
//! the *first* [`push_off`] (xv6's `push_off`/`pop_off`). The count and the
//! saved state are per CPU and only touched with interrupts disabled on that
//! CPU, so plain loads and stores suffice: nothing else runs on the CPU in
//! between (no interrupt, and no preemption, which needs one).
//!
//! Why a per-CPU count rather than a flag per lock (Linux's
//! `spin_lock_irqsave(lock, flags)`): lock_api's `unlock` has no argument to
//! carry the flag, a lock shared by several readers cannot hold one flag per
//! reader, and locks released out of order (take A, take B, release A)
//! would re-enable interrupts while B is still held. With the count, every
//! release order is safe and interrupts come back exactly when the last
//! interrupt-saving lock of the CPU is released.
//!
//! **Host builds** (unit tests, doctests): a user process may not execute
//! `cli`/`sti` (they fault in ring 3), so the interrupt flag is *simulated*
//! per thread (it starts enabled): [`enabled`], [`push_off`] and [`pop_off`]
//! behave as in the guest against that flag, which lets the host tests check
//! the nesting logic. In the guest they use RFLAGS.IF through
//! [`ukplat::irq`].

/// Whether interrupts are enabled on this CPU (host: the simulated flag of
/// this thread).
#[inline(always)]
pub fn enabled() -> bool {
    imp::enabled()
}

/// Disables interrupts on this CPU and counts one level of nesting; the
/// first level remembers whether interrupts were enabled before.
#[inline(always)]
pub fn push_off() {
    imp::push_off();
}

/// Ends one level of [`push_off`]; the last one restores the interrupt state
/// from before the first.
///
/// # Panics
/// Without a matching [`push_off`] on this CPU.
#[inline(always)]
pub fn pop_off() {
    imp::pop_off();
}

/// Levels of [`push_off`] currently open on this CPU.
#[inline(always)]
pub fn depth() -> u32 {
    imp::depth()
}

/// Interrupts stay disabled while the guard lives ([`push_off`] /
/// [`pop_off`]); guards nest.
///
/// ```
/// let before = ukspin::irq::enabled();
/// {
///     let _off = ukspin::irq::PushOffGuard::new();
///     assert!(!ukspin::irq::enabled());
/// }
/// assert_eq!(ukspin::irq::enabled(), before);
/// ```
#[must_use = "interrupts are restored when the guard is dropped"]
pub struct PushOffGuard {
    // Not Send: must be dropped on the CPU that created it.
    _not_send: core::marker::PhantomData<*const ()>,
}

impl PushOffGuard {
    /// Disables interrupts until the guard is dropped.
    #[inline(always)]
    pub fn new() -> Self {
        push_off();
        Self { _not_send: core::marker::PhantomData }
    }
}

impl Default for PushOffGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PushOffGuard {
    #[inline(always)]
    fn drop(&mut self) {
        pop_off();
    }
}

#[cold]
#[inline(never)]
fn unbalanced() -> ! {
    panic!("ukspin: pop_off without push_off (an interrupt-saving lock released twice, or on another CPU)")
}

#[cfg(all(target_os = "none", not(loom)))]
mod imp {
    use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    /// One CPU's nesting state (only touched by that CPU with interrupts
    /// disabled).
    struct Nesting {
        depth: AtomicU32,
        was_enabled: AtomicBool,
    }

    ukplat::per_cpu! {
        static NESTING: Nesting = Nesting { depth: AtomicU32::new(0), was_enabled: AtomicBool::new(false) };
    }

    #[inline(always)]
    pub(super) fn enabled() -> bool {
        ukplat::irq::enabled()
    }

    #[inline(always)]
    pub(super) fn push_off() {
        let was = ukplat::irq::save();
        // Interrupts are off: this CPU is ours until `pop_off`.
        let nesting = NESTING.get();
        let depth = nesting.depth.load(Ordering::Relaxed);
        if depth == 0 {
            nesting.was_enabled.store(was, Ordering::Relaxed);
        }
        nesting.depth.store(depth + 1, Ordering::Relaxed);
    }

    #[inline(always)]
    pub(super) fn pop_off() {
        let nesting = NESTING.get();
        let depth = nesting.depth.load(Ordering::Relaxed);
        if depth == 0 {
            super::unbalanced();
        }
        nesting.depth.store(depth - 1, Ordering::Relaxed);
        if depth == 1 && nesting.was_enabled.load(Ordering::Relaxed) {
            ukplat::irq::enable();
        }
    }

    #[inline(always)]
    pub(super) fn depth() -> u32 {
        NESTING.get().depth.load(Ordering::Relaxed)
    }
}

#[cfg(not(all(target_os = "none", not(loom))))]
mod imp {
    extern crate std;
    use core::cell::Cell;

    std::thread_local! {
        /// The simulated interrupt flag of this thread.
        static ENABLED: Cell<bool> = const { Cell::new(true) };
        static DEPTH: Cell<u32> = const { Cell::new(0) };
        static WAS_ENABLED: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn enabled() -> bool {
        ENABLED.with(Cell::get)
    }

    pub(super) fn push_off() {
        let was = ENABLED.replace(false);
        let depth = DEPTH.get();
        if depth == 0 {
            WAS_ENABLED.set(was);
        }
        DEPTH.set(depth + 1);
    }

    pub(super) fn pop_off() {
        let depth = DEPTH.get();
        if depth == 0 {
            super::unbalanced();
        }
        DEPTH.set(depth - 1);
        if depth == 1 && WAS_ENABLED.get() {
            ENABLED.set(true);
        }
    }

    pub(super) fn depth() -> u32 {
        DEPTH.get()
    }

    /// Sets this thread's simulated interrupt flag (host tests).
    pub(crate) fn set_enabled(on: bool) {
        ENABLED.set(on);
    }
}

/// Host builds: control of the simulated interrupt flag.
#[cfg(not(all(target_os = "none", not(loom))))]
pub mod host {
    /// Sets the calling thread's simulated interrupt flag (what
    /// `sti`/`cli` would do in the guest), to test code that depends on it.
    ///
    /// ```
    /// ukspin::irq::host::set_enabled(false);
    /// let lock = ukspin::SpinLockIrq::new(());
    /// {
    ///     let _guard = lock.lock();
    ///     assert!(!ukspin::irq::enabled());
    /// }
    /// assert!(!ukspin::irq::enabled(), "was disabled before: stays disabled");
    /// ```
    pub fn set_enabled(on: bool) {
        super::imp::set_enabled(on);
    }
}
