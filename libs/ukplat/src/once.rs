//! [`Once`]: a value set once, then read anywhere — the cell behind every
//! "registered at boot" static (the console device, the exit routine, the
//! interrupt controller, the boot information here; the platform's boot
//! data; `apic`'s I/O APIC table).
//!
//! Why not a spinlock (`ukspin`): this is one-time initialisation, not
//! mutual exclusion. After the value is set, [`Once::get`] is one
//! `Acquire` load, with no lock word, no preemption counter and no per-CPU
//! state — so it works before the per-CPU header (GS) exists, in panic and
//! exception reports, and in `ukplat` itself, which sits below `ukspin`.
//! Only callers that race to *initialise* wait, spinning until the winner
//! has stored the value; `ukspin.kind` has nothing to choose there.
//!
//! Why not `core`: `core::sync` has no once-cell (`OnceLock` is `std`
//! only), and `core::cell::OnceCell` is not `Sync`.
//!
//! ```
//! use ukplat::once::Once;
//!
//! static ANSWER: Once<u32> = Once::new();
//! assert_eq!(ANSWER.get(), None);
//! assert_eq!(*ANSWER.call_once(|| 42), 42);
//! assert_eq!(*ANSWER.call_once(|| 7), 42, "the first value stays");
//! assert_eq!(ANSWER.get(), Some(&42));
//! ```

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

/// No value, nobody initialising.
const EMPTY: u8 = 0;
/// One caller runs the initialiser; the others wait.
const RUNNING: u8 = 1;
/// The value is stored and never changes again.
const READY: u8 = 2;

/// A value initialised at most once, readable from any CPU afterwards.
///
/// `const`-constructible for `static`s. [`call_once`](Self::call_once)
/// runs the initialiser of the first caller only; callers arriving while
/// it runs spin until it has finished. Should the initialiser panic (host
/// tests: the guest's panics stop the machine), the cell is empty again.
///
/// The initialiser must not call [`call_once`](Self::call_once) on the same
/// cell, and code that may interrupt it on the same CPU (an interrupt or
/// exception handler) must only use [`get`](Self::get): either would wait
/// for itself forever.
pub struct Once<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once, by the caller that moved the state
// from EMPTY to RUNNING, and published by the `Release` store of READY;
// readers only form `&T` after an `Acquire` load of READY. So the cell hands
// a `T` from the initialising thread to others (`T: Send`) and shares `&T`
// between threads (`T: Sync`).
unsafe impl<T: Send + Sync> Sync for Once<T> {}

impl<T> Once<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        Self { state: AtomicU8::new(EMPTY), value: UnsafeCell::new(MaybeUninit::uninit()) }
    }

    /// The value, once set (one `Acquire` load; never waits).
    #[inline]
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY (loaded with Acquire, pairing with the Release
            // store after the write) means the value is initialised, and it
            // is never written again.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// Whether the value is set.
    #[inline]
    pub fn is_completed(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// The value, initialised by `init` if nobody did before. When another
    /// CPU is initialising it, waits for that value.
    ///
    /// ```
    /// use ukplat::once::Once;
    ///
    /// let cell = Once::new();
    /// let mut runs = 0;
    /// for _ in 0..3 {
    ///     cell.call_once(|| runs += 1);
    /// }
    /// assert_eq!(runs, 1);
    /// ```
    pub fn call_once(&self, init: impl FnOnce() -> T) -> &T {
        loop {
            match self.state.compare_exchange(EMPTY, RUNNING, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => {
                    // Back to EMPTY if `init` unwinds, so the cell is not
                    // stuck in RUNNING.
                    let reset = ResetOnUnwind(&self.state);
                    let value = init();
                    // SAFETY: the state is RUNNING and this call set it: no
                    // other caller reads or writes the value until READY.
                    unsafe { (*self.value.get()).write(value) };
                    core::mem::forget(reset);
                    self.state.store(READY, Ordering::Release);
                }
                Err(READY) => {}
                Err(_) => {
                    ukarch::barrier::spin_hint();
                    continue;
                }
            }
            // SAFETY: READY: set just above, or seen with Acquire.
            return unsafe { (*self.value.get()).assume_init_ref() };
        }
    }
}

impl<T> Default for Once<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for Once<T> {
    fn drop(&mut self) {
        if *self.state.get_mut() == READY {
            // SAFETY: READY means initialised; `&mut self` means nobody
            // else holds a reference to the value.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for Once<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.get() {
            Some(value) => f.debug_tuple("Once").field(value).finish(),
            None => f.write_str("Once(<unset>)"),
        }
    }
}

/// Puts the state back to EMPTY when dropped (only reached when the
/// initialiser unwinds; the normal path forgets it).
struct ResetOnUnwind<'a>(&'a AtomicU8);

impl Drop for ResetOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.store(EMPTY, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn racing_initialisers_run_once_and_all_see_the_winner() {
        static CELL: Once<usize> = Once::new();
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let seen: std::vec::Vec<usize> = std::thread::scope(|s| {
            let handles: std::vec::Vec<_> = (0..8)
                .map(|i| {
                    s.spawn(move || {
                        *CELL.call_once(|| {
                            RUNS.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(std::time::Duration::from_millis(5));
                            i
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(RUNS.load(Ordering::Relaxed), 1);
        assert!(seen.iter().all(|&v| v == seen[0]));
        assert_eq!(CELL.get(), Some(&seen[0]));
    }

    #[test]
    fn a_panicking_initialiser_leaves_it_empty() {
        let cell = Once::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cell.call_once(|| panic!("init fails"));
        }));
        assert!(result.is_err());
        assert!(!cell.is_completed());
        assert_eq!(*cell.call_once(|| 5), 5);
    }

    #[test]
    fn the_value_is_dropped_with_the_cell() {
        let value = std::sync::Arc::new(());
        let cell = Once::new();
        cell.call_once(|| value.clone());
        assert_eq!(std::sync::Arc::strong_count(&value), 2);
        drop(cell);
        assert_eq!(std::sync::Arc::strong_count(&value), 1);
        assert_eq!(format!("{:?}", Once::<u8>::new()), "Once(<unset>)");
    }
}
