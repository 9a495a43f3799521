//! Hooks: other libraries' functions called on every context switch and
//! every idle entry, per CPU.
//!
//! (RCU does not use them: it reads the per-CPU quiescent-state counters
//! of [`crate::qs`], which cost less than a call per switch.)
//!
//! **Rules** for a hook:
//!
//! * It runs on the CPU concerned, with **interrupts disabled** and
//!   preemption disabled, in the middle of the switch (after the next
//!   thread was chosen, before its registers are loaded) or at the top of
//!   the idle loop, before the CPU halts.
//! * It must **not block, sleep, yield or wait** for another CPU, and not
//!   take a lock an interrupt handler or the scheduler may hold (the
//!   scheduler's run-queue locks, a wait queue's lock). Atomics and per-CPU
//!   data only; keep it to a few instructions, it is on every switch.
//! * It must not panic.
//! * Registration is for init time: up to [`MAX_HOOKS`] of each kind, never
//!   removed.
//!
//! ```no_run
//! use core::sync::atomic::{AtomicU64, Ordering};
//! static QUIESCENT: AtomicU64 = AtomicU64::new(0);
//! fn report(_cpu: usize) {
//!     QUIESCENT.fetch_add(1, Ordering::Relaxed);
//! }
//! uksched::hooks::on_switch(report).expect("a free hook slot");
//! uksched::hooks::on_idle(report).expect("a free hook slot");
//! ```

use ukplat::cpu::CpuIndex;
use ukplat::slot::FnSlot;

/// A hook: called with the CPU's index.
pub type Hook = fn(CpuIndex);

/// Slots per kind of hook.
pub const MAX_HOOKS: usize = 8;

/// Every slot of one kind is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HooksFull;

impl core::fmt::Display for HooksFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "all {MAX_HOOKS} uksched hook slots of this kind are taken")
    }
}

/// Hooks of one kind, filled from the front (the first free slot takes a
/// hook; they are never removed, so the first empty slot ends the list).
struct Slots([FnSlot<Hook>; MAX_HOOKS]);

impl Slots {
    const fn new() -> Self {
        Self([const { FnSlot::new() }; MAX_HOOKS])
    }

    fn add(&self, hook: Hook) -> Result<(), HooksFull> {
        if self.0.iter().any(|slot| slot.store_if_empty(hook).is_ok()) { Ok(()) } else { Err(HooksFull) }
    }

    #[inline(always)]
    fn run(&self, cpu: CpuIndex) {
        for slot in &self.0 {
            let Some(hook) = slot.load() else { break };
            hook(cpu);
        }
    }
}

static SWITCH: Slots = Slots::new();
static IDLE: Slots = Slots::new();
static SCHEDULE_BUG: Slots = Slots::new();

/// Registers `hook` to run on every context switch, on the switching CPU.
///
/// # Errors
/// [`HooksFull`] when [`MAX_HOOKS`] are registered already.
pub fn on_switch(hook: Hook) -> Result<(), HooksFull> {
    SWITCH.add(hook)
}

/// Registers `hook` to run each time a CPU's idle thread is about to halt
/// (or looks for work), on that CPU.
///
/// # Errors
/// [`HooksFull`] when [`MAX_HOOKS`] are registered already.
pub fn on_idle(hook: Hook) -> Result<(), HooksFull> {
    IDLE.add(hook)
}

/// Registers `hook` to run just before the scheduler panics because a
/// thread tried to block, sleep or yield where it must not (preemption
/// disabled, or in an interrupt handler), on that CPU: a hook prints what
/// it knows about why (`ukrcu` names an open read-side critical section).
/// The rules above apply; it may print.
///
/// # Errors
/// [`HooksFull`] when [`MAX_HOOKS`] are registered already.
pub fn on_schedule_bug(hook: Hook) -> Result<(), HooksFull> {
    SCHEDULE_BUG.add(hook)
}

#[cold]
pub(crate) fn run_schedule_bug(cpu: CpuIndex) {
    SCHEDULE_BUG.run(cpu);
}

#[inline(always)]
pub(crate) fn run_switch(cpu: CpuIndex) {
    SWITCH.run(cpu);
}

#[inline(always)]
pub(crate) fn run_idle(cpu: CpuIndex) {
    IDLE.run(cpu);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static SEEN: AtomicUsize = AtomicUsize::new(0);
    fn count(cpu: CpuIndex) {
        SEEN.fetch_add(cpu + 1, Ordering::Relaxed);
    }

    #[test]
    fn hooks_run_in_order_and_slots_run_out() {
        let slots = Slots::new();
        for _ in 0..MAX_HOOKS {
            slots.add(count).unwrap();
        }
        assert_eq!(slots.add(count), Err(HooksFull));
        slots.run(2);
        assert_eq!(SEEN.load(Ordering::Relaxed), 3 * MAX_HOOKS);
    }
}
