//! Which slot a stack gets, and when pages must be mapped: the allocation
//! policy over a [`Backing`] that does the mapping (the kernel page tables
//! in the guest, a recorder in the host tests).

use crate::StackError;
use crate::freelist::FreeLists;
use crate::layout::{Layout, PAGE_SIZE, pages_for};
use core::ops::Range;
use core::sync::atomic::{AtomicU16, Ordering};

/// Why [`Backing::map`] failed: the heap could not give `needed` bytes
/// (stack frames or page tables); it had `free` bytes free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFailure {
    /// Bytes asked of the heap.
    pub needed: usize,
    /// Bytes the heap had free.
    pub free: usize,
}

/// Maps memory into the stack area.
pub trait Backing {
    /// Maps fresh zeroed memory at every page of `range` (page-aligned, not
    /// mapped before): all of it, or — on failure — none of it.
    fn map(&mut self, range: Range<usize>) -> Result<(), MapFailure>;
}

/// A stack handed out by [`Pool::allocate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Its slot.
    pub slot: usize,
    /// Its mapped pages.
    pub pages: usize,
    /// How many of its pages, from the top, held an earlier stack (a cached
    /// one reused or grown) and still have its contents; the rest are
    /// freshly mapped zeroed memory.
    pub reused_pages: usize,
}

/// The slots' bookkeeping (kept under the crate's lock).
pub struct Pool<const SLOTS: usize, const CLASSES: usize> {
    /// Slots from here on were never used (nothing mapped).
    fresh: usize,
    /// Freed stacks, still mapped, by page count.
    free: FreeLists<SLOTS, CLASSES>,
    /// Stacks handed out and not freed.
    live: usize,
    /// Stack pages mapped (live and cached).
    mapped_pages: usize,
}

/// A snapshot of a [`Pool`]'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Stacks handed out and not freed.
    pub live: usize,
    /// Freed stacks kept mapped for reuse.
    pub cached: usize,
    /// Slots ever used.
    pub slots_used: usize,
    /// Stack pages mapped.
    pub mapped_pages: usize,
}

impl<const SLOTS: usize, const CLASSES: usize> Pool<SLOTS, CLASSES> {
    /// Nothing allocated yet.
    pub const fn new() -> Self {
        Self { fresh: 0, free: FreeLists::new(), live: 0, mapped_pages: 0 }
    }

    /// Finds a slot for a stack of `size` bytes (rounded up to pages, at
    /// least one) in this order: a cached stack of exactly that many pages;
    /// a never-used slot, mapped now; once every slot was used, a cached
    /// smaller stack, grown downwards by mapping the missing pages. Records
    /// the slot's page count in `mapped` (indexed by slot; read lock-free
    /// by [`guard_lookup`]).
    ///
    /// # Errors
    /// [`StackError::TooLarge`] beyond `layout`'s largest stack,
    /// [`StackError::OutOfVirtualArea`] when every slot holds a live stack
    /// or a cached one of another size that cannot be grown,
    /// [`StackError::OutOfMemory`] when `backing` fails. Nothing changes on
    /// failure.
    pub fn allocate(
        &mut self,
        layout: &Layout,
        size: usize,
        mapped: &[AtomicU16],
        backing: &mut impl Backing,
    ) -> Result<Allocation, StackError> {
        debug_assert!(layout.slots <= SLOTS && layout.slot_pages <= CLASSES && mapped.len() >= layout.slots);
        let pages = pages_for(size);
        if pages > layout.max_stack_pages() {
            return Err(StackError::TooLarge { size, max: layout.max_stack_pages() * PAGE_SIZE });
        }
        let out_of_memory = |f: MapFailure| StackError::OutOfMemory { size, needed: f.needed, free: f.free };
        let allocation = if let Some(slot) = self.free.pop(pages) {
            Allocation { slot, pages, reused_pages: pages }
        } else if self.fresh < layout.slots {
            let slot = self.fresh;
            backing.map(layout.stack(slot, pages)).map_err(out_of_memory)?;
            self.fresh += 1;
            self.mapped_pages += pages;
            Allocation { slot, pages, reused_pages: 0 }
        } else if let Some((slot, have)) = self.free.pop_largest_below(pages) {
            let missing = layout.stack(slot, pages).start..layout.stack(slot, have).start;
            if let Err(failure) = backing.map(missing) {
                self.free.push(slot, have);
                return Err(out_of_memory(failure));
            }
            self.mapped_pages += pages - have;
            Allocation { slot, pages, reused_pages: have }
        } else {
            return Err(StackError::OutOfVirtualArea { size, slots: layout.slots });
        };
        // Pages only ever grow: a lock-free reader sees the old count or
        // the new one, and either describes mapped pages.
        mapped[allocation.slot].store(allocation.pages as u16, Ordering::Release);
        self.live += 1;
        Ok(allocation)
    }

    /// Caches the stack of `pages` pages in `slot` (still mapped) for reuse.
    pub fn release(&mut self, slot: usize, pages: usize) {
        assert!(slot < self.fresh && self.live > 0, "ukvmem: freeing slot {slot}, which holds no live stack");
        self.free.push(slot, pages);
        self.live -= 1;
    }

    /// The counters.
    pub const fn counts(&self) -> Counts {
        Counts {
            live: self.live,
            cached: self.free.len(),
            slots_used: self.fresh,
            mapped_pages: self.mapped_pages,
        }
    }
}

impl<const SLOTS: usize, const CLASSES: usize> Default for Pool<SLOTS, CLASSES> {
    fn default() -> Self {
        Self::new()
    }
}

/// The stack whose unmapped part below it (its guard page and, for a stack
/// smaller than the slot, the rest of the slot below that) contains
/// `addr`, given the page counts `mapped` recorded by [`Pool::allocate`].
/// Lock-free: a fault handler may call it whatever the faulting code held.
pub fn guard_lookup(layout: &Layout, mapped: &[AtomicU16], addr: usize) -> Option<Range<usize>> {
    let slot = layout.slot_of(addr)?;
    let pages = usize::from(mapped.get(slot)?.load(Ordering::Acquire));
    if pages == 0 {
        return None;
    }
    layout.unmapped_below(slot, pages).contains(&addr).then(|| layout.stack(slot, pages))
}

/// Whether `addr` lies in the mapped pages of a slot (a live or cached
/// stack). Lock-free, like [`guard_lookup`].
pub fn is_mapped(layout: &Layout, mapped: &[AtomicU16], addr: usize) -> bool {
    let Some(slot) = layout.slot_of(addr) else { return false };
    let pages = mapped.get(slot).map_or(0, |m| usize::from(m.load(Ordering::Acquire)));
    pages != 0 && layout.stack(slot, pages).contains(&addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const BASE: usize = 1 << 40;
    /// 4 slots of up to 3 pages.
    const LAYOUT: Layout = Layout::new(BASE, 4, 3);
    type TestPool = Pool<4, 4>;

    /// Records mappings, refuses them while `fail` is set, and checks that
    /// nothing is mapped twice.
    #[derive(Default)]
    struct Recorder {
        pages: Vec<usize>,
        calls: usize,
        fail: bool,
    }

    impl Backing for Recorder {
        fn map(&mut self, range: Range<usize>) -> Result<(), MapFailure> {
            self.calls += 1;
            if self.fail {
                return Err(MapFailure { needed: range.len(), free: 100 });
            }
            for page in range.step_by(PAGE_SIZE) {
                assert!(!self.pages.contains(&page), "page {page:#x} mapped twice");
                self.pages.push(page);
            }
            Ok(())
        }
    }

    fn mapped() -> [AtomicU16; 4] {
        [const { AtomicU16::new(0) }; 4]
    }

    #[test]
    fn fresh_slots_are_mapped_in_order() {
        let (mut pool, m, mut r) = (TestPool::new(), mapped(), Recorder::default());
        let a = pool.allocate(&LAYOUT, 1, &m, &mut r).unwrap();
        assert_eq!(a, Allocation { slot: 0, pages: 1, reused_pages: 0 });
        let b = pool.allocate(&LAYOUT, 3 * PAGE_SIZE, &m, &mut r).unwrap();
        assert_eq!(b, Allocation { slot: 1, pages: 3, reused_pages: 0 });
        assert_eq!(r.pages, [BASE + 0x3000, BASE + 0x5000, BASE + 0x6000, BASE + 0x7000]);
        assert_eq!(pool.counts(), Counts { live: 2, cached: 0, slots_used: 2, mapped_pages: 4 });
        assert_eq!(m[0].load(Ordering::Relaxed), 1);
        assert_eq!(m[1].load(Ordering::Relaxed), 3);
        assert_eq!(m[2].load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_freed_stack_is_reused_for_the_same_size_without_mapping() {
        let (mut pool, m, mut r) = (TestPool::new(), mapped(), Recorder::default());
        let a = pool.allocate(&LAYOUT, 2 * PAGE_SIZE, &m, &mut r).unwrap();
        pool.release(a.slot, a.pages);
        assert_eq!(pool.counts(), Counts { live: 0, cached: 1, slots_used: 1, mapped_pages: 2 });
        // Another size takes a fresh slot.
        let b = pool.allocate(&LAYOUT, 1, &m, &mut r).unwrap();
        assert_eq!(b.slot, 1);
        // The same size takes the cached one back, as it was.
        let calls = r.calls;
        let c = pool.allocate(&LAYOUT, 5000, &m, &mut r).unwrap();
        assert_eq!(c, Allocation { slot: 0, pages: 2, reused_pages: 2 });
        assert_eq!(r.calls, calls);
        assert_eq!(pool.counts(), Counts { live: 2, cached: 0, slots_used: 2, mapped_pages: 3 });
    }

    #[test]
    fn when_the_slots_run_out_a_smaller_cached_stack_grows() {
        let (mut pool, m, mut r) = (TestPool::new(), mapped(), Recorder::default());
        let small: Vec<_> = (0..4).map(|_| pool.allocate(&LAYOUT, 1, &m, &mut r).unwrap()).collect();
        assert_eq!(
            pool.allocate(&LAYOUT, 1, &m, &mut r),
            Err(StackError::OutOfVirtualArea { size: 1, slots: 4 })
        );
        pool.release(small[2].slot, 1);
        // No cached 3-page stack and no fresh slot: slot 2 grows by 2 pages.
        let big = pool.allocate(&LAYOUT, 3 * PAGE_SIZE, &m, &mut r).unwrap();
        assert_eq!(big, Allocation { slot: 2, pages: 3, reused_pages: 1 });
        let top = LAYOUT.slot_top(2);
        assert!(r.pages.ends_with(&[top - 0x3000, top - 0x2000]));
        assert_eq!(m[2].load(Ordering::Relaxed), 3);
        assert_eq!(pool.counts(), Counts { live: 4, cached: 0, slots_used: 4, mapped_pages: 6 });
        // A larger cached stack is never handed out for a smaller request.
        pool.release(big.slot, big.pages);
        assert_eq!(
            pool.allocate(&LAYOUT, 2 * PAGE_SIZE, &m, &mut r),
            Err(StackError::OutOfVirtualArea { size: 2 * PAGE_SIZE, slots: 4 })
        );
        assert_eq!(pool.allocate(&LAYOUT, 3 * PAGE_SIZE, &m, &mut r).unwrap().slot, 2);
    }

    #[test]
    fn failures_change_nothing() {
        let (mut pool, m, mut r) = (TestPool::new(), mapped(), Recorder::default());
        assert_eq!(
            pool.allocate(&LAYOUT, 3 * PAGE_SIZE + 1, &m, &mut r),
            Err(StackError::TooLarge { size: 3 * PAGE_SIZE + 1, max: 3 * PAGE_SIZE })
        );
        r.fail = true;
        assert_eq!(
            pool.allocate(&LAYOUT, 2 * PAGE_SIZE, &m, &mut r),
            Err(StackError::OutOfMemory { size: 2 * PAGE_SIZE, needed: 2 * PAGE_SIZE, free: 100 })
        );
        assert_eq!(pool.counts(), Counts::default());
        assert_eq!(m[0].load(Ordering::Relaxed), 0);
        r.fail = false;
        let held: Vec<_> = (0..4).map(|_| pool.allocate(&LAYOUT, 1, &m, &mut r).unwrap()).collect();
        pool.release(held[1].slot, 1);
        // Growing the cached stack fails: it stays cached, as it was.
        r.fail = true;
        assert!(matches!(
            pool.allocate(&LAYOUT, 2 * PAGE_SIZE, &m, &mut r),
            Err(StackError::OutOfMemory { needed: PAGE_SIZE, .. })
        ));
        assert_eq!(pool.counts(), Counts { live: 3, cached: 1, slots_used: 4, mapped_pages: 4 });
        assert_eq!(m[1].load(Ordering::Relaxed), 1);
        r.fail = false;
        assert_eq!(pool.allocate(&LAYOUT, 1, &m, &mut r).unwrap().slot, 1);
    }

    #[test]
    #[should_panic(expected = "holds no live stack")]
    fn freeing_an_unused_slot_panics() {
        TestPool::new().release(0, 1);
    }

    #[test]
    fn guard_pages_are_found_without_the_pool() {
        let (mut pool, m, mut r) = (TestPool::new(), mapped(), Recorder::default());
        let a = pool.allocate(&LAYOUT, 1, &m, &mut r).unwrap();
        let b = pool.allocate(&LAYOUT, 3 * PAGE_SIZE, &m, &mut r).unwrap();
        let (sa, sb) = (LAYOUT.stack(a.slot, 1), LAYOUT.stack(b.slot, 3));
        let lookup = |addr| guard_lookup(&LAYOUT, &m, addr);
        // Slot 0: one page; its guard page and the two below are unmapped.
        assert_eq!(lookup(sa.start - 1), Some(sa.clone()));
        assert_eq!(lookup(sa.start - PAGE_SIZE), Some(sa.clone()));
        assert_eq!(lookup(BASE), Some(sa.clone()));
        assert_eq!(lookup(sa.start), None);
        assert_eq!(lookup(sa.end - 1), None);
        // Slot 1: the largest stack, the guard page only.
        assert_eq!(lookup(sb.start - 8), Some(sb.clone()));
        assert_eq!(lookup(sb.start - PAGE_SIZE), Some(sb.clone()));
        assert_eq!(lookup(sb.start), None);
        // Unused slots, and addresses outside the area.
        assert_eq!(lookup(LAYOUT.slot_top(2) - PAGE_SIZE - 1), None);
        assert_eq!(lookup(BASE - 1), None);
        assert_eq!(lookup(LAYOUT.area().end), None);
        assert_eq!(lookup(0x1000), None);
        // A cached stack keeps its guard page.
        pool.release(b.slot, b.pages);
        assert_eq!(lookup(sb.start - 8), Some(sb));
    }

    #[test]
    fn mapped_pages_are_found_without_the_pool() {
        let (mut pool, m, mut r) = (TestPool::new(), mapped(), Recorder::default());
        let a = pool.allocate(&LAYOUT, 2 * PAGE_SIZE, &m, &mut r).unwrap();
        let sa = LAYOUT.stack(a.slot, 2);
        let mapped_at = |addr| is_mapped(&LAYOUT, &m, addr);
        assert!(mapped_at(sa.start) && mapped_at(sa.end - 1));
        assert!(!mapped_at(sa.start - 1), "the guard page");
        assert!(!mapped_at(sa.end), "the next slot, unused");
        assert!(!mapped_at(BASE - 1) && !mapped_at(LAYOUT.area().end));
        // A cached stack stays mapped.
        pool.release(a.slot, a.pages);
        assert!(mapped_at(sa.start));
    }
}
