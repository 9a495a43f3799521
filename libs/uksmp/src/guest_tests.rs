//! In-guest tests of cross-CPU calls and idle wake-ups. With one CPU the
//! calls check the local paths, and the cases that need other CPUs (a
//! chain of calls across three, an idle CPU to wake) are skipped.

use crate::{cpu_count, online, run_on, run_on_all, run_on_all_nowait, run_on_nowait};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use ukplat::cpu::this_cpu;
use uktest::{TestResult, ut_assert, ut_assert_eq};

fn every_cpu_is_online() -> TestResult {
    ut_assert_eq!(crate::online_count(), cpu_count());
    for cpu in 0..cpu_count() {
        ut_assert!(online(cpu), "CPU {} is not online", cpu);
    }
    ut_assert!(!online(cpu_count()), "a CPU past the count claims to be online");
    Ok(())
}
uktest::test_case!(every_cpu_is_online);

fn run_on_runs_on_the_named_cpu() -> TestResult {
    for cpu in 0..cpu_count() {
        let (ran_on, interrupts) = run_on(cpu, || (this_cpu(), ukplat::irq::enabled()));
        ut_assert_eq!(ran_on, cpu);
        ut_assert!(!interrupts, "a call ran with interrupts enabled on CPU {}", cpu);
    }
    Ok(())
}
uktest::test_case!(run_on_runs_on_the_named_cpu);

fn run_on_all_returns_one_result_per_cpu() -> TestResult {
    let results = run_on_all(|cpu| (cpu, this_cpu(), ukplat::cpu::this_apic_id()));
    ut_assert_eq!(results.len(), cpu_count());
    let topology = ukplat::cpu::topology();
    for (i, &(asked, ran_on, apic_id)) in results.iter().enumerate() {
        ut_assert_eq!(asked, i);
        ut_assert_eq!(ran_on, i);
        ut_assert_eq!(apic_id, topology.cpus[i].apic_id);
    }
    Ok(())
}
uktest::test_case!(run_on_all_returns_one_result_per_cpu);

static BURST: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

fn a_burst_of_calls_runs_in_order() -> TestResult {
    let target = cpu_count() - 1;
    let next = AtomicUsize::new(0);
    let seen: Vec<usize> = (0..32)
        .map(|i| {
            // Alternate waiting and non-waiting calls to the same CPU.
            if i % 2 == 0 {
                run_on(target, || next.fetch_add(1, Ordering::SeqCst))
            } else {
                run_on_nowait(target, move || {
                    BURST[i].store(1, Ordering::SeqCst);
                });
                i
            }
        })
        .collect();
    // A final waiting call runs after every queued one.
    run_on(target, || ());
    for (i, v) in seen.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        ut_assert_eq!(*v, i / 2, "waiting call {} saw counter {}", i, v);
    }
    for i in (1..32).step_by(2) {
        ut_assert_eq!(BURST[i].swap(0, Ordering::SeqCst), 1, "nowait call {} did not run", i);
    }
    Ok(())
}
uktest::test_case!(a_burst_of_calls_runs_in_order);

static NOWAIT_HITS: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

fn nowait_calls_run_exactly_once_everywhere() -> TestResult {
    for hits in &NOWAIT_HITS {
        hits.store(0, Ordering::SeqCst);
    }
    run_on_all_nowait(|cpu| {
        NOWAIT_HITS[cpu].fetch_add(1, Ordering::SeqCst);
    });
    // Flush: a waiting call to each CPU runs after its queued one.
    run_on_all(|_| ());
    for (cpu, hits) in NOWAIT_HITS.iter().enumerate().take(cpu_count()) {
        ut_assert_eq!(hits.load(Ordering::SeqCst), 1, "CPU {}", cpu);
    }
    Ok(())
}
uktest::test_case!(nowait_calls_run_exactly_once_everywhere);

/// The last CPU calls back CPU 0 while CPU 0 waits for it: the waiter
/// drains its own queue. (With one CPU: a local call inside a local call.)
fn a_call_can_call_back_its_caller() -> TestResult {
    let back = run_on(cpu_count() - 1, || (this_cpu(), run_on(0, this_cpu)));
    ut_assert_eq!(back, (cpu_count() - 1, 0));
    Ok(())
}
uktest::test_case!(a_call_can_call_back_its_caller);

fn calls_nest_across_three_cpus() -> TestResult {
    uktest::require_cpus(3, "a chain of calls 0 -> 1 -> 2 -> 0")?;
    let chain = run_on(1, || run_on(2, || (this_cpu(), run_on(0, || this_cpu() + 10))));
    ut_assert_eq!(chain, (2, 10));
    Ok(())
}
uktest::test_case!(calls_nest_across_three_cpus);

fn a_halted_cpu_wakes_on_an_ipi() -> TestResult {
    uktest::require_cpus(2, "an idle CPU besides the one running the tests")?;
    ut_assert!(!crate::is_idle(this_cpu()), "the CPU running the tests claims to be idle");
    let cpu = if this_cpu() == 1 { 0 } else { 1 };
    // Let the CPU settle into its halt.
    let deadline = uktime::now() + Duration::from_secs(2);
    while !crate::is_idle(cpu) && uktime::now() < deadline {
        ukarch::barrier::spin_hint();
    }
    ut_assert!(crate::is_idle(cpu), "CPU {} never halted", cpu);
    // Halted means halted: no wake-up without an interrupt.
    let quiet = crate::wakeups(cpu);
    uktime::busy_wait(Duration::from_millis(20));
    ut_assert_eq!(crate::wakeups(cpu), quiet, "CPU {} woke up with nothing to do", cpu);
    let before = crate::wakeups(cpu);
    crate::wake(cpu);
    let deadline = uktime::now() + Duration::from_secs(2);
    while crate::wakeups(cpu) == before && uktime::now() < deadline {
        ukarch::barrier::spin_hint();
    }
    ut_assert!(crate::wakeups(cpu) > before, "CPU {} did not wake up", cpu);
    Ok(())
}
uktest::test_case!(a_halted_cpu_wakes_on_an_ipi);
