//! In-guest tests of the global heap (feature `uktest`).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;

use uktest::{TestResult, test_case, ut_assert, ut_assert_eq, ut_fail};

use crate::heap::{PACKING_BLOCK, packing_gap};
use crate::{AllocFailure, free, heap_stats, try_alloc};

/// The byte offsets of a block that the tests write and check: all of a
/// small block; the first and last 4 KiB of a large one (every page first
/// touched costs a nested-virtualisation exit, tens of milliseconds on the
/// CI machines, so megabyte blocks are sampled rather than filled).
fn probed(len: usize) -> impl Iterator<Item = usize> {
    const EDGE: usize = 4096;
    let head = 0..len.min(EDGE);
    let tail = if len > 2 * EDGE { len - EDGE..len } else { len.min(EDGE)..len };
    head.chain(tail)
}

fn fill(p: NonNull<u8>, len: usize, seed: u8) {
    for i in probed(len) {
        // SAFETY: `p` points to `len` bytes the test owns; `i < len`.
        unsafe { p.as_ptr().add(i).write_volatile(seed.wrapping_add(i as u8)) };
    }
}

fn intact(p: NonNull<u8>, len: usize, seed: u8) -> bool {
    // SAFETY: `p` points to `len` bytes the test owns; `i < len`.
    probed(len).all(|i| unsafe { p.as_ptr().add(i).read_volatile() } == seed.wrapping_add(i as u8))
}

fn alloc(size: usize, align: usize) -> Result<(NonNull<u8>, Layout), uktest::Stop> {
    let Ok(layout) = Layout::from_size_align(size, align) else {
        ut_fail!("bad layout {} / {}", size, align)
    };
    match try_alloc(layout) {
        Ok(p) => Ok((p, layout)),
        Err(f) => ut_fail!("try_alloc({}, align {}) failed: {}", size, align, f),
    }
}

/// The heap exists and its numbers add up.
fn heap_is_initialised() -> TestResult {
    let s = heap_stats();
    ut_assert!(s.total > 0, "heap has no memory: {:?}", s);
    ut_assert!(s.used + s.free <= s.total, "{:?}", s);
    let limit = ukconfig::ukalloc::HEAP_LIMIT_KIB * 1024;
    if limit != 0 {
        ut_assert!(s.total <= limit, "heap {} larger than limit {}", s.total, limit);
    }
    let boot_free = ukplat::boot_info().free_bytes();
    ut_assert!(s.total as u64 <= boot_free, "heap {} > boot free memory {}", s.total, boot_free);
    Ok(())
}
test_case!(heap_is_initialised);

/// Sizes from 1 B to 1 MiB, all live at once, contents checked after every
/// block was written (catches overlapping blocks).
fn many_sizes_keep_their_contents() -> TestResult {
    const SIZES: [usize; 24] = [
        1,
        2,
        3,
        5,
        8,
        13,
        16,
        31,
        64,
        100,
        255,
        512,
        1000,
        4095,
        4096,
        4097,
        10_000,
        65_535,
        65_536,
        100_000,
        262_144,
        500_000,
        1 << 20,
        (1 << 20) - 1,
    ];
    let start = heap_stats();
    let mut live = [None; SIZES.len()];
    for (i, &size) in SIZES.iter().enumerate() {
        let (p, layout) = alloc(size, 1)?;
        fill(p, size, i as u8);
        live[i] = Some((p, layout));
    }
    ut_assert_eq!(heap_stats().allocations, start.allocations + SIZES.len());
    ut_assert_eq!(heap_stats().used, start.used + SIZES.iter().sum::<usize>());
    for (i, slot) in live.iter().enumerate() {
        let Some((p, layout)) = *slot else { continue };
        ut_assert!(intact(p, layout.size(), i as u8), "block of {} bytes was overwritten", layout.size());
        // SAFETY: allocated above with this layout, freed once.
        unsafe { free(p, layout) };
    }
    ut_assert_eq!(heap_stats().used, start.used);
    ut_assert_eq!(heap_stats().free, start.free);
    Ok(())
}
test_case!(many_sizes_keep_their_contents);

/// Every power-of-two alignment from 1 to 4096, small and odd sizes.
fn every_alignment_is_honoured() -> TestResult {
    for shift in 0..=12 {
        let align = 1usize << shift;
        for size in [1, 7, align, align + 1, 3 * align] {
            let (p, layout) = alloc(size, align)?;
            ut_assert_eq!(p.as_ptr() as usize % align, 0, "size {} align {}", size, align);
            fill(p, size, shift as u8);
            ut_assert!(intact(p, size, shift as u8));
            // SAFETY: allocated above with this layout, freed once.
            unsafe { free(p, layout) };
        }
    }
    Ok(())
}
test_case!(every_alignment_is_honoured);

/// Freed memory comes back: free bytes return to their start value after a
/// churn, and a large block fits again after it was freed.
fn freed_memory_is_reused() -> TestResult {
    let start = heap_stats();
    // Churn: interleaved sizes, freed in a different order than allocated.
    let mut blocks = [None; 64];
    for (i, slot) in blocks.iter_mut().enumerate() {
        *slot = Some(alloc(16 + i * 97 % 3000, 8)?);
    }
    for step in [1, 0] {
        for (i, slot) in blocks.iter_mut().enumerate() {
            if i % 2 == step
                && let Some((p, layout)) = slot.take()
            {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { free(p, layout) };
            }
        }
    }
    let after = heap_stats();
    ut_assert_eq!(after.free, start.free, "free bytes after churn");
    ut_assert_eq!(after.allocations, start.allocations);

    // A block of half the free memory; a second one of the same size, after
    // freeing the first, must fit as well.
    let size = (after.free / 2) & !0xfff;
    let (p, layout) = alloc(size, 4096)?;
    ut_assert!(heap_stats().free <= after.free - size);
    // SAFETY: allocated above with this layout, freed once.
    unsafe { free(p, layout) };
    let (q, layout) = alloc(size, 4096)?;
    // SAFETY: allocated above with this layout, freed once.
    unsafe { free(q, layout) };
    ut_assert_eq!(heap_stats().free, start.free);
    Ok(())
}
test_case!(freed_memory_is_reused);

/// Asking for more than is free fails with the right numbers, and the heap
/// still works afterwards.
fn exhaustion_fails_cleanly() -> TestResult {
    let stats = heap_stats();
    let Ok(layout) = Layout::from_size_align(stats.free + 1, 64) else { ut_fail!("layout") };
    match try_alloc(layout) {
        Ok(p) => {
            // SAFETY: just allocated with this layout.
            unsafe { free(p, layout) };
            ut_fail!("allocated {} bytes with only {} free", stats.free + 1, stats.free)
        }
        Err(f) => {
            ut_assert_eq!(f, AllocFailure { size: stats.free + 1, align: 64, free: stats.free });
        }
    }
    ut_assert_eq!(heap_stats().failures, stats.failures + 1);
    ut_assert_eq!(crate::last_failure().map(|f| f.size), Some(stats.free + 1));
    let b = Box::new(0x5a5a_u64);
    ut_assert_eq!(*b, 0x5a5a);
    Ok(())
}
test_case!(exhaustion_fails_cleanly);

/// `alloc` collections go through the global allocator.
fn collections_use_the_global_heap() -> TestResult {
    let start = heap_stats();
    {
        let mut v: Vec<u32> = Vec::new();
        for i in 0..10_000 {
            v.push(i * 3);
        }
        ut_assert!(heap_stats().used >= start.used + 10_000 * 4);
        ut_assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32 * 3));
        let b = Box::new([7u8; 3000]);
        ut_assert!(b.iter().all(|&x| x == 7));
        let mut s = String::new();
        for i in 0..100 {
            s.push_str(if i % 2 == 0 { "ab" } else { "c" });
        }
        ut_assert_eq!(s.len(), 150);
        ut_assert!(s.starts_with("abcab"));
        let words: Vec<String> = (0..50).map(|i| alloc::format!("w{i}")).collect();
        ut_assert_eq!(words[42], "w42");
    }
    let end = heap_stats();
    ut_assert_eq!(end.used, start.used, "everything freed when dropped");
    ut_assert_eq!(end.allocations, start.allocations);
    ut_assert_eq!(end.free, start.free);
    Ok(())
}
test_case!(collections_use_the_global_heap);

/// The global heap behaves as the configured backend: it packs small
/// blocks the way that allocator does and not the other way (see
/// [`packing_gap`]; the host tests check that each backend has its own
/// fingerprint).
fn the_heap_in_use_packs_blocks_as_the_configured_backend() -> TestResult {
    let configured = crate::Backend::configured();
    let before = heap_stats();
    let gap = packing_gap(
        |layout| try_alloc(layout).ok(),
        // SAFETY: `packing_gap` frees each block it allocated, once, with
        // its layout.
        |p, layout| unsafe { free(p, layout) },
    );
    let Some(gap) = gap else { ut_fail!("could not allocate {}-byte blocks", PACKING_BLOCK) };
    ut_assert_eq!(heap_stats().allocations, before.allocations);
    ut_assert!(
        configured.packs_like(gap),
        "{}-byte blocks are {} bytes apart: not how {} packs them",
        PACKING_BLOCK,
        gap,
        configured
    );
    Ok(())
}
test_case!(the_heap_in_use_packs_blocks_as_the_configured_backend);
