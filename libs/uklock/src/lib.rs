//! # uklock — sleeping locks
//!
//! What it offers: locks for **threads** that put a waiting thread to sleep
//! on a scheduler wait queue ([`uksched::WaitQueue`]) instead of spinning,
//! so the CPU runs other threads meanwhile — Unikraft's `uklock`
//! (`uk_mutex`, `uk_semaphore`, `uk_rwlock`) on top of `uksched`. The
//! mutexes are raw locks behind the standard [`lock_api`] interface.
//!
//! | type | what | uncontended cost | fairness |
//! |---|---|---|---|
//! | [`Mutex<T>`] (+ [`MutexGuard`], [`MappedMutexGuard`]) over [`RawMutex`] | mutual exclusion; owner-checked; timed (`try_lock_for`/`try_lock_until`) | lock: 1 `lock cmpxchg` + the owner id (a few plain loads, a plain store); unlock: the owner id again, a compare, 1 `xchg` | none (barging, as Linux's): a released lock goes to whoever swaps first, and a woken sleeper that loses queues again at the back — a thread re-taking the lock in a loop can hold sleepers off |
//! | [`RwLock<T>`] (+ read/write guards, mapped guards) over [`RawRwLock`] | readers share, a writer is alone | read: a load + 1 `lock cmpxchg`, unlock 1 `lock xadd`; write: 1 `lock cmpxchg` + the owner store, unlock 1 `lock xadd` | writer-preferring: a waiting writer stops new readers, so writers never starve (readers may, under a stream of writers) |
//! | [`Semaphore`] (+ [`SemaphoreGuard`]) | counting: `acquire`, `try_acquire`, `acquire_timeout`, `release(_n)` | acquire: a load + 1 `lock cmpxchg`; release: 1 `lock xadd` + a load | none, as for the mutex: a permit goes to whoever takes it first |
//! | [`Condvar`] ([`WaitTimeoutResult`]) | wait for a condition under a [`Mutex`] | notify with nobody waiting: a load | FIFO wake-ups (the wait queue's order) |
//!
//! The contended paths sleep on a [`uksched::WaitQueue`] (its spinlock, a
//! list insertion, a context switch) after a short spin (100 reads of the
//! lock word: the holder may be about to release it on another CPU); a
//! release that may have sleepers wakes one (or, for readers, all). All
//! types are `const`-constructible (usable in `static`s) and `no_std`; the
//! guards are `!Send` (a lock is released by the thread that took it —
//! threads, and their guards, may move between CPUs freely).
//!
//! ```no_run
//! use uklock::{Condvar, Mutex, RwLock, Semaphore};
//!
//! static COUNT: Mutex<u64> = Mutex::new(0);
//! let workers: Vec<_> = (0..4).map(|_| uksched::spawn(|| *COUNT.lock() += 1)).collect();
//! workers.into_iter().for_each(|w| w.join());
//! assert_eq!(*COUNT.lock(), 4);
//!
//! static CONFIG: RwLock<u32> = RwLock::new(1);
//! *CONFIG.write() = 2;
//! assert_eq!(*CONFIG.read(), 2);
//!
//! static SLOTS: Semaphore = Semaphore::new(3);
//! let _slot = SLOTS.acquire_guard();
//! assert_eq!(SLOTS.available(), 2);
//!
//! static READY: Mutex<bool> = Mutex::new(false);
//! static CHANGED: Condvar = Condvar::new();
//! let waiter = uksched::spawn(|| {
//!     let mut ready = READY.lock();
//!     CHANGED.wait_while(&mut ready, |r| !*r);
//! });
//! *READY.lock() = true;
//! CHANGED.notify_all();
//! waiter.join();
//! ```
//!
//! ## No lost wake-ups
//!
//! Every sleeping path uses [`uksched::WaitQueue::wait_with`]: the thread
//! is put on the queue *first*, then it re-checks the lock word (or, for
//! the condition variable, releases the mutex), and sleeps only if nothing
//! changed. A releaser changes the word *first*, then looks at the queue.
//! Either the check sees the release, or the releaser finds the sleeper —
//! the futex contract, with the wait queue's lock in the futex bucket's
//! place. Timed waits end either by a wake-up or by the timer, never both
//! (the wait queue guarantees it), so a thread that times out never takes
//! a wake-up meant for another.
//!
//! ## Owner checks
//!
//! A [`Mutex`] records the id of the thread holding it (a [`RwLock`] taken
//! for writing does too, for its relock check only). Locking it again in
//! the same thread would sleep forever; instead it panics:
//! ``uklock: thread `NAME` (id N) locks a Mutex it already holds
//! (self-deadlock)``. Unlocking it from another thread (possible only through
//! the raw lock, or a guard smuggled across threads with `unsafe`) panics
//! too: ``uklock: thread `NAME` (id N) unlocks a Mutex held by thread id M``.
//! The panic report's location is the caller's `lock()` (or raw `unlock`,
//! `force_unlock`) call.
//! The id comes from [`uksched::try_current_id`]: the CPU's current-thread
//! pointer read with preemption disabled for two loads (a non-atomic
//! increment and decrement of the per-CPU preemption counter, no reference
//! count touched; no thread yet: None). So the check costs
//! that plus a plain store on lock and a compare on unlock, no atomic
//! read-modify-write; the self-deadlock test itself is on the contended
//! path only (a relock always finds the lock taken). A lock taken before
//! the scheduler started (boot code at an early init level,
//! single-threaded) is held by the pseudo-thread `u64::MAX`, which the
//! checks accept as anybody.
//!
//! ## Rules
//!
//! * **Not in interrupt handlers**: an interrupt has no thread to put to
//!   sleep, and the holder it interrupted could never release the lock.
//!   A contended lock there makes the scheduler panic, naming the thread.
//!   Use a `ukspin::SpinLockIrq` for data shared with handlers.
//! * **Not while holding a spinlock** (or in a `uksched::preempt::Guard`):
//!   a thread cannot sleep with preemption disabled. The uncontended path
//!   would pass, the first contended one panics in the scheduler (``tried
//!   to block, sleep or yield with preemption disabled``) — so do not rely
//!   on it passing. Taking a spinlock *while holding* a sleeping lock is fine.
//! * No recursion: not a [`Mutex`] twice (panics), not a [`RwLock`] read
//!   twice in one thread (a waiting writer in between deadlocks both).
//! * Locks are taken by threads: after the scheduler started
//!   ([`uksched::started`]), except uncontended locks in early boot code.
//! * Under `uksched.policy = coop` a thread that never blocks or yields
//!   keeps its CPU: a holder that spins waiting for a waiter on the same
//!   CPU deadlocks. Block (these locks, a wait queue) or yield instead.
//!
//! ## Layering
//!
//! `ukspin` (spinlocks) → `uksched` (threads, run queues, wait queues) →
//! `uklock` (sleeping locks). The scheduler's run and wait queues are
//! protected by spinlocks, which therefore cannot depend on the scheduler;
//! sleeping locks block threads on the scheduler's wait queues, so they
//! depend on it. One crate holding both would depend on the scheduler and
//! the scheduler on it — a cycle Cargo rejects — so the busy-waiting locks
//! live in `ukspin`, below the scheduler, and the sleeping ones here, above
//! it. Which to use: a spinlock for short sections, data shared with
//! interrupt handlers and code below the scheduler; a sleeping lock for
//! sections that may be long or may block (allocate, wait, sleep), among
//! threads.
//!
//! **Needs:** `uksched` (wait queues, the current thread), `ukspin` (the
//! wait queues' locks), `ukplat` (interrupt nesting), `uktime` (deadlines),
//! `ukarch` (the in-guest tests: which hypervisor runs them). The in-guest
//! tests (`guest_tests.rs`, feature `uktest`) run in the `sched` app: with
//! `uktest.filter=uklock::`, `cargo xtask run --app sched --smp N --set
//! uksched.policy=coop|preempt` runs only them.
//!
//! **Config options:** none. The scheduler's `uksched.policy` does not
//! change these locks.
//!
//! **Why `lock_api`:** as for `ukspin`: implementing the raw lock gets the
//! whole safe API (guards, mapped guards, `try_lock_for`, `get_mut`,
//! `into_inner`) and code generic over `lock_api::RawMutex` accepts these
//! locks as well as the spinlocks.
#![cfg_attr(not(test), no_std)]

mod condvar;
#[cfg(feature = "uktest")]
mod guest_tests;
mod mutex;
mod rwlock;
mod semaphore;
#[cfg(test)]
mod tests;

pub use condvar::{Condvar, WaitTimeoutResult};
pub use lock_api;
pub use mutex::{MappedMutexGuard, Mutex, MutexGuard, RawMutex};
pub use rwlock::{
    MappedRwLockReadGuard, MappedRwLockWriteGuard, RawRwLock, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
pub use semaphore::{Semaphore, SemaphoreGuard};

/// Lock-word reads before a contended locker goes to sleep (the holder may
/// be about to release it on another CPU).
pub(crate) const SPINS: u32 = 100;

/// Reads `word` until `done` accepts it or [`SPINS`] reads went by;
/// returns the last value read.
#[inline]
pub(crate) fn spin_until(word: &core::sync::atomic::AtomicU32, done: impl Fn(u32) -> bool) -> u32 {
    let mut spins = SPINS;
    loop {
        let state = word.load(core::sync::atomic::Ordering::Relaxed);
        if done(state) || spins == 0 {
            return state;
        }
        core::hint::spin_loop();
        spins -= 1;
    }
}

/// "Held by no thread" in an owner field.
pub(crate) const NO_THREAD: u64 = 0;

/// The pseudo-thread holding locks taken before the scheduler started
/// (thread ids count from 1 and never reach it).
pub(crate) const BEFORE_SCHEDULER: u64 = u64::MAX;

/// The running thread's id, or [`BEFORE_SCHEDULER`] where no thread runs
/// yet: `uksched::try_current_id` (the per-CPU current thread pointer read
/// with preemption disabled — no reference count touched).
#[inline]
pub(crate) fn current_thread_id() -> u64 {
    uksched::try_current_id().unwrap_or(BEFORE_SCHEDULER)
}

/// The calling thread, for reports (None before the scheduler started or
/// in an interrupt handler).
fn reporter() -> Option<uksched::Thread> {
    (uksched::started() && !ukplat::cpu::in_interrupt()).then(uksched::current)
}

/// The name and id of a [`reporter`].
fn name_and_id(t: &Option<uksched::Thread>) -> (&str, u64) {
    t.as_ref().map_or(("(no thread)", BEFORE_SCHEDULER), |t| (t.name(), t.id()))
}

/// The self-deadlock report.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn self_deadlock(what: &str) -> ! {
    let me = reporter();
    let (name, id) = name_and_id(&me);
    panic!("uklock: thread `{name}` (id {id}) locks a {what} it already holds (self-deadlock)")
}

/// The wrong-thread unlock report.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn not_the_owner(what: &str, owner: u64) -> ! {
    let me = reporter();
    let (name, id) = name_and_id(&me);
    if owner == NO_THREAD {
        panic!("uklock: thread `{name}` (id {id}) unlocks a {what} that is not locked");
    }
    panic!("uklock: thread `{name}` (id {id}) unlocks a {what} held by thread id {owner}")
}
