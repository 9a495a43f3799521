//! Typed, lock-free slots for function pointers.
//!
//! Registration points all over the tree (the interrupt handler table, the
//! reschedule hook, the parked CPUs' entry, the scheduler's switch hooks,
//! the timer handler, the console tap, the fault explainers) hold one
//! function that the platform or another library registers at run time and
//! that is later called from places where no lock may be taken: interrupt
//! handlers, the context switch, the fatal-exception path. A [`FnSlot`] is
//! such a cell: one [`AtomicPtr`] holding the function's address, or null
//! for "none", with a typed interface around it.
//!
//! Function pointers cannot be stored in an atomic directly, so a slot
//! converts between the function pointer and `*mut ()` on the way in and
//! out. That conversion back is the one `unsafe` step, and its argument is
//! made here, once, instead of at every registration point:
//!
//! * a function pointer and a data pointer have the same size and
//!   representation on every target this crate builds for (x86_64; the
//!   conversion is a compile-time-checked `transmute`, so a target where
//!   they differ fails to build rather than misbehaving);
//! * a `FnSlot<F>` only ever stores null or a value of type `F` converted
//!   with `as *mut ()` (its fields are private, and every method that
//!   stores takes an `F`), so a non-null value read back *is* an `F`;
//! * [`FnPtr`], which names the types a slot may hold, is an `unsafe`,
//!   sealed trait: this module implements it for function-pointer types
//!   only, and no other crate can implement it.
//!
//! [`FnPtr`] is implemented per signature shape, not for every `fn(A) -> R`:
//! a blanket impl over `fn(A)` would overlap the higher-ranked shapes such
//! as `fn(&[u8])` (which is `for<'a> fn(&'a [u8])`), the coherence
//! "leak-check" future-incompatibility. The shapes are `fn()`, `fn() -> !`,
//! `fn(usize)`, `fn(usize) -> !`, `fn(u64)`, `fn(&T)`, `fn(&mut T)` (for
//! any `T`, unsized ones included) and [`crate::fault::Explainer`]. A new
//! kind of slot elsewhere in the tree either uses one of them or adds its
//! shape to the list in this module (a type from another crate can only
//! appear behind a reference: `fn(&T)`, `fn(&mut T)`).
//!
//! **Memory ordering.** Every write releases and every read acquires:
//! [`FnSlot::store`], [`FnSlot::clear`] are `Release`, [`FnSlot::load`],
//! [`FnSlot::is_set`] are `Acquire`, and [`FnSlot::swap`],
//! [`FnSlot::store_if_empty`] are `AcqRel` (`Acquire` when they fail). So
//! whatever the registering code wrote before registering is visible to the
//! code that loads the function and calls it.
//!
//! **Which registration wins** is up to the call site: [`FnSlot::store`]
//! and [`FnSlot::swap`] replace what is there (the last one wins),
//! [`FnSlot::store_if_empty`] keeps it (the first one wins, and an array of
//! slots filled with it is a lock-free registry).
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use ukplat::slot::FnSlot;
//!
//! static SEEN: AtomicUsize = AtomicUsize::new(0);
//! fn count(cpu: usize) {
//!     SEEN.fetch_add(cpu, Ordering::Relaxed);
//! }
//! fn other(_cpu: usize) {}
//!
//! /// One hook (the last registration wins).
//! static HOOK: FnSlot<fn(usize)> = FnSlot::new();
//! assert!(HOOK.load().is_none());
//! HOOK.store(count);
//! if let Some(hook) = HOOK.load() {
//!     hook(3);
//! }
//! assert_eq!(SEEN.load(Ordering::Relaxed), 3);
//! HOOK.clear();
//! assert!(!HOOK.is_set());
//!
//! /// A registry: the first free slot takes a function.
//! static HOOKS: [FnSlot<fn(usize)>; 2] = [const { FnSlot::new() }; 2];
//! let register = |f: fn(usize)| HOOKS.iter().any(|slot| slot.store_if_empty(f).is_ok());
//! assert!(register(count));
//! assert!(register(other));
//! assert!(!register(count));
//! HOOKS.iter().filter_map(FnSlot::load).for_each(|hook| hook(1));
//! assert_eq!(SEEN.load(Ordering::Relaxed), 4);
//! ```

use core::marker::PhantomData;
use core::sync::atomic::{AtomicPtr, Ordering};

mod sealed {
    /// The conversions behind [`super::FnPtr`]; only this module implements
    /// it (the module is private, so no other crate can name the trait).
    pub trait Sealed: Copy {
        /// The function's address.
        fn into_raw(self) -> *mut ();
        /// The function at `raw`.
        ///
        /// # Safety
        /// `raw` must have been made by [`Sealed::into_raw`] of the same
        /// type.
        unsafe fn from_raw(raw: *mut ()) -> Self;
    }
}

/// A function-pointer type that a [`FnSlot`] can hold.
///
/// # Safety
/// Implemented only for function-pointer types, whose values have the size
/// and representation of a data pointer (`*mut ()`), round-trip through it
/// unchanged, and are never null. The trait is sealed: this module
/// implements it for the shapes listed in the [module documentation](self),
/// and no other crate can implement it.
pub unsafe trait FnPtr: sealed::Sealed {}

/// Implements [`FnPtr`] for function-pointer types (with optional generic
/// parameters, written `[T: ?Sized] for<'a> fn(&'a T)`).
macro_rules! fn_ptr {
    ($([$($generics:tt)*] $ty:ty;)*) => {$(
        impl<$($generics)*> sealed::Sealed for $ty {
            #[inline(always)]
            fn into_raw(self) -> *mut () {
                self as *mut ()
            }

            #[inline(always)]
            unsafe fn from_raw(raw: *mut ()) -> Self {
                // SAFETY: `raw` came from `into_raw` of this same function-
                // pointer type (the caller's contract), and function
                // pointers and data pointers have the same size and
                // representation on the targets this crate builds for (the
                // transmute checks the size at compile time).
                unsafe { core::mem::transmute::<*mut (), Self>(raw) }
            }
        }

        // SAFETY: `$ty` is a function-pointer type.
        unsafe impl<$($generics)*> FnPtr for $ty {}
    )*};
}

fn_ptr! {
    [] fn();
    [] fn() -> !;
    [] fn(usize);
    [] fn(usize) -> !;
    [] fn(u64);
    [T: ?Sized] for<'a> fn(&'a T);
    [T: ?Sized] for<'a> fn(&'a mut T);
    [] crate::fault::Explainer;
}

/// One function pointer of type `F`, or none, changed and read atomically
/// (see the [module documentation](self)).
pub struct FnSlot<F: FnPtr> {
    /// Null, or an `F` converted by `into_raw`.
    raw: AtomicPtr<()>,
    _fn: PhantomData<F>,
}

impl<F: FnPtr> FnSlot<F> {
    /// An empty slot (usable in statics and in
    /// `[const { FnSlot::new() }; N]`).
    pub const fn new() -> Self {
        Self { raw: AtomicPtr::new(core::ptr::null_mut()), _fn: PhantomData }
    }

    /// The function in the slot, if any (`Acquire`).
    #[inline(always)]
    pub fn load(&self) -> Option<F> {
        // SAFETY: only `into_raw` of an `F` is ever stored (see `to_raw`).
        unsafe { from_raw(self.raw.load(Ordering::Acquire)) }
    }

    /// Whether the slot holds a function (`Acquire`).
    #[inline(always)]
    pub fn is_set(&self) -> bool {
        !self.raw.load(Ordering::Acquire).is_null()
    }

    /// Puts `f` in the slot, replacing what was there (`Release`).
    pub fn store(&self, f: F) {
        self.raw.store(f.into_raw(), Ordering::Release);
    }

    /// Empties the slot (`Release`).
    pub fn clear(&self) {
        self.raw.store(core::ptr::null_mut(), Ordering::Release);
    }

    /// Puts `f` (or nothing, for `None`) in the slot and returns what was
    /// there (`AcqRel`).
    pub fn swap(&self, f: Option<F>) -> Option<F> {
        let old = self.raw.swap(to_raw(f), Ordering::AcqRel);
        // SAFETY: only `into_raw` of an `F` is ever stored (see `to_raw`).
        unsafe { from_raw(old) }
    }

    /// Puts `f` in the slot if it is empty (the first registration wins:
    /// `AcqRel` compare-and-swap, `Acquire` when it fails).
    ///
    /// # Errors
    /// The function already in the slot, which stays.
    pub fn store_if_empty(&self, f: F) -> Result<(), F> {
        match self.raw.compare_exchange(
            core::ptr::null_mut(),
            f.into_raw(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            // SAFETY: only `into_raw` of an `F` is ever stored (see
            // `to_raw`), and the exchange failed, so `current` is not null.
            Err(current) => Err(unsafe { F::from_raw(current) }),
        }
    }
}

impl<F: FnPtr> Default for FnSlot<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: FnPtr> core::fmt::Debug for FnSlot<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.raw.load(Ordering::Acquire) {
            raw if raw.is_null() => f.write_str("FnSlot(empty)"),
            raw => write!(f, "FnSlot({raw:p})"),
        }
    }
}

/// What a slot stores for `f`. The only way values get into a slot's
/// atomic: the slot's methods call this or `into_raw` directly, always on
/// an `F`.
#[inline(always)]
fn to_raw<F: FnPtr>(f: Option<F>) -> *mut () {
    f.map_or(core::ptr::null_mut(), F::into_raw)
}

/// The function stored as `raw`, if any.
///
/// # Safety
/// `raw` is null or was made by `into_raw` of an `F`.
#[inline(always)]
unsafe fn from_raw<F: FnPtr>(raw: *mut ()) -> Option<F> {
    // SAFETY: non-null, so made by `into_raw` of an `F` (the caller's
    // contract).
    (!raw.is_null()).then(|| unsafe { F::from_raw(raw) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr::fn_addr_eq;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Mutex, PoisonError};

    static CALLS: AtomicUsize = AtomicUsize::new(0);
    /// Tests counting calls in CALLS run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn add(n: usize) {
        CALLS.fetch_add(n, Ordering::Relaxed);
    }
    fn add_twice(n: usize) {
        CALLS.fetch_add(2 * n, Ordering::Relaxed);
    }

    #[test]
    fn store_load_clear() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let slot: FnSlot<fn(usize)> = FnSlot::new();
        assert!(slot.load().is_none());
        assert!(!slot.is_set());
        slot.store(add);
        assert!(slot.is_set());
        let before = CALLS.load(Ordering::Relaxed);
        slot.load().expect("stored")(5);
        assert_eq!(CALLS.load(Ordering::Relaxed), before + 5);
        // The last store wins.
        slot.store(add_twice);
        assert!(fn_addr_eq(slot.load().expect("stored"), add_twice as fn(usize)));
        slot.clear();
        assert!(slot.load().is_none());
        assert!(!slot.is_set());
    }

    #[test]
    fn swap_returns_the_previous_function() {
        let slot = FnSlot::<fn(usize)>::default();
        assert!(slot.swap(Some(add)).is_none());
        assert!(fn_addr_eq(slot.swap(Some(add_twice)).expect("add"), add as fn(usize)));
        assert!(fn_addr_eq(slot.swap(None).expect("add_twice"), add_twice as fn(usize)));
        assert!(slot.swap(None).is_none());
    }

    #[test]
    fn the_first_store_if_empty_wins() {
        let slot = FnSlot::<fn(usize)>::new();
        assert_eq!(slot.store_if_empty(add), Ok(()));
        let current = slot.store_if_empty(add_twice).expect_err("taken");
        assert!(fn_addr_eq(current, add as fn(usize)));
        assert!(fn_addr_eq(slot.load().expect("stored"), add as fn(usize)));
        slot.clear();
        assert_eq!(slot.store_if_empty(add_twice), Ok(()));
    }

    #[test]
    fn arrays_of_slots() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        static TABLE: [FnSlot<fn(usize)>; 4] = [const { FnSlot::new() }; 4];
        assert!(TABLE[1].store_if_empty(add).is_ok());
        assert!(TABLE[3].store_if_empty(add_twice).is_ok());
        let set: Vec<usize> = (0..TABLE.len()).filter(|&i| TABLE[i].is_set()).collect();
        assert_eq!(set, [1, 3]);
        let before = CALLS.load(Ordering::Relaxed);
        TABLE.iter().filter_map(FnSlot::load).for_each(|f| f(1));
        assert_eq!(CALLS.load(Ordering::Relaxed), before + 3);
        TABLE.iter().for_each(FnSlot::clear);
        assert!(TABLE.iter().all(|s| s.load().is_none()));
    }

    #[test]
    fn never_returning_functions_load_without_being_called() {
        fn diverge() -> ! {
            panic!("must not be called")
        }
        fn diverge_on(cpu: usize) -> ! {
            panic!("must not be called on {cpu}")
        }
        let slot = FnSlot::<fn() -> !>::new();
        slot.store(diverge);
        assert!(fn_addr_eq(slot.load().expect("stored"), diverge as fn() -> !));
        let slot = FnSlot::<fn(usize) -> !>::new();
        assert!(slot.load().is_none());
        assert!(slot.store_if_empty(diverge_on).is_ok());
        assert!(fn_addr_eq(slot.load().expect("stored"), diverge_on as fn(usize) -> !));
    }

    #[test]
    fn higher_ranked_reference_shapes() {
        fn first(bytes: &[u8]) {
            CALLS.fetch_add(usize::from(bytes[0]), Ordering::Relaxed);
        }
        fn bump(n: &mut u32) {
            *n += 1;
        }
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let tap = FnSlot::<fn(&[u8])>::new();
        tap.store(first);
        let before = CALLS.load(Ordering::Relaxed);
        // Called with a borrow shorter than the slot's life: the function
        // is `for<'a> fn(&'a [u8])`.
        let local = vec![7u8];
        tap.load().expect("stored")(&local);
        assert_eq!(CALLS.load(Ordering::Relaxed), before + 7);

        let handler = FnSlot::<fn(&mut u32)>::new();
        handler.store(bump);
        let mut n = 1;
        handler.load().expect("stored")(&mut n);
        assert_eq!(n, 2);
    }

    #[test]
    fn explainer_shape() {
        use crate::fault::{Explainer, FaultInfo};
        use core::fmt::Write;
        fn say(info: &FaultInfo, out: &mut dyn Write) -> bool {
            writeln!(out, "cr2 {:#x}", info.cr2).is_ok()
        }
        let slot = FnSlot::<Explainer>::new();
        slot.store(say);
        let mut report = String::new();
        assert!(slot.load().expect("stored")(&FaultInfo { cr2: 0x10, ..FaultInfo::default() }, &mut report));
        assert_eq!(report, "cr2 0x10\n");
        assert!(format!("{slot:?}").starts_with("FnSlot(0x"));
        slot.clear();
        assert_eq!(format!("{slot:?}"), "FnSlot(empty)");
    }
}
