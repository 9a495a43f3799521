//! # uksched — threads on every CPU
//!
//! What it offers:
//!
//! * **Threads** ([`spawn`], [`spawn_pinned`], [`Builder`]: closure, name,
//!   stack size, CPU affinity) with an exit value ([`JoinHandle::join`],
//!   [`exit`]), detaching (drop the handle), [`yield_now`],
//!   [`sleep`]/[`sleep_until`], [`current`], [`Thread::set_affinity`]
//!   (migration).
//! * **Wait queues** ([`WaitQueue`]): wait for a condition, with a timeout or
//!   deadline, wake one, some or all — safe against lost wake-ups on any
//!   number of CPUs. For futexes: waiters with a key and a bitset, a check
//!   under the queue's lock before sleeping ([`WaitQueue::wait_if`]), wake
//!   by predicate, requeue between two queues locked together
//!   ([`WaitQueue::pair`]), and waiting on several queues at once
//!   ([`wait_any`]); timeouts, wake-ups and requeues may race in any way
//!   ([`waitq`]: each waiter knows which queue holds it). The state word
//!   and the queue core are model-checked with loom (see *What loom
//!   checks* below). The sleeping locks of `uklock` and `posix-futex` are
//!   built on them.
//! * **Preemption control** ([`preempt`]): nestable, per CPU.
//! * **Quiescent states** ([`qs`]) for RCU: every pass through the
//!   scheduler counts one (a per-CPU counter increment), idle is an extended
//!   one (`ukplat::cpu::eqs_enter`), and [`qs::force`] asks a CPU for one;
//! * **Hooks** ([`hooks`]) on every context switch and idle entry, per CPU,
//!   for libraries such as RCU.
//! * **Thread-local data** ([`thread_local!`], [`LocalKey`]).
//! * **Statistics** ([`cpu_stats`], [`Thread::stats`], [`threads`]).
//!
//! ## How it works
//!
//! Every CPU has its own FIFO run queue, protected by a spinlock, and an
//! idle thread; the boot context becomes the thread `main`. A context
//! switch saves six registers and the stack pointer (`switch.rs`); the
//! FPU/SSE/AVX state is saved lazily with `xsave`, only for threads that
//! use it (`fpu.rs`). New threads go to the least loaded CPU their
//! affinity allows (ties: the CPU they last ran on); an idle CPU that finds
//! its queue empty steals a thread from the busiest queue before it halts;
//! halted CPUs are woken by IPI when work is queued for them
//! (`uksmp::wake`). Sleep deadlines and time slices are one-shot events on
//! each CPU's APIC timer (`uktime::timer`).
//!
//! Every thread stack comes from `ukvmem` with an unmapped guard page
//! below it. Overflowing it faults (a #PF that cannot push its frame
//! becomes a #DF on its own stack), and the fault report names the thread:
//! `STACK OVERFLOW in thread `worker` (id 7): 0x... is in the guard page ...`.
//! The boot thread `main` runs on the boot stack, which has no guard page.
//!
//! ## Policies (`uksched.policy`)
//!
//! * `coop` — Unikraft's `ukschedcoop` model, on every CPU: a thread runs
//!   until it yields, blocks, sleeps or exits. **A thread that never does
//!   keeps its CPU forever**: threads queued behind it on that CPU run only
//!   if an idle CPU steals them, and a wake-up placed there waits. Under
//!   `coop` the timer interrupt only wakes sleepers.
//! * `preempt` (default) — additionally, a thread that has run for
//!   `uksched.quantum_us` while another waits on its CPU is switched out at
//!   the next preemption point (return from an interrupt, or the end of a
//!   spinlock/[`preempt`] critical section). The slice timer is armed only
//!   while a thread waits behind the running one: a CPU with one runnable
//!   thread or none takes no timer interrupt (tickless).
//!
//! The policy is chosen at build time (`policy.rs`): switching it in the
//! app's TOML relinks the image with the other policy's code, and no code
//! changes.
//!
//! ## Rules
//!
//! * Blocking, sleeping and yielding need preemption enabled: not while
//!   holding a spinlock, in a [`preempt::Guard`], or in an interrupt
//!   handler. Doing so panics with the thread's name, instead of deadlocking.
//! * A wait condition ([`WaitQueue::wait_until`]) runs with preemption
//!   disabled and must not block.
//! * Panics stop the whole machine (`panic = "abort"`): there is no
//!   unwinding, so a thread cannot catch another thread's panic.
//! * Hooks: see [`hooks`].
//!
//! ```no_run
//! use uksched::{Builder, CpuSet, WaitQueue};
//! use core::sync::atomic::{AtomicU32, Ordering};
//!
//! static TURN: AtomicU32 = AtomicU32::new(0);
//! static QUEUE: WaitQueue = WaitQueue::new();
//!
//! // A thread on CPU 1 waits for its turn, then hands it back.
//! let ponger = Builder::new().name("pong").affinity(CpuSet::single(1)).spawn(|| {
//!     QUEUE.wait_until(|| TURN.load(Ordering::Acquire) == 1);
//!     TURN.store(2, Ordering::Release);
//!     QUEUE.wake_all();
//!     uksched::current().cpu()
//! }).unwrap();
//! TURN.store(1, Ordering::Release);
//! QUEUE.wake_all();
//! QUEUE.wait_until(|| TURN.load(Ordering::Acquire) == 2);
//! assert_eq!(ponger.join(), 1);
//! ```
//!
//! **Needs:** `ukplat` (per-CPU data, preemption counter and reschedule
//! hook, interrupt vectors, fault reports), `ukarch` (interrupts, FPU
//! state), `uktime` (clock, per-CPU timer events), `uksmp` (idle CPUs and
//! their wake-up IPIs), `ukspin` (run-queue and wait-queue locks),
//! `ukvmem` (guarded stacks), `ukalloc` (thread records), `ukboot` (init,
//! at `LIBRARY` level, after the secondary CPUs are online).
//!
//! **Layering:** the scheduler needs spinlocks (its queues), and sleeping
//! locks need the scheduler (they block on its wait queues); one crate
//! cannot hold both without a dependency cycle, so the spinlocks live
//! below it in `ukspin` and the sleeping locks above it in `uklock`.
//!
//! **Config options:** `policy` (`coop` | `preempt`), `quantum_us` (the
//! `preempt` time slice), `stack_kib` (default stack size).
//!
//! **Why loom:** the wake/sleep protocol is the part of a scheduler whose
//! bugs (a lost wake-up, a thread queued twice) show up once in a million
//! runs; `loom` explores its interleavings exhaustively, up to a bound.
//!
//! ## What loom checks
//!
//! `tests/loom.rs` (`RUSTFLAGS="--cfg loom" cargo test -p uksched --release
//! --test loom`) runs six models and two negative controls under every
//! interleaving up to a bound of preemptions (`LOOM_MAX_PREEMPTIONS`, 3 by
//! default) and every value the memory model allows the atomics' orderings
//! to return. Of this crate's code, [`state`] and [`waitq`] are in them —
//! the real [`state::StateWord`] and the real wait-queue core (waiter
//! nodes that know their queue, wake by predicate, requeue between two
//! queues, a waiter's own `dequeue`), with loom's atomics and mutex in
//! place of `core`'s and `ukspin`'s; `cfg(loom)` builds of the crate
//! contain nothing else. Around them, hand-written stand-ins transcribe
//! the rest step by step:
//!
//! | real code | stand-in in the models |
//! |---|---|
//! | `WaitQueue::round`, `wait_if`, `wake_one` (in `wait.rs`: begin the wait and queue under the lock, check, sleep, dequeue, `end_wait`) | the same steps re-written in the test (`push`, `waiter`, `timed_waiter`, `futex_waiter`, `pop` + wake) |
//! | `sched::schedule` / `sched::wake`, run queues, CPUs, IPIs | `block`, then spinning until a waker's `Wake::Enqueue` bumped a counter, then `set_running` |
//! | the per-CPU sleep timers (`add_timer`, `on_timer`, `cancel_timer`) | one armed slot and a thread that takes it |
//!
//! Not modelled: preemption control and interrupts, several waiters on one
//! queue (except two requeues in opposite directions), `wait_any`, yields
//! and preemption (`set_queued`), migration and work stealing, exit and
//! `join`. So loom shows that the state word and the queue core, used as
//! the stand-ins use them, lose no wake-up (also with the futex value
//! check under the lock), enqueue a thread at most once, never let a stale
//! wake-up end a later wait, and leave no node on any queue however a
//! requeue, a timeout and a wake-up interleave; whether `wait.rs` and
//! `sched.rs` use them that way is checked by reading them against the
//! models and by the in-guest tests.
#![cfg_attr(not(test), no_std)]
// `cfg(loom)` builds (the model checks in `tests/loom.rs`) contain the
// state word and the wait-queue core alone: everything else needs the guest's spinlocks, per-CPU
// data and stacks, which are not built for loom (the models stand in for
// them; see "What loom checks" above).

#[cfg(not(loom))]
extern crate alloc;

#[cfg(not(loom))]
mod cpuset;
#[cfg(not(loom))]
mod fault;
#[cfg(not(loom))]
mod fpu;
#[cfg(not(loom))]
pub mod hooks;
#[cfg(not(loom))]
mod list;
#[cfg(not(loom))]
mod policy;
#[cfg(not(loom))]
pub mod qs;
#[cfg(not(loom))]
mod sched;
pub mod state;
#[cfg(not(loom))]
mod switch;
#[cfg(not(loom))]
mod thread;
#[cfg(not(loom))]
mod tls;
#[cfg(not(loom))]
mod wait;
pub mod waitq;

#[cfg(not(loom))]
#[cfg(feature = "uktest")]
mod guest_tests;
#[cfg(not(loom))]
#[cfg(feature = "uktest")]
mod wait_tests;

#[cfg(not(loom))]
pub use cpuset::CpuSet;
#[cfg(not(loom))]
pub use thread::{
    Builder, JoinHandle, SpawnError, Thread, ThreadStats, current, current_id, exit, spawn, spawn_pinned,
    try_current_id, yield_now, yield_until,
};
#[cfg(not(loom))]
pub use tls::LocalKey;
#[cfg(not(loom))]
pub use uktime::Instant;
#[cfg(not(loom))]
pub use wait::{AnyEntry, AnyOutcome, MATCH_ANY, QueuePair, WaitOutcome, WaitQueue, WaitResult, wait_any};

#[cfg(not(loom))]
use core::sync::atomic::Ordering;
#[cfg(not(loom))]
use core::time::Duration;
#[cfg(not(loom))]
use ukplat::cpu::CpuIndex;

#[cfg(not(loom))]
/// The default stack size (`uksched.stack_kib`).
pub const DEFAULT_STACK_SIZE: usize = ukconfig::uksched::STACK_KIB * 1024;

#[cfg(not(loom))]
/// The configured policy's name: `"coop"` or `"preempt"`.
pub const POLICY: &str = <policy::Configured as policy::Policy>::NAME;

#[cfg(not(loom))]
/// Whether the configured policy preempts.
pub const PREEMPTIVE: bool = policy::PREEMPTIVE;

#[cfg(not(loom))]
/// The `preempt` time slice (zero under `coop`).
pub const TIME_SLICE: Duration = Duration::from_nanos(policy::SLICE_NS);

#[cfg(not(loom))]
/// Blocks the calling thread for at least `d` (it wakes at the first timer
/// interrupt at or after the deadline, then waits for its CPU).
pub fn sleep(d: Duration) {
    sleep_until(uktime::now() + d);
}

#[cfg(not(loom))]
/// Blocks the calling thread until `deadline` has passed.
pub fn sleep_until(deadline: Instant) {
    sched::sleep_until(deadline.as_nanos());
}

#[cfg(not(loom))]
/// Whether the scheduler has started (its init runs at
/// `ukboot::priority::LIBRARY`).
pub fn started() -> bool {
    sched::started()
}

#[cfg(not(loom))]
/// Preemption control, per CPU and nestable: while disabled, a preemptive
/// scheduler does not switch away from the running thread (it may still
/// block or yield by itself — no: doing so panics). Interrupts still run.
///
/// ```no_run
/// {
///     let _no_preempt = uksched::preempt::Guard::new();
///     // ... per-CPU work that must stay on this CPU ...
/// }
/// ```
pub mod preempt {
    pub use ukplat::cpu::PreemptGuard as Guard;
    pub use ukplat::cpu::{preempt_count as count, preempt_disable as disable, preempt_enable as enable};
}

#[cfg(not(loom))]
/// A CPU's scheduler statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Context switches.
    pub switches: u64,
    /// Time spent running threads other than the idle thread (ns; accounted
    /// at each switch).
    pub busy_ns: u64,
    /// Time spent in the idle thread (ns; accounted at each switch).
    pub idle_ns: u64,
    /// Passes through the idle loop (each before a halt or a pick).
    pub idle_entries: u64,
    /// Threads this CPU took from other CPUs' queues when idle.
    pub steals: u64,
    /// Switches forced by a reschedule request (`preempt`: slice ends,
    /// wake-ups onto a busy CPU, affinity changes).
    pub preemptions: u64,
    /// FPU state restores after #NM (threads using the FPU).
    pub fpu_restores: u64,
}

#[cfg(not(loom))]
/// CPU `cpu`'s statistics.
pub fn cpu_stats(cpu: CpuIndex) -> CpuStats {
    let s = sched::CPUS.get_for(cpu);
    CpuStats {
        switches: s.switches.load(Ordering::Relaxed),
        busy_ns: s.busy_ns.load(Ordering::Relaxed),
        idle_ns: s.idle_ns.load(Ordering::Relaxed),
        idle_entries: s.idle_entries.load(Ordering::Relaxed),
        steals: s.steals.load(Ordering::Relaxed),
        preemptions: s.preemptions.load(Ordering::Relaxed),
        fpu_restores: s.fpu_restores.load(Ordering::Relaxed),
    }
}

#[cfg(not(loom))]
/// Thread counts since boot: (created, exited). The boot and idle threads
/// are not counted.
pub fn threads() -> (u64, u64) {
    (sched::CREATED.load(Ordering::Relaxed), sched::EXITED_COUNT.load(Ordering::Relaxed))
}
