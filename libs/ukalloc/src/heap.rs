//! The backend layer: one heap over any set of memory regions, with either
//! backend, plus the statistics. No global state here, so the host tests can
//! run it over ordinary buffers.

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use linked_list_allocator::Heap as LinkedListHeap;
use talc::DefaultBinning;
use talc::base::Talc;
use talc::source::Manual;

/// Most memory regions one heap takes; further regions are ignored.
pub const MAX_REGIONS: usize = 8;

/// Smallest region worth handing to a backend (smaller ones are skipped).
pub const MIN_REGION: usize = 4096;

/// The allocator behind the heap (`ukalloc.backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `talc`: dlmalloc-style bins with boundary tags, near-constant time.
    Talc,
    /// `linked_list_allocator`: first fit over an address-ordered free list.
    LinkedList,
}

impl Backend {
    /// The option value naming it (`talc`, `linked-list`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Talc => "talc",
            Self::LinkedList => "linked-list",
        }
    }

    /// The backend chosen by the `ukalloc.backend` option.
    pub const fn configured() -> Self {
        match ukconfig::ukalloc::BACKEND {
            ukconfig::ukalloc::Backend::Talc => Self::Talc,
            ukconfig::ukalloc::Backend::LinkedList => Self::LinkedList,
        }
    }
}

/// Size of the blocks [`packing_gap`] allocates.
#[cfg(any(test, feature = "uktest"))]
pub const PACKING_BLOCK: usize = 24;

/// Blocks [`packing_gap`] allocates.
#[cfg(any(test, feature = "uktest"))]
const PACKING_BLOCKS: usize = 64;

/// A behavioural fingerprint of the backend behind `alloc`: allocates 64
/// blocks of [`PACKING_BLOCK`] (24) bytes, align 8, frees them again with
/// `free`, and returns the smallest distance between two of them (`None`
/// when fewer than two could be allocated).
///
/// The backends differ there: `linked_list_allocator` packs such blocks back
/// to back (a distance of 24 between some two of them, as soon as two come
/// from the same free hole), while every `talc` chunk ends in an 8-byte tag
/// and is a multiple of 32 bytes, so no two of its blocks are closer than
/// 32. See [`Backend::packs_like`]. (For the tests: host, and ukalloc's
/// in-guest test of the global heap.)
#[cfg(any(test, feature = "uktest"))]
pub fn packing_gap(
    mut alloc: impl FnMut(Layout) -> Option<NonNull<u8>>,
    mut free: impl FnMut(NonNull<u8>, Layout),
) -> Option<usize> {
    let layout = Layout::from_size_align(PACKING_BLOCK, 8).ok()?;
    let mut blocks = [None; PACKING_BLOCKS];
    for slot in &mut blocks {
        *slot = alloc(layout);
    }
    let mut addrs = [usize::MAX; PACKING_BLOCKS];
    for (addr, block) in addrs.iter_mut().zip(&blocks) {
        if let Some(p) = block {
            *addr = p.as_ptr() as usize;
        }
    }
    for p in blocks.into_iter().flatten() {
        free(p, layout);
    }
    addrs.sort_unstable();
    addrs.windows(2).filter(|w| w[1] != usize::MAX).map(|w| w[1] - w[0]).min()
}

#[cfg(any(test, feature = "uktest"))]
impl Backend {
    /// Whether `gap`, what [`packing_gap`] measured, is what this backend
    /// produces: exactly [`PACKING_BLOCK`] for the linked list (blocks back
    /// to back), at least 32 for talc (a chunk holds the block and an 8-byte
    /// tag, in units of 32 bytes).
    pub const fn packs_like(self, gap: usize) -> bool {
        match self {
            Self::Talc => gap >= 32,
            Self::LinkedList => gap == PACKING_BLOCK,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Heap statistics, in bytes unless noted.
///
/// `total` is what the backend manages; `used + free <= total`, the rest is
/// the backend's metadata and per-allocation overhead. `free` counts every
/// free byte: the largest single allocation that succeeds can be smaller
/// (fragmentation, alignment, several regions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of memory handed to the backend.
    pub total: usize,
    /// Bytes in live allocations, as requested (`Layout::size`).
    pub used: usize,
    /// Bytes the backend reports free.
    pub free: usize,
    /// Live allocations (count).
    pub allocations: usize,
    /// Failed allocations since boot (count).
    pub failures: usize,
}

/// A failed allocation: what was asked for, and how much was free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocFailure {
    /// Requested size in bytes.
    pub size: usize,
    /// Requested alignment in bytes.
    pub align: usize,
    /// Bytes free in the heap when it failed.
    pub free: usize,
}

impl fmt::Display for AllocFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "allocation of {} bytes (align {}) failed; {} bytes free", self.size, self.align, self.free)
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "one instance per heap, in a static; boxing is impossible: this is the heap"
)]
enum Inner {
    Talc(Talc<Manual, DefaultBinning>),
    LinkedList([LinkedListHeap; MAX_REGIONS]),
}

/// A heap over up to [`MAX_REGIONS`] memory regions with one [`Backend`].
///
/// Not synchronized: the global heap wraps it in a lock.
///
/// ```
/// use core::alloc::Layout;
/// use ukalloc::{Backend, Heap};
///
/// let arena: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
/// let mut heap = Heap::new(Backend::Talc);
/// // SAFETY: the arena is leaked, so it is ours for the rest of the program.
/// unsafe { heap.add_region(arena.as_mut_ptr(), arena.len()) };
/// let layout = Layout::from_size_align(100, 16).unwrap();
/// let p = heap.alloc(layout).unwrap();
/// assert_eq!(heap.stats().used, 100);
/// // SAFETY: `p` came from this heap with this layout.
/// unsafe { heap.dealloc(p, layout) };
/// assert_eq!(heap.stats().allocations, 0);
/// ```
pub struct Heap {
    inner: Inner,
    backend: Backend,
    regions: usize,
    used: usize,
    allocations: usize,
    failures: usize,
    last_failure: Option<AllocFailure>,
}

impl Heap {
    /// An empty heap (every allocation fails until a region is added).
    pub const fn new(backend: Backend) -> Self {
        let inner = match backend {
            Backend::Talc => Inner::Talc(Talc::new(Manual)),
            Backend::LinkedList => Inner::LinkedList([const { LinkedListHeap::empty() }; MAX_REGIONS]),
        };
        Self { inner, backend, regions: 0, used: 0, allocations: 0, failures: 0, last_failure: None }
    }

    /// The backend.
    pub const fn backend(&self) -> Backend {
        self.backend
    }

    /// Regions added so far.
    pub const fn regions(&self) -> usize {
        self.regions
    }

    /// Hands `[start, start + size)` to the backend. Returns the bytes the
    /// heap grew by: 0 when the region is too small (< [`MIN_REGION`], or too
    /// small for the first talc heap's metadata), when [`MAX_REGIONS`] are
    /// already in use, or when `start` is null.
    ///
    /// # Safety
    /// The region must be valid, writable memory used by nothing else for as
    /// long as the heap is used (`'static` for the global heap), and must not
    /// overlap a region added before.
    pub unsafe fn add_region(&mut self, start: *mut u8, size: usize) -> usize {
        if start.is_null() || size < MIN_REGION || self.regions == MAX_REGIONS {
            return 0;
        }
        let before = self.stats().total;
        match &mut self.inner {
            Inner::Talc(talc) => {
                if !talc.is_metadata_established() && size < talc::min_first_heap_size::<DefaultBinning>() {
                    return 0;
                }
                // SAFETY: the caller hands us exclusive use of the region.
                if unsafe { talc.claim(start, size) }.is_none() {
                    return 0;
                }
            }
            Inner::LinkedList(heaps) => {
                // SAFETY: the caller hands us exclusive use of the region; it
                // is larger than the hole metadata (MIN_REGION) and this slot
                // was never initialised (`regions` only grows).
                unsafe { heaps[self.regions].init(start, size) };
            }
        }
        self.regions += 1;
        self.stats().total - before
    }

    /// Allocates `layout`. Zero-sized requests get a dangling, well-aligned
    /// pointer and touch nothing.
    ///
    /// # Errors
    /// [`AllocFailure`] when no free block fits; it is also remembered in
    /// [`Heap::last_failure`] and counted in [`Stats::failures`].
    pub fn alloc(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocFailure> {
        if layout.size() == 0 {
            // An address equal to the alignment is non-null and aligned.
            let aligned = core::ptr::without_provenance_mut::<u8>(layout.align());
            return Ok(NonNull::new(aligned).unwrap_or(NonNull::dangling()));
        }
        let ptr = match &mut self.inner {
            // SAFETY: the size is non-zero (checked above).
            Inner::Talc(talc) => unsafe { talc.allocate(layout) },
            Inner::LinkedList(heaps) => {
                heaps[..self.regions].iter_mut().find_map(|heap| heap.allocate_first_fit(layout).ok())
            }
        };
        match ptr {
            Some(ptr) => {
                self.used += layout.size();
                self.allocations += 1;
                Ok(ptr)
            }
            None => {
                let failure = AllocFailure { size: layout.size(), align: layout.align(), free: self.free() };
                self.failures += 1;
                self.last_failure = Some(failure);
                Err(failure)
            }
        }
    }

    /// Frees an allocation.
    ///
    /// # Safety
    /// `ptr` must come from [`Heap::alloc`] on this heap with the same
    /// `layout`, and must not have been freed already.
    pub unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        match &mut self.inner {
            // SAFETY: the caller guarantees `ptr` was allocated here with `layout`.
            Inner::Talc(talc) => unsafe { talc.deallocate(ptr.as_ptr(), layout) },
            Inner::LinkedList(heaps) => {
                let addr = ptr.as_ptr() as usize;
                let heap = heaps[..self.regions]
                    .iter_mut()
                    .find(|h| (h.bottom() as usize..h.top() as usize).contains(&addr));
                match heap {
                    // SAFETY: the caller guarantees `ptr` was allocated here
                    // with `layout`, so it came from the region containing it.
                    Some(heap) => unsafe { heap.deallocate(ptr, layout) },
                    // Not ours: a caller bug; leaking beats corrupting a list.
                    None => return,
                }
            }
        }
        self.used -= layout.size();
        self.allocations -= 1;
    }

    fn free(&self) -> usize {
        match &self.inner {
            Inner::Talc(talc) => talc.counters().available_bytes,
            Inner::LinkedList(heaps) => heaps[..self.regions].iter().map(|h| h.free()).sum(),
        }
    }

    /// The statistics.
    pub fn stats(&self) -> Stats {
        let total = match &self.inner {
            Inner::Talc(talc) => talc.counters().claimed_bytes,
            Inner::LinkedList(heaps) => heaps[..self.regions].iter().map(|h| h.size()).sum(),
        };
        Stats {
            total,
            used: self.used,
            free: self.free(),
            allocations: self.allocations,
            failures: self.failures,
        }
    }

    /// The most recent failed allocation, if any.
    pub const fn last_failure(&self) -> Option<AllocFailure> {
        self.last_failure
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("backend", &self.backend)
            .field("regions", &self.regions)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKENDS: [Backend; 2] = [Backend::Talc, Backend::LinkedList];

    /// A heap over a fresh leaked arena (`regions` pieces with gaps between).
    fn heap(backend: Backend, size: usize, regions: usize) -> Heap {
        let arena: &'static mut [u8] =
            Box::leak(vec![0u8; size * regions + 4096 * regions].into_boxed_slice());
        let mut heap = Heap::new(backend);
        for i in 0..regions {
            let start = arena[i * (size + 4096)..].as_mut_ptr();
            // SAFETY: disjoint pieces of a leaked arena.
            let grew = unsafe { heap.add_region(start, size) };
            assert!(grew > size - 2048 && grew <= size, "{backend}: grew {grew} of {size}");
        }
        heap
    }

    fn fill(p: NonNull<u8>, len: usize, seed: u8) {
        for i in 0..len {
            // SAFETY: `p` points to `len` bytes we own.
            unsafe { p.as_ptr().add(i).write(seed.wrapping_add(i as u8)) };
        }
    }

    fn check(p: NonNull<u8>, len: usize, seed: u8) -> bool {
        // SAFETY: `p` points to `len` bytes we own.
        (0..len).all(|i| unsafe { p.as_ptr().add(i).read() } == seed.wrapping_add(i as u8))
    }

    fn packing_gap_of(h: &mut Heap) -> Option<usize> {
        let h = core::cell::RefCell::new(h);
        packing_gap(
            |l| h.borrow_mut().alloc(l).ok(),
            // SAFETY: `packing_gap` frees each block it allocated, once, with
            // its layout.
            |p, l| unsafe { h.borrow_mut().dealloc(p, l) },
        )
    }

    /// The premise of ukalloc's guest test of the backend in use: each
    /// backend's packing fingerprint, on a fresh heap and on one left
    /// fragmented by earlier allocations, and never the other's.
    #[test]
    fn each_backend_has_its_own_packing_fingerprint() {
        for backend in BACKENDS {
            let mut h = heap(backend, 1 << 20, 2);
            let fresh = packing_gap_of(&mut h).unwrap();
            // Fragment: keep every third of many odd-sized blocks.
            let mut kept = std::vec::Vec::new();
            for i in 0..600 {
                let layout = Layout::from_size_align(8 + i * 37 % 200, 8).unwrap();
                let p = h.alloc(layout).unwrap();
                if i % 3 == 0 {
                    kept.push((p, layout));
                } else {
                    // SAFETY: allocated just above with this layout.
                    unsafe { h.dealloc(p, layout) };
                }
            }
            let fragmented = packing_gap_of(&mut h).unwrap();
            for (p, layout) in kept {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { h.dealloc(p, layout) };
            }
            assert_eq!(h.stats().allocations, 0, "{backend}: packing_gap frees its blocks");
            for g in [fresh, fragmented] {
                assert!(backend.packs_like(g), "{backend}: gap {g}");
                let other = if backend == Backend::Talc { Backend::LinkedList } else { Backend::Talc };
                assert!(!other.packs_like(g), "{backend}: gap {g} also fits {other}");
            }
        }
    }

    #[test]
    fn sizes_and_contents_survive_neighbours() {
        for backend in BACKENDS {
            let mut h = heap(backend, 4 << 20, 1);
            let sizes = [1usize, 2, 3, 7, 8, 9, 15, 16, 17, 100, 1000, 4095, 4096, 4097, 65536, 1 << 20];
            let mut live = std::vec::Vec::new();
            for (i, &size) in sizes.iter().enumerate() {
                let layout = Layout::from_size_align(size, 1).unwrap();
                let p = h.alloc(layout).unwrap_or_else(|f| panic!("{backend}: {f}"));
                fill(p, size, i as u8);
                live.push((p, layout, i as u8));
            }
            assert_eq!(h.stats().allocations, sizes.len());
            assert_eq!(h.stats().used, sizes.iter().sum::<usize>());
            for &(p, layout, seed) in &live {
                assert!(check(p, layout.size(), seed), "{backend}: size {}", layout.size());
                // SAFETY: allocated above with this layout.
                unsafe { h.dealloc(p, layout) };
            }
            assert_eq!(h.stats().used, 0);
            assert_eq!(h.stats().allocations, 0);
        }
    }

    #[test]
    fn every_alignment_is_honoured() {
        for backend in BACKENDS {
            let mut h = heap(backend, 1 << 20, 1);
            for shift in 0..=12 {
                let align = 1usize << shift;
                for size in [1, align, 3 * align + 1] {
                    let layout = Layout::from_size_align(size, align).unwrap();
                    let p = h.alloc(layout).unwrap();
                    assert_eq!(p.as_ptr() as usize % align, 0, "{backend}: align {align}");
                    fill(p, size, 1);
                    // SAFETY: allocated above with this layout.
                    unsafe { h.dealloc(p, layout) };
                }
            }
        }
    }

    #[test]
    fn freed_memory_is_reused_and_free_bytes_return() {
        for backend in BACKENDS {
            let mut h = heap(backend, 1 << 20, 1);
            let start = h.stats();
            let layout = Layout::from_size_align(600 << 10, 8).unwrap();
            let p = h.alloc(layout).unwrap();
            assert!(h.stats().free < start.free - (600 << 10) + 1);
            // Only ~400 KiB left: a second block of the same size cannot fit.
            assert!(h.alloc(layout).is_err());
            // SAFETY: allocated above with this layout.
            unsafe { h.dealloc(p, layout) };
            assert_eq!(h.stats().free, start.free, "{backend}");
            let q = h.alloc(layout).unwrap();
            // SAFETY: allocated above with this layout.
            unsafe { h.dealloc(q, layout) };
            assert_eq!(h.stats().free, start.free, "{backend}");
        }
    }

    #[test]
    fn exhaustion_reports_the_request_and_keeps_the_heap_usable() {
        for backend in BACKENDS {
            let mut h = heap(backend, 64 << 10, 1);
            let stats = h.stats();
            let f = h.alloc(Layout::from_size_align(stats.free + 1, 32).unwrap()).unwrap_err();
            assert_eq!(f, AllocFailure { size: stats.free + 1, align: 32, free: stats.free });
            assert_eq!(h.stats().failures, 1);
            assert_eq!(h.last_failure(), Some(f));
            assert!(h.alloc(Layout::new::<u64>()).is_ok());
        }
    }

    #[test]
    fn allocations_spread_over_several_regions() {
        for backend in BACKENDS {
            let mut h = heap(backend, 64 << 10, 3);
            assert_eq!(h.regions(), 3);
            let layout = Layout::from_size_align(40 << 10, 8).unwrap();
            let ps: std::vec::Vec<_> = (0..3).map(|_| h.alloc(layout).unwrap()).collect();
            assert!(h.alloc(layout).is_err(), "{backend}: 4 x 40 KiB in 3 x 64 KiB");
            for p in ps {
                // SAFETY: allocated above with this layout.
                unsafe { h.dealloc(p, layout) };
            }
            assert_eq!(h.stats().allocations, 0);
        }
    }

    #[test]
    fn zero_size_and_tiny_regions() {
        for backend in BACKENDS {
            let mut h = Heap::new(backend);
            let mut small = [0u8; 64];
            // SAFETY: too small to be taken; nothing is written.
            assert_eq!(unsafe { h.add_region(small.as_mut_ptr(), small.len()) }, 0);
            let z = Layout::from_size_align(0, 64).unwrap();
            let p = h.alloc(z).unwrap();
            assert_eq!(p.as_ptr() as usize % 64, 0);
            // SAFETY: zero-sized, a no-op.
            unsafe { h.dealloc(p, z) };
            assert!(h.alloc(Layout::new::<u8>()).is_err());
            assert_eq!(h.stats(), Stats { failures: 1, ..Stats::default() });
        }
    }
}
