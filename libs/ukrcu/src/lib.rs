//! # ukrcu — read-copy-update
//!
//! Readers of shared data take no lock and write no shared memory. Writers
//! publish a new version with one atomic pointer store and free the old one
//! only after a *grace period*: once every CPU has passed a *quiescent
//! state*, a point where it holds no reference from a read-side critical
//! section. Quiescent states come from the scheduler (`uksched::qs`): every
//! pass through it, and idle, which is an extended quiescent state that a
//! grace period sees without waking the CPU. This is the QSBR flavour
//! (quiescent-state-based reclamation), as in Linux's `rcu_sched` and
//! liburcu's `urcu-qsbr`.
//!
//! ## API, next to Linux's
//!
//! | Linux | ukrcu |
//! |---|---|
//! | `rcu_read_lock()` / `rcu_read_unlock()` | [`read_lock`] returns a [`ReadGuard`]; dropping it unlocks. Nestable, `!Send` |
//! | `rcu_dereference(p)` | [`RcuCell::load`]`(&guard)`: an `Option<&T>` that cannot outlive the guard |
//! | `rcu_assign_pointer(p, v)` | [`RcuCell::replace`] (returns the old value as a [`Retired`]), [`RcuCell::store`], [`RcuCell::compare_exchange`] |
//! | `synchronize_rcu()` | [`synchronize`] |
//! | `synchronize_rcu_expedited()` | [`synchronize_expedited`] |
//! | `call_rcu(head, func)` | [`call_rcu`]`(closure)` |
//! | `kfree_rcu(p)` | [`Retired::free_after_grace_period`] |
//! | `rcu_barrier()` | [`barrier`] |
//! | `get_state_synchronize_rcu()` / `poll_state_synchronize_rcu()` | [`Retired::grace_period_done`] |
//! | `list_add_rcu` / `list_add_tail_rcu` / `list_del_rcu` / `list_replace_rcu` / `list_for_each_entry_rcu` | [`RcuList`]: [`RcuList::lock`] gives the [`list::Writer`] (`push_front`, `push_back`, `remove`, `replace`, a cursor); [`RcuList::iter`]`(&guard)` |
//!
//! A [`Retired`] can only be freed after a grace period: deferred with
//! [`Retired::free_after_grace_period`], or by [`synchronize`] and then
//! dropping it (or [`Retired::into_box`]). Dropping one too early does not
//! free it early: it defers its own free.
//!
//! ```no_run
//! use ukrcu::RcuCell;
//!
//! struct Config { verbose: bool }
//! static CONFIG: RcuCell<Config> = RcuCell::null();
//!
//! // Readers, on any CPU, at any rate:
//! fn verbose() -> bool {
//!     let guard = ukrcu::read_lock();
//!     CONFIG.load(&guard).is_some_and(|c| c.verbose)
//! }
//!
//! // A writer:
//! let old = CONFIG.replace(Some(Box::new(Config { verbose: true })));
//! ukrcu::synchronize();      // every reader of `old` has finished
//! drop(old);                 // freed here
//! ```
//!
//! [`RcuList`] ([`list`]) is a singly linked list built on the same rules:
//! readers walk it under a [`ReadGuard`] with no lock; writers change it
//! only through the [`list::Writer`] that holds its spinlock, and get every
//! removed or replaced node back as a [`Retired`] (a removed node keeps its
//! `next`, so readers standing on it go on), to free without blocking.
//!
//! ## Cost
//!
//! * **Read side:** [`read_lock`] and dropping the guard are a preemption
//!   counter increment and decrement under `uksched.policy = "preempt"`
//!   (that is what keeps the scheduler away) and nothing at all under
//!   `coop` in release builds. [`RcuCell::load`] is one load. Debug builds
//!   also count open sections per CPU and disable preemption under `coop`
//!   too, so that blocking inside a section is reported (the scheduler
//!   panics, and this crate's hook names the section, as Linux's
//!   "voluntary context switch within RCU read-side critical section").
//! * **Quiescent states:** one locked increment of a per-CPU counter per
//!   pass through the scheduler, two per idle period (in `uksched` and
//!   `ukplat`); nothing shared is written.
//!
//! ## How grace periods work
//!
//! The state machine is in [`gp`] (sequence numbers, snapshots, hold-out
//! CPUs); the engine around it, in a thread named `rcu_gp`:
//!
//! 1. **Requests.** [`synchronize`], [`call_rcu`] and [`barrier`] take a
//!    snapshot of the grace-period sequence ([`gp::GpSeq::snap`]): the
//!    value at which a grace period that started after their update has
//!    ended. Callers that arrive before a grace period starts share it;
//!    the thread is woken only when a request goes beyond what was asked.
//! 2. **Start.** The thread makes the sequence odd and takes a snapshot of
//!    every CPU's two counters (`uksched::qs::Snapshot`): CPUs that are
//!    idle then, and its own CPU, are quiescent already.
//! 3. **Wait.** It rescans the others, sleeping between scans (10 µs
//!    doubling to 1 ms), until each has passed a quiescent state. A CPU
//!    still holding it up after `ukrcu.force_after_us` (1 ms) is forced:
//!    under `preempt` it is interrupted, and a preemptible CPU reports at
//!    once while one in a read-side section passes through the scheduler
//!    as the section ends; under `coop` nothing can make a running thread
//!    yield, and the CPU reports at its next scheduling point (every pass
//!    counts). After `ukrcu.stall_timeout_ms` (2 s) it prints a stall
//!    report naming the CPUs, and each stalled CPU names its running
//!    thread itself (`rcu_qsbr self-detected stall on CPU N`), again every
//!    period while the stall lasts. An expedited request forces every
//!    hold-out at once and polls without sleeping.
//! 4. **End.** The sequence turns even; `synchronize` callers whose
//!    snapshot it reached wake up; then the thread runs every callback
//!    whose snapshot it reached.
//!
//! **Callbacks** are queued per CPU ([`call_rcu`] writes only its own CPU's
//! queue, under that queue's lock) with their snapshot, and run in order by
//! the grace-period thread — never on the caller's stack. [`barrier`]
//! queues a marker at the tail of every non-empty queue, idle CPUs'
//! included (a queue is data, not a CPU to wake), and waits until all
//! markers ran.
//!
//! Nothing on the read side writes shared memory, and nothing in the
//! engine takes a global lock: the sequence and the request are two atomic
//! words, the queues are per CPU, and the CPUs' counters are only read.
//!
//! ## What is checked
//!
//! * The torture test `apps/rcu` (in `cargo xtask test`), and the same
//!   torture built with `ukrcu.broken_grace_periods = true`, which must
//!   report errors.
//! * `tests/loom.rs`: the real [`gp`] state machine (a `cfg(loom)` build
//!   contains only it) with model CPUs that report quiescent states the way
//!   `uksched` does (a `SeqCst` increment) and a reader that checks it never
//!   uses a freed value, under every interleaving loom explores; plus a
//!   negative control whose CPUs claim quiescent states they did not pass,
//!   which loom must catch.
//! * In-guest tests (this crate's `uktest` feature).
//!
//! **Needs:** `uksched` (quiescent states, the grace-period thread, wait
//! queues), `uksmp` (forcing and stall reports by cross-CPU call),
//! `ukspin` (the callback queues' locks), `uktime`, `ukconsole` (stall
//! reports), `ukplat` (per-CPU data, preemption control), `ukboot` (init).
//!
//! **Config options:** `stall_timeout_ms` (2000), `force_after_us` (1000),
//! `broken_grace_periods` (test only: grace periods that wait for nobody).
#![cfg_attr(not(test), no_std)]

#[cfg(not(loom))]
extern crate alloc;

pub mod gp;

#[cfg(not(loom))]
mod cell;
#[cfg(not(loom))]
mod engine;
#[cfg(not(loom))]
pub mod list;
#[cfg(not(loom))]
mod read;

#[cfg(all(not(loom), feature = "uktest"))]
mod guest_tests;

#[cfg(not(loom))]
pub use cell::{RcuCell, Retired};
#[cfg(not(loom))]
pub use list::RcuList;
#[cfg(not(loom))]
pub use read::{ReadGuard, depth as read_depth, read_lock};

#[cfg(not(loom))]
use core::sync::atomic::Ordering;

/// Waits for a full grace period (`synchronize_rcu`): every read-side
/// critical section that was open when it was called has ended when it
/// returns. Blocks the calling thread; callers that arrive together share
/// one grace period.
///
/// # Panics
/// In debug builds, when called inside a read-side critical section.
#[cfg(not(loom))]
pub fn synchronize() {
    engine::synchronize(false);
}

/// [`synchronize`], but the grace period forces every CPU that holds it up
/// at once (by interrupt under `preempt`) and polls without sleeping
/// (`synchronize_rcu_expedited`): lower latency, more interrupts.
///
/// # Panics
/// In debug builds, when called inside a read-side critical section.
#[cfg(not(loom))]
pub fn synchronize_expedited() {
    engine::synchronize(true);
}

/// Runs `f` after a grace period, in the grace-period thread (`call_rcu`):
/// never on the caller's stack, and in the order queued on each CPU. Safe
/// to call from interrupt handlers and inside read-side sections.
///
/// ```no_run
/// ukrcu::call_rcu(|| ukconsole::println!("every reader of before is done"));
/// ukrcu::barrier(); // it has run
/// ```
#[cfg(not(loom))]
pub fn call_rcu(f: impl FnOnce() + Send + 'static) {
    engine::call(alloc::boxed::Box::new(f));
}

/// Waits until every callback queued with [`call_rcu`] before it (on any
/// CPU) has run (`rcu_barrier`).
///
/// # Panics
/// In debug builds, when called inside a read-side critical section.
#[cfg(not(loom))]
pub fn barrier() {
    engine::barrier();
}

/// The grace-period thread (`rcu_gp`): it runs the grace periods and the
/// callbacks; pin it with `set_affinity` to keep RCU housekeeping off some
/// CPUs. `None` before ukrcu's init.
#[cfg(not(loom))]
pub fn gp_thread() -> Option<uksched::Thread> {
    engine::gp_thread_handle()
}

/// Grace periods completed since boot.
#[cfg(not(loom))]
pub fn grace_periods() -> u64 {
    gp::completed(engine::GP.seq())
}

/// Counters since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Grace periods completed.
    pub grace_periods: u64,
    /// Expedited requests.
    pub expedited: u64,
    /// CPUs interrupted to force a quiescent state.
    pub forced: u64,
    /// Stall reports printed.
    pub stalls: u64,
    /// Callbacks queued.
    pub callbacks_queued: u64,
    /// Callbacks run.
    pub callbacks_invoked: u64,
}

/// The counters now.
#[cfg(not(loom))]
pub fn stats() -> Stats {
    let c = &engine::COUNTERS;
    Stats {
        grace_periods: grace_periods(),
        expedited: c.expedited.load(Ordering::Relaxed),
        forced: c.forced.load(Ordering::Relaxed),
        stalls: c.stalls.load(Ordering::Relaxed),
        callbacks_queued: c.queued.load(Ordering::Relaxed),
        callbacks_invoked: c.invoked.load(Ordering::Relaxed),
    }
}
