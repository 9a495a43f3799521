//! The `refcount` flavour (`ukrcu.flavor = "refcount"`): reference-counted
//! search and delete. A reader counts a reference on every object it loads
//! (one atomic add on the link's word: [`crate::split`]) and gives them all
//! back when its section ends; a writer unlinks; an object is freed when
//! its last reference goes — by the writer, a `Retired`, or the last
//! reader — with no grace period. Readers may be preempted, migrate and
//! sleep.
//!
//! [`synchronize`](crate::synchronize) and [`call_rcu`](crate::call_rcu)
//! keep their meaning through a second mechanism that needs no scheduler
//! help, as Linux's SRCU: each section adds one to a per-CPU *lock* count
//! of the current index (0 or 1) when it begins and one to a per-CPU
//! *unlock* count of the same index when it ends (on whatever CPU it is on
//! then). A grace period ([`Readers`]) waits until the sums of the
//! inactive index match, flips the index, and waits until the sums of the
//! old one match: every section that began before it has then ended.
//! Sums are read unlocks first, then a full barrier, then locks, so a
//! section counted in neither began after the flip and sees every update
//! made before the grace period started.
//!
//! The types here have the same inherent API as those of
//! [`qsbr`](crate::qsbr); [`crate::flavor`] picks one set.

use crate::split::{self, Counted};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use core::time::Duration;
use ukplat::cpu;

/// The flavour's name in the configuration.
pub(crate) const NAME: &str = "refcount";

/// TEST ONLY: readers count in two steps (`ukrcu.broken_refcount`).
const BROKEN: bool = ukconfig::ukrcu::BROKEN_REFCOUNT;

/// Links own a counted reference to what they point to: a removed list
/// node keeps its successor alive until it is freed itself.
pub(crate) const LINKS_OWN: bool = true;

// ---------------------------------------------------------------------------
// Read-side sections

/// The index new sections count under (its low bit).
static INDEX: AtomicUsize = AtomicUsize::new(0);

/// One CPU's section counts, per index.
struct Counts {
    lock: [AtomicU64; 2],
    unlock: [AtomicU64; 2],
}

ukplat::per_cpu! {
    /// Sections begun and ended on each CPU, per index.
    static COUNTS: Counts = Counts {
        lock: [AtomicU64::new(0), AtomicU64::new(0)],
        unlock: [AtomicU64::new(0), AtomicU64::new(0)],
    };
}

/// A reference a section holds: the link it was counted through, the
/// object's count, and how to free the object when it was the last.
#[derive(Clone, Copy)]
struct HeldRef {
    link: NonNull<AtomicU64>,
    refs: NonNull<AtomicUsize>,
    free: unsafe fn(NonNull<AtomicUsize>),
}

/// References kept inline before the list spills to the heap.
const INLINE: usize = 4;

/// What a read guard keeps: its index, and the references it holds.
pub(crate) struct Section {
    idx: usize,
    len: Cell<usize>,
    inline: [Cell<Option<HeldRef>>; INLINE],
    spill: RefCell<Vec<HeldRef>>,
    /// Whether the section counts in this thread's depth (debug builds).
    #[cfg(debug_assertions)]
    counted: bool,
}

impl Section {
    /// Opens a section: one atomic add on this CPU's lock count. Nothing
    /// else: preemption stays enabled (a migration between reading the
    /// CPU and adding is harmless, as only sums matter).
    #[inline]
    pub(crate) fn begin() -> Self {
        let idx = INDEX.load(Ordering::SeqCst) & 1;
        COUNTS.get().lock[idx].fetch_add(1, Ordering::SeqCst);
        Self {
            idx,
            len: Cell::new(0),
            inline: [const { Cell::new(None) }; INLINE],
            spill: RefCell::new(Vec::new()),
            #[cfg(debug_assertions)]
            counted: depth::enter(),
        }
    }

    /// Records a reference to give back when the section ends.
    #[inline]
    fn hold(&self, held: HeldRef) {
        let n = self.len.get();
        match self.inline.get(n) {
            Some(slot) => slot.set(Some(held)),
            None => self.spill.borrow_mut().push(held),
        }
        self.len.set(n + 1);
    }

    /// Closes it: gives back every reference, newest first (a list node's
    /// `next` link lives as long as the node, which was loaded before),
    /// freeing each object whose last one it was; then one add on this
    /// CPU's unlock count.
    #[inline]
    pub(crate) fn end(&mut self) {
        let n = self.len.replace(0);
        if n > INLINE {
            let spill = core::mem::take(self.spill.get_mut());
            spill.into_iter().rev().for_each(give_back);
        }
        for slot in self.inline[..n.min(INLINE)].iter().rev() {
            if let Some(held) = slot.take() {
                give_back(held);
            }
        }
        COUNTS.get().unlock[self.idx].fetch_add(1, Ordering::SeqCst);
        #[cfg(debug_assertions)]
        depth::leave(self.counted);
    }
}

/// Gives one reference back.
fn give_back(held: HeldRef) {
    // SAFETY: counted through `link` by this section, which ends now; the
    // link is alive (the cell outlives the guard; a node's `next` lives as
    // long as the node, whose own reference is given back after this one).
    unsafe {
        if split::release(held.link.as_ref(), held.refs) {
            (held.free)(held.refs);
        }
    }
}

/// Frees a `Counted<T>` whose last reference went.
///
/// # Safety
/// `refs` is the count of a `Counted<T>` from `Box::leak`, with no
/// reference left.
unsafe fn free<T>(refs: NonNull<AtomicUsize>) {
    // SAFETY: as the caller promises.
    drop(unsafe { Box::from_raw(refs.cast::<Counted<T>>().as_ptr()) });
}

/// Sections open in this thread (debug builds; in release builds and in
/// interrupt handlers, not counted: 0).
pub(crate) fn depth() -> u32 {
    #[cfg(debug_assertions)]
    {
        depth::get()
    }
    #[cfg(not(debug_assertions))]
    0
}

#[cfg(debug_assertions)]
mod depth {
    //! Sections open per thread: readers here may migrate, so a per-CPU
    //! count would not do.
    use core::cell::Cell;

    uksched::thread_local! {
        static DEPTH: Cell<u32> = Cell::new(0);
    }

    /// Whether this context has a thread to count in.
    fn countable() -> bool {
        uksched::try_current_id().is_some() && !ukplat::cpu::in_interrupt()
    }

    pub(super) fn enter() -> bool {
        let counted = countable();
        if counted {
            DEPTH.with(|d| d.set(d.get() + 1));
        }
        counted
    }

    pub(super) fn leave(counted: bool) {
        if counted {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }

    pub(super) fn get() -> u32 {
        if countable() { DEPTH.with(Cell::get) } else { 0 }
    }
}

/// Init: nothing to register (readers may block here).
pub(crate) fn init() {}

// ---------------------------------------------------------------------------
// Links and the objects behind them

/// A published pointer to a `Counted<T>`, with its external count.
pub(crate) struct Link<T> {
    inner: split::Link<T>,
}

/// One counted reference on an object (a link's, a writer's). No `Drop`:
/// what gives it up is explicit, as in the `qsbr` flavour.
pub(crate) struct Owned<T>(NonNull<Counted<T>>);

/// The value inside `p`.
///
/// # Safety
/// `p` is alive for `'a`.
unsafe fn value<'a, T>(p: NonNull<Counted<T>>) -> &'a T {
    // SAFETY: as the caller promises.
    unsafe { &(*p.as_ptr()).value }
}

impl<T> Owned<T> {
    /// A new object with one reference: this one.
    pub(crate) fn new(value: T) -> Self {
        Self(NonNull::from(Box::leak(Box::new(Counted::new(value)))))
    }

    /// The value of `b`, moved into a new counted object (the API takes
    /// the caller's box, as the `qsbr` flavour publishes it as is).
    #[allow(clippy::boxed_local)]
    pub(crate) fn from_box(b: Box<T>) -> Self {
        Self::new(*b)
    }

    /// The value's address.
    pub(crate) fn as_ptr(&self) -> *const T {
        // SAFETY: this reference keeps it alive.
        unsafe { value(self.0) }
    }

    /// One more reference on the same object.
    ///
    /// # Safety
    /// None beyond holding this one (kept for symmetry with `qsbr`).
    pub(crate) unsafe fn dup(&self) -> Self {
        // SAFETY: this reference keeps it alive.
        unsafe { split::acquire(self.0) };
        Self(self.0)
    }

    /// Drops the handle without giving the reference up (a link took it
    /// over).
    pub(crate) fn forget(self) {}

    /// Gives the reference up; the object, when that was the last one.
    ///
    /// # Safety
    /// The reference is not used afterwards.
    pub(crate) unsafe fn release(self) -> Option<Exclusive<T>> {
        // SAFETY: ours to give up.
        if unsafe { split::drop_ref(self.0) } {
            // SAFETY: the last reference: nobody else can reach it.
            Some(Exclusive(unsafe { Box::from_raw(self.0.as_ptr()) }))
        } else {
            None
        }
    }

    /// The box of an object that was never published.
    pub(crate) fn into_unpublished_box(self) -> Box<T> {
        // SAFETY: never published: this is its only reference.
        Box::new(unsafe { Box::from_raw(self.0.as_ptr()) }.value)
    }
}

/// An object nobody else can reach; dropping it frees it.
pub(crate) struct Exclusive<T>(Box<Counted<T>>);

impl<T> Exclusive<T> {
    /// As a box.
    pub(crate) fn into_box(self) -> Box<T> {
        Box::new(self.0.value)
    }
}

impl<T> core::ops::Deref for Exclusive<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T> core::ops::DerefMut for Exclusive<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0.value
    }
}

impl<T> Link<T> {
    /// Null.
    pub(crate) const fn null() -> Self {
        Self { inner: split::Link::null() }
    }

    /// Holding `owner`'s object, whose reference it takes.
    pub(crate) fn new(owner: Option<Owned<T>>) -> Self {
        Self { inner: split::Link::new(owner.map(|o| o.0)) }
    }

    /// The object, for a reader: a reference counted in the link's word,
    /// held by `section` until it ends.
    #[inline]
    pub(crate) fn load<'g>(&'g self, section: &'g Section) -> Option<&'g T> {
        let p = if BROKEN {
            // TEST ONLY (`ukrcu.broken_refcount`): load the address, pause,
            // then count on the object — the race split counts close.
            let p = self.inner.peek()?;
            uktime::busy_wait(Duration::from_micros(20));
            // SAFETY: none: this is the deliberate bug.
            unsafe { split::acquire(p) };
            p
        } else {
            self.inner.load()?
        };
        section.hold(HeldRef {
            link: NonNull::from(self.inner.word()),
            refs: split::count_of(p),
            free: free::<T>,
        });
        // SAFETY: the reference just counted keeps it alive until `section`
        // ends, which `'g` cannot outlive.
        Some(unsafe { value(p) })
    }

    /// The object, for a writer that excludes frees of it.
    ///
    /// # Safety
    /// The link's reference stays for as long as the returned one.
    pub(crate) unsafe fn peek_ref(&self) -> Option<&T> {
        // SAFETY: the link's reference keeps it alive.
        self.inner.peek().map(|p| unsafe { value(p) })
    }

    /// A handle standing for this link's own reference, to move it to
    /// another link.
    ///
    /// # Safety
    /// As [`Link::peek_ref`]; the caller then unlinks the object here.
    pub(crate) unsafe fn peek_owned(&self) -> Option<Owned<T>> {
        self.inner.peek().map(Owned)
    }

    /// Whether it is null now.
    pub(crate) fn is_null(&self) -> bool {
        self.inner.peek().is_none()
    }

    /// Publishes `new` and returns what the link held, with the link's
    /// reference (the old word's external count moved into the object).
    pub(crate) fn swap(&self, new: Option<Owned<T>>) -> Option<Owned<T>> {
        self.inner.swap(new.map(|o| o.0)).map(Owned)
    }

    /// [`Link::swap`] only while the link holds `current` (a value's
    /// address).
    ///
    /// # Errors
    /// `new`, when it does not.
    #[allow(clippy::type_complexity)]
    pub(crate) fn compare_exchange(
        &self,
        current: *const T,
        new: Option<Owned<T>>,
    ) -> Result<Option<Owned<T>>, Option<Owned<T>>> {
        // The object a value's address is inside (compared by address
        // only, never dereferenced here).
        let current = NonNull::new(current.cast_mut()).and_then(|v| {
            NonNull::new(
                v.as_ptr().cast::<u8>().wrapping_sub(core::mem::offset_of!(Counted<T>, value)).cast(),
            )
        });
        self.inner
            .compare_exchange(current, new.map(|o| o.0))
            .map(|old| old.map(Owned))
            .map_err(|n| n.map(Owned))
    }

    /// The object with the link's reference, leaving the link null
    /// (exclusive access).
    pub(crate) fn take_mut(&mut self) -> Option<Owned<T>> {
        self.inner.take_mut().map(Owned)
    }

    /// The value, mutably (exclusive access: no reader holds it).
    pub(crate) fn get_mut(&mut self) -> Option<&mut T> {
        // SAFETY: `&mut self`: readers' references borrow the link, so none
        // exists; the link's reference keeps the object alive.
        self.inner.peek().map(|p| unsafe { &mut (*p.as_ptr()).value })
    }
}

/// An unlinked object and the reference the link had on it.
pub(crate) struct Retired<T: Send + 'static> {
    owned: NonNull<Counted<T>>,
}

impl<T: Send + 'static> Retired<T> {
    /// `owner`, just unlinked.
    pub(crate) fn new(owner: Owned<T>) -> Self {
        Self { owned: owner.0 }
    }

    /// The value.
    pub(crate) fn value(&self) -> &T {
        // SAFETY: our reference keeps it alive.
        unsafe { value(self.owned) }
    }

    /// Whether it can be freed now: ours is its only reference (no reader
    /// holds it and no link points to it; none can again, as it is
    /// unlinked).
    pub(crate) fn done(&self) -> bool {
        // SAFETY: our reference keeps it alive.
        unsafe { self.owned.as_ref() }.refs() == 1
    }

    /// Gives our reference up: freed now, or by its last reader.
    pub(crate) fn free_later(self) {
        drop(self);
    }

    /// Its box, once ours is the only reference.
    pub(crate) fn into_box(self) -> Result<Box<T>, Self> {
        if !self.done() {
            return Err(self);
        }
        let owned = Owned(self.owned);
        core::mem::forget(self);
        // SAFETY: ours, given up once.
        match unsafe { owned.release() } {
            Some(exclusive) => Ok(exclusive.into_box()),
            None => unreachable!("ukrcu: an unlinked object gained a reference"),
        }
    }
}

impl<T: Send + 'static> Drop for Retired<T> {
    fn drop(&mut self) {
        // SAFETY: ours, given up once; the last one frees.
        drop(unsafe { Owned(self.owned).release() });
    }
}

// ---------------------------------------------------------------------------
// Grace periods: the section counts

/// Sections counted under index `idx` and not ended yet, summed over the
/// CPUs: unlocks first, then a full barrier, then locks (so a section is
/// never seen ended without being seen begun).
fn open(idx: usize) -> u64 {
    let cpus = cpu::count();
    let unlocks: u64 = COUNTS.iter().take(cpus).map(|c| c.unlock[idx].load(Ordering::SeqCst)).sum();
    fence(Ordering::SeqCst);
    let locks: u64 = COUNTS.iter().take(cpus).map(|c| c.lock[idx].load(Ordering::SeqCst)).sum();
    locks.wrapping_sub(unlocks)
}

/// The readers one grace period waits for: those counted under the
/// inactive index (which may have read the index just before the last
/// flip), then, after a flip, those under the old active index.
pub(crate) struct Readers {
    idx: usize,
    flipped: bool,
}

impl Readers {
    /// Starts waiting (right after [`crate::gp::GpSeq::start`]).
    pub(crate) fn start() -> Self {
        Self { idx: (INDEX.load(Ordering::SeqCst) & 1) ^ 1, flipped: false }
    }

    /// Checks the counts, flipping the index once the inactive one has
    /// drained; true when the old active index has drained too.
    pub(crate) fn done(&mut self) -> bool {
        loop {
            if open(self.idx) != 0 {
                return false;
            }
            if self.flipped {
                return true;
            }
            fence(Ordering::SeqCst);
            INDEX.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            self.idx ^= 1;
            self.flipped = true;
        }
    }

    /// Nothing can make a reader end its section early.
    pub(crate) fn force(&self) {}

    /// Prints a stall report: how many sections hold it up.
    pub(crate) fn report_stall(&self, n: u64, for_: Duration) {
        ukconsole::println!(
            "ukrcu: INFO: grace period {n} stalled for {} ms by {} read-side section(s) begun before it (refcount flavour: readers may be preempted or sleep; one that calls synchronize waits for itself)",
            for_.as_millis(),
            open(self.idx)
        );
    }
}

/// This flavour's name, from an out-of-line function named after it: a
/// symbol-table marker of the selection (`cargo xtask test` checks that an
/// image links exactly one flavour).
#[inline(never)]
pub(crate) fn ukrcu_flavor_is_refcount() -> &'static str {
    core::hint::black_box(NAME)
}
