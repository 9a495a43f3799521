//! # uklock — sleeping locks
//!
//! What it offers: locks for **threads** that put a waiting thread to sleep
//! instead of spinning, so the CPU runs other threads meanwhile —
//! Unikraft's `uklock` (`uk_mutex`, `uk_semaphore`, `uk_rwlock`) on top of
//! `uksched`. The mutexes are raw locks behind the standard [`lock_api`]
//! interface. The [`Mutex`] and its [`Condvar`] come in two
//! implementations, chosen by configuration (`uklock.mutex`, below): on a
//! [`uksched::WaitQueue`] of their own (`waitqueue`, the default) or on a
//! bare futex word through `posix-futex` (`futex`).
//!
//! | type | what | uncontended cost | fairness |
//! |---|---|---|---|
//! | [`Mutex<T>`] (+ [`MutexGuard`], [`MappedMutexGuard`]) over [`RawMutex`], `waitqueue` ([`waitqueue::RawMutex`]) | mutual exclusion; owner-checked; timed (`try_lock_for`/`try_lock_until`); 4-byte word + 8-byte owner + a wait queue (its spinlock and list head) | lock: 1 `lock cmpxchg` + the owner id (one `gs` load, a plain store); unlock: the owner id again, a compare, 1 `xchg`. Contended: the mutex's own wait queue (its spinlock, a list insertion, a context switch) | none (barging, as Linux's): a released lock goes to whoever swaps first, and a woken sleeper that loses queues again at the back — a thread re-taking the lock in a loop can hold sleepers off |
//! | the same over `futex` ([`futex::RawMutex`]) | the same API, checks and reports; 4-byte futex word + 8-byte owner, nothing else (16 bytes) | the same instructions. Contended: `futex_wait`/`futex_wake` — a hash of the word's address, the bucket's spinlock (shared with unrelated futexes in that bucket), then the same list insertion and context switch | none, the same barging; sleepers of one word wake in FIFO order |
//! | [`RwLock<T>`] (+ read/write guards, mapped guards) over [`RawRwLock`] | readers share, a writer is alone | read: a load + 1 `lock cmpxchg`, unlock 1 `lock xadd`; write: 1 `lock cmpxchg` + the owner store, unlock 1 `lock xadd` | writer-preferring: a waiting writer stops new readers, so writers never starve (readers may, under a stream of writers) |
//! | [`Semaphore`] (+ [`SemaphoreGuard`]) | counting: `acquire`, `try_acquire`, `acquire_timeout`, `release(_n)` | acquire: a load + 1 `lock cmpxchg`; release: 1 `lock xadd` + a load | none, as for the mutex: a permit goes to whoever takes it first |
//! | [`Condvar`] ([`WaitTimeoutResult`]), `waitqueue` ([`waitqueue::Condvar`]) | wait for a condition under a [`Mutex`] | notify with nobody waiting: a load; `notify_all` wakes every waiter at once (they then contend for the mutex) | FIFO wake-ups (the wait queue's order) |
//! | the same over `futex` ([`futex::Condvar`]) | the same API; `notify_all` wakes one waiter and **requeues** the others onto the mutex's futex word | notify with nobody waiting: a load; `notify_one`: 1 `lock xadd` + `futex_wake`; `notify_all`: a spinlock + 1 `lock xadd` + one `futex_cmp_requeue`; each wait also takes that spinlock twice | FIFO wake-ups; after `notify_all` the waiters get the mutex one at a time, each woken by the previous one's unlock (no thundering herd) |
//! | [`Once`] | one-time initialisation (`call_once`, `is_completed`), whatever the configuration | a completed `call_once`: 1 load; the first call: 1 `lock cmpxchg` + 1 `xchg`, and a `futex_wake` only if someone waited | whoever calls first runs it; the others sleep until it is done |
//!
//! The contended paths sleep after a short spin (100 reads of the lock
//! word: the holder may be about to release it on another CPU); a release
//! that may have sleepers wakes one (or, for readers, all). All types are
//! `const`-constructible (usable in `static`s) and `no_std`; the guards are
//! `!Send` (a lock is released by the thread that took it — threads, and
//! their guards, may move between CPUs freely).
//!
//! ```no_run
//! use uklock::{Condvar, Mutex, Once, RwLock, Semaphore};
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
//!
//! static SETUP: Once = Once::new();
//! SETUP.call_once(|| { /* runs once, whoever calls first */ });
//! assert!(SETUP.is_completed());
//! ```
//!
//! ## Choosing the mutex implementation: `uklock.mutex`
//!
//! `uklock.mutex = "waitqueue"` (the default) or `"futex"` in the app's
//! TOML (or `--set uklock.mutex=futex`) picks what [`RawMutex`] — and so
//! [`Mutex`], [`MutexGuard`], [`MappedMutexGuard`] — and [`Condvar`] are,
//! with no code change. As for `ukspin.kind`, the type system resolves it
//! at compile time: the configured `ukconfig::uklock::MUTEX` becomes a
//! number ([`select::index`]), the const-generic argument of a selector
//! type whose trait implementation names the types:
//!
//! ```text
//! pub type RawMutex =
//!     <select::Impl<{ select::index(ukconfig::uklock::MUTEX) }> as select::SelectMutex>::RawMutex;
//! ```
//!
//! So only the chosen implementation is instantiated and linked (its
//! contended path, `lock_contended`, and for `futex` the posix-futex
//! calls). Both stay available by name — [`waitqueue`] and [`futex`] —
//! for code (and tests) that wants one whatever the configuration; an image
//! that names the other one links it too. [`select::configured_name`]
//! links exactly one marker function,
//! `uklock_configured_mutex_is_{waitqueue,futex}`, so the image's symbol
//! table shows the choice. The [`RwLock`], [`Semaphore`] and [`Once`] are
//! the same under both.
//!
//! Which to choose: `waitqueue` keeps each mutex's sleepers on its own
//! queue (no sharing of a bucket lock with unrelated futexes, and no hash);
//! `futex` makes a mutex 16 bytes with nothing but two words in it, and its
//! condition variable's `notify_all` hands the mutex to the waiters one by
//! one instead of waking them all to fight for it.
//!
//! ## The futex mutex
//!
//! [`futex::RawMutex`] is the three-state mutex of Ulrich Drepper's
//! "Futexes Are Tricky" (mutex 3), the one Rust's `std` uses on Linux. Its
//! 32-bit word reads 0 when free, 1 when held with no sleeper, 2 when held
//! with possible sleepers. Locking is one compare-and-swap 0 → 1; failing
//! that, the locker spins briefly while the word is 1, tries 0 → 1 once
//! more, and then loops: it swaps 2 in (unless 2 is there already) —
//! finding 0 there means it now holds the lock, as 2 — and otherwise
//! sleeps with `futex_wait(word, 2)`, which puts it to sleep only if the
//! word is still 2 when checked under the futex bucket's lock. Unlocking
//! swaps 0 in and, only if 2 was there, wakes one sleeper with
//! `futex_wake(word, 1)`. The uncontended paths never enter the futex
//! code; one unlock wakes at most one thread.
//!
//! Why no wake-up is lost: a thread sleeps only on a word that read 2
//! under the bucket lock; the word leaves 2 only through an unlock, which
//! then wakes one sleeper (an unlock that came first made the check fail,
//! one that came later finds the sleeper). A woken thread does not know
//! whether others still sleep, so it never takes the lock as 1: it swaps 2
//! in, whether it gets the lock or sleeps again, and the next unlock wakes
//! the next sleeper. A timed lock (`try_lock_for`, `try_lock_until`) gives
//! the futex wait the absolute deadline (`futex_wait_bitset` on the
//! monotonic clock); a wait ends by a wake-up or by the deadline, never
//! both, so a locker that times out took no wake-up with it. The price is
//! at most one needless `futex_wake` when the last sleeper unlocks. Why
//! `unlock` swaps rather than Drepper's decrement-then-store, and the
//! argument in detail: `futex_mutex.rs`.
//!
//! The futex [`futex::Condvar`] is a sequence word that waiters sleep on
//! and notifications increment. Its `notify_all`, instead of waking every
//! waiter to find the mutex taken, wakes one and moves the rest onto the
//! mutex's futex word in the same step (`FUTEX_CMP_REQUEUE`, as glibc's
//! condition variable long did). That is only safe because a thread that
//! returns from a condition-variable wait re-takes the mutex the way a
//! woken locker does — swapping 2 in, never 0 → 1 — so the mutex's word is
//! 2 and the next unlock wakes the first requeued waiter, which does the
//! same for the next. The argument, and how the condition variable learns
//! which mutex to requeue onto: `futex_condvar.rs`.
//!
//! ## No lost wake-ups
//!
//! Both mutexes are one algorithm ([`futex::ThreeStateMutex`]) over two
//! places to sleep ([`futex::Sleep`]): `posix-futex`'s buckets, or a wait
//! queue of the mutex's own whose [`uksched::WaitQueue::wait_if`] checks
//! the lock word under the queue's lock, as a futex checks it under its
//! bucket's. The other `waitqueue` paths (the condition variable, the
//! semaphore, the reader-writer lock) use [`uksched::WaitQueue::wait_with`]:
//! the thread is put on the queue *first*, then it re-checks its word (or,
//! for the condition variable, releases the mutex), and sleeps only if
//! nothing changed. A releaser changes the word *first*, then looks at the
//! queue. Either the check sees the release, or the releaser finds the
//! sleeper — the futex contract; the `futex` implementation and [`Once`]
//! use it through `posix-futex` itself. Timed waits end either by a wake-up or by the timer, never both
//! (the wait queue guarantees it), so a thread that times out never takes
//! a wake-up meant for another.
//!
//! ## Owner checks
//!
//! A [`Mutex`] (either implementation) records the id of the thread
//! holding it (a [`RwLock`] taken for writing does too, for its relock
//! check only). Locking it again in the same thread would sleep forever;
//! instead it panics: ``uklock: thread `NAME` (id N) locks a Mutex it
//! already holds (self-deadlock)``. Unlocking it from another thread
//! (possible only through the raw lock, or a guard smuggled across threads
//! with `unsafe`) panics too: ``uklock: thread `NAME` (id N) unlocks a Mutex
//! held by thread id M``. The panic report's location is the caller's
//! `lock()` (or raw `unlock`, `force_unlock`) call.
//! The id comes from [`uksched::try_current_id`]: one `gs`-relative load of
//! the id the scheduler records in the per-CPU header at every switch (no
//! preemption control, no reference count; no thread yet: None). So the
//! check costs that plus a plain store on lock and a compare on unlock, no atomic
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
//!   twice in one thread (a waiting writer in between deadlocks both), not
//!   a [`Once`]'s `call_once` from its own closure.
//! * Locks are taken by threads: after the scheduler started
//!   ([`uksched::started`]), except uncontended locks in early boot code.
//! * Under `uksched.policy = coop` a thread that never blocks or yields
//!   keeps its CPU: a holder that spins waiting for a waiter on the same
//!   CPU deadlocks. Block (these locks, a wait queue) or yield instead.
//!
//! ## Layering
//!
//! `ukspin` (spinlocks) → `uksched` (threads, run queues, wait queues) →
//! `posix-futex` (futex buckets on wait queues) → `uklock` (sleeping
//! locks). The scheduler's run and wait queues are protected by spinlocks,
//! which therefore cannot depend on the scheduler; sleeping locks block
//! threads on the scheduler's wait queues, so they depend on it. One crate
//! holding both would depend on the scheduler and the scheduler on it — a
//! cycle Cargo rejects — so the busy-waiting locks live in `ukspin`, below
//! the scheduler, and the sleeping ones here, above it. Which to use: a
//! spinlock for short sections, data shared with interrupt handlers and
//! code below the scheduler; a sleeping lock for sections that may be long
//! or may block (allocate, wait, sleep), among threads.
//!
//! **Needs:** `uksched` (wait queues, the current thread), `posix-futex`
//! (the futex implementation and [`Once`]; selected automatically with
//! this library), `ukspin` (the wait queues' locks, the futex condition
//! variable's binding lock), `ukplat` (interrupt nesting), `uktime`
//! (deadlines), `ukarch` (the in-guest tests: which hypervisor runs them),
//! `ukconfig`. The in-guest tests (`guest_tests.rs`, feature `uktest`) run
//! in the `sched` app: with `uktest.filter=uklock::`, `cargo xtask run
//! --app sched --smp N --set uksched.policy=coop|preempt [--set
//! uklock.mutex=futex]` runs only them. They test the configured [`Mutex`]
//! and [`Condvar`]; the tests of the futex specifics (the word after
//! contention, the requeue) and of [`Once`] name their types and run under
//! either configuration.
//!
//! **Config options:** `mutex` (`waitqueue` | `futex`, default
//! `waitqueue`): the implementation behind [`RawMutex`] and [`Condvar`]. The
//! scheduler's `uksched.policy` does not change these locks.
//!
//! **Why `lock_api`:** as for `ukspin`: implementing the raw lock gets the
//! whole safe API (guards, mapped guards, `try_lock_for`, `get_mut`,
//! `into_inner`) and code generic over `lock_api::RawMutex` accepts these
//! locks as well as the spinlocks.
//!
//! **Model checks ([`loom`]):** `RUSTFLAGS="--cfg loom"
//! CARGO_TARGET_DIR=target/loom cargo test -p uklock --release --test
//! loom_futex` runs the real [`futex::RawMutex`], [`futex::Condvar`] and
//! [`Once`] — this crate's code, built with loom's atomics and a stand-in
//! futex (`sys.rs`: a loom mutex over the sleepers, the value check under
//! it, park/unpark) — under every interleaving up to a preemption bound:
//! mutual exclusion, no lost wake-up with 2 and 3 lockers and with a timed
//! locker, the condition variable's requeue chain, and `call_once`; plus
//! negative controls (an unlock that never wakes, one that wakes before it
//! releases) that the models must catch. A `cfg(loom)` build of the crate
//! contains only those three types.
//!
//! [`loom`]: https://docs.rs/loom
#![cfg_attr(not(test), no_std)]

#[cfg(loom)]
extern crate std;

/// The waiting methods of a condition variable, written once for both
/// implementations: `$guard` is its mutex's guard type, and the type
/// provides `wait_guard(&self, guard, deadline: Option<Instant>) -> bool`
/// (releases the guard's mutex, sleeps until notified or the deadline,
/// re-takes the mutex; true: timed out).
#[cfg(not(loom))]
macro_rules! condvar_waits {
    ($guard:ty) => {
        impl Condvar {
            /// Releases the guard's mutex, sleeps until notified (or
            /// spuriously woken), and takes the mutex again before
            /// returning.
            ///
            /// # Panics
            /// In an interrupt handler or with preemption disabled (the
            /// scheduler refuses to sleep there); when the mutex's unlock
            /// or relock panics.
            #[track_caller]
            pub fn wait<T: ?Sized>(&self, guard: &mut $guard) {
                self.wait_guard(guard, None);
            }

            /// Waits while `condition` holds: returns, with the mutex
            /// held, once it is false (at once if it is false already).
            ///
            /// # Panics
            /// As [`wait`](Self::wait).
            #[track_caller]
            pub fn wait_while<T: ?Sized>(
                &self,
                guard: &mut $guard,
                mut condition: impl FnMut(&mut T) -> bool,
            ) {
                while condition(&mut **guard) {
                    self.wait(guard);
                }
            }

            /// [`wait`](Self::wait) for at most `timeout`: timed out when
            /// no notification came in time (never earlier than
            /// `timeout`).
            ///
            /// # Panics
            /// As [`wait`](Self::wait).
            #[track_caller]
            pub fn wait_timeout<T: ?Sized>(
                &self,
                guard: &mut $guard,
                timeout: core::time::Duration,
            ) -> $crate::WaitTimeoutResult {
                self.wait_until(guard, uktime::now() + timeout)
            }

            /// [`wait`](Self::wait) until `deadline` at most.
            ///
            /// # Panics
            /// As [`wait`](Self::wait).
            #[track_caller]
            pub fn wait_until<T: ?Sized>(
                &self,
                guard: &mut $guard,
                deadline: uksched::Instant,
            ) -> $crate::WaitTimeoutResult {
                $crate::WaitTimeoutResult(self.wait_guard(guard, Some(deadline)))
            }

            /// [`wait_while`](Self::wait_while) for at most `timeout`:
            /// timed out when the condition still held as the timeout
            /// passed.
            ///
            /// # Panics
            /// As [`wait`](Self::wait).
            #[track_caller]
            pub fn wait_timeout_while<T: ?Sized>(
                &self,
                guard: &mut $guard,
                timeout: core::time::Duration,
                mut condition: impl FnMut(&mut T) -> bool,
            ) -> $crate::WaitTimeoutResult {
                let deadline = uktime::now() + timeout;
                while condition(&mut **guard) {
                    if self.wait_until(guard, deadline).timed_out() {
                        return $crate::WaitTimeoutResult(condition(&mut **guard));
                    }
                }
                $crate::WaitTimeoutResult(false)
            }
        }
    };
}

#[cfg(not(loom))]
mod condvar;
mod futex_condvar;
mod futex_mutex;
#[cfg(all(feature = "uktest", not(loom)))]
mod guest_tests;
#[cfg(not(loom))]
mod mutex;
mod once;
#[cfg(not(loom))]
mod rwlock;
#[cfg(not(loom))]
mod semaphore;
mod sys;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(not(loom))]
pub use lock_api;
pub use once::Once;
#[cfg(not(loom))]
pub use rwlock::{
    MappedRwLockReadGuard, MappedRwLockWriteGuard, RawRwLock, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
#[cfg(not(loom))]
pub use semaphore::{Semaphore, SemaphoreGuard};
/// loom: the stand-in deadline of the timed waits.
#[cfg(loom)]
pub use sys::Instant;

/// The wait-queue implementation (`uklock.mutex = "waitqueue"`, the
/// default), by name: usable whatever the configuration.
#[cfg(not(loom))]
pub mod waitqueue {
    pub use crate::condvar::Condvar;
    pub use crate::mutex::{Queue, RawMutex};

    /// A sleeping mutex on its own wait queue: [`lock_api::Mutex`] over
    /// [`RawMutex`].
    ///
    /// ```no_run
    /// static TOTAL: uklock::waitqueue::Mutex<u64> = uklock::waitqueue::Mutex::new(0);
    /// *TOTAL.lock() += 1;
    /// ```
    pub type Mutex<T> = lock_api::Mutex<RawMutex, T>;
    /// The guard of a [`Mutex`]: holds the lock until dropped.
    pub type MutexGuard<'a, T> = lock_api::MutexGuard<'a, RawMutex, T>;
    /// A [`MutexGuard`] mapped to part of the data.
    pub type MappedMutexGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawMutex, T>;
}

/// The futex implementation (`uklock.mutex = "futex"`), by name: usable
/// whatever the configuration.
pub mod futex {
    pub use crate::futex_condvar::Condvar;
    #[cfg(loom)]
    pub use crate::futex_mutex::BrokenUnlock;
    pub use crate::futex_mutex::{Futex, RawMutex, Sleep, ThreeStateMutex};
    pub use crate::sys::Wait;

    /// A sleeping mutex on a futex word: [`lock_api::Mutex`] over
    /// [`RawMutex`].
    ///
    /// ```no_run
    /// static TOTAL: uklock::futex::Mutex<u64> = uklock::futex::Mutex::new(0);
    /// *TOTAL.lock() += 1;
    /// ```
    #[cfg(not(loom))]
    pub type Mutex<T> = lock_api::Mutex<RawMutex, T>;
    /// The guard of a [`Mutex`]: holds the lock until dropped.
    #[cfg(not(loom))]
    pub type MutexGuard<'a, T> = lock_api::MutexGuard<'a, RawMutex, T>;
    /// A [`MutexGuard`] mapped to part of the data.
    #[cfg(not(loom))]
    pub type MappedMutexGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawMutex, T>;
}

/// The configured implementation (`uklock.mutex`), the one behind
/// [`RawMutex`] and [`Condvar`].
#[cfg(not(loom))]
pub const MUTEX: ukconfig::uklock::Mutex = ukconfig::uklock::MUTEX;

/// Compile-time selection of the mutex and condition variable named by the
/// configuration (the pattern of `ukspin::select`).
#[cfg(not(loom))]
pub mod select {
    use ukconfig::uklock::Mutex as Choice;

    /// An implementation as a type: `Impl<{ index(choice) }>`.
    #[derive(Debug)]
    pub struct Impl<const K: u8>;

    /// Maps an [`Impl`] to its raw mutex and condition variable.
    pub trait SelectMutex {
        /// The raw mutex of this implementation.
        type RawMutex;
        /// The condition variable that goes with it.
        type Condvar;
        /// The implementation's configuration name, returned by an
        /// out-of-line function named after it (see [`configured_name`]).
        fn name() -> &'static str;
    }

    impl SelectMutex for Impl<0> {
        type RawMutex = crate::waitqueue::RawMutex;
        type Condvar = crate::waitqueue::Condvar;
        fn name() -> &'static str {
            uklock_configured_mutex_is_waitqueue()
        }
    }

    impl SelectMutex for Impl<1> {
        type RawMutex = crate::futex::RawMutex;
        type Condvar = crate::futex::Condvar;
        fn name() -> &'static str {
            uklock_configured_mutex_is_futex()
        }
    }

    #[inline(never)]
    fn uklock_configured_mutex_is_waitqueue() -> &'static str {
        core::hint::black_box(Choice::Waitqueue.as_str())
    }

    #[inline(never)]
    fn uklock_configured_mutex_is_futex() -> &'static str {
        core::hint::black_box(Choice::Futex.as_str())
    }

    /// The configured implementation's name, through the selector: the
    /// image links exactly one of the functions
    /// `uklock_configured_mutex_is_{waitqueue,futex}`.
    ///
    /// ```
    /// assert_eq!(uklock::select::configured_name(), uklock::MUTEX.as_str());
    /// ```
    pub fn configured_name() -> &'static str {
        <Impl<{ index(ukconfig::uklock::MUTEX) }> as SelectMutex>::name()
    }

    /// The selector number of an implementation (explicit, so reordering
    /// the choices in Kconfig.toml cannot change the mapping).
    pub const fn index(choice: Choice) -> u8 {
        match choice {
            Choice::Waitqueue => 0,
            Choice::Futex => 1,
        }
    }
}

/// The raw mutex of the configured implementation (`uklock.mutex`):
/// [`waitqueue::RawMutex`] or [`futex::RawMutex`], resolved at compile
/// time. Both have the same methods, traits and reports.
///
/// ```
/// use lock_api::{RawMutex as _, RawMutexTimed as _};
/// use uklock::RawMutex;
///
/// // Host builds see the declared default, `waitqueue`, unless built with
/// // an app's configuration.
/// let expected = match uklock::MUTEX {
///     ukconfig::uklock::Mutex::Waitqueue => "uklock::futex_mutex::ThreeStateMutex<uklock::mutex::Queue>",
///     ukconfig::uklock::Mutex::Futex => "uklock::futex_mutex::ThreeStateMutex<uklock::futex_mutex::Futex>",
/// };
/// assert_eq!(core::any::type_name::<RawMutex>(), expected);
///
/// static RAW: RawMutex = RawMutex::new();
/// RAW.lock();
/// assert!(!RAW.try_lock());
/// // SAFETY: locked just above by this thread.
/// unsafe { RAW.unlock() };
/// assert!(RAW.try_lock_for(core::time::Duration::from_millis(1)));
/// // SAFETY: locked just above by this thread.
/// unsafe { RAW.unlock() };
/// ```
#[cfg(not(loom))]
pub type RawMutex =
    <select::Impl<{ select::index(ukconfig::uklock::MUTEX) }> as select::SelectMutex>::RawMutex;

/// The condition variable of the configured implementation
/// (`uklock.mutex`): [`waitqueue::Condvar`] or [`futex::Condvar`] (whose
/// `notify_all` requeues), for [`Mutex`]. Both have the same methods.
///
/// ```no_run
/// use uklock::{Condvar, Mutex};
///
/// static QUEUE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// static NOT_EMPTY: Condvar = Condvar::new();
///
/// let consumer = uksched::spawn(|| {
///     let mut q = QUEUE.lock();
///     NOT_EMPTY.wait_while(&mut q, |q| q.is_empty());
///     q.pop()
/// });
/// QUEUE.lock().push(42);
/// NOT_EMPTY.notify_one();
/// assert_eq!(consumer.join(), Some(42));
///
/// // With a timeout, when nobody notifies:
/// let mut q = QUEUE.lock();
/// let r = NOT_EMPTY.wait_timeout_while(&mut q, core::time::Duration::from_millis(2), |q| q.is_empty());
/// assert!(r.timed_out());
/// ```
#[cfg(not(loom))]
pub type Condvar = <select::Impl<{ select::index(ukconfig::uklock::MUTEX) }> as select::SelectMutex>::Condvar;

/// A sleeping mutex: [`lock_api::Mutex`] over the configured [`RawMutex`].
/// A thread that finds it held sleeps until the holder releases it.
///
/// ```no_run
/// use uklock::Mutex;
///
/// static TOTAL: Mutex<u64> = Mutex::new(0);
/// let workers: Vec<_> = (0..4)
///     .map(|_| uksched::spawn(|| for _ in 0..1000 { *TOTAL.lock() += 1 }))
///     .collect();
/// workers.into_iter().for_each(|w| w.join());
/// assert_eq!(*TOTAL.lock(), 4000);
///
/// // A timed attempt, and a guard mapped to part of the data:
/// static PAIR: Mutex<(u32, u32)> = Mutex::new((0, 0));
/// if let Some(guard) = PAIR.try_lock_for(core::time::Duration::from_millis(5)) {
///     let mut second = uklock::MutexGuard::map(guard, |p| &mut p.1);
///     *second = 7;
/// }
/// ```
#[cfg(not(loom))]
pub type Mutex<T> = lock_api::Mutex<RawMutex, T>;
/// The guard of a [`Mutex`]: holds the lock until dropped.
#[cfg(not(loom))]
pub type MutexGuard<'a, T> = lock_api::MutexGuard<'a, RawMutex, T>;
/// A [`MutexGuard`] mapped to part of the data.
#[cfg(not(loom))]
pub type MappedMutexGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawMutex, T>;

/// Whether a timed wait on a [`Condvar`] ended by its timeout.
#[cfg(not(loom))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(pub(crate) bool);

#[cfg(not(loom))]
impl WaitTimeoutResult {
    /// True when the wait ended because the timeout passed (for the
    /// `*_while` forms: and the condition still held).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// Lock-word reads before a contended locker goes to sleep (the holder may
/// be about to release it on another CPU).
pub(crate) const SPINS: u32 = 100;

/// Reads `word` until `done` accepts it or [`SPINS`] reads went by;
/// returns the last value read.
#[cfg(not(loom))]
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
/// with preemption disabled — no reference count touched). loom: always
/// [`BEFORE_SCHEDULER`] (the models do not check owners).
#[inline]
pub(crate) fn current_thread_id() -> u64 {
    #[cfg(not(loom))]
    {
        uksched::try_current_id().unwrap_or(BEFORE_SCHEDULER)
    }
    #[cfg(loom)]
    {
        BEFORE_SCHEDULER
    }
}

/// The calling thread, for reports (None before the scheduler started or
/// in an interrupt handler).
#[cfg(not(loom))]
fn reporter() -> Option<uksched::Thread> {
    (uksched::started() && !ukplat::cpu::in_interrupt()).then(uksched::current)
}

/// The name and id of a [`reporter`].
#[cfg(not(loom))]
fn name_and_id(t: &Option<uksched::Thread>) -> (&str, u64) {
    t.as_ref().map_or(("(no thread)", BEFORE_SCHEDULER), |t| (t.name(), t.id()))
}

/// The self-deadlock report.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn self_deadlock(what: &str) -> ! {
    #[cfg(not(loom))]
    let me = reporter();
    #[cfg(not(loom))]
    let (name, id) = name_and_id(&me);
    #[cfg(loom)]
    let (name, id) = ("(no thread)", BEFORE_SCHEDULER);
    panic!("uklock: thread `{name}` (id {id}) locks a {what} it already holds (self-deadlock)")
}

/// The wrong-thread unlock report.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn not_the_owner(what: &str, owner: u64) -> ! {
    #[cfg(not(loom))]
    let me = reporter();
    #[cfg(not(loom))]
    let (name, id) = name_and_id(&me);
    #[cfg(loom)]
    let (name, id) = ("(no thread)", BEFORE_SCHEDULER);
    if owner == NO_THREAD {
        panic!("uklock: thread `{name}` (id {id}) unlocks a {what} that is not locked");
    }
    panic!("uklock: thread `{name}` (id {id}) unlocks a {what} held by thread id {owner}")
}
