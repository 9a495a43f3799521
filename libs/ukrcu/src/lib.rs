//! # ukrcu — read-copy-update
//!
//! Readers of shared data take no lock. Writers publish a new version with
//! one atomic pointer store and free the old one only once no reader can
//! hold it. Two flavours, chosen in the app's configuration
//! (`ukrcu.flavor`), give the same API:
//!
//! * **`qsbr`** (the default): readers write no shared memory at all. The
//!   old version is freed after a *grace period*: once every CPU has passed
//!   a *quiescent state*, a point where it holds no reference from a
//!   read-side critical section. Quiescent states come from the scheduler
//!   (`uksched::qs`): every pass through it, and idle, an extended
//!   quiescent state that a grace period sees without waking the CPU. As
//!   Linux's `rcu_sched` and liburcu's `urcu-qsbr`.
//! * **`refcount`**: reference-counted search and delete. A reader counts a
//!   reference on each object it loads and gives them back when its
//!   section ends; a writer unlinks; an object is freed when its last
//!   reference goes, at once, with no grace period. Readers may be
//!   preempted, migrate and sleep. [`synchronize`] and [`call_rcu`] keep
//!   their meaning through per-CPU counts of read sections (as Linux's
//!   SRCU). The hard part — counting a reference on an object a deleter may
//!   free meanwhile — is solved with split reference counts: see
//!   [`split`].
//!
//! Only the configured flavour's code is linked (its marker function
//! `ukrcu_flavor_is_qsbr` or `ukrcu_flavor_is_refcount` is in the image;
//! [`flavor`] returns its name).
//!
//! ## API, next to Linux's
//!
//! | Linux | ukrcu |
//! |---|---|
//! | `rcu_read_lock()` / `rcu_read_unlock()` (`srcu_read_lock` / `srcu_read_unlock` under `refcount`) | [`read_lock`] returns a [`ReadGuard`]; dropping it unlocks. Nestable, `!Send` |
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
//! A [`Retired`] is never freed while a reader may hold it: under `qsbr`
//! it is freed after a grace period — deferred with
//! [`Retired::free_after_grace_period`], or by [`synchronize`] and then
//! dropping it (or [`Retired::into_box`]); dropping one too early defers
//! its own free. Under `refcount` it holds a reference, and the last
//! reference, its own or a reader's, frees it.
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
//! | | `qsbr` | `refcount` |
//! |---|---|---|
//! | [`read_lock`] + drop | a preemption-counter increment and decrement under `uksched.policy = "preempt"`; nothing under `coop` (release builds) | one atomic add on this CPU's section count at each end |
//! | [`RcuCell::load`], one list step | one load | one atomic add on the link's word (a cache line shared with every reader of it), and a compare-and-swap to give it back when the guard drops |
//! | a freed object | after a grace period, in the grace-period thread | at once, by whoever drops the last reference (a reader's guard included) |
//! | a reader may | not block, sleep or yield (debug builds panic, naming the section) | be preempted, migrate, sleep (it delays `synchronize`, not frees) |
//! | published objects | the caller's `Box<T>` | moved into an object with its count (one allocation more per publication) |
//!
//! Debug builds count open sections (per CPU under `qsbr`, per thread under
//! `refcount`), so that [`synchronize`] or [`barrier`] inside one — which
//! would wait for itself — panics instead. Quiescent states cost one locked
//! increment of a per-CPU counter per pass through the scheduler and two
//! per idle period (in `uksched` and `ukplat`), in both flavours; nothing
//! shared is written.
//!
//! ## How grace periods work
//!
//! The state machine is in [`gp`] (sequence numbers, snapshots); the
//! engine around it, in a thread named `rcu_gp`, is the same for both
//! flavours, which only say which readers a grace period waits for:
//!
//! ```text
//!   IDLE (seq even) ── request(snap) beyond seq ──▶ start(): seq odd;
//!       ▲                                            the flavour's Readers::start()
//!       │                                                       │
//!       │ end(): seq even; synchronize callers                  ▼
//!       │ whose snap <= seq wake; callbacks        WAITING: Readers::done() polled,
//!       └─ whose snap <= seq run ◀──────────────── yield/sleep between polls; force
//!                                                  after force_after_us; stall
//!                                                  report every stall_timeout_ms
//! ```
//!
//! 1. **Requests.** [`synchronize`], [`call_rcu`] and [`barrier`] take a
//!    snapshot of the grace-period sequence ([`gp::GpSeq::snap`]): the
//!    value at which a grace period that started after their update has
//!    ended. Callers that arrive before a grace period starts share it;
//!    the thread is woken only when a request goes beyond what was asked.
//! 2. **Start.** The thread makes the sequence odd. `qsbr`: it takes a
//!    snapshot of every CPU's two counters (`uksched::qs::Snapshot`): CPUs
//!    that are idle then, and its own CPU, are quiescent already.
//!    `refcount`: nothing yet.
//! 3. **Wait.** It polls, yielding for the first polls, then sleeping
//!    (10 µs doubling to 1 ms). `qsbr`: until each CPU has passed a
//!    quiescent state. A CPU still holding it up after
//!    `ukrcu.force_after_us` (1 ms) is forced: under `preempt` it is
//!    interrupted, and a preemptible CPU reports at once while one in a
//!    read-side section passes through the scheduler as the section ends;
//!    under `coop` nothing can make a running thread yield, and the CPU
//!    reports at its next scheduling point. `refcount`: until the section
//!    counts of the inactive index balance (sections that read the index
//!    just before the previous flip), then it flips the index and waits
//!    until the old active index balances: every section begun before the
//!    grace period has ended (sums are read unlocks, full barrier, locks,
//!    as Linux's `srcu_readers_active_idx_check`). Nothing can be forced.
//!    Under both, after `ukrcu.stall_timeout_ms` (2 s) it prints a stall
//!    report — under `qsbr` naming the CPUs, each of which names its
//!    running thread itself (`rcu_qsbr self-detected stall on CPU N`);
//!    under `refcount` with the number of open sections — again every
//!    period while the stall lasts. An expedited request forces every
//!    holdout at once and polls without sleeping.
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
//! Nothing in the engine takes a global lock: the sequence and the request
//! are two atomic words, the queues are per CPU, and the CPUs' counters
//! are only read. Under `qsbr` nothing on the read side writes shared
//! memory; under `refcount` readers write their CPU's section count and
//! the words of the links they load.
//!
//! ## Layout
//!
//! | module | what |
//! |---|---|
//! | `read.rs` | [`read_lock`], [`ReadGuard`] |
//! | `cell.rs` | [`RcuCell`], [`Retired`] |
//! | [`list`] | [`RcuList`] |
//! | `engine.rs` | the `rcu_gp` thread, callbacks, [`synchronize`], [`barrier`], pacing, forcing, stalls |
//! | [`gp`] | the grace-period sequence and hold-out CPUs (no kernel dependency: loom runs it) |
//! | [`split`] | split reference counts (no kernel dependency: loom runs it) |
//! | `qsbr.rs`, `refcount.rs` | each flavour's section, link, retired object and grace-period readers, with the same inherent API |
//! | `flavor.rs` | picks one of the two at compile time |
//!
//! ## What is checked
//!
//! * The torture test `apps/rcu` (in `cargo xtask test`) on 1, 2 and 4
//!   CPUs with both flavours and both scheduler policies, and the same
//!   torture built with `ukrcu.broken_grace_periods = true`, which must
//!   report errors, for each flavour; and the `refcount` flavour built with
//!   `ukrcu.broken_refcount = true` (readers that load, pause, then count),
//!   which must fail too. Its `tests` mode runs this crate's
//!   in-guest tests, the list's, and the searchable stack's and hash map's
//!   built on it, in the same twelve configurations.
//! * `tests/loom.rs`: the real [`gp`] state machine with model CPUs that
//!   report quiescent states the way `uksched` does and a reader that
//!   checks it never uses a freed value, under every interleaving loom
//!   explores; plus a negative control whose CPUs claim quiescent states
//!   they did not pass, which loom must catch.
//! * `tests/loom_split.rs`: the real [`split`] counts: readers' loads and
//!   releases against a writer's unlink and free (the overflow path and
//!   compare-and-swap included); plus a negative control that loads and
//!   then counts, which loom must catch.
//! * `cargo xtask test` checks that an image links only the configured
//!   flavour.
//!
//! **Needs:** `uksched` (quiescent states, the grace-period thread, wait
//! queues, thread-locals for debug checks), `uksmp` (forcing and stall
//! reports by cross-CPU call), `ukspin` (the callback queues' locks),
//! `uktime`, `ukconsole` (stall reports), `ukplat` (per-CPU data,
//! preemption control), `ukboot` (init).
//!
//! **Config options:** `flavor` (`qsbr` | `refcount`, default `qsbr`),
//! `stall_timeout_ms` (2000), `force_after_us` (1000, `qsbr` only),
//! `broken_grace_periods` (test only: grace periods that wait for nobody),
//! `broken_refcount` (test only, `refcount`: readers that load, then count).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod gp;
pub mod split;

#[cfg(not(loom))]
mod cell;
#[cfg(not(loom))]
mod engine;
#[cfg(not(loom))]
mod flavor;
#[cfg(not(loom))]
pub mod list;
// Both flavours are compiled, one is used (see `flavor`): the other's
// items are dead code in every configuration but their own.
#[cfg(not(loom))]
#[allow(dead_code)]
mod qsbr;
#[cfg(not(loom))]
mod read;
#[cfg(not(loom))]
#[allow(dead_code)]
mod refcount;

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

/// The configured flavour (`ukrcu.flavor`).
#[cfg(not(loom))]
pub const FLAVOR: ukconfig::ukrcu::Flavor = ukconfig::ukrcu::FLAVOR;

/// The linked flavour's name (`"qsbr"` or `"refcount"`), from its marker
/// function `ukrcu_flavor_is_{qsbr,refcount}`: only the configured
/// flavour's code is in the image.
///
/// ```no_run
/// assert_eq!(ukrcu::flavor(), ukrcu::FLAVOR.as_str());
/// ```
#[cfg(not(loom))]
pub fn flavor() -> &'static str {
    <flavor::Selected as flavor::Select>::name()
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
