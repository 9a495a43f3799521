//! Sleeping and timed waits: never early, not much late.

use crate::{cpus, spawn_on};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use uksched::{WaitQueue, WaitResult};
use uktest::{TestResult, ut_assert, ut_assert_eq};

/// How late a sleep or a timed wait may end (see the crate documentation).
pub(crate) const SLEEP_SLACK: Duration = Duration::from_millis(50);

/// Sleeps `d` and returns how long it took.
fn timed_sleep(d: Duration) -> Duration {
    let start = uktime::now();
    uksched::sleep(d);
    start.elapsed()
}

fn sleep_wakes_no_earlier_than_asked() -> TestResult {
    for ms in [1, 5, 10] {
        let asked = Duration::from_millis(ms);
        let took = timed_sleep(asked);
        ut_assert!(took >= asked, "sleep({:?}) returned after {:?}", asked, took);
        ut_assert!(took <= asked + SLEEP_SLACK, "sleep({:?}) took {:?}", asked, took);
    }
    // A sleeper on every CPU at once: each CPU's own timer wakes it.
    let asked = Duration::from_millis(10);
    let handles = (0..cpus())
        .map(|c| spawn_on("sleeper", Some(c), move || timed_sleep(asked)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut longest = Duration::ZERO;
    for (cpu, h) in handles.into_iter().enumerate() {
        let took = h.join();
        ut_assert!(took >= asked, "sleep({:?}) on CPU {} returned after {:?}", asked, cpu, took);
        ut_assert!(took <= asked + SLEEP_SLACK, "sleep({:?}) on CPU {} took {:?}", asked, cpu, took);
        longest = longest.max(took);
    }
    ukconsole::println!("sched: 10 ms sleeps on every CPU took at most {} us", longest.as_micros());
    Ok(())
}
uktest::test_case!(sleep_wakes_no_earlier_than_asked);

fn a_wait_times_out_without_a_wake() -> TestResult {
    let queue = WaitQueue::new();
    let timeout = Duration::from_millis(20);
    let start = uktime::now();
    let held = queue.wait_until_timeout(|| false, timeout);
    let took = start.elapsed();
    ut_assert!(!held, "a condition that never holds was reported true");
    ut_assert!(took >= timeout, "the wait timed out after {:?}, before its {:?}", took, timeout);
    ut_assert!(took <= timeout + SLEEP_SLACK, "the {:?} wait took {:?}", timeout, took);
    ut_assert_eq!(queue.len(), 0, "a timed-out waiter stayed on the queue");

    let start = uktime::now();
    let r = queue.wait_with(|| true, Some(start + timeout));
    let took = start.elapsed();
    ut_assert_eq!(r, WaitResult::TimedOut);
    ut_assert!(took >= timeout, "wait_with timed out after {:?}, before its {:?}", took, timeout);
    ut_assert_eq!(queue.len(), 0, "a timed-out waiter stayed on the queue");
    Ok(())
}
uktest::test_case!(a_wait_times_out_without_a_wake);

fn a_wait_returns_true_when_woken() -> TestResult {
    let timeout = Duration::from_secs(2);
    // The waker runs on another CPU than main when there is one.
    let _main = crate::PinnedHere::to(0)?;
    let waker_cpu = cpus() - 1;
    let shared = Arc::new((WaitQueue::new(), AtomicBool::new(false)));

    let s = shared.clone();
    let waker = spawn_on("waker", Some(waker_cpu), move || {
        // Wake only once main waits.
        while s.0.is_empty() {
            uksched::sleep(Duration::from_millis(1));
        }
        s.1.store(true, Ordering::Release);
        s.0.wake_all()
    })?;
    let start = uktime::now();
    let held = shared.0.wait_until_timeout(|| shared.1.load(Ordering::Acquire), timeout);
    let took = start.elapsed();
    let woke = waker.join();
    ut_assert!(held, "woken with the condition set, the wait returned false after {:?}", took);
    ut_assert!(took < timeout, "the wait took {:?}: it ran into its timeout", took);
    ut_assert_eq!(woke, 1, "the waker found {} waiters", woke);

    let s = shared.clone();
    let waker = spawn_on("waker", Some(waker_cpu), move || {
        while s.0.is_empty() {
            uksched::sleep(Duration::from_millis(1));
        }
        s.0.wake_one()
    })?;
    let start = uktime::now();
    let r = shared.0.wait_with(|| true, Some(start + timeout));
    let took = start.elapsed();
    ut_assert!(waker.join(), "the waker found nobody to wake");
    ut_assert_eq!(r, WaitResult::Woken, "after {:?}", took);
    ut_assert!(took < timeout, "wait_with took {:?}", took);
    Ok(())
}
uktest::test_case!(a_wait_returns_true_when_woken);
