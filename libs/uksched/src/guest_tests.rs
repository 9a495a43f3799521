//! In-guest tests of the scheduler core (the multi-CPU scenarios live in
//! the `sched` app).

use crate::{Builder, CpuSet, WaitQueue, WaitResult, yield_until};
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use uktest::{OrFail, TestResult, ut_assert, ut_assert_eq, ut_fail};

fn the_boot_context_is_thread_main() -> TestResult {
    let me = crate::current();
    ut_assert!(crate::started());
    // The tests run on the boot thread.
    ut_assert_eq!(me.name(), "main");
    ut_assert!(me.stack().is_none(), "main runs on the boot stack");
    Ok(())
}
uktest::test_case!(the_boot_context_is_thread_main);

fn a_thread_returns_its_value_and_has_a_guarded_stack() -> TestResult {
    let h = Builder::new()
        .name("answer")
        .stack_size(20 * 1024)
        .spawn(|| {
            let me = crate::current();
            let (stack, guard) = me.stack().expect("a spawned thread has its own stack");
            let local = 0u8;
            let sp = &local as *const u8 as usize;
            (stack.contains(&sp), guard.end == stack.start, stack.end - stack.start, me.name() == "answer")
        })
        .or_fail()?;
    let (on_own_stack, guard_below, size, named) = h.join();
    ut_assert!(on_own_stack, "the thread's locals are not on its stack");
    ut_assert!(guard_below, "the guard page is not right below the stack");
    ut_assert_eq!(size, 20 * 1024);
    ut_assert!(named);
    Ok(())
}
uktest::test_case!(a_thread_returns_its_value_and_has_a_guarded_stack);

fn exit_ends_a_thread_with_its_value() -> TestResult {
    let h = crate::spawn(|| -> u64 {
        crate::exit(7u64);
    });
    ut_assert_eq!(h.join(), 7);
    Ok(())
}
uktest::test_case!(exit_ends_a_thread_with_its_value);

fn a_wait_without_wake_times_out_not_early() -> TestResult {
    static QUEUE: WaitQueue = WaitQueue::new();
    let start = uktime::now();
    let ok = QUEUE.wait_until_timeout(|| false, Duration::from_millis(5));
    let waited = uktime::now().duration_since(start);
    ut_assert!(!ok, "the condition never holds, yet the wait says it does");
    ut_assert!(waited >= Duration::from_millis(5), "woke after {:?}, before the 5 ms timeout", waited);
    ut_assert_eq!(QUEUE.len(), 0, "a timed-out waiter stayed on the queue");
    Ok(())
}
uktest::test_case!(a_wait_without_wake_times_out_not_early);

/// `wake_one` ends exactly one wait, the longest: three threads queue one
/// after the other, and each `wake_one` must wake exactly one more of them,
/// in queueing order. A wake-up that does not show within `PATIENCE` (an
/// under-wake: a lost wake-up) fails, and so does a second thread waking
/// within `GRACE` of the first (an over-wake). Whatever happened, the test
/// then wakes whoever still waits, and the waiters' own deadline
/// (`GIVE_UP`) ends their waits should waking itself be broken: the test
/// always ends, in at most about `GIVE_UP + PATIENCE`.
fn wake_one_wakes_exactly_one_waiter() -> TestResult {
    const WAITERS: usize = 3;
    /// A wake-up that takes longer counts as lost.
    const PATIENCE: Duration = Duration::from_secs(2);
    /// How long to watch for a second thread waking after the first.
    const GRACE: Duration = Duration::from_millis(20);
    /// The waiters' deadline: nobody waits forever, even if waking is broken.
    const GIVE_UP: Duration = Duration::from_secs(10);
    static QUEUE: WaitQueue = WaitQueue::new();
    static WOKEN: AtomicU32 = AtomicU32::new(0);
    static TIMED_OUT: AtomicU32 = AtomicU32::new(0);
    /// The waiter each wake-up ended, in the order they ended.
    static ORDER: [AtomicU32; WAITERS] = [const { AtomicU32::new(u32::MAX) }; WAITERS];
    WOKEN.store(0, Ordering::SeqCst);
    TIMED_OUT.store(0, Ordering::SeqCst);
    for slot in &ORDER {
        slot.store(u32::MAX, Ordering::SeqCst);
    }

    let mut waiters = alloc::vec::Vec::new();
    let queued = (|| {
        for i in 0..WAITERS {
            let h = Builder::new()
                .name("waiter")
                .spawn(move || match QUEUE.wait_with(|| true, Some(uktime::now() + GIVE_UP)) {
                    WaitResult::Woken => {
                        let n = WOKEN.fetch_add(1, Ordering::SeqCst) as usize;
                        if let Some(slot) = ORDER.get(n) {
                            slot.store(i as u32, Ordering::SeqCst);
                        }
                    }
                    WaitResult::TimedOut => {
                        TIMED_OUT.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .or_fail()?;
            waiters.push(h);
            // One at a time: the queue's order is the spawn order.
            if !yield_until(PATIENCE, || QUEUE.len() == i + 1) {
                ut_fail!("waiter {} did not queue within {:?} ({} queued)", i, PATIENCE, QUEUE.len());
            }
        }
        Ok(())
    })();
    let result = queued.and_then(|()| {
        for round in 1..=WAITERS as u32 {
            let before = WOKEN.load(Ordering::SeqCst);
            ut_assert_eq!(before, round - 1, "round {}: woken before wake_one", round);
            ut_assert!(QUEUE.wake_one(), "round {}: wake_one found nobody on the queue", round);
            if !yield_until(PATIENCE, || WOKEN.load(Ordering::SeqCst) > before) {
                ut_fail!(
                    "round {}: wake_one woke no waiter within {:?} ({} queued, {} timed out)",
                    round,
                    PATIENCE,
                    QUEUE.len(),
                    TIMED_OUT.load(Ordering::SeqCst)
                );
            }
            // Give a second wake-up (an over-wake) time to show.
            yield_until(GRACE, || false);
            let woken = WOKEN.load(Ordering::SeqCst) - before;
            ut_assert_eq!(woken, 1, "round {}: one wake_one woke {} waiters", round, woken);
            ut_assert_eq!(
                QUEUE.len(),
                WAITERS - round as usize,
                "round {}: waiters left on the queue",
                round
            );
            let which = ORDER[round as usize - 1].load(Ordering::SeqCst);
            ut_assert_eq!(
                which,
                round - 1,
                "round {}: woke waiter {} before the longest waiting",
                round,
                which
            );
        }
        ut_assert!(!QUEUE.wake_one(), "a waiter is left on the queue");
        ut_assert_eq!(TIMED_OUT.load(Ordering::SeqCst), 0, "waiters ran into their {:?} deadline", GIVE_UP);
        Ok(())
    });
    // End every wait that is left (after a failure). Should waking itself
    // be broken, the waiters' deadline ends their waits; a waiter that has
    // not finished even then is detached rather than joined (a join waits
    // for a wake-up too).
    QUEUE.wake_all();
    let ended = yield_until(GIVE_UP + PATIENCE, || waiters.iter().all(|w| w.is_finished()));
    for w in waiters {
        if w.is_finished() {
            w.join();
        }
    }
    result?;
    ut_assert!(ended, "waiters were still running {:?} after the test woke them", GIVE_UP + PATIENCE);
    Ok(())
}
uktest::test_case!(wake_one_wakes_exactly_one_waiter);

fn a_pinned_thread_stays_on_its_cpu() -> TestResult {
    uktest::require_cpus(2, "another CPU the pinned thread could run on")?;
    let last = ukplat::cpu::count() - 1;
    let h = Builder::new()
        .affinity(CpuSet::single(last))
        .spawn(move || {
            (0..50).all(|_| {
                crate::yield_now();
                ukplat::cpu::this_cpu() == last
            })
        })
        .or_fail()?;
    ut_assert!(h.join(), "a thread pinned to CPU {} ran elsewhere", last);
    Ok(())
}
uktest::test_case!(a_pinned_thread_stays_on_its_cpu);

fn an_affinity_without_online_cpus_is_an_error() -> TestResult {
    let beyond = ukplat::cpu::count();
    if beyond >= ukplat::cpu::MAX_CPUS {
        uktest::ut_skip!(
            "every CPU index up to platform.max_cpus ({}) is online: no offline CPU to name",
            ukplat::cpu::MAX_CPUS
        );
    }
    let r = Builder::new().affinity(CpuSet::single(beyond)).spawn(|| ());
    ut_assert!(matches!(r, Err(crate::SpawnError::NoCpu(_))));
    Ok(())
}
uktest::test_case!(an_affinity_without_online_cpus_is_an_error);

fn yields_alternate_two_threads_on_one_cpu() -> TestResult {
    const ROUNDS: u32 = 2000;
    static TURN: AtomicU32 = AtomicU32::new(0);
    static WRONG: AtomicU32 = AtomicU32::new(0);
    static GO: AtomicU32 = AtomicU32::new(0);
    TURN.store(0, Ordering::SeqCst);
    WRONG.store(0, Ordering::SeqCst);
    GO.store(0, Ordering::SeqCst);
    let cpu = ukplat::cpu::count() - 1;
    let player = |me: u32| {
        move || {
            // Both threads are queued on the CPU before the rounds begin.
            while GO.load(Ordering::SeqCst) == 0 {
                crate::yield_now();
            }
            let start = ukarch::tsc::read();
            for round in 0..ROUNDS {
                // My turn comes after exactly one yield: the other thread
                // ran once in between (FIFO round-robin on one CPU).
                while TURN.load(Ordering::SeqCst) % 2 != me {
                    WRONG.fetch_add(1, Ordering::Relaxed);
                    crate::yield_now();
                }
                ut_assert_eq!(TURN.load(Ordering::SeqCst), 2 * round + me);
                TURN.fetch_add(1, Ordering::SeqCst);
                crate::yield_now();
            }
            Ok(ukarch::tsc::read() - start)
        }
    };
    let spawn = |me| Builder::new().affinity(CpuSet::single(cpu)).spawn(player(me)).or_fail();
    let a = spawn(0)?;
    let b = spawn(1)?;
    GO.store(1, Ordering::SeqCst);
    let cycles = a.join()?.max(b.join()?);
    ut_assert_eq!(TURN.load(Ordering::SeqCst), 2 * ROUNDS);
    // A preemption (preempt policy) may cost an extra yield now and then.
    let extra = WRONG.load(Ordering::Relaxed);
    ut_assert!(extra <= ROUNDS / 100, "{} yields found it was not their turn", extra);
    log::info!(
        "same-CPU yield switch: {} cycles, {} ns",
        cycles / (2 * u64::from(ROUNDS)),
        uktime::cycles_to_ns(cycles / (2 * u64::from(ROUNDS)))
    );
    Ok(())
}
uktest::test_case!(yields_alternate_two_threads_on_one_cpu);
