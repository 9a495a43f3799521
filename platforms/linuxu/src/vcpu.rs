//! Virtual CPUs: each CPU is a host thread, and its interrupts are signals
//! gated by a virtual interrupt flag.
//!
//! # Interrupts
//!
//! Each CPU has, in its [`VCpu`]:
//!
//! * `enabled`, the virtual interrupt flag. Disabling interrupts is one
//!   store to it: no system call, no signal mask change;
//! * `pending`, a 256-bit mask of raised vectors (the IRR of this CPU);
//! * `events`, a counter of interrupts taken, which is also the futex word a
//!   halted CPU sleeps on.
//!
//! This is the design of Xen's event channels (an upcall mask and a pending
//! bitmap in shared memory): a source sets the vector's bit, then sends the
//! CPU's thread a signal with `tgkill` — [`SIG_IPI`] for inter-processor
//! interrupts, [`SIG_TIMER`] from its POSIX timer. The signal handler
//! ([`on_interrupt_signal`]) runs on the interrupted thread's own stack,
//! and:
//!
//! * with the flag clear, returns at once: the bit stays pending, and
//!   [`enable`] replays it when the code re-enables interrupts (as `sti`
//!   lets a pending interrupt in);
//! * with the flag set, clears the flag (as an interrupt gate does), takes
//!   every pending vector through `ukplat::irq`'s handlers, sets it again,
//!   and returns — and since the handlers run on the interrupted thread's
//!   stack, a preemptive scheduler may switch threads from inside the
//!   handler (`ukplat::cpu::preempt_on_irq_return`); the signal frame waits
//!   on the preempted thread's stack until it runs again.
//!
//! Handlers are installed with `SA_NODEFER`, so a CPU that switched threads
//! inside a handler still receives signals; the virtual flag, clear while a
//! handler runs, keeps them from nesting.
//!
//! # Halting
//!
//! [`enable_and_halt`] reads `events`, enables interrupts (taking anything
//! pending) and sleeps with `FUTEX_WAIT` on `events` while it is unchanged.
//! A signal either interrupts the wait (`EINTR`) after its handler ran, or
//! arrived before it and changed `events`, so the wait returns at once
//! (`EAGAIN`): no wake-up is lost, the job `sti; hlt` does on hardware.

use crate::sys::{self, abi};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering, compiler_fence};
use ukplat::cpu::{CpuIndex, MAX_CPUS};
use ukplat::irq::TrapFrame;

/// The signal that carries inter-processor interrupts.
pub const SIG_IPI: u32 = abi::SIGUSR1;
/// The signal of each CPU's timer.
pub const SIG_TIMER: u32 = abi::SIGUSR2;

// The two interrupt signals are distinct, and neither is one of the signals
// that stand for CPU exceptions (`fault.rs`).
const _: () = {
    let faults = [abi::SIGSEGV, abi::SIGBUS, abi::SIGILL, abi::SIGFPE, abi::SIGTRAP];
    assert!(SIG_IPI != SIG_TIMER);
    let mut i = 0;
    while i < faults.len() {
        assert!(faults[i] != SIG_IPI && faults[i] != SIG_TIMER);
        i += 1;
    }
};

/// One virtual CPU's interrupt state.
pub struct VCpu {
    /// The virtual interrupt flag.
    enabled: AtomicBool,
    /// Raised vectors not yet taken.
    pending: [AtomicU64; 4],
    /// Interrupts taken (the halt futex word).
    events: AtomicU32,
    /// The host thread id of this CPU (0 until it runs).
    pub(crate) tid: AtomicI32,
}

impl VCpu {
    const fn new() -> Self {
        Self {
            enabled: AtomicBool::new(false),
            pending: [const { AtomicU64::new(0) }; 4],
            events: AtomicU32::new(0),
            tid: AtomicI32::new(0),
        }
    }

    /// Raises `vector`; returns whether it was not pending yet.
    pub(crate) fn raise(&self, vector: u8) -> bool {
        let bit = 1u64 << (vector % 64);
        self.pending[usize::from(vector / 64)].fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    fn any_pending(&self) -> bool {
        self.pending.iter().any(|w| w.load(Ordering::Relaxed) != 0)
    }
}

static VCPUS: [VCpu; MAX_CPUS] = [const { VCpu::new() }; MAX_CPUS];

/// CPU `cpu`'s state.
pub(crate) fn vcpu(cpu: CpuIndex) -> &'static VCpu {
    &VCPUS[cpu]
}

/// This CPU's state (through GS: valid once the CPU's header is set).
#[inline(always)]
fn this() -> &'static VCpu {
    &VCPUS[ukplat::cpu::this_cpu()]
}

/// The process id (the thread group every CPU thread belongs to).
pub(crate) static PID: AtomicI32 = AtomicI32::new(0);

/// Enables interrupts, taking any that are pending.
#[inline(always)]
pub fn enable() {
    let cpu = this();
    cpu.enabled.store(true, Ordering::Relaxed);
    // A signal handler runs on this thread: order the flag before the
    // pending check against it (a compiler fence suffices on one thread).
    compiler_fence(Ordering::SeqCst);
    if cpu.any_pending() {
        replay(cpu);
    }
}

/// Disables interrupts.
#[inline(always)]
pub fn disable() {
    this().enabled.store(false, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
}

/// Disables interrupts on this CPU if it has a per-CPU header yet (fault
/// reports, which may come from a CPU's first instructions).
pub(crate) fn disable_if_set_up() {
    if let Some(cpu) = ukplat::cpu::try_this_cpu() {
        VCPUS[cpu].enabled.store(false, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
    }
}

/// Whether interrupts are enabled.
#[inline(always)]
pub fn enabled() -> bool {
    this().enabled.load(Ordering::Relaxed)
}

/// Enables interrupts and sleeps until one was taken.
pub fn enable_and_halt() {
    let cpu = this();
    let seen = cpu.events.load(Ordering::Acquire);
    enable();
    if cpu.events.load(Ordering::Acquire) == seen {
        // EINTR (a signal's handler ran), EAGAIN (one ran before the wait)
        // and a spurious return all mean: look again, which the caller does.
        sys::futex_wait(&cpu.events, seen);
    }
}

/// Raises `vector` on `cpu` and signals its thread.
pub fn send(cpu: CpuIndex, vector: u8) {
    let target = &VCPUS[cpu];
    if target.raise(vector) {
        let tid = target.tid.load(Ordering::Acquire);
        let ret = sys::tgkill(PID.load(Ordering::Relaxed), tid, SIG_IPI);
        if ret < 0 {
            crate::fail(format_args!(
                "tgkill of CPU {cpu} (thread {tid}) for vector {vector:#x}: errno {}",
                -ret
            ));
        }
    }
}

/// Takes the pending interrupts that a signal left while interrupts were
/// disabled (called by [`enable`], with the flag set).
#[cold]
#[inline(never)]
fn replay(cpu: &VCpu) {
    let mut frame = TrapFrame { rflags: 1 << 9, ..TrapFrame::default() };
    take_pending(cpu, &mut frame);
}

/// With the flag set: clears it, runs the handler of every pending vector
/// (highest first, as the local APIC delivers them), sets it again, and
/// repeats until nothing is pending.
fn take_pending(cpu: &VCpu, frame: &mut TrapFrame) {
    loop {
        cpu.enabled.store(false, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        for word in (0..4).rev() {
            let mut bits = cpu.pending[word].swap(0, Ordering::AcqRel);
            if bits != 0 {
                // Interrupts taken: a halt that read `events` before must not sleep.
                cpu.events.fetch_add(1, Ordering::Release);
            }
            while bits != 0 {
                let high = 63 - bits.leading_zeros();
                bits &= !(1u64 << high);
                frame.vector = (word * 64) as u64 + u64::from(high);
                crate::take_interrupt(frame);
            }
        }
        cpu.enabled.store(true, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        if !cpu.any_pending() {
            return;
        }
    }
}

/// The handler of [`SIG_IPI`] and [`SIG_TIMER`].
pub(crate) extern "C" fn on_interrupt_signal(
    sig: u32,
    _info: *mut abi::siginfo,
    context: *mut sys::UContext,
) {
    let cpu = this();
    if sig == SIG_TIMER {
        cpu.raise(ukplat::irq::vector::TIMER);
    }
    // Count the signal even when masked: a halt that read `events` before
    // it must not sleep.
    cpu.events.fetch_add(1, Ordering::Release);
    if !cpu.enabled.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler;
    // nothing else refers to it while the handler runs.
    let mc = unsafe { &mut (*context).uc_mcontext };
    let mut frame = crate::frame_of(mc, 0, 0);
    take_pending(cpu, &mut frame);
}

/// Futex word on which the boot CPU waits for the others to come up.
pub(crate) static ALIVE: AtomicU32 = AtomicU32::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_sets_one_bit_once() {
        let cpu = VCpu::new();
        assert!(!cpu.any_pending());
        assert!(cpu.raise(0xf1), "first raise of a vector");
        assert!(!cpu.raise(0xf1), "already pending: no second signal needed");
        assert!(cpu.raise(0x30));
        assert!(cpu.raise(0));
        assert_eq!(cpu.pending[3].load(Ordering::Relaxed), 1 << (0xf1 - 192));
        assert_eq!(cpu.pending[0].load(Ordering::Relaxed), 1 << 0x30 | 1);
        assert!(cpu.any_pending());
    }
}
