//! In-guest tests of the sleeping locks (feature `uktest`): contended
//! stress on every CPU with exact counts, and the timed paths. They need
//! the scheduler (the `sched` app runs them) and hold for any number of
//! CPUs and both `uksched.policy` values: no thread busy-waits for
//! another (under `coop` a spinning thread would keep its CPU) — they block
//! on the locks, or yield.
//!
//! Every blocking wait whose wake-up the test expects uses a timed form
//! with a generous [`LOST`] timeout and counts timeouts: a timeout there is
//! a lost wake-up, reported as a failure instead of a hang.

extern crate alloc;

use crate::{Condvar, Mutex, RwLock, Semaphore};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use uksched::{Builder, JoinHandle};
use uktest::{TestResult, ut_assert, ut_assert_eq, ut_fail};

/// A wait the test expects to be woken from that takes this long counts as
/// a lost wake-up (the tests run in well under a second each under TCG).
const LOST: Duration = Duration::from_secs(5);

/// How late a timed wait may end past its timeout: a vCPU descheduled by
/// the host (TCG, 4 vCPUs on 2 cores) and the timer interrupt's delivery.
const LATE: Duration = Duration::from_millis(500);

/// `tcg` iterations, or a tenth of them under KVM (on the build machines
/// KVM is PVM, which emulates this guest instruction by instruction).
fn scaled(tcg: usize) -> usize {
    uktest::scaled(tcg as u64, tcg as u64 / 10) as usize
}

/// Threads per test: two per CPU, at least four.
fn threads() -> usize {
    (2 * ukplat::cpu::count()).max(4)
}

/// Spawns `n` threads named `NAME-i` running `f(i)`, all released at
/// once when the last one exists (so they meet in the locks rather than
/// run one after the other).
fn spawn_n<T: Send + 'static>(
    name: &str,
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + Clone + 'static,
) -> Result<Vec<JoinHandle<T>>, uktest::Stop> {
    let gate = Arc::new(Semaphore::new(0));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let f = f.clone();
        let gate = gate.clone();
        match Builder::new().name(&format!("{name}-{i}")).spawn(move || {
            gate.acquire();
            f(i)
        }) {
            Ok(h) => handles.push(h),
            Err(e) => ut_fail!("spawning {}-{}: {}", name, i, e),
        }
    }
    gate.release_n(n);
    Ok(handles)
}

fn join_all<T: 'static>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    handles.into_iter().map(JoinHandle::join).collect()
}

// ---------------------------------------------------------------------------
// Mutex

fn mutex_basics_and_owner() -> TestResult {
    let m = Mutex::new(5u32);
    let me = uksched::current().id();
    {
        let mut g = m.lock();
        *g += 1;
        // SAFETY: only reads the owner field.
        ut_assert_eq!(unsafe { m.raw() }.owner(), Some(me), "the owner is the locking thread");
        ut_assert!(
            m.try_lock().is_none(),
            "try_lock of a held mutex (no self-deadlock panic: it does not wait)"
        );
        ut_assert!(m.is_locked());
    }
    // SAFETY: only reads the owner field.
    ut_assert_eq!(unsafe { m.raw() }.owner(), None);
    ut_assert!(!m.is_locked());
    ut_assert_eq!(m.try_lock_for(Duration::from_millis(1)).map(|g| *g), Some(6), "free: taken at once");
    let g = crate::MutexGuard::map(m.lock(), |v| v);
    ut_assert_eq!(*g, 6);
    Ok(())
}
uktest::test_case!(mutex_basics_and_owner);

/// 2 threads per CPU increment a plain counter under one mutex; each
/// critical section is a read, a pause and a write (a lost update without
/// mutual exclusion), and every 8th one yields while holding the lock, so
/// threads on the same CPU meet it held and sleep.
fn mutex_counts_exactly_on_every_cpu() -> TestResult {
    let iters = scaled(2000) as u64;
    struct Shared {
        count: Mutex<u64>,
        inside: AtomicU32,
        overlaps: AtomicU32,
        contended: AtomicU64,
    }
    let n = threads();
    let s = Arc::new(Shared {
        count: Mutex::new(0),
        inside: AtomicU32::new(0),
        overlaps: AtomicU32::new(0),
        contended: AtomicU64::new(0),
    });
    // The test thread holds the mutex until a worker found it taken (or
    // 2 s passed), so the contended path runs whatever the host's timing:
    // on linuxu the workers may otherwise finish before they ever meet.
    let held = s.count.lock();
    let shared = s.clone();
    let handles = spawn_n("mutex", n, move |_| {
        let s = &shared;
        for i in 0..iters {
            let mut g = match s.count.try_lock() {
                Some(g) => g,
                None => {
                    s.contended.fetch_add(1, Ordering::Relaxed);
                    s.count.lock()
                }
            };
            if s.inside.fetch_add(1, Ordering::Relaxed) != 0 {
                s.overlaps.fetch_add(1, Ordering::Relaxed);
            }
            let v = *g;
            for _ in 0..8 {
                core::hint::spin_loop();
            }
            *g = v + 1;
            if i % 8 == 0 {
                uksched::yield_now();
            }
            s.inside.fetch_sub(1, Ordering::Relaxed);
            drop(g);
        }
    })?;
    let deadline = uktime::now() + Duration::from_secs(2);
    while s.contended.load(Ordering::Relaxed) == 0 && uktime::now() < deadline {
        uksched::yield_now();
    }
    drop(held);
    join_all(handles);
    ut_assert_eq!(s.overlaps.load(Ordering::Relaxed), 0, "two threads inside the critical section");
    ut_assert_eq!(*s.count.lock(), n as u64 * iters, "lost updates");
    ut_assert!(
        s.contended.load(Ordering::Relaxed) > 0,
        "the mutex was never contended: the test tested nothing"
    );
    ut_assert!(!s.count.is_locked());
    report(format_args!(
        "uklock: mutex: {} threads x {} increments, {} contended acquisitions",
        n,
        iters,
        s.contended.load(Ordering::Relaxed)
    ));
    Ok(())
}
uktest::test_case!(mutex_counts_exactly_on_every_cpu);

/// A holder keeps the mutex; `try_lock_for` times out, not earlier than
/// asked; once the holder releases, a waiting `try_lock_for` gets it.
fn mutex_try_lock_for_times_out_then_succeeds() -> TestResult {
    let shared = Arc::new((Mutex::new(0u32), Semaphore::new(0), Semaphore::new(0)));
    let s = shared.clone();
    let holder = spawn_n("holder", 1, move |_| {
        let g = s.0.lock();
        s.1.release(); // "I hold it"
        // Hold it until told to release.
        let told = s.2.acquire_timeout(LOST);
        drop(g);
        told
    })?;
    ut_assert!(shared.1.acquire_timeout(LOST), "the holder never reported");
    let timeout = Duration::from_millis(20);
    let start = uktime::now();
    let got = shared.0.try_lock_for(timeout).is_some();
    let took = start.elapsed();
    ut_assert!(!got, "took a mutex another thread holds");
    ut_assert!(took >= timeout, "try_lock_for gave up after {:?}, before its {:?}", took, timeout);
    ut_assert!(took <= timeout + LATE, "the {:?} try_lock_for took {:?}", timeout, took);
    // Now wait with a long timeout while the holder is told to release.
    shared.2.release();
    let start = uktime::now();
    let got = shared.0.try_lock_for(LOST).map(|g| *g);
    let took = start.elapsed();
    ut_assert!(join_all(holder)[0], "the holder was not told to release");
    ut_assert_eq!(got, Some(0), "not taken after the release ({:?})", took);
    ut_assert!(took < LOST, "a released mutex took {:?}", took);
    Ok(())
}
uktest::test_case!(mutex_try_lock_for_times_out_then_succeeds);

// ---------------------------------------------------------------------------
// Semaphore

fn semaphore_counts() -> TestResult {
    let s = Semaphore::new(2);
    ut_assert!(s.try_acquire());
    ut_assert!(s.try_acquire());
    ut_assert!(!s.try_acquire());
    ut_assert_eq!(s.available(), 0);
    s.release_n(3);
    ut_assert_eq!(s.available(), 3);
    {
        let _g = s.acquire_guard();
        ut_assert_eq!(s.available(), 2);
        match s.try_acquire_guard() {
            Some(g2) => g2.forget(),
            None => ut_fail!("a permit was available"),
        }
        ut_assert_eq!(s.available(), 1);
    }
    ut_assert_eq!(s.available(), 2, "the guard released, the forgotten one did not");
    Ok(())
}
uktest::test_case!(semaphore_counts);

/// A bounded buffer guarded by two semaphores (free slots, items): one
/// producer and one consumer per CPU (at least two of each). Every item is
/// consumed exactly once, the sum matches, the buffer never overflows, and
/// both counts end where they started.
fn semaphore_bounded_buffer_exact() -> TestResult {
    const CAP: usize = 4;
    let per_producer = scaled(1500);
    struct Shared {
        slots: Semaphore,
        items: Semaphore,
        buf: ukspin::SpinLock<VecDeque<u32>>,
        seen: Vec<AtomicU8>,
        overflow: AtomicBool,
        lost: AtomicU32,
        slow: AtomicU64,
        consumed_sum: AtomicU64,
    }
    let pairs = threads() / 2;
    let total = pairs * per_producer;
    let s = Arc::new(Shared {
        slots: Semaphore::new(CAP),
        items: Semaphore::new(0),
        buf: ukspin::SpinLock::new(VecDeque::with_capacity(CAP)),
        seen: (0..total).map(|_| AtomicU8::new(0)).collect(),
        overflow: AtomicBool::new(false),
        lost: AtomicU32::new(0),
        slow: AtomicU64::new(0),
        consumed_sum: AtomicU64::new(0),
    });
    // Counts waits that went to sleep, and waits that ran into LOST.
    let acquire = |sem: &Semaphore, sh: &Shared| {
        if !sem.try_acquire() {
            sh.slow.fetch_add(1, Ordering::Relaxed);
            while !sem.acquire_timeout(LOST) {
                sh.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let sh = s.clone();
    let start = uktime::now();
    // Threads 0..pairs produce, the others consume.
    let handles = spawn_n("sem-buffer", 2 * pairs, move |i| {
        let mut consumed = 0;
        for k in 0..per_producer {
            if i < pairs {
                acquire(&sh.slots, &sh);
                {
                    let mut b = sh.buf.lock();
                    if b.len() >= CAP {
                        sh.overflow.store(true, Ordering::Relaxed);
                    }
                    b.push_back((i * per_producer + k) as u32);
                }
                sh.items.release();
            } else {
                acquire(&sh.items, &sh);
                let item = sh.buf.lock().pop_front();
                sh.slots.release();
                if let Some(item) = item {
                    sh.seen[item as usize].fetch_add(1, Ordering::Relaxed);
                    sh.consumed_sum.fetch_add(u64::from(item), Ordering::Relaxed);
                    consumed += 1;
                }
            }
        }
        consumed
    })?;
    let consumed: usize = join_all(handles).into_iter().sum();
    let took = start.elapsed();
    ut_assert_eq!(
        s.lost.load(Ordering::Relaxed),
        0,
        "waits ran into their {:?} timeout (lost wake-ups)",
        LOST
    );
    ut_assert!(!s.overflow.load(Ordering::Relaxed), "more than {} items in the buffer", CAP);
    ut_assert_eq!(consumed, total, "an item permit without an item");
    if let Some(i) = s.seen.iter().position(|c| c.load(Ordering::Relaxed) != 1) {
        ut_fail!("item {} was consumed {} times", i, s.seen[i].load(Ordering::Relaxed));
    }
    let expected = (total as u64) * (total as u64 - 1) / 2;
    ut_assert_eq!(s.consumed_sum.load(Ordering::Relaxed), expected);
    ut_assert_eq!(s.slots.available(), CAP);
    ut_assert_eq!(s.items.available(), 0);
    ut_assert!(s.buf.lock().is_empty());
    report(format_args!(
        "uklock: semaphore: {} items through a {}-slot buffer in {} ms, {} acquisitions slept",
        total,
        CAP,
        took.as_millis(),
        s.slow.load(Ordering::Relaxed)
    ));
    Ok(())
}
uktest::test_case!(semaphore_bounded_buffer_exact);

/// Nobody releases: `acquire_timeout` returns false, not before its
/// timeout; a release from another thread ends a long one early.
fn semaphore_acquire_timeout() -> TestResult {
    let sem = Arc::new(Semaphore::new(0));
    let timeout = Duration::from_millis(20);
    let start = uktime::now();
    let got = sem.acquire_timeout(timeout);
    let took = start.elapsed();
    ut_assert!(!got, "acquired a permit nobody released");
    ut_assert!(took >= timeout, "acquire_timeout gave up after {:?}, before its {:?}", took, timeout);
    ut_assert!(took <= timeout + LATE, "the {:?} acquire_timeout took {:?}", timeout, took);
    ut_assert_eq!(sem.available(), 0);

    let s = sem.clone();
    let releaser = spawn_n("releaser", 1, move |_| {
        uksched::sleep(Duration::from_millis(5));
        s.release();
    })?;
    let start = uktime::now();
    let got = sem.acquire_timeout(LOST);
    let took = start.elapsed();
    join_all(releaser);
    ut_assert!(got, "the released permit was not acquired");
    ut_assert!(took < LOST, "acquire_timeout took {:?}", took);
    ut_assert_eq!(sem.available(), 0);
    Ok(())
}
uktest::test_case!(semaphore_acquire_timeout);

// ---------------------------------------------------------------------------
// RwLock

fn rwlock_basics() -> TestResult {
    let l = RwLock::new(1u32);
    {
        let (a, b) = (l.read(), l.read());
        ut_assert_eq!(*a + *b, 2);
        // SAFETY: only reads the state.
        ut_assert_eq!(unsafe { l.raw() }.readers(), 2);
        ut_assert!(l.try_write().is_none());
    }
    {
        let mut w = l.write();
        *w = 3;
        ut_assert!(l.try_read().is_none());
        ut_assert!(l.try_write().is_none());
        ut_assert!(l.is_locked_exclusive());
    }
    ut_assert_eq!(*l.read(), 3);
    ut_assert!(!l.is_locked());
    Ok(())
}
uktest::test_case!(rwlock_basics);

/// Writers keep two fields equal (incrementing one, yielding, then the
/// other); readers on every CPU check they are equal. Exact writer counts.
fn rwlock_readers_never_see_a_torn_write() -> TestResult {
    let writes = scaled(500) as u64;
    let reads = scaled(1500) as u64;
    struct Shared {
        pair: RwLock<(u64, u64)>,
        torn: AtomicU64,
        readers_inside: AtomicU32,
        max_readers: AtomicU32,
        writer_with_readers: AtomicU32,
    }
    let n = threads() / 2;
    let s = Arc::new(Shared {
        pair: RwLock::new((0, 0)),
        torn: AtomicU64::new(0),
        readers_inside: AtomicU32::new(0),
        max_readers: AtomicU32::new(0),
        writer_with_readers: AtomicU32::new(0),
    });
    let sh = s.clone();
    let writers = spawn_n("rw-writer", n, move |_| {
        for i in 0..writes {
            let mut g = sh.pair.write();
            if sh.readers_inside.load(Ordering::Relaxed) != 0 {
                sh.writer_with_readers.fetch_add(1, Ordering::Relaxed);
            }
            g.0 += 1;
            if i % 4 == 0 {
                uksched::yield_now(); // readers meet it write-locked
            }
            g.1 += 1;
        }
    })?;
    let sh = s.clone();
    let readers = spawn_n("rw-reader", n, move |_| {
        for i in 0..reads {
            let g = sh.pair.read();
            let inside = sh.readers_inside.fetch_add(1, Ordering::Relaxed) + 1;
            sh.max_readers.fetch_max(inside, Ordering::Relaxed);
            if g.0 != g.1 {
                sh.torn.fetch_add(1, Ordering::Relaxed);
            }
            if i % 4 == 0 {
                uksched::yield_now(); // writers meet it read-locked
            }
            sh.readers_inside.fetch_sub(1, Ordering::Relaxed);
            drop(g);
        }
    })?;
    join_all(writers);
    join_all(readers);
    ut_assert_eq!(s.torn.load(Ordering::Relaxed), 0, "readers saw a half-done write");
    ut_assert_eq!(s.writer_with_readers.load(Ordering::Relaxed), 0, "a writer got in beside readers");
    let pair = *s.pair.read();
    ut_assert_eq!(pair, (n as u64 * writes, n as u64 * writes), "lost writes");
    report(format_args!(
        "uklock: rwlock: {} writers x {}, {} readers x {}, up to {} readers inside at once",
        n,
        writes,
        n,
        reads,
        s.max_readers.load(Ordering::Relaxed)
    ));
    Ok(())
}
uktest::test_case!(rwlock_readers_never_see_a_torn_write);

/// Readers on every CPU keep the lock read-held (overlapping holds, each
/// yielding while it holds): a writer still gets in, every time, in bounded
/// time — new readers wait behind it.
fn rwlock_writers_do_not_starve() -> TestResult {
    let writes = scaled(50) as u32;
    struct Shared {
        lock: RwLock<u32>,
        stop: AtomicBool,
        reads: AtomicU64,
    }
    let s = Arc::new(Shared { lock: RwLock::new(0), stop: AtomicBool::new(false), reads: AtomicU64::new(0) });
    let sh = s.clone();
    let begin = uktime::now();
    let readers = spawn_n("rw-stream", threads(), move |_| {
        // Bounded, so that a starved writer fails the test instead of
        // hanging it.
        while !sh.stop.load(Ordering::Relaxed) && begin.elapsed() < 2 * LOST {
            let g = sh.lock.read();
            sh.reads.fetch_add(1, Ordering::Relaxed);
            uksched::yield_now();
            drop(g);
        }
    })?;
    // Wait until the readers run.
    let start = uktime::now();
    while s.reads.load(Ordering::Relaxed) < 100 && start.elapsed() < LOST {
        uksched::sleep(Duration::from_millis(1));
    }
    let start = uktime::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..writes {
        let t = uktime::now();
        *s.lock.write() += 1;
        slowest = slowest.max(t.elapsed());
        uksched::yield_now();
    }
    let took = start.elapsed();
    s.stop.store(true, Ordering::Relaxed);
    join_all(readers);
    ut_assert_eq!(*s.lock.read(), writes);
    ut_assert!(slowest < LOST, "a writer waited {:?} behind readers", slowest);
    report(format_args!(
        "uklock: rwlock: {} writes past a stream of readers in {} us (slowest {} us), {} reads",
        writes,
        took.as_micros(),
        slowest.as_micros(),
        s.reads.load(Ordering::Relaxed)
    ));
    Ok(())
}
uktest::test_case!(rwlock_writers_do_not_starve);

// ---------------------------------------------------------------------------
// Condvar

/// A bounded buffer under a mutex with two condition variables and
/// `notify_one` only (a lost wake-up would leave a thread asleep: every
/// wait has a [`LOST`] timeout that counts as a failure). Producers and
/// consumers, one each per CPU; every item consumed exactly once.
fn condvar_bounded_buffer_exact() -> TestResult {
    const CAP: usize = 3;
    let per_producer = scaled(1500);
    struct Shared {
        buf: Mutex<VecDeque<u32>>,
        not_full: Condvar,
        not_empty: Condvar,
        seen: Vec<AtomicU8>,
        lost: AtomicU32,
        overflow: AtomicBool,
        sum: AtomicU64,
        waits: AtomicU64,
    }
    let pairs = threads() / 2;
    let total = pairs * per_producer;
    let s = Arc::new(Shared {
        buf: Mutex::new(VecDeque::with_capacity(CAP)),
        not_full: Condvar::new(),
        not_empty: Condvar::new(),
        seen: (0..total).map(|_| AtomicU8::new(0)).collect(),
        lost: AtomicU32::new(0),
        overflow: AtomicBool::new(false),
        sum: AtomicU64::new(0),
        waits: AtomicU64::new(0),
    });
    let sh = s.clone();
    let producers = spawn_n("cv-producer", pairs, move |p| {
        for i in 0..per_producer {
            let mut b = sh.buf.lock();
            while b.len() >= CAP {
                sh.waits.fetch_add(1, Ordering::Relaxed);
                if sh.not_full.wait_timeout(&mut b, LOST).timed_out() {
                    sh.lost.fetch_add(1, Ordering::Relaxed);
                }
            }
            b.push_back((p * per_producer + i) as u32);
            if b.len() > CAP {
                sh.overflow.store(true, Ordering::Relaxed);
            }
            drop(b);
            sh.not_empty.notify_one();
        }
    })?;
    let sh = s.clone();
    let consumers = spawn_n("cv-consumer", pairs, move |_| {
        for _ in 0..per_producer {
            let mut b = sh.buf.lock();
            while b.is_empty() {
                sh.waits.fetch_add(1, Ordering::Relaxed);
                if sh.not_empty.wait_timeout(&mut b, LOST).timed_out() {
                    sh.lost.fetch_add(1, Ordering::Relaxed);
                }
            }
            let item = b.pop_front().expect("not empty");
            // Notify while holding the mutex this time (the other side
            // notifies after releasing it): both must work.
            sh.not_full.notify_one();
            drop(b);
            sh.seen[item as usize].fetch_add(1, Ordering::Relaxed);
            sh.sum.fetch_add(u64::from(item), Ordering::Relaxed);
        }
    })?;
    join_all(producers);
    join_all(consumers);
    ut_assert_eq!(
        s.lost.load(Ordering::Relaxed),
        0,
        "waits ran into their {:?} timeout (lost wake-ups)",
        LOST
    );
    ut_assert!(!s.overflow.load(Ordering::Relaxed));
    if let Some(i) = s.seen.iter().position(|c| c.load(Ordering::Relaxed) != 1) {
        ut_fail!("item {} was consumed {} times", i, s.seen[i].load(Ordering::Relaxed));
    }
    ut_assert_eq!(s.sum.load(Ordering::Relaxed), (total as u64) * (total as u64 - 1) / 2);
    ut_assert!(s.buf.lock().is_empty());
    ut_assert!(s.waits.load(Ordering::Relaxed) > 0, "nobody ever waited: the test tested nothing");
    report(format_args!(
        "uklock: condvar: {} items through a {}-slot buffer, {} waits",
        total,
        CAP,
        s.waits.load(Ordering::Relaxed)
    ));
    Ok(())
}
uktest::test_case!(condvar_bounded_buffer_exact);

/// Nobody notifies: `wait_timeout` times out, not before its timeout, with
/// the mutex held again; `wait_timeout_while` too. A notification from
/// another thread ends a long wait early.
fn condvar_wait_timeout() -> TestResult {
    let shared = Arc::new((Mutex::new(false), Condvar::new()));
    let (m, cv) = (&shared.0, &shared.1);
    let timeout = Duration::from_millis(20);
    let mut g = m.lock();
    let start = uktime::now();
    let r = cv.wait_timeout(&mut g, timeout);
    let took = start.elapsed();
    ut_assert!(r.timed_out(), "woken with nobody notifying");
    ut_assert!(took >= timeout, "wait_timeout returned after {:?}, before its {:?}", took, timeout);
    ut_assert!(took <= timeout + LATE, "the {:?} wait_timeout took {:?}", timeout, took);
    ut_assert!(m.is_locked(), "the mutex is held again");
    // SAFETY: only reads the owner field.
    ut_assert_eq!(unsafe { m.raw() }.owner(), Some(uksched::current().id()));

    let start = uktime::now();
    let r = cv.wait_timeout_while(&mut g, timeout, |ready| !*ready);
    let took = start.elapsed();
    ut_assert!(r.timed_out());
    ut_assert!(took >= timeout, "wait_timeout_while returned after {:?}", took);
    drop(g);

    let sh = shared.clone();
    let notifier = spawn_n("notifier", 1, move |_| {
        uksched::sleep(Duration::from_millis(5));
        *sh.0.lock() = true;
        sh.1.notify_all()
    })?;
    let mut g = m.lock();
    let start = uktime::now();
    let r = cv.wait_timeout_while(&mut g, LOST, |ready| !*ready);
    let took = start.elapsed();
    drop(g);
    join_all(notifier);
    ut_assert!(!r.timed_out(), "the notification did not arrive ({:?})", took);
    ut_assert!(took < LOST);
    ut_assert!(!cv.notify_one(), "nobody waits any more");
    Ok(())
}
uktest::test_case!(condvar_wait_timeout);

// ---------------------------------------------------------------------------
// The configured implementation, and the futex one by name

/// `Mutex`/`Condvar` are the implementation `uklock.mutex` names, and the
/// image says which (xtask looks for the line).
fn mutex_implementation_is_the_configured_one() -> TestResult {
    let expected = match crate::MUTEX {
        ukconfig::uklock::Mutex::Waitqueue => core::any::type_name::<crate::waitqueue::RawMutex>(),
        ukconfig::uklock::Mutex::Futex => core::any::type_name::<crate::futex::RawMutex>(),
    };
    ut_assert_eq!(core::any::type_name::<crate::RawMutex>(), expected);
    let condvar = match crate::MUTEX {
        ukconfig::uklock::Mutex::Waitqueue => core::any::type_name::<crate::waitqueue::Condvar>(),
        ukconfig::uklock::Mutex::Futex => core::any::type_name::<crate::futex::Condvar>(),
    };
    ut_assert_eq!(core::any::type_name::<Condvar>(), condvar);
    ut_assert_eq!(crate::select::configured_name(), crate::MUTEX.as_str());
    report(format_args!(
        "uklock: Mutex and Condvar are the {} implementation",
        crate::select::configured_name()
    ));
    Ok(())
}
uktest::test_case!(mutex_implementation_is_the_configured_one);

/// How many threads sleep on the futex `word` now: moves them all to a
/// probe word and back (posix-futex's `FUTEX_REQUEUE` counts them; they
/// stay asleep throughout).
fn sleepers_on(word: &AtomicU32) -> usize {
    static PROBE: AtomicU32 = AtomicU32::new(0);
    let n = posix_futex::futex_requeue(word, &PROBE, 0, usize::MAX);
    let back = posix_futex::futex_requeue(&PROBE, word, 0, usize::MAX);
    debug_assert_eq!(n, back);
    n
}

/// The futex mutex (explicitly, whatever `uklock.mutex` says), first
/// with a deterministic pile-up: this thread holds it while one thread per
/// test slot locks it; once all of them sleep on the futex word (counted
/// there, the word at 2), it unlocks, and the lock passes down the chain
/// of sleepers — each woken by its predecessor's unlock — until every one
/// has had it once and the word is back at 0. Then contended stress on
/// every CPU with exact counts, the word again ending at 0.
fn futex_mutex_contended_cycles_leave_the_word_0() -> TestResult {
    let n = threads();
    let pile = Arc::new(crate::futex::Mutex::new(0u32));
    let held = pile.lock();
    let p = pile.clone();
    let lockers = spawn_n("futex-pile", n, move |_| *p.lock() += 1)?;
    // SAFETY: only names and reads the futex word.
    let word = unsafe { pile.raw() }.word();
    let start = uktime::now();
    while sleepers_on(word) != n {
        if start.elapsed() > LOST {
            ut_fail!("only {} of {} lockers sleep on a held futex mutex", sleepers_on(word), n);
        }
        uksched::sleep(Duration::from_millis(1));
    }
    ut_assert_eq!(word.load(Ordering::SeqCst), 2, "sleepers, but the word does not say so");
    drop(held);
    join_all(lockers);
    ut_assert_eq!(*pile.lock(), n as u32, "a sleeper never got the mutex");
    ut_assert_eq!(word.load(Ordering::SeqCst), 0, "the futex word after the chain of wake-ups");
    ut_assert_eq!(sleepers_on(word), 0, "sleepers left on a free mutex");

    let iters = scaled(1000) as u64;
    struct Shared {
        count: crate::futex::Mutex<u64>,
        inside: AtomicU32,
        overlaps: AtomicU32,
        saw_contended: AtomicU64,
    }
    let s = Arc::new(Shared {
        count: crate::futex::Mutex::new(0),
        inside: AtomicU32::new(0),
        overlaps: AtomicU32::new(0),
        saw_contended: AtomicU64::new(0),
    });
    let shared = s.clone();
    let handles = spawn_n("futex-mutex", n, move |_| {
        let s = &shared;
        for i in 0..iters {
            let mut g = s.count.lock();
            if s.inside.fetch_add(1, Ordering::Relaxed) != 0 {
                s.overlaps.fetch_add(1, Ordering::Relaxed);
            }
            let v = *g;
            if i % 8 == 0 {
                uksched::yield_now();
            }
            // SAFETY: only reads the futex word.
            if unsafe { s.count.raw() }.is_contended() {
                s.saw_contended.fetch_add(1, Ordering::Relaxed);
            }
            *g = v + 1;
            s.inside.fetch_sub(1, Ordering::Relaxed);
            drop(g);
        }
    })?;
    join_all(handles);
    ut_assert_eq!(s.overlaps.load(Ordering::Relaxed), 0, "two threads inside the critical section");
    ut_assert_eq!(*s.count.lock(), n as u64 * iters, "lost updates");
    // SAFETY: only reads the futex word.
    let word = unsafe { s.count.raw() }.word();
    ut_assert_eq!(word.load(Ordering::SeqCst), 0, "the futex word after the last unlock");
    ut_assert_eq!(sleepers_on(word), 0, "sleepers left on a free mutex");
    report(format_args!(
        "uklock: futex mutex: {} sleepers woken one by one; {} threads x {} increments, word 2 seen {} times inside; word 0 after both",
        n,
        n,
        iters,
        s.saw_contended.load(Ordering::Relaxed)
    ));
    Ok(())
}
uktest::test_case!(futex_mutex_contended_cycles_leave_the_word_0);

/// The futex condvar's `notify_all` with N waiters asleep, by a notifier
/// holding the mutex: it wakes at most one of them and moves the others
/// onto the mutex's futex word (counted there at once); while the
/// notifier keeps the mutex, at most one waiter has returned from the
/// condition variable. When it unlocks, the mutex hands itself down the
/// chain of requeued waiters (each woken by its predecessor's unlock,
/// which works only if each re-takes the mutex as `2`): all N finish, none
/// runs into its timeout, and the word ends at 0.
fn futex_condvar_notify_all_requeues() -> TestResult {
    struct Shared {
        m: crate::futex::Mutex<u32>,
        cv: crate::futex::Condvar,
        lost: AtomicU32,
    }
    let n = threads();
    let s = Arc::new(Shared {
        m: crate::futex::Mutex::new(0),
        cv: crate::futex::Condvar::new(),
        lost: AtomicU32::new(0),
    });
    let sh = s.clone();
    let waiters = spawn_n("cv-requeue", n, move |_| {
        let mut g = sh.m.lock();
        while *g == 0 {
            if sh.cv.wait_timeout(&mut g, LOST).timed_out() {
                sh.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
        *g += 1;
    })?;
    // Every waiter asleep on the condition variable's word.
    let start = uktime::now();
    while sleepers_on(s.cv.word()) != n {
        if start.elapsed() > LOST {
            ut_fail!("only {} of {} waiters went to sleep", sleepers_on(s.cv.word()), n);
        }
        uksched::sleep(Duration::from_millis(1));
    }
    let mut g = s.m.lock();
    *g = 1;
    let notified = s.cv.notify_all();
    let on_condvar = sleepers_on(s.cv.word());
    // SAFETY: only names the futex word.
    let on_mutex = sleepers_on(unsafe { s.m.raw() }.word());
    // Give a woken waiter time to return (it then sleeps on the mutex).
    uksched::sleep(Duration::from_millis(20));
    let still_registered = s.cv.waiting() as usize;
    drop(g);
    join_all(waiters);
    ut_assert_eq!(notified, n, "notify_all woke or moved every waiter");
    ut_assert_eq!(on_condvar, 0, "waiters left on the condition variable");
    ut_assert!(
        on_mutex + 1 >= n && on_mutex <= n,
        "{} of {} waiters on the mutex right after notify_all: not requeued",
        on_mutex,
        n
    );
    ut_assert!(
        n - still_registered <= 1,
        "{} waiters returned from the condition variable while the mutex was held (woken, not requeued)",
        n - still_registered
    );
    ut_assert_eq!(s.lost.load(Ordering::Relaxed), 0, "requeued waiters ran into their {:?} timeout", LOST);
    ut_assert_eq!(*s.m.lock(), 1 + n as u32, "every waiter got the mutex once");
    ut_assert_eq!(s.cv.waiting(), 0);
    // SAFETY: only reads the futex word.
    ut_assert_eq!(unsafe { s.m.raw() }.word().load(Ordering::SeqCst), 0, "the mutex's word after the chain");
    report(format_args!(
        "uklock: futex condvar: notify_all with {} waiters: {} moved onto the mutex, {} returned before the unlock",
        n,
        on_mutex,
        n - still_registered
    ));
    Ok(())
}
uktest::test_case!(futex_condvar_notify_all_requeues);

// ---------------------------------------------------------------------------
// Once

fn once_basics() -> TestResult {
    let once = crate::Once::new();
    ut_assert!(!once.is_completed());
    let mut runs = 0;
    once.call_once(|| runs += 1);
    once.call_once(|| runs += 10);
    ut_assert_eq!(runs, 1, "the second closure ran");
    ut_assert!(once.is_completed());
    ut_assert_eq!(once.word().load(Ordering::Relaxed), 3, "COMPLETE");
    Ok(())
}
uktest::test_case!(once_basics);

/// Threads on every CPU run through the same sequence of `Once`s at
/// once: each closure runs exactly once, every caller sees what it wrote
/// when `call_once` returns, and callers that came while it ran slept on
/// the futex word (the closure sees the word at `QUEUED`).
fn once_runs_each_closure_once_on_every_cpu() -> TestResult {
    const ONCES: usize = 24;
    struct Shared {
        onces: Vec<crate::Once>,
        runs: Vec<AtomicU32>,
        values: Vec<AtomicU64>,
        stale: AtomicU32,
        saw_queued: AtomicU32,
    }
    let n = threads();
    let s = Arc::new(Shared {
        onces: (0..ONCES).map(|_| crate::Once::new()).collect(),
        runs: (0..ONCES).map(|_| AtomicU32::new(0)).collect(),
        values: (0..ONCES).map(|_| AtomicU64::new(0)).collect(),
        stale: AtomicU32::new(0),
        saw_queued: AtomicU32::new(0),
    });
    let sh = s.clone();
    let handles = spawn_n("once", n, move |_| {
        for r in 0..ONCES {
            sh.onces[r].call_once(|| {
                sh.runs[r].fetch_add(1, Ordering::Relaxed);
                // Let the others arrive and wait.
                if r % 2 == 0 {
                    uksched::sleep(Duration::from_millis(1));
                } else {
                    uksched::yield_now();
                }
                if sh.onces[r].word().load(Ordering::Relaxed) == 2 {
                    sh.saw_queued.fetch_add(1, Ordering::Relaxed);
                }
                sh.values[r].store(r as u64 + 1, Ordering::Relaxed);
            });
            if sh.values[r].load(Ordering::Relaxed) != r as u64 + 1 {
                sh.stale.fetch_add(1, Ordering::Relaxed);
            }
        }
    })?;
    join_all(handles);
    if let Some(r) = s.runs.iter().position(|c| c.load(Ordering::Relaxed) != 1) {
        ut_fail!("Once {}: its closure ran {} times", r, s.runs[r].load(Ordering::Relaxed));
    }
    ut_assert_eq!(s.stale.load(Ordering::Relaxed), 0, "call_once returned before the closure's writes");
    ut_assert!(s.onces.iter().all(crate::Once::is_completed));
    ut_assert!(
        s.saw_queued.load(Ordering::Relaxed) > 0,
        "nobody ever waited for a running closure: the test tested nothing"
    );
    report(format_args!(
        "uklock: once: {} threads x {} Onces, each closure ran once, {} had sleepers",
        n,
        ONCES,
        s.saw_queued.load(Ordering::Relaxed)
    ));
    Ok(())
}
uktest::test_case!(once_runs_each_closure_once_on_every_cpu);

/// Prints one line of figures on the platform console (uklock does not
/// depend on ukconsole).
fn report(args: core::fmt::Arguments<'_>) {
    use core::fmt::Write;
    let _ = writeln!(ukplat::console::Writer, "{args}");
}
