//! In-guest tests of the wait queues' futex features: keys and bitsets,
//! the check under the lock, wake by predicate, requeue, waiting on
//! several queues, and requeues, wake-ups and timeouts racing on every CPU.

use crate::{AnyEntry, AnyOutcome, Builder, MATCH_ANY, WaitOutcome, WaitQueue, wait_any};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use core::time::Duration;
use uktest::{OrFail, TestResult, ut_assert, ut_assert_eq, ut_fail};

/// Nobody waits longer, even if waking is broken: every test ends.
const GIVE_UP: Duration = Duration::from_secs(10);
/// A wake-up or a queueing that takes longer counts as lost.
const PATIENCE: Duration = Duration::from_secs(3);

/// Yields until `done` holds or `PATIENCE` passed; returns whether it holds.
fn settle(done: impl FnMut() -> bool) -> bool {
    crate::yield_until(PATIENCE, done)
}

const NONE: u32 = u32::MAX;

fn outcome_code(o: WaitOutcome) -> u32 {
    match o {
        WaitOutcome::NotQueued => 0,
        WaitOutcome::Woken => 1,
        WaitOutcome::TimedOut => 2,
    }
}

/// `wait_if` refuses without queueing when its check fails; keys and
/// bitsets select whom `wake_where` wakes and `count_where` counts; a
/// requeue moves exactly the selected waiters, with their new key, and a
/// wake-up on the target queue ends their waits.
fn keys_bitsets_and_requeue_select_the_right_waiters() -> TestResult {
    static Q: WaitQueue = WaitQueue::new();
    static TARGET: WaitQueue = WaitQueue::new();
    static RESULT: [AtomicU32; 4] = [const { AtomicU32::new(NONE) }; 4];
    ut_assert_eq!(Q.wait_if(5, MATCH_ANY, || false, None), WaitOutcome::NotQueued);
    ut_assert_eq!(Q.len(), 0, "a refused wait left a waiter");

    // (key, bitset) of waiters 0..4.
    const WAITERS: [(usize, u32); 4] = [(1, 0b01), (2, 0b01), (1, 0b10), (3, MATCH_ANY)];
    for r in &RESULT {
        r.store(NONE, Ordering::SeqCst);
    }
    let mut handles = Vec::new();
    for (i, &(key, bitset)) in WAITERS.iter().enumerate() {
        let h = Builder::new()
            .name("keyed")
            .spawn(move || {
                let o = Q.wait_if(key, bitset, || true, Some(uktime::now() + GIVE_UP));
                RESULT[i].store(outcome_code(o), Ordering::SeqCst);
            })
            .or_fail()?;
        handles.push(h);
        if !settle(|| Q.len() == i + 1) {
            ut_fail!("waiter {} did not queue ({} queued)", i, Q.len());
        }
    }
    let done = |i: usize| RESULT[i].load(Ordering::SeqCst);
    ut_assert_eq!(Q.count_where(|key, _| key == 1), 2);
    ut_assert_eq!(Q.count_where(|_, bits| bits & 0b01 != 0), 3);
    // Key 1 and bit 1: waiter 2 only, though waiter 0 is older.
    ut_assert_eq!(Q.wake_where(usize::MAX, |key, bits| key == 1 && bits & 0b10 != 0), 1);
    ut_assert!(settle(|| done(2) == 1), "waiter 2 not woken: {}", done(2));
    ut_assert_eq!(done(0), NONE, "waiter 0 woken by a wake-up for bit 1");
    // Move key 2 to the other queue as key 7.
    {
        let mut pair = WaitQueue::pair(&Q, &TARGET);
        ut_assert_eq!(pair.requeue(usize::MAX, |key, _| key == 2, 7), 1);
        ut_assert_eq!(pair.first_len(), 2);
    }
    ut_assert_eq!(TARGET.count_where(|key, _| key == 7), 1);
    ut_assert_eq!(Q.count_where(|key, _| key == 2), 0);
    ut_assert_eq!(done(1), NONE, "a requeue woke its waiter");
    ut_assert_eq!(Q.wake_where(usize::MAX, |key, _| key == 2), 0, "woke a moved waiter on its old queue");
    // Wake on both queues of a pair.
    {
        let mut pair = WaitQueue::pair(&Q, &TARGET);
        ut_assert_eq!(pair.wake_second(usize::MAX, |key, _| key == 7), 1);
        ut_assert_eq!(pair.wake_first(1, |key, _| key == 1), 1);
    }
    ut_assert!(settle(|| done(1) == 1 && done(0) == 1), "waiters 1, 0: {} {}", done(1), done(0));
    ut_assert_eq!(Q.wake_all(), 1);
    for h in handles {
        h.join();
    }
    for (i, r) in RESULT.iter().enumerate() {
        ut_assert_eq!(r.load(Ordering::SeqCst), 1, "waiter {} did not end woken", i);
    }
    ut_assert!(Q.is_empty() && TARGET.is_empty());
    Ok(())
}
uktest::test_case!(keys_bitsets_and_requeue_select_the_right_waiters);

/// `wait_any` queues on every entry and reports the entry a waker took;
/// a refused check takes the earlier entries off again; a deadline ends
/// it as timed out; no entry is left on a queue.
fn wait_any_reports_the_entry_woken() -> TestResult {
    static A: WaitQueue = WaitQueue::new();
    static B: WaitQueue = WaitQueue::new();
    static RESULT: AtomicU32 = AtomicU32::new(NONE);
    fn entries(second: &dyn Fn() -> bool) -> [AnyEntry<'_>; 2] {
        [
            AnyEntry { queue: &A, key: 1, bitset: MATCH_ANY, check: &|| true },
            AnyEntry { queue: &B, key: 2, bitset: MATCH_ANY, check: second },
        ]
    }
    // Refused at entry 1: entry 0 is taken off again.
    ut_assert_eq!(wait_any(&entries(&|| false), None), AnyOutcome::NotQueued(1));
    ut_assert!(A.is_empty() && B.is_empty(), "a refused wait_any left an entry queued");
    // Times out.
    let start = uktime::now();
    let outcome = wait_any(&entries(&|| true), Some(start + Duration::from_millis(3)));
    ut_assert_eq!(outcome, AnyOutcome::TimedOut);
    ut_assert!(uktime::now().duration_since(start) >= Duration::from_millis(3), "timed out early");
    ut_assert!(A.is_empty() && B.is_empty(), "a timed-out wait_any left an entry queued");
    // Woken through entry 1.
    RESULT.store(NONE, Ordering::SeqCst);
    let h = crate::spawn(move || {
        let code = match wait_any(&entries(&|| true), Some(uktime::now() + GIVE_UP)) {
            AnyOutcome::Woken(i) => i as u32,
            AnyOutcome::NotQueued(_) => 100,
            AnyOutcome::TimedOut => 200,
        };
        RESULT.store(code, Ordering::SeqCst);
    });
    if !settle(|| A.len() == 1 && B.len() == 1) {
        ut_fail!("wait_any did not queue on both ({} and {})", A.len(), B.len());
    }
    ut_assert_eq!(B.wake_where(1, |key, _| key == 2), 1);
    h.join();
    ut_assert_eq!(RESULT.load(Ordering::SeqCst), 1, "woken through entry 1");
    ut_assert!(A.is_empty() && B.is_empty(), "the other entry stayed queued");
    Ok(())
}
uktest::test_case!(wait_any_reports_the_entry_woken);

/// Requeues both ways, wake-ups on both queues and short timeouts, all at
/// once on every CPU: each wait must end exactly once, woken or timed out,
/// and the waits the wakers counted must be exactly the waits that ended
/// woken. A waiter that left a node on a list, or a node taken off twice,
/// breaks the count (or the lists).
fn requeues_wakeups_and_timeouts_race_without_losing_a_waiter() -> TestResult {
    static A: WaitQueue = WaitQueue::new();
    static B: WaitQueue = WaitQueue::new();
    static STOP: AtomicBool = AtomicBool::new(false);
    static WAITS_WOKEN: AtomicUsize = AtomicUsize::new(0);
    static WAITS_TIMED_OUT: AtomicUsize = AtomicUsize::new(0);
    static WAKES_COUNTED: AtomicUsize = AtomicUsize::new(0);
    static MOVED: AtomicUsize = AtomicUsize::new(0);
    const WAITERS: usize = 6;
    const RUN: Duration = Duration::from_millis(300);
    for c in [&WAITS_WOKEN, &WAITS_TIMED_OUT, &WAKES_COUNTED, &MOVED] {
        c.store(0, Ordering::SeqCst);
    }
    STOP.store(false, Ordering::SeqCst);
    let cpus = ukplat::cpu::count();
    let mut handles = Vec::new();
    for i in 0..WAITERS {
        let h = Builder::new()
            .name("racer")
            .affinity(crate::CpuSet::single(i % cpus))
            .spawn(move || {
                let mut rng = uktest::Rng::new(0x9e37_79b9 * (i as u64 + 1));
                while !STOP.load(Ordering::Relaxed) {
                    let timeout = Duration::from_micros(50 + rng.below(400));
                    match A.wait_if(1, MATCH_ANY, || true, Some(uktime::now() + timeout)) {
                        WaitOutcome::Woken => WAITS_WOKEN.fetch_add(1, Ordering::SeqCst),
                        WaitOutcome::TimedOut => WAITS_TIMED_OUT.fetch_add(1, Ordering::SeqCst),
                        WaitOutcome::NotQueued => unreachable!("the check always says wait"),
                    };
                }
            })
            .or_fail()?;
        handles.push(h);
    }
    // Movers and wakers, one per CPU after the first (one on CPU 0 too
    // when there is only one).
    let mut movers = Vec::new();
    for m in 0..cpus.clamp(1, 4) {
        let h = Builder::new()
            .name("mover")
            .affinity(crate::CpuSet::single((m + 1) % cpus))
            .spawn(move || {
                let mut rng = uktest::Rng::new(0x1234_5678 + m as u64);
                let end = uktime::now() + RUN;
                while uktime::now() < end {
                    let n = 1 + rng.below(3) as usize;
                    match rng.below(4) {
                        0 => {
                            let moved = WaitQueue::pair(&A, &B).requeue(n, |key, _| key == 1, 2);
                            MOVED.fetch_add(moved, Ordering::Relaxed);
                        }
                        1 => {
                            let moved = WaitQueue::pair(&B, &A).requeue(n, |key, _| key == 2, 1);
                            MOVED.fetch_add(moved, Ordering::Relaxed);
                        }
                        2 => {
                            let woken = A.wake_where(n, |key, _| key == 1);
                            WAKES_COUNTED.fetch_add(woken, Ordering::SeqCst);
                        }
                        _ => {
                            let mut pair = WaitQueue::pair(&A, &B);
                            let woken =
                                pair.wake_second(n, |key, _| key == 2) + pair.wake_first(n, |_, _| true);
                            WAKES_COUNTED.fetch_add(woken, Ordering::SeqCst);
                        }
                    }
                    crate::yield_now();
                }
            })
            .or_fail()?;
        movers.push(h);
    }
    for h in movers {
        h.join();
    }
    STOP.store(true, Ordering::SeqCst);
    // Waiters still queued time out within half a millisecond.
    for h in handles {
        h.join();
    }
    let (woken, counted) = (WAITS_WOKEN.load(Ordering::SeqCst), WAKES_COUNTED.load(Ordering::SeqCst));
    let (timed_out, moved) = (WAITS_TIMED_OUT.load(Ordering::SeqCst), MOVED.load(Ordering::Relaxed));
    ut_assert!(A.is_empty() && B.is_empty(), "nodes left: {} on A, {} on B", A.len(), B.len());
    ut_assert_eq!(
        woken,
        counted,
        "waits that ended woken vs wake-ups counted ({} timed out, {} moves)",
        timed_out,
        moved
    );
    ut_assert!(
        woken > 0 && timed_out > 0 && moved > 0,
        "no race: {} woken, {} timed out, {} moves",
        woken,
        timed_out,
        moved
    );
    Ok(())
}
uktest::test_case!(requeues_wakeups_and_timeouts_race_without_losing_a_waiter);
