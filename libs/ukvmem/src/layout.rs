//! The stack area's arithmetic: slots, stacks, guard pages, and how many
//! page tables a mapping may need (pure: host-tested).
//!
//! ```text
//! slot i:   base(i)                                   top(i) = base(i + 1)
//!           | unmapped (≥ 1 page)       | guard page | stack: `pages` mapped pages |
//!                                       ^ bottom - 4 KiB ^ bottom
//! ```
//!
//! A stack of `pages` pages occupies the top of its slot; the page just
//! below it is its guard page, and everything from the slot's base up to
//! the guard page is unmapped too. The slot above begins with its own
//! unmapped part, so the page above a stack's top is never mapped either.

use core::ops::Range;

/// Size of a page (the only size this crate maps).
pub const PAGE_SIZE: usize = 4096;

/// Bytes one page directory entry maps (2 MiB): one page table covers this.
const PT_SPAN: usize = 1 << 21;
/// Bytes one page-directory-pointer entry maps (1 GiB): one page directory.
const PD_SPAN: usize = 1 << 30;
/// Bytes one PML4 entry maps (512 GiB): one page-directory-pointer table.
const PDPT_SPAN: usize = 1 << 39;

/// Where the slots are: `slots` slots of `slot_pages` pages from `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// First byte of slot 0 (page-aligned).
    pub base: usize,
    /// Number of slots.
    pub slots: usize,
    /// Pages per slot: the largest stack plus its guard page.
    pub slot_pages: usize,
}

impl Layout {
    /// `slots` slots from `base`, each holding stacks of up to
    /// `max_stack_pages` pages.
    pub const fn new(base: usize, slots: usize, max_stack_pages: usize) -> Self {
        assert!(base.is_multiple_of(PAGE_SIZE), "ukvmem: the stack area must be page-aligned");
        assert!(slots > 0 && max_stack_pages > 0, "ukvmem: an empty stack area");
        Self { base, slots, slot_pages: max_stack_pages + 1 }
    }

    /// The largest stack a slot holds, in pages.
    pub const fn max_stack_pages(&self) -> usize {
        self.slot_pages - 1
    }

    /// Bytes of virtual address space per slot.
    pub const fn slot_bytes(&self) -> usize {
        self.slot_pages * PAGE_SIZE
    }

    /// The whole area.
    pub const fn area(&self) -> Range<usize> {
        self.base..self.base + self.slots * self.slot_bytes()
    }

    /// First byte of slot `slot`.
    pub const fn slot_base(&self, slot: usize) -> usize {
        self.base + slot * self.slot_bytes()
    }

    /// One past the last byte of slot `slot`: its stack's top.
    pub const fn slot_top(&self, slot: usize) -> usize {
        self.slot_base(slot + 1)
    }

    /// The slot `addr` lies in, if it is in the area.
    pub const fn slot_of(&self, addr: usize) -> Option<usize> {
        if addr < self.base {
            return None;
        }
        let slot = (addr - self.base) / self.slot_bytes();
        if slot < self.slots { Some(slot) } else { None }
    }

    /// The usable range of a stack of `pages` pages in slot `slot`.
    pub const fn stack(&self, slot: usize, pages: usize) -> Range<usize> {
        let top = self.slot_top(slot);
        top - pages * PAGE_SIZE..top
    }

    /// The guard page of a stack of `pages` pages in slot `slot`: the page
    /// just below its bottom.
    pub const fn guard(&self, slot: usize, pages: usize) -> Range<usize> {
        let bottom = self.stack(slot, pages).start;
        bottom - PAGE_SIZE..bottom
    }

    /// Everything unmapped below a stack of `pages` pages in slot `slot`:
    /// from the slot's base up to the stack's bottom (the guard page is its
    /// last page).
    pub const fn unmapped_below(&self, slot: usize, pages: usize) -> Range<usize> {
        self.slot_base(slot)..self.stack(slot, pages).start
    }
}

/// Pages of a stack of `size` bytes: rounded up, at least one.
pub const fn pages_for(size: usize) -> usize {
    let pages = size.div_ceil(PAGE_SIZE);
    if pages == 0 { 1 } else { pages }
}

/// Regions of `span` bytes (aligned to `span`) that `range` touches.
const fn regions(range: &Range<usize>, span: usize) -> usize {
    if range.start >= range.end { 0 } else { (range.end - 1) / span - range.start / span + 1 }
}

/// The most page-table pages that mapping every page of `range` can create:
/// one page table per 2 MiB region, one page directory per 1 GiB region and
/// one page-directory-pointer table per 512 GiB region it touches (fewer
/// when some exist already).
pub const fn tables_bound(range: &Range<usize>) -> usize {
    regions(range, PT_SPAN) + regions(range, PD_SPAN) + regions(range, PDPT_SPAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIB: usize = 1 << 40;

    #[test]
    fn slots_follow_each_other() {
        let l = Layout::new(TIB, 4, 3);
        assert_eq!(l.slot_pages, 4);
        assert_eq!(l.max_stack_pages(), 3);
        assert_eq!(l.slot_bytes(), 16 * 1024);
        assert_eq!(l.area(), TIB..TIB + 64 * 1024);
        assert_eq!(l.slot_base(0), TIB);
        assert_eq!(l.slot_top(0), TIB + 0x4000);
        assert_eq!(l.slot_base(3), TIB + 0xc000);
        assert_eq!(l.slot_top(3), l.area().end);
    }

    #[test]
    fn addresses_map_to_their_slot() {
        let l = Layout::new(TIB, 4, 3);
        assert_eq!(l.slot_of(TIB - 1), None);
        assert_eq!(l.slot_of(0), None);
        assert_eq!(l.slot_of(TIB), Some(0));
        assert_eq!(l.slot_of(TIB + 0x3fff), Some(0));
        assert_eq!(l.slot_of(TIB + 0x4000), Some(1));
        assert_eq!(l.slot_of(l.area().end - 1), Some(3));
        assert_eq!(l.slot_of(l.area().end), None);
        assert_eq!(l.slot_of(usize::MAX), None);
    }

    #[test]
    fn a_stack_sits_at_the_top_of_its_slot_above_its_guard() {
        let l = Layout::new(TIB, 4, 3);
        // One page in slot 1.
        assert_eq!(l.stack(1, 1), TIB + 0x7000..TIB + 0x8000);
        assert_eq!(l.guard(1, 1), TIB + 0x6000..TIB + 0x7000);
        assert_eq!(l.unmapped_below(1, 1), TIB + 0x4000..TIB + 0x7000);
        // The largest stack leaves exactly the guard page.
        assert_eq!(l.stack(1, 3), TIB + 0x5000..TIB + 0x8000);
        assert_eq!(l.guard(1, 3), TIB + 0x4000..TIB + 0x5000);
        assert_eq!(l.unmapped_below(1, 3), l.guard(1, 3));
        // Guard and stack stay in their slot; the top is 16-byte aligned.
        for slot in 0..4 {
            for pages in 1..=3 {
                let stack = l.stack(slot, pages);
                let guard = l.guard(slot, pages);
                assert_eq!(stack.end - stack.start, pages * PAGE_SIZE);
                assert_eq!(guard.end, stack.start);
                assert_eq!(l.slot_of(guard.start), Some(slot));
                assert_eq!(l.slot_of(stack.end - 1), Some(slot));
                assert!(stack.end.is_multiple_of(16));
            }
        }
    }

    #[test]
    fn sizes_round_up_to_pages() {
        assert_eq!(pages_for(0), 1);
        assert_eq!(pages_for(1), 1);
        assert_eq!(pages_for(4096), 1);
        assert_eq!(pages_for(4097), 2);
        assert_eq!(pages_for(64 * 1024), 16);
        assert_eq!(pages_for(usize::MAX), usize::MAX / PAGE_SIZE + 1);
    }

    #[test]
    fn page_table_bound() {
        assert_eq!(tables_bound(&(TIB..TIB)), 0);
        // One page: a PT, a PD and a PDPT at most.
        assert_eq!(tables_bound(&(TIB..TIB + PAGE_SIZE)), 3);
        // Crossing a 2 MiB boundary needs a second page table.
        assert_eq!(tables_bound(&(TIB + PT_SPAN - PAGE_SIZE..TIB + PT_SPAN + PAGE_SIZE)), 4);
        // Crossing 1 GiB: second PT and PD.
        assert_eq!(tables_bound(&(TIB + PD_SPAN - PAGE_SIZE..TIB + PD_SPAN + PAGE_SIZE)), 5);
        // Crossing 512 GiB: a second of each.
        assert_eq!(tables_bound(&(TIB + PDPT_SPAN - PAGE_SIZE..TIB + PDPT_SPAN + PAGE_SIZE)), 6);
        // 8 MiB unaligned: 5 PTs.
        assert_eq!(tables_bound(&(TIB + PAGE_SIZE..TIB + PAGE_SIZE + (8 << 20))), 7);
    }

    #[test]
    fn the_configured_area_fits_the_address_space() {
        // The largest configuration stays in the lower canonical half and
        // out of the identity map.
        let l = Layout::new(crate::AREA_BASE, 65536, 2048);
        assert!(l.area().start >= 4 << 30);
        assert!(l.area().end <= 0x0000_8000_0000_0000);
        assert!(l.slot_of(l.area().end - 1).is_some());
    }
}
