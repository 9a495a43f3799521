//! Split reference counts: the `refcount` flavour's answer to the race
//! between loading a pointer and counting a reference on what it points
//! to. Independent of the kernel, so that `tests/loom.rs` runs this very
//! code.
//!
//! # The race
//!
//! A reader that loads a pointer and then increments a count inside the
//! object leaves a window between the two: a deleter may unlink the object
//! and drop the last reference in it, and the reader's increment lands in
//! freed memory.
//!
//! # The answer: count in the link, then in the object
//!
//! Every link (an [`RcuCell`](crate::RcuCell), a list's `next`) is one
//! 64-bit word holding the object's address (48 bits, sign-extended as
//! x86-64 canonical addresses are) and an **external count** (the top 16
//! bits). A reader takes its reference with one `fetch_add` on the word:
//! it learns the address and counts the reference in one atomic
//! instruction, so there is no window. The object itself has an
//! **internal count** ([`Counted::refs`]): the references of the link that
//! holds it (one) and of everybody who holds it outside any link.
//!
//! * **Release** ([`release`]): a reader gives its reference back to the
//!   link when the link still holds the object and its external count is
//!   not zero (a compare-and-swap decrement); otherwise to the object
//!   (`fetch_sub` of the internal count), and frees it when that was the
//!   last.
//! * **Unlinking** ([`Link::swap`]): the writer first adds a large bias
//!   ([`BIAS`]) to the internal count, then swaps the word (the old external
//!   count comes with it), then adds the external count and removes the
//!   bias. Readers that see the new word release into the internal count,
//!   possibly before the writer adds the external count; the bias keeps it
//!   from reaching zero meanwhile. The link's own reference goes to the
//!   writer (a [`crate::Retired`], or another link).
//! * **Overflow** ([`Link::load`]): a reader that finds the external count
//!   at [`BATCH`] moves it into the internal count (added first, then the
//!   word's count cleared by compare-and-swap, then subtracted again if that
//!   failed): counting too high for a moment is harmless, too low is not.
//!   So up to `65535 - BATCH` loads may race on one link.
//!
//! Nobody touches an object's memory without holding a counted reference:
//! readers count before they dereference, and writers own the link's. The
//! object is freed exactly once, by whoever drops the count to zero.
//! `tests/loom_split.rs` checks this under every interleaving (up to a
//! preemption bound) of readers, writers and releasing owners, with a
//! negative control that loads and then counts, which loom must catch.
//!
//! Everything is `SeqCst`: readers' counting instructions are full
//! barriers on x86 anyway.

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

extern crate alloc;
use alloc::boxed::Box;
use core::marker::PhantomData;
use core::ptr::NonNull;

/// Bits of the address in a link word.
const ADDR_BITS: u32 = 48;
/// One external reference.
const ONE: u64 = 1 << ADDR_BITS;
/// The address bits.
const ADDR_MASK: u64 = ONE - 1;
/// External count at which a reader moves it into the object.
#[cfg(not(loom))]
pub const BATCH: u64 = 1 << 14;
/// External count at which a reader moves it into the object (small, so
/// that loom explores it).
#[cfg(loom)]
pub const BATCH: u64 = 2;
/// Added to the internal count while a writer moves the external count in.
pub const BIAS: usize = 1 << 32;

/// An object behind a link: the internal count, then the value.
#[repr(C)]
pub struct Counted<T> {
    /// The internal count: the references of the link that holds it, of
    /// [`crate::Retired`] values and of other links, and the external counts
    /// moved in.
    refs: AtomicUsize,
    /// The value.
    pub value: T,
}

impl<T> Counted<T> {
    /// A new object with one reference: the one its first link (or owner)
    /// takes.
    pub fn new(value: T) -> Self {
        Self { refs: AtomicUsize::new(1), value }
    }

    /// The internal count now (for tests and the exclusivity check).
    pub fn refs(&self) -> usize {
        self.refs.load(Ordering::SeqCst)
    }
}

/// The address in a link word.
fn addr(word: u64) -> usize {
    // Sign-extend bit 47: canonical addresses, low or high half.
    (((word << (64 - ADDR_BITS)) as i64) >> (64 - ADDR_BITS)) as usize
}

/// The external count in a link word.
fn count(word: u64) -> u64 {
    word >> ADDR_BITS
}

/// A link word: `ptr` with an external count of zero.
fn pack<T>(ptr: Option<NonNull<Counted<T>>>) -> u64 {
    ptr.map_or(0, |p| p.as_ptr() as usize as u64 & ADDR_MASK)
}

/// A link: the address of a [`Counted<T>`] (or null) and its external
/// count, in one word.
pub struct Link<T> {
    word: AtomicU64,
    /// Points to a `Counted<T>`; `Send` and `Sync` as an `AtomicPtr` is
    /// (what the pointee allows is the containing type's business).
    _points_to: PhantomData<core::sync::atomic::AtomicPtr<Counted<T>>>,
}

impl<T> Link<T> {
    /// A null link.
    #[cfg(not(loom))]
    pub const fn null() -> Self {
        Self { word: AtomicU64::new(0), _points_to: PhantomData }
    }

    /// A link holding `ptr`, which brings its reference along (a counted
    /// reference of the caller's, now the link's).
    pub fn new(ptr: Option<NonNull<Counted<T>>>) -> Self {
        Self { word: AtomicU64::new(pack(ptr)), _points_to: PhantomData }
    }

    /// The object now, without counting a reference: for writers that
    /// exclude the link's other writers (a list's, under its lock), and for
    /// comparisons.
    pub fn peek(&self) -> Option<NonNull<Counted<T>>> {
        NonNull::new(addr(self.word.load(Ordering::SeqCst)) as *mut Counted<T>)
    }

    /// Takes a reference on the object the link holds: the address and the
    /// count in one atomic instruction. Release it with [`release`],
    /// passing this link.
    pub fn load(&self) -> Option<NonNull<Counted<T>>> {
        // Do not count on a null word (a plain load first): the common
        // empty case writes nothing.
        if addr(self.word.load(Ordering::SeqCst)) == 0 {
            return None;
        }
        let word = self.word.fetch_add(ONE, Ordering::SeqCst);
        // Null by now: our count landed on a null word, where it means
        // nothing (a later swap ignores it).
        let p = NonNull::new(addr(word) as *mut Counted<T>)?;
        if count(word) + 1 >= BATCH {
            // SAFETY: we hold a counted reference on `p`.
            unsafe { self.move_count_in(p) };
        }
        Some(p)
    }

    /// Moves the external count into the object (see the module doc,
    /// "Overflow").
    ///
    /// # Safety
    /// The caller holds a counted reference on `p`.
    unsafe fn move_count_in(&self, p: NonNull<Counted<T>>) {
        // SAFETY: the caller's reference keeps `p` alive.
        let refs = unsafe { &p.as_ref().refs };
        let word = self.word.load(Ordering::SeqCst);
        if addr(word) != p.as_ptr() as usize || count(word) < BATCH {
            return;
        }
        let n = count(word) as usize;
        refs.fetch_add(n, Ordering::SeqCst);
        if self.word.compare_exchange(word, word & ADDR_MASK, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            let before = refs.fetch_sub(n, Ordering::SeqCst);
            debug_assert!(before > n, "ukrcu: a split count reached zero under a counted reference");
        }
    }

    /// Replaces the object with `new` (which brings its reference along,
    /// as in [`Link::new`]) and returns the old one with the link's
    /// reference, now the caller's; the old word's external count has
    /// moved into the old object. Concurrent writers each get a distinct
    /// old object.
    pub fn swap(&self, new: Option<NonNull<Counted<T>>>) -> Option<NonNull<Counted<T>>> {
        match self.exchange(None, new) {
            Ok(old) => old,
            Err(_) => unreachable!("an unconditional swap cannot fail"),
        }
    }

    /// [`Link::swap`] only while the link holds `current`; `new` comes back
    /// when it does not.
    ///
    /// # Errors
    /// `new`, when the link does not hold `current`.
    #[allow(clippy::type_complexity)]
    pub fn compare_exchange(
        &self,
        current: Option<NonNull<Counted<T>>>,
        new: Option<NonNull<Counted<T>>>,
    ) -> Result<Option<NonNull<Counted<T>>>, Option<NonNull<Counted<T>>>> {
        self.exchange(Some(current), new)
    }

    /// The swap, unconditional (`expected` `None`) or not. To touch the old
    /// object at all the writer first counts a reference on it as a reader
    /// does (another writer may unlink and free it meanwhile); then it adds
    /// [`BIAS`], swaps the word if it still holds that object, and moves
    /// the word's external count (its own reference included) in.
    #[allow(clippy::type_complexity)]
    fn exchange(
        &self,
        expected: Option<Option<NonNull<Counted<T>>>>,
        new: Option<NonNull<Counted<T>>>,
    ) -> Result<Option<NonNull<Counted<T>>>, Option<NonNull<Counted<T>>>> {
        let new_word = pack(new);
        loop {
            let Some(old) = self.load() else {
                // Null (counts on a null word mean nothing).
                if expected.is_some_and(|e| e.is_some()) {
                    return Err(new);
                }
                let word = self.word.load(Ordering::SeqCst);
                if addr(word) == 0
                    && self.word.compare_exchange(word, new_word, Ordering::SeqCst, Ordering::SeqCst).is_ok()
                {
                    return Ok(None);
                }
                continue;
            };
            // SAFETY: the reference just counted keeps `old` alive.
            let refs = unsafe { &old.as_ref().refs };
            if expected.is_some_and(|e| e != Some(old)) {
                // SAFETY: counted through this link above.
                if unsafe { release(&self.word, count_of(old)) } {
                    // SAFETY: the last reference: nobody else can reach it.
                    drop(unsafe { Box::from_raw(old.as_ptr()) });
                }
                return Err(new);
            }
            refs.fetch_add(BIAS, Ordering::SeqCst);
            let mut word = self.word.load(Ordering::SeqCst);
            while addr(word) == old.as_ptr() as usize {
                match self.word.compare_exchange_weak(word, new_word, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => {
                        // The external count (ours among it) moves in, the
                        // bias goes; then our own reader's reference goes,
                        // which cannot be the last: the link's is ours now.
                        refs.fetch_add((count(word) as usize).wrapping_sub(BIAS), Ordering::SeqCst);
                        let before = refs.fetch_sub(1, Ordering::SeqCst);
                        debug_assert!(before > 1, "ukrcu: a swapped-out object had no reference left");
                        return Ok(Some(old));
                    }
                    Err(now) => word = now,
                }
            }
            // Another writer took `old` out first: undo, and retry on what
            // the link holds now.
            refs.fetch_sub(BIAS, Ordering::SeqCst);
            // SAFETY: counted through this link above.
            if unsafe { release(&self.word, count_of(old)) } {
                // SAFETY: the last reference (the other writer dropped
                // the link's): nobody else can reach it.
                drop(unsafe { Box::from_raw(old.as_ptr()) });
            }
            if expected.is_some() {
                return Err(new);
            }
        }
    }

    /// The object, with the link's reference, leaving the link null; the
    /// caller has the link to itself (no reader can hold a reference through
    /// it).
    pub fn take_mut(&mut self) -> Option<NonNull<Counted<T>>> {
        let word = self.word.swap(0, Ordering::SeqCst);
        debug_assert!(addr(word) == 0 || count(word) == 0, "ukrcu: a reader's reference outlived its link");
        NonNull::new(addr(word) as *mut Counted<T>)
    }
}

/// Takes one more reference on `p` (a writer linking it a second time).
///
/// # Safety
/// The caller holds a reference on `p`.
pub unsafe fn acquire<T>(p: NonNull<Counted<T>>) {
    // SAFETY: the caller's reference keeps it alive.
    unsafe { p.as_ref() }.refs.fetch_add(1, Ordering::SeqCst);
}

/// Drops a reference held outside any link (a writer's, a `Retired`'s).
/// True when it was the last: the caller frees `p`.
///
/// # Safety
/// The caller holds that reference, and does not use it afterwards.
pub unsafe fn drop_ref<T>(p: NonNull<Counted<T>>) -> bool {
    // SAFETY: the reference keeps it alive until this decrement.
    unsafe { p.as_ref() }.refs.fetch_sub(1, Ordering::SeqCst) == 1
}

/// Gives back a reference that [`Link::load`] took on `p` through `link`:
/// to the link when it still holds `p` with a count to decrement, else to
/// the object. True when it was the last: the caller frees `p`.
///
/// Type-erased (the count is the first field of every [`Counted`]), so
/// that a read guard can keep its references in one list.
///
/// # Safety
/// The reference was taken through `link` (which is still allocated) and
/// is not used afterwards; `p` points to a `Counted<_>`.
pub unsafe fn release(link: &AtomicU64, p: NonNull<AtomicUsize>) -> bool {
    let mut word = link.load(Ordering::SeqCst);
    while addr(word) == p.as_ptr() as usize && count(word) > 0 {
        match link.compare_exchange_weak(word, word - ONE, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return false,
            Err(now) => word = now,
        }
    }
    // SAFETY: the caller's reference keeps it alive until this decrement.
    unsafe { p.as_ref() }.fetch_sub(1, Ordering::SeqCst) == 1
}

impl<T> Link<T> {
    /// The word, for [`release`].
    pub fn word(&self) -> &AtomicU64 {
        &self.word
    }
}

/// The internal count of `p`, type-erased, for [`release`].
pub fn count_of<T>(p: NonNull<Counted<T>>) -> NonNull<AtomicUsize> {
    p.cast()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::boxed::Box;

    fn alloc(v: u32) -> NonNull<Counted<u32>> {
        NonNull::from(Box::leak(Box::new(Counted::new(v))))
    }

    #[test]
    fn words_round_trip_low_and_high_half_addresses() {
        for a in [0x1000usize, 0x0000_7fff_ffff_f000, 0xffff_8000_0000_1000, 0xffff_ffff_ffff_f000] {
            let w = (a as u64 & ADDR_MASK) | (5 * ONE);
            assert_eq!(addr(w), a);
            assert_eq!(count(w), 5);
        }
    }

    #[test]
    fn readers_give_references_back_to_the_link_while_it_holds_the_object() {
        let p = alloc(7);
        let link = Link::new(Some(p));
        let a = link.load().unwrap();
        let b = link.load().unwrap();
        assert_eq!(count(link.word.load(Ordering::SeqCst)), 2);
        // SAFETY: references taken through `link`.
        unsafe {
            assert!(!release(link.word(), count_of(a)));
            assert!(!release(link.word(), count_of(b)));
        }
        assert_eq!(count(link.word.load(Ordering::SeqCst)), 0);
        // SAFETY: the link's reference keeps `p` alive.
        assert_eq!(unsafe { p.as_ref() }.refs(), 1, "only the link's own reference");
        let mut link = link;
        let p = link.take_mut().unwrap();
        // SAFETY: the link's reference, now ours.
        assert!(unsafe { drop_ref(p) });
        // SAFETY: that was the last reference.
        drop(unsafe { Box::from_raw(p.as_ptr()) });
    }

    #[test]
    fn a_swap_moves_the_external_count_and_the_last_holder_frees() {
        let p = alloc(1);
        let q = alloc(2);
        let link = Link::new(Some(p));
        let r = link.load().unwrap();
        let old = link.swap(Some(q)).unwrap();
        assert_eq!(old, p);
        // The link's reference (now ours) and the reader's.
        // SAFETY: ours and the reader's keep `p` alive.
        assert_eq!(unsafe { p.as_ref() }.refs(), 2);
        // SAFETY: ours, then the reader's (the link holds `q` now, so it
        // goes to the object).
        unsafe {
            assert!(!drop_ref(old));
            assert!(release(link.word(), count_of(r)), "the reader's was the last");
            drop(Box::from_raw(p.as_ptr()));
        }
        let mut link = link;
        let q = link.take_mut().unwrap();
        // SAFETY: the link's reference, now ours, and the last.
        unsafe {
            assert!(drop_ref(q));
            drop(Box::from_raw(q.as_ptr()));
        }
    }

    #[test]
    fn many_loads_batch_the_external_count_into_the_object() {
        let p = alloc(3);
        let link = Link::new(Some(p));
        let n = BATCH as usize + 10;
        let refs: Vec<_> = (0..n).map(|_| link.load().unwrap()).collect();
        let word = link.word.load(Ordering::SeqCst);
        assert!(count(word) < BATCH, "moved into the object: {}", count(word));
        // SAFETY: the link's reference keeps `p` alive.
        assert_eq!(count(word) as usize + unsafe { p.as_ref() }.refs(), n + 1);
        let mut last = 0;
        for r in refs {
            // SAFETY: taken through `link`.
            last += usize::from(unsafe { release(link.word(), count_of(r)) });
        }
        assert_eq!(last, 0, "the link still holds it");
        // SAFETY: the link's reference keeps `p` alive.
        assert_eq!(unsafe { p.as_ref() }.refs() + count(link.word.load(Ordering::SeqCst)) as usize, 1);
        let mut link = link;
        let p = link.take_mut().unwrap();
        // SAFETY: the link's reference, now ours, and the last.
        unsafe {
            assert!(drop_ref(p));
            drop(Box::from_raw(p.as_ptr()));
        }
    }
}
