//! loom model checks of the futex-based locks.
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p uklock --release --test loom_futex
//! ```
//!
//! **Real code and stand-ins.** The models run the crate's real
//! `futex::RawMutex` (`src/futex_mutex.rs`: `lock`, `try_lock`,
//! `try_lock_until`, `unlock`, the contended path and `lock_after_wake`),
//! `futex::Condvar` (`src/futex_condvar.rs`: the wait with its binding and
//! relock, `notify_one`, `notify_all` with its `FUTEX_CMP_REQUEUE`) and
//! `Once` (`src/once.rs`), built with loom's atomics. Only the futex calls
//! are stand-ins (`src/sys.rs`): one list of sleepers under a loom mutex,
//! the word compared under it before a sleeper is queued, wakes and
//! requeues done under it, a woken sleeper unparked; a timed sleeper times
//! out at any point unless a waker took it first. A sleeper nobody wakes
//! stays parked, so a lost wake-up fails a model with loom's "deadlock"
//! report (every thread blocked); `loom::cell::UnsafeCell` fails it on two
//! unsynchronised accesses to the data a lock protects. The models share
//! their state through `std`'s `Arc`, not loom's: loom's has a destructor
//! that needs the runtime, which an execution that deadlocks no longer has
//! while its threads unwind (the process would abort instead of failing
//! the model).
//!
//! The models:
//!
//! 1. two lockers, each locking twice: mutual exclusion and every lock
//!    acquired (with the sleeping path and a woken thread re-taking the
//!    lock as `2`);
//! 2. three lockers: mutual exclusion, no lost wake-up with two sleepers
//!    (the last unlock may wake nobody: the spurious wake is harmless);
//! 3. a timed locker (`try_lock_until`) between a holder and a plain
//!    locker: it times out or acquires, and when it times out the plain
//!    locker is still woken;
//! 4. the condition variable: two waiters and a notifier that sets the
//!    condition and calls `notify_all` while holding the mutex (so when
//!    both waiters sleep, one is woken and the other requeued onto the
//!    mutex's word) — every waiter returns with the condition set, none is
//!    left asleep; and the same with `notify_one` twice after the unlock;
//! 5. two waiters of one condition variable with a mutex each (the
//!    binding goes mixed, or moves from one mutex to the other): both
//!    return after one `notify_all`;
//! 6. `Once::call_once` from three threads: the closure runs once and each
//!    caller sees what it wrote.
//!
//! Negative controls (each must fail its model, and does): an `unlock`
//! that releases but never wakes, and one that wakes before it releases
//! (`RawMutex::unlock_broken`, compiled only under loom, next to the real
//! `unlock`); and a condition-variable waiter that re-takes the mutex with
//! a plain `lock` (`0 → 1`) after its wake-up (`Condvar::wait_raw_broken`):
//! the requeued waiter is never woken.
//!
//! Not modelled: owner checks (loom builds see no threads; the in-guest
//! tests check them), the `lock_api` wrappers, the guest's spinlock in the
//! condition variable's binding (a loom mutex here), timed condition
//! variable waits, deadlines as times (a timed wait merely *may* time
//! out), more than three threads.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::thread;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use uklock::Once;
use uklock::futex::{BrokenUnlock, Condvar, RawMutex};

/// A model builder bounded to `LOOM_MAX_PREEMPTIONS`, or 3.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Counts executions that reached a case (a plain `std` atomic: loom runs
/// the executions one after the other), so a model can check that it
/// explored what it is about, not only that nothing failed.
struct Seen(AtomicUsize);

impl Seen {
    const fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    fn hit(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn assert_hit(&self, what: &str) {
        let n = self.0.load(Ordering::Relaxed);
        assert!(n > 0, "no execution {what}");
        println!("{n} executions {what}");
    }
}

/// A mutex and the counter it protects.
struct Guarded {
    lock: RawMutex,
    count: UnsafeCell<u32>,
    /// Counts executions in which a holder found the word at 2.
    contended: &'static Seen,
}

// SAFETY: `count` is only touched under `lock` (which loom verifies).
unsafe impl Sync for Guarded {}

impl Guarded {
    fn new(contended: &'static Seen) -> Arc<Self> {
        Arc::new(Self { lock: RawMutex::new(), count: UnsafeCell::new(0), contended })
    }

    /// The critical section: a read-modify-write loom checks for races.
    fn bump(&self) {
        // SAFETY: called with `lock` held.
        self.count.with_mut(|n| unsafe { *n += 1 });
    }

    fn count(&self) -> u32 {
        // SAFETY: all threads joined.
        self.count.with(|n| unsafe { *n })
    }

    /// lock, bump, unlock (with `bug`, the broken unlock).
    fn locked_bump(&self, bug: Option<BrokenUnlock>) {
        self.lock.lock();
        if self.lock.is_contended() {
            self.contended.hit();
        }
        self.bump();
        match bug {
            // SAFETY: locked just above by this thread.
            None => unsafe { self.lock.unlock() },
            // SAFETY: as above.
            Some(bug) => unsafe { self.lock.unlock_broken(bug) },
        }
    }
}

/// `threads` lockers (the model's thread being one), each taking the lock
/// `rounds` times; `contended` counts the executions in which a holder
/// found the word at 2 (a locker announced it sleeps).
fn lockers(threads: usize, rounds: u32, bug: Option<BrokenUnlock>, contended: &'static Seen) {
    model(move || {
        let g = Guarded::new(contended);
        let others: Vec<_> = (1..threads)
            .map(|_| {
                let g = g.clone();
                thread::spawn(move || {
                    for _ in 0..rounds {
                        g.locked_bump(bug);
                    }
                })
            })
            .collect();
        for _ in 0..rounds {
            g.locked_bump(bug);
        }
        for t in others {
            t.join().unwrap();
        }
        assert_eq!(g.count(), threads as u32 * rounds);
        assert!(!g.lock.is_locked(), "the word is 0 after the last unlock");
    });
    contended.assert_hit("with a holder that found the word at 2");
}

#[test]
fn mutex_two_lockers_twice_each() {
    static CONTENDED: Seen = Seen::new();
    lockers(2, 2, None, &CONTENDED);
}

#[test]
fn mutex_three_lockers() {
    static CONTENDED: Seen = Seen::new();
    lockers(3, 1, None, &CONTENDED);
}

#[test]
#[should_panic(expected = "deadlock")]
fn an_unlock_that_never_wakes_is_caught() {
    static CONTENDED: Seen = Seen::new();
    lockers(2, 1, Some(BrokenUnlock::NoWake), &CONTENDED);
}

#[test]
#[should_panic(expected = "deadlock")]
fn an_unlock_that_wakes_before_releasing_is_caught() {
    static CONTENDED: Seen = Seen::new();
    lockers(2, 1, Some(BrokenUnlock::WakeBeforeRelease), &CONTENDED);
}

#[test]
fn mutex_try_lock_excludes() {
    static CONTENDED: Seen = Seen::new();
    model(|| {
        let g = Guarded::new(&CONTENDED);
        let g2 = g.clone();
        let t = thread::spawn(move || {
            if g2.lock.try_lock() {
                g2.bump();
                // SAFETY: taken just above by this thread.
                unsafe { g2.lock.unlock() };
                1
            } else {
                0
            }
        });
        g.locked_bump(None);
        let other = t.join().unwrap();
        assert_eq!(g.count(), 1 + other);
        assert!(!g.lock.is_locked());
    });
}

/// A holder, a timed locker and a plain locker: the timed one acquires or
/// times out without taking a wake-up with it; the plain one always gets
/// the lock.
#[test]
fn a_timed_locker_that_times_out_loses_no_wake_up() {
    static CONTENDED: Seen = Seen::new();
    model(|| {
        let g = Guarded::new(&CONTENDED);
        let timed = {
            let g = g.clone();
            thread::spawn(move || {
                if g.lock.try_lock_until(uklock::Instant) {
                    g.bump();
                    // SAFETY: taken just above by this thread.
                    unsafe { g.lock.unlock() };
                    1
                } else {
                    0
                }
            })
        };
        let plain = {
            let g = g.clone();
            thread::spawn(move || g.locked_bump(None))
        };
        g.locked_bump(None);
        let got = timed.join().unwrap();
        plain.join().unwrap();
        assert_eq!(g.count(), 2 + got);
        assert!(!g.lock.is_locked());
        if got == 0 {
            TIMED_OUT.hit();
        } else {
            TIMED_GOT_IT.hit();
        }
    });
    TIMED_OUT.assert_hit("in which the timed locker timed out");
    TIMED_GOT_IT.assert_hit("in which the timed locker got the lock");
}

static TIMED_OUT: Seen = Seen::new();
static TIMED_GOT_IT: Seen = Seen::new();

/// A condition variable, the mutex it is used with and what the mutex
/// protects: the condition and how many waiters saw it.
struct Cv {
    lock: RawMutex,
    cv: Condvar,
    /// (condition set, waiters that returned with it set)
    state: UnsafeCell<(bool, u32)>,
}

// SAFETY: `state` is only touched under `lock` (which loom verifies).
unsafe impl Sync for Cv {}

impl Cv {
    fn ready(&self) -> bool {
        // SAFETY: called with `lock` held.
        self.state.with(|s| unsafe { (*s).0 })
    }

    /// A waiter: wait (untimed) until the condition is set, count itself.
    fn waiter(&self, broken_relock: bool) {
        self.lock.lock();
        while !self.ready() {
            if broken_relock {
                // SAFETY: this thread holds `lock`.
                unsafe { self.cv.wait_raw_broken(&self.lock) };
            } else {
                // SAFETY: this thread holds `lock`.
                unsafe { self.cv.wait_raw(&self.lock, None) };
            }
        }
        // SAFETY: `lock` is held.
        self.state.with_mut(|s| unsafe { (*s).1 += 1 });
        // SAFETY: held by this thread.
        unsafe { self.lock.unlock() };
    }
}

/// How the notifier notifies.
#[derive(Clone, Copy)]
enum Notify {
    /// `notify_all` while holding the mutex (the requeue case).
    AllHoldingTheMutex,
    /// `notify_one` twice, after releasing the mutex.
    OneTwiceAfterUnlock,
}

fn condvar_model(notify: Notify, broken_relock: bool) {
    model(move || {
        let s =
            Arc::new(Cv { lock: RawMutex::new(), cv: Condvar::new(), state: UnsafeCell::new((false, 0)) });
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.waiter(broken_relock))
            })
            .collect();
        s.lock.lock();
        // SAFETY: `lock` is held.
        s.state.with_mut(|st| unsafe { (*st).0 = true });
        match notify {
            Notify::AllHoldingTheMutex => {
                // 2 with both waiters asleep: one woken, one requeued.
                if s.cv.notify_all() == 2 {
                    REQUEUED.hit();
                }
                // SAFETY: held by this thread.
                unsafe { s.lock.unlock() };
            }
            Notify::OneTwiceAfterUnlock => {
                // SAFETY: held by this thread.
                unsafe { s.lock.unlock() };
                s.cv.notify_one();
                s.cv.notify_one();
            }
        }
        for w in waiters {
            w.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(s.state.with(|st| unsafe { (*st).1 }), 2, "a waiter returned without the condition");
        assert!(!s.lock.is_locked());
    });
    if let Notify::AllHoldingTheMutex = notify {
        REQUEUED.assert_hit("in which notify_all found both waiters asleep (one woken, one requeued)");
    }
}

/// Executions whose `notify_all` found both waiters asleep.
static REQUEUED: Seen = Seen::new();

#[test]
fn condvar_notify_all_requeues_and_every_waiter_returns() {
    condvar_model(Notify::AllHoldingTheMutex, false);
}

#[test]
fn condvar_notify_one_twice_wakes_both() {
    condvar_model(Notify::OneTwiceAfterUnlock, false);
}

#[test]
#[should_panic(expected = "deadlock")]
fn a_waiter_that_relocks_as_1_strands_the_requeued_one() {
    condvar_model(Notify::AllHoldingTheMutex, true);
}

/// Two waiters on one condition variable, each with a mutex of its own
/// (allowed, if unusual): whichever registers second while the other
/// waits marks the binding mixed, and `notify_all` then wakes both instead
/// of requeueing one onto the wrong mutex; or, when the first has left
/// already, the binding moves to the second mutex. Every waiter returns.
#[test]
fn condvar_with_two_mutexes_wakes_every_waiter() {
    model(|| {
        let cv = Arc::new(Condvar::new());
        let sides: Vec<_> = (0..2)
            .map(|_| {
                Arc::new(Cv { lock: RawMutex::new(), cv: Condvar::new(), state: UnsafeCell::new((false, 0)) })
            })
            .collect();
        let waiters: Vec<_> = sides
            .iter()
            .map(|side| {
                let (side, cv) = (side.clone(), cv.clone());
                thread::spawn(move || {
                    side.lock.lock();
                    while !side.ready() {
                        // SAFETY: this thread holds `side.lock`.
                        unsafe { cv.wait_raw(&side.lock, None) };
                    }
                    // SAFETY: `side.lock` is held.
                    side.state.with_mut(|s| unsafe { (*s).1 += 1 });
                    // SAFETY: held by this thread.
                    unsafe { side.lock.unlock() };
                })
            })
            .collect();
        for side in &sides {
            side.lock.lock();
            // SAFETY: `side.lock` is held.
            side.state.with_mut(|st| unsafe { (*st).0 = true });
            // SAFETY: held by this thread.
            unsafe { side.lock.unlock() };
        }
        cv.notify_all();
        for w in waiters {
            w.join().unwrap();
        }
        for side in &sides {
            // SAFETY: all threads joined.
            assert_eq!(side.state.with(|st| unsafe { (*st).1 }), 1);
            assert!(!side.lock.is_locked());
        }
    });
}

#[test]
fn once_runs_once_and_publishes() {
    model(|| {
        struct S {
            once: Once,
            value: UnsafeCell<u32>,
        }
        // SAFETY: `value` is written by the closure `once` runs and read
        // after `call_once` returned (loom verifies the ordering).
        unsafe impl Sync for S {}
        let s = Arc::new(S { once: Once::new(), value: UnsafeCell::new(0) });
        let run = |s: &S| {
            // SAFETY: written only by the one closure that runs.
            s.once.call_once(|| s.value.with_mut(|v| unsafe { *v += 1 }));
            // SAFETY: after call_once returned: the write is complete and
            // ordered before this read.
            assert_eq!(s.value.with(|v| unsafe { *v }), 1);
            assert!(s.once.is_completed());
        };
        let others: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || run(&s))
            })
            .collect();
        run(&s);
        for t in others {
            t.join().unwrap();
        }
    });
}
