//! Lazy saving of FPU/SSE/AVX state.
//!
//! Guest Rust code is soft-float and never touches the extended registers;
//! only application code using SSE/AVX (inline assembly, hand-written
//! kernels) does. So the state is switched lazily, and a thread that never
//! uses it costs the switch one per-CPU flag test:
//!
//! * When a thread switches out after using the FPU in this time slice
//!   (the CPU's `fpu_live` flag), its state is saved (`xsaveopt`/`xsave`,
//!   or `fxsave` without XSAVE) into its own area and CR0.TS is set.
//! * With CR0.TS set, the next FPU/SSE/AVX instruction of any thread on
//!   that CPU raises #NM (vector 7). Its handler clears TS, restores that
//!   thread's saved state (a fresh thread gets the initial state), and marks
//!   the FPU live again.
//!
//! The state is always in memory while a thread is switched out, so a
//! thread can resume on any CPU. The save area (sized for the enabled
//! XSAVE components) is allocated at a thread's first FPU instruction.

use crate::sched::{CPUS, Cpu, current_ptr_unguarded};
use crate::thread::ThreadInner;
use core::sync::atomic::Ordering;
use ukarch::fpu::{self as hw, FpuState};
use ukplat::irq::TrapFrame;

/// The #NM vector.
const DEVICE_NOT_AVAILABLE: u8 = 7;

/// Installs the #NM handler.
pub(crate) fn install() {
    if let Err(e) = ukplat::irq::register(DEVICE_NOT_AVAILABLE, on_device_not_available) {
        panic!("uksched: cannot install the #NM handler for lazy FPU switching: {e}");
    }
}

/// Starts lazy switching on this CPU. `live`: the running context may hold
/// FPU state worth keeping (the boot context); otherwise the registers are
/// discarded and the first FPU instruction traps.
pub(crate) fn init_cpu(cpu: &Cpu, live: bool) {
    cpu.fpu_live.store(live, Ordering::Relaxed);
    if !live {
        hw::set_task_switched();
    }
}

/// Saves the outgoing thread's state if it used the FPU (interrupts
/// disabled, on the switching CPU).
#[inline(always)]
pub(crate) fn switch_out(cpu: &Cpu, prev: &ThreadInner) {
    if cpu.fpu_live.load(Ordering::Relaxed) {
        save(cpu, prev);
    }
}

#[inline(never)]
fn save(cpu: &Cpu, prev: &ThreadInner) {
    // SAFETY: `prev` is the running thread of this CPU (being switched
    // out), and only its CPU touches its area, interrupts disabled.
    let area = unsafe { &mut *prev.fpu.get() }.get_or_insert_with(FpuState::new);
    // SAFETY: TS is clear (the FPU is live) and init ran on this CPU.
    unsafe { area.save() };
    hw::set_task_switched();
    cpu.fpu_live.store(false, Ordering::Relaxed);
}

/// #NM: the running thread's first FPU instruction since it was switched in.
fn on_device_not_available(frame: &mut TrapFrame) {
    // Exception gates leave interrupts as they were: no switch may come
    // between finding the thread, clearing TS and marking the state live.
    let _irq = ukarch::irq::IrqGuard::new();
    let me = current_ptr_unguarded();
    if me.is_null() {
        panic!(
            "uksched: #NM (FPU not available) at RIP {:#x} on CPU {} before the scheduler runs here",
            frame.rip,
            ukplat::cpu::this_cpu()
        );
    }
    let cpu = CPUS.get();
    hw::clear_task_switched();
    // SAFETY: the running thread's record, alive while it runs; only this
    // CPU touches its area, with interrupts disabled.
    let area = unsafe { &mut *(*me).fpu.get() }.get_or_insert_with(FpuState::new);
    // SAFETY: TS is clear now; init ran on this CPU.
    unsafe { area.restore() };
    cpu.fpu_live.store(true, Ordering::Relaxed);
    cpu.fpu_restores.fetch_add(1, Ordering::Relaxed);
}
