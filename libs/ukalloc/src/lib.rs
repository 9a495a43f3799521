//! # ukalloc — the global heap
//!
//! What it offers:
//!
//! * the image's `#[global_allocator]` (so `alloc`'s `Box`, `Vec`, `String`
//!   work), built on the free RAM the platform reports
//!   ([`ukplat::BootInfo::free_memory`], identity mapped), set up by an init
//!   function at priority `ukboot::priority::MEMORY`: everything that runs
//!   later may allocate;
//! * two interchangeable backends behind one lock: [`talc`] or
//!   [`linked_list_allocator`];
//! * [`heap_stats`], [`try_alloc`] / [`free`] (allocation that reports
//!   failure instead of aborting) and [`last_failure`];
//! * a one-line report on every failed allocation of the global allocator
//!   (option `report_failures`):
//!   `ukalloc: out of memory: allocation of SIZE bytes (align A) failed; FREE bytes free of TOTAL (backend talc)`.
//!   Stable Rust has no custom allocation-error handler, so `alloc` then
//!   panics with "memory allocation of N bytes failed", which `ukboot`'s panic
//!   handler reports after this line;
//! * the backend layer, [`Heap`], usable over any memory (the host tests run
//!   both backends over ordinary buffers).
//!
//! **Lock:** the heap is a `ukspin::SpinLockIrq`: interrupts are disabled
//! while it is held, so an interrupt handler that allocates can never spin
//! on a heap its own CPU holds, and preemption is disabled too (as for
//! every `ukspin` lock). So `ukspin.kind` (`tas` | `ticket` | `mcs`)
//! applies to the heap, and with `platform.cpus = 1` the lock reduces to
//! that interrupt and preemption control plus a held flag: taking the heap
//! again on the CPU that holds it panics at once instead of hanging. The
//! lock needs the CPU's per-CPU header (GS), which the platform sets up
//! before any library code, and the heap is first used at priority
//! `MEMORY`, long after. The failure report is written after the lock is
//! released, straight to the console device.
//!
//! **Needs:** `ukplat` (boot memory map, console for the failure report),
//! `ukspin` (the heap lock; selected by this library), `ukboot` (init
//! registration), `ukconfig`.
//!
//! **Config options:** `backend` (`talc` | `linked-list`), `heap_limit_kib`
//! (largest heap in KiB, 0: all free RAM), `report_failures` (bool).
//!
//! **Why these crates:** `talc` is a fast, well-tested `no_std` allocator
//! (bins and boundary tags, O(1)-ish allocation, coalescing on free) with
//! manual heap management — exactly "here are some regions, allocate from
//! them"; version 5 with its `counters` feature gives exact free/claimed byte
//! counts. `linked_list_allocator` is the classic first-fit allocator of the
//! Rust OSdev world: simple and predictable, a useful baseline to compare
//! against and a fallback should talc misbehave.
//!
//! ```
//! use core::alloc::Layout;
//!
//! // On the host the global heap has no memory: allocation fails cleanly.
//! let layout = Layout::from_size_align(64, 8).unwrap();
//! let failure = ukalloc::try_alloc(layout).unwrap_err();
//! assert_eq!((failure.size, failure.align), (64, 8));
//! assert_eq!(ukalloc::heap_stats().total, 0);
//! ```
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "uktest")]
extern crate alloc;

#[cfg(feature = "uktest")]
mod guest_tests;
mod heap;

use core::alloc::{GlobalAlloc, Layout};
use core::fmt::Write;
use core::ptr::NonNull;

pub use heap::{AllocFailure, Backend, Heap, MAX_REGIONS, MIN_REGION, Stats};

/// The global heap, empty until [`init`] runs.
static HEAP: ukspin::SpinLockIrq<Heap> = ukspin::SpinLockIrq::new(Heap::new(Backend::configured()));

/// Runs `f` on the global heap with the heap lock held and interrupts off
/// (on the host: `ukspin`'s simulated interrupt flag).
fn with_heap<R>(f: impl FnOnce(&mut Heap) -> R) -> R {
    f(&mut HEAP.lock())
}

/// The global heap's statistics.
pub fn heap_stats() -> Stats {
    with_heap(|h| h.stats())
}

/// The global heap's backend.
pub fn backend() -> Backend {
    Backend::configured()
}

/// Allocates from the global heap, returning the failure instead of
/// aborting (no report is printed: the caller handles it).
///
/// ```
/// # use core::alloc::Layout;
/// let layout = Layout::from_size_align(1 << 20, 4096).unwrap();
/// match ukalloc::try_alloc(layout) {
///     // SAFETY: allocated just above with `layout`.
///     Ok(ptr) => unsafe { ukalloc::free(ptr, layout) },
///     Err(f) => assert_eq!(f.size, 1 << 20),
/// }
/// ```
///
/// # Errors
/// [`AllocFailure`] (size, alignment, free bytes) when no free block fits.
pub fn try_alloc(layout: Layout) -> Result<NonNull<u8>, AllocFailure> {
    with_heap(|h| h.alloc(layout))
}

/// Frees memory from [`try_alloc`].
///
/// # Safety
/// `ptr` must come from [`try_alloc`] with the same `layout` and not have
/// been freed already.
pub unsafe fn free(ptr: NonNull<u8>, layout: Layout) {
    // SAFETY: forwarded caller contract.
    with_heap(|h| unsafe { h.dealloc(ptr, layout) });
}

/// The most recent failed allocation of the global heap, if any (for
/// reports after the fact, e.g. a panic handler telling OOM apart).
pub fn last_failure() -> Option<AllocFailure> {
    with_heap(|h| h.last_failure())
}

/// Writes the out-of-memory report line.
///
/// ```
/// let mut line = String::new();
/// let failure = ukalloc::AllocFailure { size: 4096, align: 8, free: 100 };
/// ukalloc::write_report(&mut line, &failure, 262144, ukalloc::Backend::Talc).unwrap();
/// assert_eq!(
///     line,
///     "ukalloc: out of memory: allocation of 4096 bytes (align 8) failed; \
///      100 bytes free of 262144 (backend talc)\n"
/// );
/// ```
///
/// # Errors
/// Only when `out` fails.
pub fn write_report(
    out: &mut dyn Write,
    failure: &AllocFailure,
    total: usize,
    backend: Backend,
) -> core::fmt::Result {
    writeln!(
        out,
        "ukalloc: out of memory: allocation of {} bytes (align {}) failed; {} bytes free of {} (backend {})",
        failure.size, failure.align, failure.free, total, backend
    )
}

/// Which parts of `free` memory make the heap: page 0 is never used (null
/// stays invalid), and the total is capped at `limit` bytes (0: no cap).
/// Calls `take(start, size)` for each piece, in order.
///
/// ```
/// use ukplat::PhysRange;
/// let free = [PhysRange { start: 0, end: 0x9000 }, PhysRange { start: 0x10000, end: 0x20000 }];
/// let mut got = Vec::new();
/// ukalloc::heap_pieces(&free, 0x10000, |s, n| got.push((s, n)));
/// assert_eq!(got, [(0x1000, 0x8000), (0x10000, 0x8000)]);
/// ```
pub fn heap_pieces(free: &[ukplat::PhysRange], limit: usize, mut take: impl FnMut(usize, usize)) {
    let mut left = if limit == 0 { usize::MAX } else { limit };
    for range in free {
        let Ok(start) = usize::try_from(range.start.max(4096)) else {
            continue;
        };
        let Ok(end) = usize::try_from(range.end) else {
            continue;
        };
        let size = end.saturating_sub(start).min(left);
        if size == 0 {
            continue;
        }
        take(start, size);
        left -= size;
        if left == 0 {
            break;
        }
    }
}

/// Builds the global heap from the platform's free memory (called by
/// `ukboot` at priority `MEMORY`; later calls do nothing).
pub fn init() {
    let info = ukplat::boot_info();
    let limit = ukconfig::ukalloc::HEAP_LIMIT_KIB.saturating_mul(1024);
    let stats = with_heap(|heap| {
        if heap.regions() == 0 {
            heap_pieces(info.free_memory, limit, |start, size| {
                // SAFETY: the platform reports these ranges as RAM nobody
                // uses (identity mapped: physical = virtual), `heap_pieces`
                // keeps them disjoint and this runs once, so the heap owns
                // them for the rest of the run.
                unsafe { heap.add_region(start as *mut u8, size) };
            });
        }
        (heap.stats(), heap.regions())
    });
    log::debug!(
        "heap of {} KiB in {} region(s), backend {}, limit {} KiB",
        stats.0.total >> 10,
        stats.1,
        backend(),
        ukconfig::ukalloc::HEAP_LIMIT_KIB
    );
}

ukboot::init!(ukboot::priority::MEMORY, init);

/// The `GlobalAlloc` over the global heap (the image's `#[global_allocator]`
/// in the guest).
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalHeap;

// SAFETY: allocations come from `Heap`, which hands out disjoint blocks of
// memory it owns, with the requested layout; frees go back to the same heap.
unsafe impl GlobalAlloc for GlobalHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let result = with_heap(|h| h.alloc(layout).map_err(|f| (f, h.stats().total)));
        match result {
            Ok(ptr) => ptr.as_ptr(),
            Err((failure, total)) => {
                if ukconfig::ukalloc::REPORT_FAILURES {
                    let _ = write_report(&mut ukplat::console::Writer, &failure, total, backend());
                }
                core::ptr::null_mut()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: `GlobalAlloc` contract: `ptr` came from `alloc` with `layout`.
            with_heap(|h| unsafe { h.dealloc(ptr, layout) });
        }
    }
}

#[cfg(target_os = "none")]
#[global_allocator]
static GLOBAL: GlobalHeap = GlobalHeap;

#[cfg(test)]
mod tests {
    use super::*;
    use ukplat::PhysRange;

    fn pieces(free: &[PhysRange], limit: usize) -> std::vec::Vec<(usize, usize)> {
        let mut got = std::vec::Vec::new();
        heap_pieces(free, limit, |s, n| got.push((s, n)));
        got
    }

    #[test]
    fn heap_pieces_skip_page_zero_and_honour_the_limit() {
        let free = [
            PhysRange { start: 0, end: 0x2000 },
            PhysRange { start: 0x100000, end: 0x200000 },
            PhysRange { start: 0x300000, end: 0x400000 },
        ];
        assert_eq!(pieces(&free, 0), [(0x1000, 0x1000), (0x100000, 0x100000), (0x300000, 0x100000)]);
        assert_eq!(pieces(&free, 0x81000), [(0x1000, 0x1000), (0x100000, 0x80000)]);
        assert_eq!(pieces(&[PhysRange { start: 0, end: 0x1000 }], 0), []);
    }

    #[test]
    fn report_line_format() {
        let mut s = std::string::String::new();
        let f = AllocFailure { size: 1, align: 4096, free: 0 };
        write_report(&mut s, &f, 0, Backend::LinkedList).unwrap();
        assert_eq!(
            s,
            "ukalloc: out of memory: allocation of 1 bytes (align 4096) failed; 0 bytes free of 0 (backend linked-list)\n"
        );
    }

    #[test]
    fn global_heap_on_host_is_empty_and_counts_failures() {
        let layout = Layout::from_size_align(8, 8).unwrap();
        let before = heap_stats().failures;
        // SAFETY: a non-zero-size layout; the result is only compared to null.
        assert!(unsafe { GlobalHeap.alloc(layout) }.is_null());
        assert!(heap_stats().failures > before);
        assert_eq!(last_failure().map(|f| f.size), Some(8));
    }
}
