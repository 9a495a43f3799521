//! Memory barriers and spin-wait hints.
//!
//! x86_64 is TSO: loads are not reordered with loads, stores not with stores,
//! so [`read`] and [`write`] only need to stop the compiler; [`full`] orders
//! stores before later loads (`mfence`).

use core::sync::atomic::{Ordering, compiler_fence, fence};

/// Full barrier: all earlier loads and stores complete before later ones.
#[inline(always)]
pub fn full() {
    fence(Ordering::SeqCst);
}

/// Read barrier (compiler-only on x86_64).
#[inline(always)]
pub fn read() {
    compiler_fence(Ordering::Acquire);
}

/// Write barrier (compiler-only on x86_64).
#[inline(always)]
pub fn write() {
    compiler_fence(Ordering::Release);
}

/// Compiler barrier: no reordering of memory accesses across this point.
#[inline(always)]
pub fn compiler() {
    compiler_fence(Ordering::SeqCst);
}

/// Hint for busy-wait loops (`pause`): saves power and helps the sibling
/// hyper-thread.
#[inline(always)]
pub fn spin_hint() {
    core::hint::spin_loop();
}
