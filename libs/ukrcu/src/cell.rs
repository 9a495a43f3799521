//! Published pointers: [`RcuCell`] and what a writer takes out of one,
//! [`Retired`].

use crate::ReadGuard;
use crate::flavor::{self, Link, Owned};
use alloc::boxed::Box;
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr;

/// A pointer to a `T` (or null) that readers load without synchronisation
/// and writers replace with one atomic store (`rcu_assign_pointer` /
/// `rcu_dereference`). The old value comes back as a [`Retired`], freed only
/// after a grace period.
///
/// Writers replacing the value concurrently each get a distinct old value;
/// writers that must see each other's changes (read, then replace) hold a
/// lock of their own, as in Linux.
///
/// Under `ukrcu.flavor = "qsbr"` the cell holds the published `Box<T>`
/// as is; under `refcount` the value moves into an object with its count
/// (one allocation more per publication), and [`load`](Self::load) counts
/// a reference, given back when the guard drops.
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
    link: Link<T>,
    _owns: PhantomData<Box<T>>,
}

// SAFETY: the cell owns a `T` (moved between threads: `T: Send`) that
// readers on every CPU reference (`T: Sync`).
unsafe impl<T: Send + Sync> Sync for RcuCell<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Send for RcuCell<T> {}

impl<T> RcuCell<T> {
    /// An empty cell.
    ///
    /// ```no_run
    /// static EMPTY: ukrcu::RcuCell<u8> = ukrcu::RcuCell::null();
    /// assert!(EMPTY.is_null());
    /// ```
    pub const fn null() -> Self {
        Self { link: Link::null(), _owns: PhantomData }
    }

    /// A cell holding `value`.
    ///
    /// ```no_run
    /// let cell = ukrcu::RcuCell::new(Box::new(5));
    /// assert_eq!(cell.load(&ukrcu::read_lock()), Some(&5));
    /// ```
    pub fn new(value: Box<T>) -> Self {
        Self { link: Link::new(Some(Owned::from_box(value))), _owns: PhantomData }
    }

    /// The published value, valid while `guard` is (`rcu_dereference`).
    /// `qsbr`: one `SeqCst` load (a plain `mov` on x86), ordered after the
    /// quiescent state that began the section (see [`crate::gp`]).
    /// `refcount`: one atomic add on the cell's word, which counts a
    /// reference ([`crate::split`]) that the guard gives back.
    #[inline]
    pub fn load<'g>(&'g self, guard: &'g ReadGuard) -> Option<&'g T> {
        self.link.load(&guard.section)
    }

    /// Whether the cell is empty now.
    ///
    /// ```no_run
    /// let cell = ukrcu::RcuCell::<u8>::null();
    /// assert!(cell.is_null());
    /// ```
    pub fn is_null(&self) -> bool {
        self.link.is_null()
    }

    /// Exclusive access (no reader can hold a reference).
    ///
    /// ```no_run
    /// let mut cell = ukrcu::RcuCell::new(Box::new(1));
    /// *cell.get_mut().unwrap() += 1;
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.link.get_mut()
    }
}

impl<T: Send + 'static> RcuCell<T> {
    /// Publishes `new` (`rcu_assign_pointer`, a `SeqCst` swap: the value's
    /// initialisation is visible before the pointer) and returns the value
    /// it replaces, which readers may still be using.
    ///
    /// ```no_run
    /// let cell = ukrcu::RcuCell::new(Box::new(1));
    /// let old = cell.replace(Some(Box::new(2))).unwrap();
    /// assert_eq!(*old, 1);
    /// old.free_after_grace_period();
    /// ```
    pub fn replace(&self, new: Option<Box<T>>) -> Option<Retired<T>> {
        self.link.swap(new.map(Owned::from_box)).map(Retired::from_owned)
    }

    /// Publishes `new` and frees the old value after a grace period (`qsbr`)
    /// or when its last reader lets go (`refcount`).
    ///
    /// ```no_run
    /// let cell = ukrcu::RcuCell::null();
    /// cell.store(Some(Box::new("v1")));
    /// cell.store(Some(Box::new("v2")));
    /// ```
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
    ///
    /// ```no_run
    /// let cell = ukrcu::RcuCell::new(Box::new(1));
    /// let guard = ukrcu::read_lock();
    /// let seen = cell.load(&guard);
    /// let old = cell.compare_exchange(seen, Some(Box::new(2))).ok().flatten();
    /// drop(guard);
    /// old.unwrap().free_after_grace_period();
    /// ```
    pub fn compare_exchange(
        &self,
        current: Option<&T>,
        new: Option<Box<T>>,
    ) -> Result<Option<Retired<T>>, Option<Box<T>>> {
        let current = current.map_or(ptr::null(), ptr::from_ref);
        match self.link.compare_exchange(current, new.map(Owned::from_box)) {
            Ok(old) => Ok(old.map(Retired::from_owned)),
            Err(new) => Err(new.map(Owned::into_unpublished_box)),
        }
    }
}

impl<T> Drop for RcuCell<T> {
    fn drop(&mut self) {
        if let Some(owned) = self.link.take_mut() {
            // SAFETY: dropping the cell means no reference to it remains, so
            // no reader holds its value (loads borrow the cell); this was
            // the cell's own reference.
            drop(unsafe { owned.release() });
        }
    }
}

/// A value taken out of an [`RcuCell`] or an [`crate::RcuList`]: readers
/// that loaded it before may still use it, so it is not freed at once.
///
/// * `qsbr`: freed only after a grace period —
///   [`free_after_grace_period`](Self::free_after_grace_period) (deferred,
///   as `call_rcu`), or [`crate::synchronize`] and then dropping it. One
///   dropped before a grace period has ended since it was retired defers
///   its own free, so it can never be freed early.
/// * `refcount`: it holds a counted reference; dropping it (or
///   `free_after_grace_period`) gives that up, and the object is freed by
///   whoever drops the last reference — here, or the last reader.
pub struct Retired<T: Send + 'static> {
    inner: flavor::Retired<T>,
}

// SAFETY: a `Retired` owns (a reference to) its object (`T: Send`) and
// hands out `&T`, which readers share (`T: Sync`).
unsafe impl<T: Send + Sync + 'static> Send for Retired<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync + 'static> Sync for Retired<T> {}

impl<T: Send + 'static> Retired<T> {
    /// Just unlinked (the `qsbr` snapshot follows the unlinking store).
    pub(crate) fn from_owned(owned: Owned<T>) -> Self {
        Self { inner: flavor::Retired::new(owned) }
    }

    /// Whether it can be freed now: a full grace period has ended since it
    /// was retired (`qsbr`), or no reader holds it any more (`refcount`).
    ///
    /// ```no_run
    /// let cell = ukrcu::RcuCell::new(Box::new(1));
    /// let old = cell.replace(None).unwrap();
    /// ukrcu::synchronize();
    /// assert!(old.grace_period_done());
    /// ```
    pub fn grace_period_done(&self) -> bool {
        self.inner.done()
    }

    /// Frees it without blocking: after a grace period, from the
    /// grace-period thread (`qsbr`), or when its last reader lets go
    /// (`refcount`).
    ///
    /// ```no_run
    /// let cell = ukrcu::RcuCell::new(Box::new([0u8; 64]));
    /// cell.replace(None).unwrap().free_after_grace_period();
    /// ```
    pub fn free_after_grace_period(self) {
        self.inner.free_later();
    }

    /// The value as a box, once no reader can hold it any more (after
    /// [`crate::synchronize`] under `qsbr`; once its last reader let go
    /// under `refcount`).
    ///
    /// # Errors
    /// `self`, while readers may still hold it.
    ///
    /// ```no_run
    /// let cell = ukrcu::RcuCell::new(Box::new(String::from("old")));
    /// let old = cell.replace(None).unwrap();
    /// ukrcu::synchronize();
    /// let s: Box<String> = old.into_box().ok().unwrap();
    /// assert_eq!(*s, "old");
    /// ```
    pub fn into_box(self) -> Result<Box<T>, Self> {
        self.inner.into_box().map_err(|inner| Self { inner })
    }
}

impl<T: Send + 'static> Deref for Retired<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.inner.value()
    }
}
