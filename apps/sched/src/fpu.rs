//! FPU/SSE state across context switches (uksched's lazy save/restore on
//! #NM).
//!
//! The image is soft-float: the compiler never keeps values in XMM
//! registers, so what one `asm!` block loads there stays until the next
//! one — unless a context switch lets another thread's values in, which is
//! what the scheduler must prevent.

use crate::{cpus, scaled, spawn_on};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};
use uktest::{TestResult, ut_assert, ut_assert_eq};

/// XMM0, XMM8 and XMM15, 16 bytes each.
type Xmm = [u64; 6];

/// Loads XMM0, XMM8 and XMM15 from `v`.
fn load(v: &Xmm) {
    // SAFETY: the platform enabled SSE on every CPU (CR4.OSFXSR); a first
    // SSE instruction of a thread after a switch traps with #NM, and
    // uksched's handler makes the registers the thread's own. The loads
    // only read `v`; the compiler keeps nothing in XMM registers
    // (soft-float), so overwriting them breaks no compiled code.
    unsafe {
        core::arch::asm!(
            "movdqu xmm0, [{v}]",
            "movdqu xmm8, [{v} + 16]",
            "movdqu xmm15, [{v} + 32]",
            v = in(reg) v.as_ptr(),
            options(readonly, nostack, preserves_flags),
        );
    }
}

/// Reads XMM0, XMM8 and XMM15.
fn store() -> Xmm {
    let mut v: Xmm = [0; 6];
    // SAFETY: as in `load`; the stores write only the 48 bytes of `v`.
    unsafe {
        core::arch::asm!(
            "movdqu [{v}], xmm0",
            "movdqu [{v} + 16], xmm8",
            "movdqu [{v} + 32], xmm15",
            v = in(reg) v.as_mut_ptr(),
            options(nostack, preserves_flags),
        );
    }
    v
}

/// A value per thread, distinct in every word.
fn pattern(seed: u64) -> Xmm {
    core::array::from_fn(|i| (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((i as u64) << 56 | seed))
}

fn sse_registers_survive_switches() -> TestResult {
    let yields = scaled(500, 100);
    let cpu = cpus() - 1;
    let restores0 = uksched::cpu_stats(cpu).fpu_restores;
    // Both start before either yields: the yields must switch between them.
    let arrived = Arc::new(AtomicUsize::new(0));
    let spawn = |seed: u64| {
        let arrived = arrived.clone();
        spawn_on("sse", Some(cpu), move || {
            arrived.fetch_add(1, Ordering::AcqRel);
            while arrived.load(Ordering::Acquire) < 2 {
                uksched::yield_now();
            }
            let mine = pattern(seed);
            load(&mine);
            let mut wrong = 0u64;
            let mut first_wrong = None;
            for _ in 0..yields {
                uksched::yield_now();
                let now = store();
                if now != mine {
                    wrong += 1;
                    first_wrong.get_or_insert(now);
                    load(&mine);
                }
            }
            (wrong, first_wrong)
        })
    };
    let a = spawn(1)?;
    let b = spawn(2)?;
    for (name, h) in [("first", a), ("second", b)] {
        let (wrong, first) = h.join();
        ut_assert_eq!(
            wrong,
            0,
            "the {} thread's XMM registers changed across a switch, first seen {:x?}",
            name,
            first
        );
    }
    let restores = uksched::cpu_stats(cpu).fpu_restores - restores0;
    ut_assert!(
        restores >= yields,
        "CPU {} restored FPU state {} times over {} yields of each thread",
        cpu,
        restores,
        yields
    );
    Ok(())
}
uktest::test_case!(sse_registers_survive_switches);
