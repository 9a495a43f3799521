//! In-guest tests of the scheduler core (the multi-CPU scenarios live in
//! the `sched` app).

use crate::{Builder, CpuSet, WaitQueue};
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use uktest::{TestResult, ut_assert, ut_assert_eq};

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
        .map_err(|e| uktest::Failure::new(format_args!("{e}")))?;
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

fn wake_one_wakes_exactly_one_waiter() -> TestResult {
    static QUEUE: WaitQueue = WaitQueue::new();
    static PASSED: AtomicU32 = AtomicU32::new(0);
    static TICKETS: AtomicU32 = AtomicU32::new(0);
    PASSED.store(0, Ordering::SeqCst);
    TICKETS.store(0, Ordering::SeqCst);
    let take = || {
        let mut t = TICKETS.load(Ordering::SeqCst);
        while t > 0 {
            match TICKETS.compare_exchange(t, t - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(now) => t = now,
            }
        }
        false
    };
    let waiters: alloc::vec::Vec<_> = (0..3)
        .map(|_| {
            crate::spawn(move || {
                QUEUE.wait_until(take);
                PASSED.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // Let them all queue up.
    while QUEUE.len() < 3 {
        crate::yield_now();
    }
    for round in 1..=3u32 {
        TICKETS.fetch_add(1, Ordering::SeqCst);
        ut_assert!(QUEUE.wake_one());
        while PASSED.load(Ordering::SeqCst) < round {
            crate::yield_now();
        }
        ut_assert_eq!(PASSED.load(Ordering::SeqCst), round, "one ticket let more than one waiter pass");
    }
    for w in waiters {
        w.join();
    }
    ut_assert!(!QUEUE.wake_one(), "a waiter is left on the queue");
    Ok(())
}
uktest::test_case!(wake_one_wakes_exactly_one_waiter);

fn a_pinned_thread_stays_on_its_cpu() -> TestResult {
    let last = ukplat::cpu::count() - 1;
    let h = Builder::new()
        .affinity(CpuSet::single(last))
        .spawn(move || {
            (0..50).all(|_| {
                crate::yield_now();
                ukplat::cpu::this_cpu() == last
            })
        })
        .map_err(|e| uktest::Failure::new(format_args!("{e}")))?;
    ut_assert!(h.join(), "a thread pinned to CPU {} ran elsewhere", last);
    Ok(())
}
uktest::test_case!(a_pinned_thread_stays_on_its_cpu);

fn an_affinity_without_online_cpus_is_an_error() -> TestResult {
    let beyond = ukplat::cpu::count();
    if beyond >= ukplat::cpu::MAX_CPUS {
        return Ok(());
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
    let spawn = |me| {
        Builder::new()
            .affinity(CpuSet::single(cpu))
            .spawn(player(me))
            .map_err(|e| uktest::Failure::new(format_args!("{e}")))
    };
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
