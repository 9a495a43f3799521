//! The cache of freed stacks: one list per page count, threaded through a
//! per-slot `next` array, so pushing and popping never allocate (pure:
//! host-tested).

/// Freed slots by page count. `SLOTS` is the number of slots, `CLASSES`
/// the largest page count + 1 (index 0 is unused). Links are stored as
/// slot + 1 with 0 for "none", so an empty cache is all zeros.
pub struct FreeLists<const SLOTS: usize, const CLASSES: usize> {
    /// `heads[pages]`: the most recently freed slot holding `pages` pages.
    heads: [u32; CLASSES],
    /// `next[slot]`: the slot after `slot` in its list.
    next: [u32; SLOTS],
    /// Slots in all lists.
    len: usize,
}

impl<const SLOTS: usize, const CLASSES: usize> FreeLists<SLOTS, CLASSES> {
    /// No cached slots.
    pub const fn new() -> Self {
        assert!(SLOTS < u32::MAX as usize, "ukvmem: too many slots for 32-bit links");
        Self { heads: [0; CLASSES], next: [0; SLOTS], len: 0 }
    }

    /// Cached slots, all page counts together.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Caches `slot`, whose stack has `pages` pages (the last one freed is
    /// the first reused: its memory is the most likely to be in cache).
    pub fn push(&mut self, slot: usize, pages: usize) {
        assert!(
            slot < SLOTS && (1..CLASSES).contains(&pages),
            "ukvmem: bad free slot {slot} of {pages} pages"
        );
        self.next[slot] = self.heads[pages];
        self.heads[pages] = slot as u32 + 1;
        self.len += 1;
    }

    /// Takes a cached slot of exactly `pages` pages.
    pub fn pop(&mut self, pages: usize) -> Option<usize> {
        let head = *self.heads.get(pages)?;
        if head == 0 {
            return None;
        }
        let slot = head as usize - 1;
        self.heads[pages] = self.next[slot];
        self.next[slot] = 0;
        self.len -= 1;
        Some(slot)
    }

    /// Takes a cached slot of the largest page count below `pages`; returns
    /// it with its page count (the caller maps the missing pages below it).
    pub fn pop_largest_below(&mut self, pages: usize) -> Option<(usize, usize)> {
        (1..pages.min(CLASSES)).rev().find_map(|have| self.pop(have).map(|slot| (slot, have)))
    }
}

impl<const SLOTS: usize, const CLASSES: usize> Default for FreeLists<SLOTS, CLASSES> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_separate_per_size_and_lifo() {
        let mut f = FreeLists::<8, 5>::new();
        assert_eq!(f.pop(1), None);
        f.push(3, 2);
        f.push(5, 2);
        f.push(1, 4);
        assert_eq!(f.len(), 3);
        assert_eq!(f.pop(1), None);
        assert_eq!(f.pop(3), None);
        assert_eq!(f.pop(2), Some(5));
        assert_eq!(f.pop(2), Some(3));
        assert_eq!(f.pop(2), None);
        assert_eq!(f.pop(4), Some(1));
        assert_eq!(f.len(), 0);
        // Out-of-range sizes are simply absent.
        assert_eq!(f.pop(0), None);
        assert_eq!(f.pop(5), None);
        assert_eq!(f.pop(usize::MAX), None);
    }

    #[test]
    fn slot_zero_and_the_last_slot_work() {
        let mut f = FreeLists::<3, 2>::new();
        f.push(0, 1);
        f.push(2, 1);
        f.push(1, 1);
        assert_eq!([f.pop(1), f.pop(1), f.pop(1), f.pop(1)], [Some(1), Some(2), Some(0), None]);
    }

    #[test]
    fn the_largest_smaller_stack_is_grown() {
        let mut f = FreeLists::<8, 9>::new();
        assert_eq!(f.pop_largest_below(8), None);
        f.push(0, 1);
        f.push(1, 3);
        f.push(2, 6);
        f.push(3, 8);
        // Never one as large or larger.
        assert_eq!(f.pop_largest_below(1), None);
        assert_eq!(f.pop_largest_below(6), Some((1, 3)));
        assert_eq!(f.pop_largest_below(6), Some((0, 1)));
        assert_eq!(f.pop_largest_below(6), None);
        assert_eq!(f.pop_largest_below(100), Some((3, 8)));
        assert_eq!(f.pop_largest_below(7), Some((2, 6)));
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn a_popped_slot_can_be_pushed_again_elsewhere() {
        let mut f = FreeLists::<4, 4>::new();
        f.push(2, 1);
        f.push(1, 1);
        let slot = f.pop(1).unwrap();
        f.push(slot, 3);
        assert_eq!(f.pop(1), Some(2));
        assert_eq!(f.pop(1), None);
        assert_eq!(f.pop(3), Some(1));
    }

    #[test]
    #[should_panic(expected = "bad free slot")]
    fn a_bad_push_panics() {
        FreeLists::<4, 4>::new().push(4, 1);
    }
}
