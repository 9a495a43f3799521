//! LTP's futex scenarios (`testcases/kernel/syscalls/futex/`), through the
//! raw ABI as LTP calls it: `futex(2)` and `futex_waitv(2)` with Linux's
//! numbers, results and `errno` values.

use crate::{err, futex, settle, timespec, ts};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use core::time::Duration;
use posix_futex::errno::{EAGAIN, EFAULT, EINVAL, ENOSYS, ETIMEDOUT};
use posix_futex::*;
use uktest::{TestResult, ut_assert, ut_assert_eq, ut_fail};

const NULL: *const AtomicU32 = ptr::null();
/// Waits in these tests give up after this: nothing hangs the run.
const SAFETY: Duration = Duration::from_secs(5);
/// How long a test waits for threads to queue or wake.
const PATIENCE: Duration = Duration::from_secs(3);
/// Late wake-ups of timed waits tolerated (a host that deschedules the
/// vCPU; the timer's delivery).
const SLACK: Duration = Duration::from_millis(50);

fn both_flags() -> [u32; 2] {
    [0, FUTEX_PRIVATE_FLAG]
}

fn futex_wait01_timeout_and_eagain() -> TestResult {
    let word = AtomicU32::new(0);
    let t = timespec(Duration::from_millis(5));
    for flags in both_flags() {
        ut_assert_eq!(
            futex(&word, FUTEX_WAIT | flags, 0, ts(&t), NULL, 0),
            err(ETIMEDOUT),
            "flags {:#x}",
            flags
        );
        ut_assert_eq!(
            futex(&word, FUTEX_WAIT | flags, 1, ts(&t), NULL, 0),
            err(EAGAIN),
            "flags {:#x}",
            flags
        );
        ut_assert_eq!(
            futex(&word, FUTEX_WAIT | flags, 1, 0, NULL, 0),
            err(EAGAIN),
            "no timeout, flags {:#x}",
            flags
        );
    }
    Ok(())
}
uktest::test_case!(futex_wait01_timeout_and_eagain);

/// One thread waits (no timeout); another wakes it.
fn futex_wait03_woken_by_another_thread() -> TestResult {
    static WORD: AtomicU32 = AtomicU32::new(0);
    for flags in both_flags() {
        let waiter = uksched::spawn(move || futex(&WORD, FUTEX_WAIT | flags, 0, 0, NULL, 0));
        if !settle(PATIENCE, || waiters(&WORD) == 1) {
            ut_fail!("the waiter did not queue (flags {:#x})", flags);
        }
        ut_assert_eq!(futex(&WORD, FUTEX_WAKE | flags, 1, 0, NULL, 0), 1);
        ut_assert_eq!(waiter.join(), 0, "the woken wait's result");
    }
    Ok(())
}
uktest::test_case!(futex_wait03_woken_by_another_thread);

fn futex_wait04_fresh_memory() -> TestResult {
    // A word in memory nobody used before: zeroed, and nobody waits on it.
    let fresh: Box<[AtomicU32]> = (0..1024).map(|_| AtomicU32::new(0)).collect();
    let word = &fresh[512];
    let t = timespec(Duration::from_millis(5));
    ut_assert_eq!(futex(word, FUTEX_WAIT, 0, ts(&t), NULL, 0), err(ETIMEDOUT));
    ut_assert_eq!(futex(word, FUTEX_WAKE, 1, 0, NULL, 0), 0);
    Ok(())
}
uktest::test_case!(futex_wait04_fresh_memory);

fn futex_wait05_timeouts_last_as_asked() -> TestResult {
    let word = AtomicU32::new(0);
    for ms in [1, 10, 20] {
        let asked = Duration::from_millis(ms);
        let t = timespec(asked);
        let start = uktime::now();
        ut_assert_eq!(futex(&word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0, ts(&t), NULL, 0), err(ETIMEDOUT));
        let took = uktime::now().duration_since(start);
        ut_assert!(took >= asked, "a {:?} timeout ended after {:?}", asked, took);
        ut_assert!(took <= asked + SLACK, "a {:?} timeout ended after {:?}", asked, took);
    }
    Ok(())
}
uktest::test_case!(futex_wait05_timeouts_last_as_asked);

/// `EFAULT`, `EINVAL` and `ENOSYS` of the wait paths, in Linux's order.
fn futex_wait_errors() -> TestResult {
    let word = AtomicU32::new(0);
    let t = timespec(Duration::from_millis(1));
    // A canonical address that nothing maps.
    let unmapped = 0x0000_6000_0000_0000usize as *const AtomicU32;
    let misaligned = (ptr::from_ref(&word) as usize + 1) as *const AtomicU32;
    ut_assert_eq!(futex(NULL, FUTEX_WAIT, 0, ts(&t), NULL, 0), err(EFAULT), "null word");
    ut_assert_eq!(futex(unmapped, FUTEX_WAIT, 0, ts(&t), NULL, 0), err(EFAULT), "unmapped word");
    ut_assert_eq!(futex(misaligned, FUTEX_WAIT, 0, ts(&t), NULL, 0), err(EINVAL), "misaligned word");
    ut_assert_eq!(futex(unmapped, FUTEX_WAKE, 1, 0, NULL, 0), err(EFAULT), "wake, unmapped word");
    ut_assert_eq!(futex(&word, FUTEX_WAIT, 0, unmapped as usize, NULL, 0), err(EFAULT), "unmapped timeout");
    for bad in [
        Timespec { tv_sec: 0, tv_nsec: 1_000_000_000 },
        Timespec { tv_sec: -1, tv_nsec: 0 },
        Timespec { tv_sec: 0, tv_nsec: -1 },
    ] {
        ut_assert_eq!(futex(&word, FUTEX_WAIT, 0, ts(&bad), NULL, 0), err(EINVAL), "timespec {:?}", bad);
        // The timeout is checked before the command: EINVAL, not ENOSYS.
        ut_assert_eq!(futex(&word, FUTEX_WAIT | FUTEX_CLOCK_REALTIME, 0, ts(&bad), NULL, 0), err(EINVAL));
    }
    ut_assert_eq!(futex(&word, FUTEX_WAIT | FUTEX_CLOCK_REALTIME, 0, ts(&t), NULL, 0), err(ENOSYS));
    ut_assert_eq!(futex(&word, FUTEX_WAKE | FUTEX_CLOCK_REALTIME, 1, 0, NULL, 0), err(ENOSYS));
    ut_assert_eq!(futex(&word, FUTEX_WAIT_BITSET, 0, ts(&t), NULL, 0), err(EINVAL), "zero bitset");
    ut_assert_eq!(futex(&word, FUTEX_WAKE_BITSET, 1, 0, NULL, 0), err(EINVAL), "zero wake bitset");
    // The safe API says the same.
    ut_assert_eq!(futex_wait(&word, 1, None), Err(Errno(EAGAIN)));
    ut_assert_eq!(futex_wait_bitset(&word, 0, 0, None), Err(Errno(EINVAL)));
    Ok(())
}
uktest::test_case!(futex_wait_errors);

fn futex_wait_bitset01_absolute_timeouts() -> TestResult {
    let word = AtomicU32::new(0);
    let wait = Duration::from_millis(10);
    // Monotonic: an absolute CLOCK_MONOTONIC time.
    let start = uktime::now();
    let t = timespec(Duration::from_nanos((start + wait).as_nanos()));
    ut_assert_eq!(futex(&word, FUTEX_WAIT_BITSET, 0, ts(&t), NULL, FUTEX_BITSET_MATCH_ANY), err(ETIMEDOUT));
    let took = uktime::now().duration_since(start);
    ut_assert!(took >= wait && took <= wait + SLACK, "monotonic: {:?} for {:?}", took, wait);
    // Realtime: the time of day.
    let start = uktime::now();
    let t = timespec(uktime::realtime::realtime() + wait);
    let op = FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME | FUTEX_PRIVATE_FLAG;
    ut_assert_eq!(futex(&word, op, 0, ts(&t), NULL, FUTEX_BITSET_MATCH_ANY), err(ETIMEDOUT));
    let took = uktime::now().duration_since(start);
    // The realtime clock reads the RTC to the second at boot, then runs
    // with the monotonic clock: a realtime deadline is as exact.
    ut_assert!(
        took + Duration::from_micros(10) >= wait && took <= wait + SLACK,
        "realtime: {:?} for {:?}",
        took,
        wait
    );
    // A deadline in the past: the value check first (EAGAIN), else at once.
    let past = timespec(Duration::from_nanos(1));
    ut_assert_eq!(futex(&word, FUTEX_WAIT_BITSET, 1, ts(&past), NULL, 1), err(EAGAIN));
    ut_assert_eq!(futex(&word, FUTEX_WAIT_BITSET, 0, ts(&past), NULL, 1), err(ETIMEDOUT));
    Ok(())
}
uktest::test_case!(futex_wait_bitset01_absolute_timeouts);

fn futex_wake01_nobody_waiting() -> TestResult {
    let word = AtomicU32::new(0);
    for flags in both_flags() {
        for n in [0, 1, 2, i32::MAX as u32, u32::MAX] {
            ut_assert_eq!(
                futex(&word, FUTEX_WAKE | flags, n, 0, NULL, 0),
                0,
                "wake {} (flags {:#x})",
                n,
                flags
            );
        }
    }
    Ok(())
}
uktest::test_case!(futex_wake01_nobody_waiting);

/// Spawns `n` threads that wait on `word` (expected 0, bitset `bits(i)`),
/// each adding 1 to `done` when its wait returns 0; waits until all are
/// queued.
fn waiters_on(
    word: &'static AtomicU32,
    n: usize,
    bits: impl Fn(usize) -> u32,
    done: &'static AtomicUsize,
) -> Result<Vec<uksched::JoinHandle<isize>>, uktest::Stop> {
    let before = waiters(word);
    let mut handles = Vec::new();
    for i in 0..n {
        let bitset = bits(i);
        let t = timespec(Duration::from_nanos((uktime::now() + SAFETY).as_nanos()));
        handles.push(uksched::spawn(move || {
            let r = futex(word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, 0, ts(&t), NULL, bitset);
            if r == 0 {
                done.fetch_add(1, Ordering::SeqCst);
            }
            r
        }));
    }
    if !settle(PATIENCE, || waiters(word) == before + n) {
        ut_fail!("{} of {} waiters queued", waiters(word) - before, n);
    }
    Ok(handles)
}

fn futex_wake02_wakes_n_of_m() -> TestResult {
    static WORD: AtomicU32 = AtomicU32::new(0);
    static WOKEN: AtomicUsize = AtomicUsize::new(0);
    WOKEN.store(0, Ordering::SeqCst);
    let handles = waiters_on(&WORD, 5, |_| FUTEX_BITSET_MATCH_ANY, &WOKEN)?;
    ut_assert_eq!(futex(&WORD, FUTEX_WAKE, 2, 0, NULL, 0), 2);
    ut_assert!(
        settle(PATIENCE, || WOKEN.load(Ordering::SeqCst) == 2),
        "{} woke",
        WOKEN.load(Ordering::SeqCst)
    );
    ut_assert_eq!(waiters(&WORD), 3);
    ut_assert_eq!(futex(&WORD, FUTEX_WAKE, 10, 0, NULL, 0), 3);
    for h in handles {
        ut_assert_eq!(h.join(), 0);
    }
    // Bitsets: waiters with bits 1, 2, 1|2; a wake for bit 2 takes two.
    WOKEN.store(0, Ordering::SeqCst);
    let handles = waiters_on(&WORD, 3, |i| [1, 2, 3][i], &WOKEN)?;
    ut_assert_eq!(futex(&WORD, FUTEX_WAKE_BITSET, 10, 0, NULL, 2), 2);
    ut_assert!(settle(PATIENCE, || WOKEN.load(Ordering::SeqCst) == 2));
    ut_assert_eq!(futex(&WORD, FUTEX_WAKE_BITSET, 10, 0, NULL, 2), 0);
    ut_assert_eq!(futex(&WORD, FUTEX_WAKE, 0, 0, NULL, 0), 1, "a count of 0 wakes one, as in Linux");
    for h in handles {
        ut_assert_eq!(h.join(), 0);
    }
    Ok(())
}
uktest::test_case!(futex_wake02_wakes_n_of_m);

fn futex_cmp_requeue01_counts() -> TestResult {
    static FROM: AtomicU32 = AtomicU32::new(0);
    static TO: AtomicU32 = AtomicU32::new(0);
    static WOKEN: AtomicUsize = AtomicUsize::new(0);
    const M: usize = 5;
    for (nr_wake, nr_requeue) in [(1, 1), (3, 2), (0, 5), (2, 0), (5, 5), (1, 10)] {
        WOKEN.store(0, Ordering::SeqCst);
        let handles = waiters_on(&FROM, M, |_| FUTEX_BITSET_MATCH_ANY, &WOKEN)?;
        let woken = nr_wake.min(M);
        let moved = nr_requeue.min(M - woken);
        let r = futex(&FROM, FUTEX_CMP_REQUEUE, nr_wake as u32, nr_requeue, &TO, 0);
        ut_assert_eq!(r, (woken + moved) as isize, "wake {}, requeue {}", nr_wake, nr_requeue);
        ut_assert!(
            settle(PATIENCE, || WOKEN.load(Ordering::SeqCst) == woken),
            "wake {}, requeue {}: {} woke",
            nr_wake,
            nr_requeue,
            WOKEN.load(Ordering::SeqCst)
        );
        ut_assert_eq!(waiters(&TO), moved);
        ut_assert_eq!(waiters(&FROM), M - woken - moved);
        // The requeued wake up from the new word; the rest from the old.
        ut_assert_eq!(futex(&TO, FUTEX_WAKE, M as u32, 0, NULL, 0), moved as isize);
        ut_assert_eq!(futex(&FROM, FUTEX_WAKE, M as u32, 0, NULL, 0), (M - woken - moved) as isize);
        for h in handles {
            ut_assert_eq!(h.join(), 0);
        }
        ut_assert_eq!(WOKEN.load(Ordering::SeqCst), M);
    }
    Ok(())
}
uktest::test_case!(futex_cmp_requeue01_counts);

fn futex_cmp_requeue02_errors() -> TestResult {
    let (from, to) = (AtomicU32::new(7), AtomicU32::new(0));
    let misaligned = (ptr::from_ref(&to) as usize + 2) as *const AtomicU32;
    // CVE-2018-6927: a negative requeue count once overflowed a counter.
    ut_assert_eq!(futex(&from, FUTEX_CMP_REQUEUE, 1, u32::MAX as usize, &to, 7), err(EINVAL));
    ut_assert_eq!(futex(&from, FUTEX_CMP_REQUEUE, u32::MAX, 1, &to, 7), err(EINVAL));
    ut_assert_eq!(futex(&from, FUTEX_REQUEUE, 1, u32::MAX as usize, &to, 0), err(EINVAL));
    ut_assert_eq!(futex(&from, FUTEX_CMP_REQUEUE, 1, 1, &to, 8), err(EAGAIN), "a changed value");
    ut_assert_eq!(futex(&from, FUTEX_CMP_REQUEUE, 1, 1, misaligned, 7), err(EINVAL));
    ut_assert_eq!(futex(&from, FUTEX_CMP_REQUEUE, 1, 1, NULL, 7), err(EFAULT));
    ut_assert_eq!(futex(&from, FUTEX_CMP_REQUEUE, 1, 1, &to, 7), 0, "nobody waits");
    ut_assert_eq!(futex_cmp_requeue(&from, &to, 1, 1, 8), Err(Errno(EAGAIN)));
    Ok(())
}
uktest::test_case!(futex_cmp_requeue02_errors);

fn waitv(entries: &[FutexWaitv], timeout: Option<&Timespec>, flags: u32, clock: i32) -> isize {
    waitv_raw(entries.as_ptr(), entries.len() as u32, timeout, flags, clock)
}

fn waitv_raw(
    entries: *const FutexWaitv,
    nr: u32,
    timeout: Option<&Timespec>,
    flags: u32,
    clock: i32,
) -> isize {
    let t = timeout.map_or(ptr::null(), ptr::from_ref);
    // SAFETY: the entries are on the caller's stack; their words are
    // `AtomicU32`s or deliberately bad addresses (refused untouched).
    unsafe { sys_futex_waitv(entries, nr, flags, t, clock) }
}

fn entry(word: &AtomicU32, val: u64) -> FutexWaitv {
    FutexWaitv {
        val,
        uaddr: ptr::from_ref(word) as u64,
        flags: FUTEX2_SIZE_U32 | FUTEX2_PRIVATE,
        reserved: 0,
    }
}

fn futex_waitv01_errors() -> TestResult {
    let words: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];
    let good = [entry(&words[0], 0), entry(&words[1], 0)];
    let soon = timespec(Duration::from_nanos((uktime::now() + Duration::from_millis(2)).as_nanos()));
    ut_assert_eq!(waitv(&good, Some(&soon), 1, CLOCK_MONOTONIC), err(EINVAL), "flags");
    ut_assert_eq!(waitv(&good[..0], Some(&soon), 0, CLOCK_MONOTONIC), err(EINVAL), "no entries");
    let many: Vec<FutexWaitv> = (0..129).map(|_| entry(&words[0], 0)).collect();
    ut_assert_eq!(waitv(&many, Some(&soon), 0, CLOCK_MONOTONIC), err(EINVAL), "129 entries");
    ut_assert_eq!(waitv_raw(ptr::null(), 2, Some(&soon), 0, CLOCK_MONOTONIC), err(EINVAL), "null array");
    ut_assert_eq!(waitv(&good, Some(&soon), 0, 7), err(EINVAL), "clock id");
    let mut bad = good;
    bad[1].flags = FUTEX2_SIZE_U8;
    ut_assert_eq!(waitv(&bad, Some(&soon), 0, CLOCK_MONOTONIC), err(EINVAL), "8-bit futex");
    let mut bad = good;
    bad[0].reserved = 1;
    ut_assert_eq!(waitv(&bad, Some(&soon), 0, CLOCK_MONOTONIC), err(EINVAL), "reserved field");
    let mut bad = good;
    bad[1].uaddr += 1;
    ut_assert_eq!(waitv(&bad, Some(&soon), 0, CLOCK_MONOTONIC), err(EINVAL), "misaligned word");
    let mut bad = good;
    bad[1].val = u64::from(u32::MAX) + 1;
    ut_assert_eq!(waitv(&bad, Some(&soon), 0, CLOCK_MONOTONIC), err(EINVAL), "value wider than 32 bits");
    let mut bad = good;
    bad[0].uaddr = 0;
    ut_assert_eq!(waitv(&bad, Some(&soon), 0, CLOCK_MONOTONIC), err(EFAULT), "null word");
    let mut stale = good;
    stale[1].val = 1;
    ut_assert_eq!(waitv(&stale, Some(&soon), 0, CLOCK_MONOTONIC), err(EAGAIN), "a changed value");
    ut_assert_eq!(waitv(&good, Some(&soon), 0, CLOCK_MONOTONIC), err(ETIMEDOUT));
    let rt = timespec(uktime::realtime::realtime() + Duration::from_millis(2));
    ut_assert_eq!(waitv(&good, Some(&rt), 0, CLOCK_REALTIME), err(ETIMEDOUT), "realtime deadline");
    for w in &words {
        ut_assert_eq!(waiters(w), 0, "an entry left queued");
    }
    Ok(())
}
uktest::test_case!(futex_waitv01_errors);

fn futex_waitv02_wakes_by_index() -> TestResult {
    static WORDS: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];
    for (woken, word) in WORDS.iter().enumerate() {
        let h = uksched::spawn(|| {
            let entries: Vec<FutexWaitv> = WORDS.iter().map(|w| entry(w, 0)).collect();
            let t = timespec(Duration::from_nanos((uktime::now() + SAFETY).as_nanos()));
            waitv(&entries, Some(&t), 0, CLOCK_MONOTONIC)
        });
        if !settle(PATIENCE, || WORDS.iter().all(|w| waiters(w) == 1)) {
            ut_fail!("futex_waitv did not queue on all 4 words");
        }
        ut_assert_eq!(futex(word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, 0, NULL, 0), 1);
        ut_assert_eq!(h.join(), woken as isize, "the index woken");
        for w in &WORDS {
            ut_assert_eq!(waiters(w), 0, "an entry left queued");
        }
    }
    Ok(())
}
uktest::test_case!(futex_waitv02_wakes_by_index);

/// Every `FUTEX_WAKE_OP` operation and comparison, as Linux's table in
/// `futex(2)` defines them.
fn wake_op_operations_and_comparisons() -> TestResult {
    static WORD1: AtomicU32 = AtomicU32::new(0);
    static WORD2: AtomicU32 = AtomicU32::new(0);
    static WOKEN: AtomicUsize = AtomicUsize::new(0);
    // (op, oparg, old, new)
    let ops = [
        (FUTEX_OP_SET, 5, 0b1010, 5),
        (FUTEX_OP_ADD, 5, 0b1010, 15),
        (FUTEX_OP_OR, 0b0101, 0b1010, 0b1111),
        (FUTEX_OP_ANDN, 0b0010, 0b1010, 0b1000),
        (FUTEX_OP_XOR, 0b0110, 0b1010, 0b1100),
        (FUTEX_OP_OR | FUTEX_OP_OPARG_SHIFT, 4, 0b1010, 0b11010),
        (FUTEX_OP_ADD, -1, 0b1010, 0b1001),
    ];
    for (op, oparg, old, new) in ops {
        WORD2.store(old, Ordering::SeqCst);
        let encoded = futex_op(op, oparg, FUTEX_OP_CMP_EQ, 0);
        ut_assert_eq!(futex(&WORD1, FUTEX_WAKE_OP, 1, 1, &WORD2, encoded), 0);
        ut_assert_eq!(WORD2.load(Ordering::SeqCst), new, "op {:#x} oparg {}", op, oparg);
    }
    // (cmp, cmparg, old value) and whether the comparison holds: signed.
    let cmps = [
        (FUTEX_OP_CMP_EQ, 3, 3, true),
        (FUTEX_OP_CMP_NE, 3, 3, false),
        (FUTEX_OP_CMP_LT, 0, -1i32 as u32, true),
        (FUTEX_OP_CMP_LE, 3, 4, false),
        (FUTEX_OP_CMP_GT, -2, -1i32 as u32, true),
        (FUTEX_OP_CMP_GE, 4, 3, false),
    ];
    for (cmp, cmparg, old, holds) in cmps {
        WORD2.store(old, Ordering::SeqCst);
        // One waiter on each word; `ADD 0` leaves the second word as it
        // is, so its waiter (expecting `old`) sleeps until the comparison
        // decides.
        WORD1.store(0, Ordering::SeqCst);
        WOKEN.store(0, Ordering::SeqCst);
        let h1 = waiters_on(&WORD1, 1, |_| FUTEX_BITSET_MATCH_ANY, &WOKEN)?;
        let h2 = uksched::spawn(move || futex(&WORD2, FUTEX_WAIT, old, 0, NULL, 0));
        if !settle(PATIENCE, || waiters(&WORD2) == 1) {
            ut_fail!("the waiter on the second word did not queue");
        }
        let r = futex(&WORD1, FUTEX_WAKE_OP, 1, 1, &WORD2, futex_op(FUTEX_OP_ADD, 0, cmp, cmparg));
        ut_assert_eq!(r, 1 + isize::from(holds), "cmp {} cmparg {} old {:#x}", cmp, cmparg, old);
        ut_assert_eq!(WORD2.load(Ordering::SeqCst), old);
        if !holds {
            ut_assert_eq!(futex(&WORD2, FUTEX_WAKE, 1, 0, NULL, 0), 1);
        }
        for h in h1 {
            ut_assert_eq!(h.join(), 0);
        }
        ut_assert_eq!(h2.join(), 0);
    }
    // An unknown operation changes nothing; an unknown comparison fails
    // after the change (as Linux).
    WORD2.store(1, Ordering::SeqCst);
    ut_assert_eq!(futex(&WORD1, FUTEX_WAKE_OP, 1, 1, &WORD2, (6 << 28) | (1 << 12)), err(ENOSYS));
    ut_assert_eq!(WORD2.load(Ordering::SeqCst), 1);
    ut_assert_eq!(futex(&WORD1, FUTEX_WAKE_OP, 1, 1, &WORD2, futex_op(FUTEX_OP_ADD, 1, 9, 0)), err(ENOSYS));
    ut_assert_eq!(WORD2.load(Ordering::SeqCst), 2);
    ut_assert_eq!(futex_wake_op(&WORD1, &WORD2, 1, 1, futex_op(FUTEX_OP_ADD, 1, 9, 0)), Err(Errno(ENOSYS)));
    Ok(())
}
uktest::test_case!(wake_op_operations_and_comparisons);

fn pi_and_unknown_operations_are_enosys() -> TestResult {
    let word = AtomicU32::new(0);
    for op in [
        FUTEX_LOCK_PI,
        FUTEX_UNLOCK_PI,
        FUTEX_TRYLOCK_PI,
        FUTEX_WAIT_REQUEUE_PI,
        FUTEX_CMP_REQUEUE_PI,
        FUTEX_LOCK_PI2,
        FUTEX_FD,
        14,
        99,
    ] {
        ut_assert_eq!(futex(&word, op | FUTEX_PRIVATE_FLAG, 0, 0, NULL, 0), err(ENOSYS), "op {}", op);
    }
    Ok(())
}
uktest::test_case!(pi_and_unknown_operations_are_enosys);
