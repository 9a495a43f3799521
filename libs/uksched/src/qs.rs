//! Quiescent states: the points where the scheduler knows that a CPU holds
//! no reference into data that a grace period protects. RCU (`ukrcu`)
//! builds its grace periods on them.
//!
//! * **Every pass through the scheduler** is one: a context switch, a
//!   `yield_now` that finds nothing else to run, a wait that was woken
//!   before it blocked, each turn of the idle loop. The scheduler runs only
//!   with the preemption counter at its caller's own level (never inside a
//!   spinlock or a `PreemptGuard`, hence never inside a read-side critical
//!   section that disables preemption), so nothing read before the pass is
//!   still in use after it. Each pass adds one to a per-CPU counter with a
//!   full barrier (one locked increment on a line only this CPU writes) —
//!   no hook call, no shared cache line.
//! * **Idle** is an *extended* quiescent state: `ukplat::cpu`'s per-CPU
//!   counter is even while the idle thread halts and odd otherwise
//!   (interrupts arriving in idle make it odd for their duration), in the
//!   style of Linux's dynticks counter. A CPU that stays idle for a whole
//!   grace period is never woken for it.
//!
//! A grace-period detector takes a [`Snapshot`] of every CPU and waits
//! until each has [`passed`](Snapshot::passed) a quiescent state since:
//! its idle counter was even at the snapshot (idle then: it held nothing,
//! and whatever it reads later was published before), or one of the two
//! counters has moved. A CPU that holds a grace period up can be asked for
//! one with [`force`].
//!
//! ```no_run
//! use uksched::qs;
//! let cpus = ukplat::cpu::count();
//! let snaps: Vec<qs::Snapshot> = (0..cpus).map(qs::Snapshot::take).collect();
//! // ... later: has every CPU passed a quiescent state since?
//! let all = snaps.iter().all(|s| s.passed());
//! # let _ = all;
//! ```

use crate::sched::{CPUS, Cpu};
use core::sync::atomic::Ordering;
use ukplat::cpu::{self, CpuIndex};

/// Counts a quiescent state on this CPU, whose scheduler state the caller
/// has at hand (called by the scheduler with preemption or interrupts
/// disabled). The `SeqCst` increment is a full
/// barrier: every access before it is ordered before every access after.
#[inline(always)]
pub(crate) fn report(cpu: &Cpu) {
    cpu.qs_passes.fetch_add(1, Ordering::SeqCst);
}

/// Scheduler passes (quiescent states) of CPU `cpu` since boot.
pub fn passes(cpu: CpuIndex) -> u64 {
    CPUS.get_for(cpu).qs_passes.load(Ordering::SeqCst)
}

/// Both quiescent-state counters of one CPU at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The CPU.
    pub cpu: CpuIndex,
    /// Its scheduler passes ([`passes`]).
    pub passes: u64,
    /// Its extended-quiescent-state counter (`ukplat::cpu::eqs_counter`:
    /// even while idle).
    pub eqs: u64,
}

impl Snapshot {
    /// Reads CPU `cpu`'s counters (sequentially consistent loads: take the
    /// snapshot after a full barrier that orders the updates it protects).
    pub fn take(cpu: CpuIndex) -> Snapshot {
        Snapshot { cpu, eqs: cpu::eqs_counter(cpu), passes: passes(cpu) }
    }

    /// Whether the CPU has passed a quiescent state since the snapshot:
    /// it was idle then, or has passed through the scheduler or into or
    /// out of idle since.
    pub fn passed(&self) -> bool {
        self.eqs & 1 == 0 || cpu::eqs_counter(self.cpu) != self.eqs || passes(self.cpu) != self.passes
    }
}

/// Asks CPU `cpu` for a quiescent state now, for a grace period that it
/// holds up. Under `preempt` it interrupts the CPU (a cross-CPU call): if
/// the interrupted code was preemptible, that is a quiescent state at
/// once; if not (a read-side critical section, a spinlock), a reschedule
/// is requested, so the CPU passes through the scheduler as soon as the
/// section ends. Under `coop` a running thread cannot be made to yield, so
/// this does nothing and returns false: the CPU reports at its next
/// scheduling point. Returns whether an interrupt was sent.
pub fn force(cpu: CpuIndex) -> bool {
    if !crate::policy::PREEMPTIVE || cpu >= cpu::count() || !uksmp::online(cpu) {
        return false;
    }
    uksmp::run_on_nowait(cpu, from_interrupt);
    true
}

/// The forcing call, in interrupt context on the CPU asked (or directly,
/// interrupts disabled, when that is the calling CPU).
fn from_interrupt() {
    // The interrupted code ran with the preemption counter at 0 and was
    // not itself a handler (depth 1: this call's own): it held nothing.
    if cpu::interrupt_depth() == 1 && cpu::preempt_count() == 0 {
        report(CPUS.get());
    } else {
        cpu::request_resched(cpu::this_cpu());
    }
}
