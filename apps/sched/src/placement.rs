//! Where threads run: affinity, migration, and preemption of a spinner.

use crate::{PinnedHere, cpus, scaled, spawn_on};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use ukplat::cpu::this_cpu;
use uksched::yield_until;
use uksched::{CpuSet, WaitQueue};
use uktest::{TestResult, ut_assert, ut_assert_eq};

fn pinned_threads_stay_on_their_cpu() -> TestResult {
    uktest::require_cpus(2, "other CPUs a pinned thread could be moved or stolen to")?;
    let rounds = scaled(300, 60);
    let stop = Arc::new(AtomicBool::new(false));
    // Unpinned threads that keep every CPU's queue busy, so idle CPUs look
    // for work to steal.
    let noise = (0..cpus())
        .map(|_| {
            let stop = stop.clone();
            spawn_on("noise", None, move || {
                while !stop.load(Ordering::Relaxed) {
                    uksched::yield_now();
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pinned = (0..cpus())
        .map(|cpu| {
            spawn_on("pinned", Some(cpu), move || {
                let mut elsewhere = 0u64;
                for i in 0..rounds {
                    if i % 50 == 49 {
                        uksched::sleep(Duration::from_micros(200));
                    } else {
                        uksched::yield_now();
                    }
                    if this_cpu() != cpu || uksched::current().cpu() != cpu {
                        elsewhere += 1;
                    }
                }
                (elsewhere, uksched::current().affinity())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let results: Vec<_> = pinned.into_iter().map(|h| h.join()).collect();
    stop.store(true, Ordering::Relaxed);
    noise.into_iter().for_each(|h| h.join());
    for (cpu, (elsewhere, affinity)) in results.into_iter().enumerate() {
        ut_assert_eq!(elsewhere, 0, "the thread pinned to CPU {} ran elsewhere", cpu);
        ut_assert_eq!(affinity, CpuSet::single(cpu));
    }
    Ok(())
}
uktest::test_case!(pinned_threads_stay_on_their_cpu);

fn set_affinity_moves_the_calling_thread() -> TestResult {
    uktest::require_cpus(2, "a second CPU to move to")?;
    let (from, to) = (0, cpus() - 1);
    let h = spawn_on("mover", Some(from), move || {
        let me = uksched::current();
        let started = this_cpu();
        let moved = me.set_affinity(CpuSet::single(to)).is_ok();
        let arrived = this_cpu();
        let stayed = (0..50).all(|_| {
            uksched::yield_now();
            this_cpu() == to
        });
        (started, moved, arrived, stayed, me.affinity())
    })?;
    let (started, moved, arrived, stayed, affinity) = h.join();
    ut_assert_eq!(started, from);
    ut_assert!(moved, "set_affinity to CPU {} failed", to);
    ut_assert_eq!(arrived, to, "set_affinity returned before the thread moved");
    ut_assert!(stayed, "the thread left CPU {} afterwards", to);
    ut_assert_eq!(affinity, CpuSet::single(to));
    Ok(())
}
uktest::test_case!(set_affinity_moves_the_calling_thread);

fn an_affinity_without_online_cpus_is_refused() -> TestResult {
    let beyond = cpus();
    if beyond >= ukplat::cpu::MAX_CPUS {
        uktest::ut_skip!(
            "every CPU index up to platform.max_cpus ({}) is online: no offline CPU to name",
            ukplat::cpu::MAX_CPUS
        );
    }
    let h = spawn_on("refused", Some(0), move || {
        let me = uksched::current();
        let refused = matches!(me.set_affinity(CpuSet::single(beyond)), Err(uksched::SpawnError::NoCpu(_)));
        (refused, me.affinity(), this_cpu())
    })?;
    let (refused, affinity, cpu) = h.join();
    ut_assert!(refused, "an affinity with only CPU {} (offline) was accepted", beyond);
    ut_assert_eq!(affinity, CpuSet::single(0), "a refused affinity changed the affinity");
    ut_assert_eq!(cpu, 0, "a refused affinity moved the thread");
    Ok(())
}
uktest::test_case!(an_affinity_without_online_cpus_is_refused);

/// Main moves a thread that runs on another CPU; `yielding`: the thread
/// yields while it waits to be moved, else it spins (preempt only). Needs
/// two CPUs.
fn move_running_thread(yielding: bool) -> TestResult {
    let limit = Duration::from_secs(2);
    let _main = PinnedHere::to(0)?;
    let (from, to) = if cpus() > 2 { (1, 2) } else { (1, 0) };
    let running = Arc::new(AtomicBool::new(false));
    let r = running.clone();
    let h = spawn_on("moved", Some(from), move || {
        let start = this_cpu();
        r.store(true, Ordering::Release);
        let deadline = uktime::now() + limit;
        while this_cpu() != to && uktime::now() < deadline {
            if yielding {
                uksched::yield_now();
            } else {
                core::hint::spin_loop();
            }
        }
        (start, this_cpu())
    })?;
    ut_assert!(yield_until(limit, || running.load(Ordering::Acquire)), "the thread never started");
    ut_assert!(h.thread().set_affinity(CpuSet::single(to)).is_ok());
    let (start, end) = h.join();
    ut_assert_eq!(start, from);
    ut_assert_eq!(end, to, "a running thread (yielding: {}) was not moved within {:?}", yielding, limit);
    Ok(())
}

fn set_affinity_moves_a_yielding_thread() -> TestResult {
    uktest::require_cpus(2, "a thread running on another CPU than main")?;
    move_running_thread(true)
}
uktest::test_case!(set_affinity_moves_a_yielding_thread);

/// Skips under `coop`, where a thread that never yields is never switched
/// out (see `uksched`'s documentation).
fn require_preemption(what: &str) -> TestResult {
    if !uksched::PREEMPTIVE {
        uktest::ut_skip!(
            "needs preemption ({}); uksched.policy = \"{}\" never preempts",
            what,
            uksched::POLICY
        );
    }
    Ok(())
}

fn set_affinity_moves_a_spinning_thread() -> TestResult {
    require_preemption("moving a thread that spins without yielding")?;
    uktest::require_cpus(2, "a thread spinning on another CPU than main")?;
    move_running_thread(false)
}
uktest::test_case!(set_affinity_moves_a_spinning_thread);

fn a_spinning_thread_does_not_starve_its_cpu() -> TestResult {
    require_preemption("a thread beside a spinner that never yields")?;
    let limit = Duration::from_secs(5);
    let cpu = cpus() - 1;
    let preemptions0 = uksched::cpu_stats(cpu).preemptions;
    let shared =
        Arc::new((AtomicBool::new(false), AtomicBool::new(false), WaitQueue::new(), AtomicU64::new(0)));
    let s = shared.clone();
    let spinner = spawn_on("spinner", Some(cpu), move || {
        s.3.store(1, Ordering::Release);
        while !s.0.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
    })?;
    // The second thread starts once the spinner runs.
    ut_assert!(yield_until(limit, || shared.3.load(Ordering::Acquire) == 1), "the spinner never ran");
    let s = shared.clone();
    let finisher = spawn_on("finisher", Some(cpu), move || {
        for _ in 0..5 {
            uktime::busy_wait(Duration::from_micros(100));
            uksched::yield_now();
        }
        s.1.store(true, Ordering::Release);
        s.2.wake_all();
    })?;
    let finished = shared.2.wait_until_timeout(|| shared.1.load(Ordering::Acquire), limit);
    shared.0.store(true, Ordering::Release);
    spinner.join();
    finisher.join();
    let preemptions = uksched::cpu_stats(cpu).preemptions - preemptions0;
    ut_assert!(
        finished,
        "a thread spinning on CPU {} kept a second thread there from finishing for {:?}",
        cpu,
        limit
    );
    ut_assert!(preemptions > 0, "CPU {} counted no preemption", cpu);
    Ok(())
}
uktest::test_case!(a_spinning_thread_does_not_starve_its_cpu);
