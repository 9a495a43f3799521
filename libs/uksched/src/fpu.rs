//! Switching FPU/SSE/AVX state between threads: lazily where the platform
//! can trap FPU instructions (kvm), eagerly where it cannot (linuxu).
//!
//! Guest Rust code is soft-float and never touches the extended registers;
//! only application code using SSE/AVX (inline assembly, hand-written
//! kernels) does. So a thread that never uses them should cost the switch
//! next to nothing.
//!
//! **Lazy** (`ukplat::fpu::can_trap()`): a thread that never uses the FPU
//! costs the switch one per-CPU flag test.
//!
//! * When a thread switches out after using the FPU in this time slice
//!   (the CPU's `fpu_live` flag), its state is saved (`xsaveopt`/`xsave`,
//!   or `fxsave` without XSAVE) into its own area and the trap is armed
//!   (CR0.TS on kvm).
//! * With the trap armed, the next FPU/SSE/AVX instruction of any thread on
//!   that CPU raises #NM (vector 7). Its handler disarms it, restores that
//!   thread's saved state (a fresh thread gets the initial state), and
//!   marks the FPU live again.
//!
//! **Eager** (no trap): at each switch the outgoing thread's state is saved
//! when any component is not in its initial state (XINUSE, one `xgetbv`),
//! and the incoming thread's saved state is loaded, or the initial state
//! when it has none and the registers hold someone else's. A thread that
//! never uses the FPU costs one `xgetbv` per switch.
//!
//! Either way the state is in memory while a thread is switched out, so a
//! thread can resume on any CPU. The save area (sized for the enabled
//! XSAVE components) is allocated at a thread's first FPU instruction
//! (lazy) or with the thread (eager).

use crate::sched::{CPUS, Cpu, current_ptr_unguarded};
use crate::thread::ThreadInner;
use core::sync::atomic::{AtomicBool, Ordering};
use ukarch::fpu::{self as hw, FpuState};
use ukplat::irq::TrapFrame;

/// The #NM vector.
const DEVICE_NOT_AVAILABLE: u8 = 7;

/// Whether state is switched lazily (decided once, at [`install`]).
static LAZY: AtomicBool = AtomicBool::new(false);

/// The save area a new thread starts with: none with lazy switching (it
/// comes with the first FPU instruction), one with eager switching, where a
/// save may be due at any switch: allocating it then would make a
/// long-lived thread (main, the idle threads) allocate at an unpredictable
/// moment — XINUSE may report a component in use that the thread never
/// touched, which the architecture allows.
pub(crate) fn area_at_creation() -> Option<FpuState> {
    (!LAZY.load(Ordering::Relaxed)).then(FpuState::new)
}

/// Installs the #NM handler (lazy switching), or chooses eager switching.
pub(crate) fn install() {
    LAZY.store(ukplat::fpu::can_trap(), Ordering::Relaxed);
    if !LAZY.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = ukplat::irq::register(DEVICE_NOT_AVAILABLE, on_device_not_available) {
        panic!("uksched: cannot install the #NM handler for lazy FPU switching: {e}");
    }
}

/// Starts lazy switching on this CPU. `live`: the running context may hold
/// FPU state worth keeping (the boot context); otherwise the registers are
/// discarded and the first FPU instruction traps.
pub(crate) fn init_cpu(cpu: &Cpu, live: bool) {
    cpu.fpu_live.store(live, Ordering::Relaxed);
    if !live && LAZY.load(Ordering::Relaxed) {
        ukplat::fpu::set_trap(true);
    }
}

/// Saves the outgoing thread's state if it used the FPU (interrupts
/// disabled, on the switching CPU).
#[inline(always)]
pub(crate) fn switch_out(cpu: &Cpu, prev: &ThreadInner) {
    if LAZY.load(Ordering::Relaxed) {
        if cpu.fpu_live.load(Ordering::Relaxed) {
            save(cpu, prev);
        }
    } else if hw::in_use() != 0 {
        save_eager(prev);
    } else {
        prev.fpu_saved.store(false, Ordering::Relaxed);
    }
}

/// Eager switching: loads the incoming thread's state (interrupts disabled,
/// on its CPU, right after the switch).
#[inline(always)]
pub(crate) fn switch_in(cpu: &Cpu) {
    if LAZY.load(Ordering::Relaxed) {
        return;
    }
    let me = current_ptr_unguarded();
    if me.is_null() {
        return;
    }
    // SAFETY: the running thread's record is alive while it runs.
    let me = unsafe { &*me };
    if me.fpu_saved.load(Ordering::Relaxed) {
        // SAFETY: `me` runs on this CPU now, interrupts disabled: only it
        // touches its area; the FPU is usable (no trap on this platform).
        let area = unsafe { &*me.fpu.get() };
        if let Some(area) = area {
            // SAFETY: as above; the area holds a state saved on this machine.
            unsafe { area.restore() };
            cpu.fpu_restores.fetch_add(1, Ordering::Relaxed);
        }
    } else if hw::in_use() != 0 {
        // SAFETY: the registers hold the previous thread's state, already
        // saved: the initial state replaces it.
        unsafe { hw::load_initial() };
    }
}

#[inline(never)]
fn save_eager(prev: &ThreadInner) {
    // SAFETY: `prev` is the running thread of this CPU (being switched
    // out), and only its CPU touches its area, interrupts disabled.
    let area = unsafe { &mut *prev.fpu.get() }.get_or_insert_with(FpuState::new);
    // SAFETY: the FPU is usable (no trap on this platform).
    unsafe { area.save() };
    prev.fpu_saved.store(true, Ordering::Relaxed);
}

#[inline(never)]
fn save(cpu: &Cpu, prev: &ThreadInner) {
    // SAFETY: `prev` is the running thread of this CPU (being switched
    // out), and only its CPU touches its area, interrupts disabled.
    let area = unsafe { &mut *prev.fpu.get() }.get_or_insert_with(FpuState::new);
    // SAFETY: TS is clear (the FPU is live) and init ran on this CPU.
    unsafe { area.save() };
    ukplat::fpu::set_trap(true);
    cpu.fpu_live.store(false, Ordering::Relaxed);
}

/// #NM: the running thread's first FPU instruction since it was switched in.
fn on_device_not_available(frame: &mut TrapFrame) {
    // Exception gates leave interrupts as they were: no switch may come
    // between finding the thread, clearing TS and marking the state live.
    let _irq = ukplat::irq::IrqGuard::new();
    let me = current_ptr_unguarded();
    if me.is_null() {
        panic!(
            "uksched: #NM (FPU not available) at RIP {:#x} on CPU {} before the scheduler runs here",
            frame.rip,
            ukplat::cpu::this_cpu()
        );
    }
    let cpu = CPUS.get();
    ukplat::fpu::set_trap(false);
    // SAFETY: the running thread's record, alive while it runs; only this
    // CPU touches its area, with interrupts disabled.
    let area = unsafe { &mut *(*me).fpu.get() }.get_or_insert_with(FpuState::new);
    // SAFETY: TS is clear now; init ran on this CPU.
    unsafe { area.restore() };
    cpu.fpu_live.store(true, Ordering::Relaxed);
    cpu.fpu_restores.fetch_add(1, Ordering::Relaxed);
}
