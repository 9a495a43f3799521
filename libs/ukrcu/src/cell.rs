//! Published pointers: [`RcuCell`] and what a writer takes out of one,
//! [`Retired`].

use crate::ReadGuard;
use crate::engine::GP;
use alloc::boxed::Box;
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};

/// A pointer to a `T` (or null) that readers load without synchronisation
/// and writers replace with one atomic store (`rcu_assign_pointer` /
/// `rcu_dereference`). The old value comes back as a [`Retired`], freed only
/// after a grace period.
///
/// Writers replacing the value concurrently each get a distinct old value;
/// writers that must see each other's changes (read, then replace) hold a
/// lock of their own, as in Linux.
///
/// ```no_run
/// use ukrcu::RcuCell;
/// static ROUTE: RcuCell<[u8; 4]> = RcuCell::null();
/// // Writer: publish, then free the old value after a grace period.
/// if let Some(old) = ROUTE.replace(Some(Box::new([10, 0, 0, 1]))) {
///     old.free_after_grace_period();
/// }
/// // Reader: no lock, no atomic read-modify-write.
/// let guard = ukrcu::read_lock();
/// if let Some(addr) = ROUTE.load(&guard) {
///     assert_eq!(addr[0], 10);
/// }
/// ```
pub struct RcuCell<T> {
    ptr: AtomicPtr<T>,
    _owns: PhantomData<Box<T>>,
}

// SAFETY: the cell owns a `Box<T>` (moved between threads: `T: Send`) that
// readers on every CPU reference (`T: Sync`).
unsafe impl<T: Send + Sync> Sync for RcuCell<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Send for RcuCell<T> {}

impl<T> RcuCell<T> {
    /// An empty cell.
    pub const fn null() -> Self {
        Self { ptr: AtomicPtr::new(ptr::null_mut()), _owns: PhantomData }
    }

    /// A cell holding `value`.
    pub fn new(value: Box<T>) -> Self {
        Self { ptr: AtomicPtr::new(Box::into_raw(value)), _owns: PhantomData }
    }

    /// The published value, valid while `guard` is (`rcu_dereference`).
    /// A `SeqCst` load: a plain `mov` on x86, and ordered after the
    /// quiescent state that began the section (see the crate docs).
    #[inline]
    pub fn load<'g>(&'g self, _guard: &'g ReadGuard) -> Option<&'g T> {
        let p = self.ptr.load(Ordering::SeqCst);
        // SAFETY: a non-null pointer here came from `Box::into_raw` and is
        // freed only a grace period after it was replaced; `guard` keeps
        // this CPU from passing a quiescent state while the reference lives.
        unsafe { p.as_ref() }
    }

    /// Whether the cell is empty now.
    pub fn is_null(&self) -> bool {
        self.ptr.load(Ordering::SeqCst).is_null()
    }

    /// Exclusive access (no reader can hold a reference).
    pub fn get_mut(&mut self) -> Option<&mut T> {
        // SAFETY: `&mut self`: no other reference to the cell, so none to
        // its value; the pointer is a live box or null.
        unsafe { self.ptr.get_mut().as_mut() }
    }
}

impl<T: Send + 'static> RcuCell<T> {
    /// Publishes `new` (`rcu_assign_pointer`, a `SeqCst` swap: the value's
    /// initialisation is visible before the pointer) and returns the value
    /// it replaces, which readers may still be using.
    pub fn replace(&self, new: Option<Box<T>>) -> Option<Retired<T>> {
        let new = new.map_or(ptr::null_mut(), Box::into_raw);
        let old = self.ptr.swap(new, Ordering::SeqCst);
        NonNull::new(old).map(Retired::new)
    }

    /// Publishes `new` and frees the old value after a grace period.
    pub fn store(&self, new: Option<Box<T>>) {
        if let Some(old) = self.replace(new) {
            old.free_after_grace_period();
        }
    }

    /// Publishes `new` only if the cell still holds `current` (compared by
    /// address); returns the replaced value, or gives `new` back.
    ///
    /// # Errors
    /// `new`, when the cell no longer holds `current`.
    pub fn compare_exchange(
        &self,
        current: Option<&T>,
        new: Option<Box<T>>,
    ) -> Result<Option<Retired<T>>, Option<Box<T>>> {
        let current = current.map_or(ptr::null_mut(), |r| ptr::from_ref(r).cast_mut());
        let raw = new.map_or(ptr::null_mut(), Box::into_raw);
        match self.ptr.compare_exchange(current, raw, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(old) => Ok(NonNull::new(old).map(Retired::new)),
            // SAFETY: `raw` came from `Box::into_raw` above and was not
            // published.
            Err(_) => Err((!raw.is_null()).then(|| unsafe { Box::from_raw(raw) })),
        }
    }
}

impl<T> Drop for RcuCell<T> {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: dropping the cell means no reference to it remains, so
            // no reader holds its value (loads borrow the cell).
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// A value taken out of an [`RcuCell`]: readers that loaded it before may
/// still use it, so it is freed only after a grace period —
/// [`free_after_grace_period`](Self::free_after_grace_period) (deferred, as
/// `call_rcu`), or [`crate::synchronize`] and then dropping it. A `Retired`
/// dropped before a grace period has ended since it was retired is not
/// freed there and then: it defers its own free, so it can never be freed
/// early.
pub struct Retired<T: Send + 'static> {
    ptr: NonNull<T>,
    /// The grace-period snapshot taken when it was retired.
    snap: u64,
}

// SAFETY: a `Retired` owns its box (`T: Send`) and hands out `&T`, which
// readers share (`T: Sync`).
unsafe impl<T: Send + Sync + 'static> Send for Retired<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync + 'static> Sync for Retired<T> {}

/// A raw box pointer handed to a callback.
struct SendPtr<T>(NonNull<T>);
// SAFETY: it stands for a `Box<T>` moved to the callback (`T: Send`).
unsafe impl<T: Send> Send for SendPtr<T> {}

impl<T: Send + 'static> Retired<T> {
    fn new(ptr: NonNull<T>) -> Self {
        Self { ptr, snap: GP.snap() }
    }

    /// Retires a value that was published elsewhere (the list's nodes).
    ///
    /// # Safety
    /// `ptr` came from `Box::into_raw`, is no longer reachable by readers
    /// that start a read-side section from now on (it was unlinked before
    /// this call), and the caller gives up its ownership.
    pub(crate) unsafe fn from_raw(ptr: NonNull<T>) -> Self {
        Self::new(ptr)
    }

    /// Whether a full grace period has ended since it was retired.
    pub fn grace_period_done(&self) -> bool {
        GP.done(self.snap)
    }

    /// Frees it after a grace period, from the grace-period thread.
    pub fn free_after_grace_period(self) {
        let ptr = SendPtr(self.ptr);
        core::mem::forget(self);
        crate::call_rcu(move || {
            let ptr = ptr;
            // SAFETY: the box was retired from its cell a grace period ago:
            // no reader holds it, and this is its only owner.
            drop(unsafe { Box::from_raw(ptr.0.as_ptr()) });
        });
    }

    /// The value as a box, once a grace period has ended since it was
    /// retired (after [`crate::synchronize`]).
    ///
    /// # Errors
    /// `self`, while readers may still hold it.
    pub fn into_box(self) -> Result<Box<T>, Self> {
        if !self.grace_period_done() {
            return Err(self);
        }
        let ptr = self.ptr;
        core::mem::forget(self);
        // SAFETY: a grace period ended since it was retired: no reader
        // holds it; this was its only owner.
        Ok(unsafe { Box::from_raw(ptr.as_ptr()) })
    }
}

impl<T: Send + 'static> Deref for Retired<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the box lives until this `Retired` frees it.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Send + 'static> Drop for Retired<T> {
    fn drop(&mut self) {
        let ptr = self.ptr;
        if GP.done(self.snap) {
            // SAFETY: as in `into_box`.
            drop(unsafe { Box::from_raw(ptr.as_ptr()) });
        } else {
            // Too early: free it after a grace period instead.
            let ptr = SendPtr(ptr);
            crate::call_rcu(move || {
                let ptr = ptr;
                // SAFETY: as in `free_after_grace_period`.
                drop(unsafe { Box::from_raw(ptr.0.as_ptr()) });
            });
        }
    }
}
