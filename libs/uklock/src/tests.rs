//! Host tests: the lock words' non-sleeping paths (`try_*`, uncontended
//! lock/unlock, release) under real concurrency with `std` threads, and
//! the reports. The sleeping paths need the scheduler: they are tested in
//! the guest (`guest_tests.rs`, run by the `sched` app). On the host the
//! scheduler never starts, so every lock is held by the "before the
//! scheduler" pseudo-thread.

use crate::{BEFORE_SCHEDULER, Condvar, Mutex, MutexGuard, RwLock, Semaphore};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Runs `f(i)` on `n` threads at once and waits for them.
fn on_threads(n: usize, f: impl Fn(usize) + Send + Sync + 'static) {
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            std::thread::spawn(move || f(i))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn mutex_uncontended_lock_unlock_and_owner() {
    let m = Mutex::new(1u32);
    {
        let mut g = m.lock();
        *g += 1;
        assert!(m.is_locked());
        assert!(m.try_lock().is_none());
        // SAFETY: only reads the owner field.
        assert_eq!(unsafe { m.raw() }.owner(), Some(BEFORE_SCHEDULER));
        // SAFETY: as above.
        assert!(!unsafe { m.raw() }.is_contended());
    }
    // SAFETY: only reads the owner field.
    assert_eq!(unsafe { m.raw() }.owner(), None);
    let g = MutexGuard::map(m.lock(), |v| v);
    assert_eq!(*g, 2);
    drop(g);
    // Free: a timed lock takes it at once.
    assert_eq!(m.try_lock_for(core::time::Duration::from_secs(1)).map(|g| *g), Some(2));
    assert_eq!(m.into_inner(), 2);
}

/// Four threads take `lock_api::Mutex<R, _>` with `try_lock` only, 20,000
/// times each: never two holders at once, no increment lost.
fn try_lock_excludes_across_threads<R: lock_api::RawMutex + Send + Sync + 'static>() {
    const ITERS: u32 = 20_000;
    let shared = Arc::new((lock_api::Mutex::<R, u32>::new(0), AtomicU32::new(0), AtomicU32::new(0)));
    let s = shared.clone();
    on_threads(4, move |_| {
        for _ in 0..ITERS {
            let mut g = loop {
                match s.0.try_lock() {
                    Some(g) => break g,
                    None => std::thread::yield_now(),
                }
            };
            if s.1.fetch_add(1, Ordering::Relaxed) != 0 {
                s.2.fetch_add(1, Ordering::Relaxed);
            }
            let v = *g;
            std::hint::spin_loop();
            *g = v + 1;
            s.1.fetch_sub(1, Ordering::Relaxed);
        }
    });
    assert_eq!(shared.2.load(Ordering::Relaxed), 0, "two holders at once");
    assert_eq!(*shared.0.lock(), 4 * ITERS);
}

#[test]
fn mutex_try_lock_excludes_across_threads() {
    try_lock_excludes_across_threads::<crate::RawMutex>();
}

#[test]
fn semaphore_counts_and_guards() {
    let s = Semaphore::new(2);
    assert!(s.try_acquire() && s.try_acquire());
    assert!(!s.try_acquire());
    s.release_n(3);
    assert_eq!(s.available(), 3);
    s.release_n(0);
    assert_eq!(s.available(), 3);
    {
        let _a = s.try_acquire_guard().unwrap();
        let b = s.try_acquire_guard().unwrap();
        assert_eq!(s.available(), 1);
        b.forget();
        assert!(s.try_acquire());
        assert!(s.try_acquire_guard().is_none(), "no permit left");
        assert_eq!(s.available(), 0, "a failed try_acquire_guard released nothing");
        s.release();
    }
    assert_eq!(s.available(), 2, "the dropped guard released, the forgotten one did not");
    // With permits available nothing sleeps.
    s.acquire();
    assert!(s.acquire_timeout(core::time::Duration::from_secs(1)));
    assert_eq!(s.available(), 0);
}

#[test]
#[should_panic(expected = "uklock: Semaphore permit count overflow")]
fn semaphore_overflow_panics() {
    Semaphore::new(usize::MAX).release();
}

#[test]
fn semaphore_never_hands_out_more_than_its_permits() {
    const PERMITS: usize = 3;
    const ITERS: usize = 20_000;
    let shared = Arc::new((Semaphore::new(PERMITS), AtomicUsize::new(0), AtomicUsize::new(0)));
    let s = shared.clone();
    on_threads(6, move |_| {
        for _ in 0..ITERS {
            while !s.0.try_acquire() {
                std::thread::yield_now();
            }
            let inside = s.1.fetch_add(1, Ordering::SeqCst) + 1;
            s.2.fetch_max(inside, Ordering::Relaxed);
            std::hint::spin_loop();
            s.1.fetch_sub(1, Ordering::SeqCst);
            s.0.release();
        }
    });
    assert!(
        shared.2.load(Ordering::Relaxed) <= PERMITS,
        "{} holders at once",
        shared.2.load(Ordering::Relaxed)
    );
    assert_eq!(shared.0.available(), PERMITS, "permits lost or created");
}

#[test]
fn rwlock_readers_share_writers_exclude() {
    let l = RwLock::new(5u32);
    {
        let (a, b) = (l.read(), l.read());
        assert_eq!(*a + *b, 10);
        // SAFETY: only reads the state.
        assert_eq!(unsafe { l.raw() }.readers(), 2);
        assert!(l.try_write().is_none());
        assert!(l.try_read().is_some());
    }
    {
        let mut w = l.write();
        *w = 6;
        assert!(l.try_read().is_none());
        assert!(l.try_write().is_none());
        assert!(l.is_locked_exclusive());
        // SAFETY: only reads the state.
        assert_eq!(unsafe { l.raw() }.readers(), 0);
    }
    assert!(!l.is_locked());
    assert_eq!(*l.read(), 6);
}

#[test]
fn rwlock_try_paths_never_tear_a_write() {
    const ITERS: u64 = 10_000;
    let shared = Arc::new((RwLock::new((0u64, 0u64)), AtomicU32::new(0)));
    let s = shared.clone();
    on_threads(6, move |i| {
        for _ in 0..ITERS {
            if i % 2 == 0 {
                let mut g = loop {
                    match s.0.try_write() {
                        Some(g) => break g,
                        None => std::thread::yield_now(),
                    }
                };
                g.0 += 1;
                std::hint::spin_loop();
                g.1 += 1;
            } else {
                let g = loop {
                    match s.0.try_read() {
                        Some(g) => break g,
                        None => std::thread::yield_now(),
                    }
                };
                if g.0 != g.1 {
                    s.1.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    assert_eq!(shared.1.load(Ordering::Relaxed), 0, "a reader saw a half-done write");
    assert_eq!(*shared.0.read(), (3 * ITERS, 3 * ITERS));
}

#[test]
fn condvar_notify_without_waiters_is_a_no_op() {
    let cv = Condvar::new();
    assert!(!cv.notify_one());
    assert_eq!(cv.notify_all(), 0);
}

#[test]
#[should_panic(
    expected = "uklock: thread `(no thread)` (id 18446744073709551615) unlocks a Mutex held by thread id 7"
)]
fn the_wrong_owner_report_names_both_threads() {
    crate::not_the_owner("Mutex", 7);
}

#[test]
#[should_panic(expected = "locks a Mutex it already holds (self-deadlock)")]
fn the_self_deadlock_report() {
    crate::self_deadlock("Mutex");
}

#[test]
fn futex_mutex_uncontended_lock_unlock_and_owner() {
    let m = crate::futex::Mutex::new(1u32);
    {
        let mut g = m.lock();
        *g += 1;
        assert!(m.is_locked());
        assert!(m.try_lock().is_none());
        // SAFETY: only reads the owner field.
        assert_eq!(unsafe { m.raw() }.owner(), Some(BEFORE_SCHEDULER));
        // SAFETY: only reads the futex word.
        assert_eq!(unsafe { m.raw() }.word().load(Ordering::Relaxed), 1, "locked, no sleeper announced");
    }
    // SAFETY: only reads the owner field and the word.
    let raw = unsafe { m.raw() };
    assert_eq!(raw.owner(), None);
    assert_eq!(raw.word().load(Ordering::Relaxed), 0);
    assert!(!raw.is_contended());
    assert_eq!(m.try_lock_for(core::time::Duration::from_secs(1)).map(|g| *g), Some(2));
    assert_eq!(m.into_inner(), 2);
}

#[test]
fn futex_mutex_try_lock_excludes_across_threads() {
    try_lock_excludes_across_threads::<crate::futex::RawMutex>();
}

#[test]
fn futex_condvar_notify_without_waiters_is_a_no_op() {
    let cv = crate::futex::Condvar::new();
    assert!(!cv.notify_one());
    assert_eq!(cv.notify_all(), 0);
}

#[test]
fn the_configured_mutex_is_the_declared_default() {
    // Host builds see every option's default: `waitqueue`.
    assert_eq!(crate::MUTEX, ukconfig::uklock::Mutex::Waitqueue);
    assert_eq!(crate::select::configured_name(), "waitqueue");
    assert_eq!(
        core::any::type_name::<crate::RawMutex>(),
        core::any::type_name::<crate::waitqueue::RawMutex>()
    );
    assert_eq!(core::any::type_name::<Condvar>(), core::any::type_name::<crate::waitqueue::Condvar>());
}

#[test]
fn once_runs_its_closure_once() {
    static ONCE: crate::Once = crate::Once::new();
    let mut runs = 0;
    assert!(!ONCE.is_completed());
    ONCE.call_once(|| runs += 1);
    ONCE.call_once(|| runs += 10);
    assert_eq!(runs, 1);
    assert!(ONCE.is_completed());
}

#[test]
fn a_panicking_once_closure_leaves_it_incomplete() {
    let once = crate::Once::new();
    let r =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| once.call_once(|| panic!("init failed"))));
    assert!(r.is_err());
    assert!(!once.is_completed(), "no poisoning: the next caller runs its closure");
    let mut ran = false;
    once.call_once(|| ran = true);
    assert!(ran && once.is_completed());
}
