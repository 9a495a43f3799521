//! Switch and idle hooks, and the scheduler's statistics.

use crate::{cpus, spawn_on};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use ukplat::cpu::{MAX_CPUS, this_cpu};
use uktest::{OrFail, TestResult, ut_assert, ut_assert_eq};

static SWITCH_CALLS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static IDLE_CALLS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static REGISTERED: AtomicBool = AtomicBool::new(false);

fn on_switch(cpu: usize) {
    SWITCH_CALLS[cpu].fetch_add(1, Ordering::Relaxed);
}

fn on_idle(cpu: usize) {
    IDLE_CALLS[cpu].fetch_add(1, Ordering::Relaxed);
}

/// This CPU's hook counts and the matching statistics, read with
/// preemption disabled: no switch or idle pass on this CPU can fall
/// between the reads.
fn snapshot() -> (usize, [u64; 4]) {
    let _still = uksched::preempt::Guard::new();
    let cpu = this_cpu();
    let stats = uksched::cpu_stats(cpu);
    (
        cpu,
        [
            SWITCH_CALLS[cpu].load(Ordering::Relaxed),
            stats.switches,
            IDLE_CALLS[cpu].load(Ordering::Relaxed),
            stats.idle_entries,
        ],
    )
}

fn hooks_run_on_every_switch_and_idle_entry() -> TestResult {
    if !REGISTERED.swap(true, Ordering::AcqRel) {
        uksched::hooks::on_switch(on_switch).or_fail()?;
        uksched::hooks::on_idle(on_idle).or_fail()?;
    }
    // On every CPU: two threads pinned there yield to each other, then
    // one sleeps so that the CPU idles.
    let per_cpu = (0..cpus())
        .map(|cpu| {
            spawn_on("hooked", Some(cpu), move || {
                let (c0, before) = snapshot();
                let partner = spawn_on("partner", Some(cpu), || {
                    for _ in 0..10 {
                        uksched::yield_now();
                    }
                })?;
                for _ in 0..10 {
                    uksched::yield_now();
                }
                partner.join();
                uksched::sleep(Duration::from_millis(2));
                let (c1, after) = snapshot();
                Ok((c0 == cpu && c1 == cpu, before, after))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (cpu, h) in per_cpu.into_iter().enumerate() {
        let (here, b, a) = h.join()?;
        ut_assert!(here, "a pinned thread read CPU {}'s counts elsewhere", cpu);
        let d: [u64; 4] = core::array::from_fn(|i| a[i] - b[i]);
        ut_assert!(d[0] > 0, "CPU {}: the switch hook was not called", cpu);
        ut_assert!(d[2] > 0, "CPU {}: the idle hook was not called", cpu);
        ut_assert_eq!(d[0], d[1], "CPU {}: switch hook calls against switches", cpu);
        ut_assert_eq!(d[2], d[3], "CPU {}: idle hook calls against idle entries", cpu);
    }
    Ok(())
}
uktest::test_case!(hooks_run_on_every_switch_and_idle_entry);

fn cpu_statistics_are_plausible() -> TestResult {
    const BUSY: Duration = Duration::from_millis(20);
    const SLEEP: Duration = Duration::from_millis(20);
    const YIELDS: u64 = 10;
    // Main waits on CPU 0, so that it never lands on a CPU being measured
    // when it wakes from a join (CPU 0's measurement is over by then).
    let _main = crate::PinnedHere::to(0)?;
    let created = uktime::now();
    let per_cpu = (0..cpus())
        .map(|cpu| {
            spawn_on("measured", Some(cpu), move || {
                let before = {
                    let _still = uksched::preempt::Guard::new();
                    uksched::cpu_stats(this_cpu())
                };
                uktime::busy_wait(BUSY);
                // A partner on the same CPU to switch to.
                let partner = spawn_on("partner", Some(cpu), || {
                    for _ in 0..YIELDS {
                        uksched::yield_now();
                    }
                })?;
                for _ in 0..YIELDS {
                    uksched::yield_now();
                }
                partner.join();
                uksched::sleep(SLEEP);
                let after = {
                    let _still = uksched::preempt::Guard::new();
                    uksched::cpu_stats(this_cpu())
                };
                Ok((before, after, uktime::now()))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (cpu, h) in per_cpu.into_iter().enumerate() {
        let thread = h.thread().clone();
        let (b, a, end) = h.join()?;
        let wall = end.duration_since(created);
        let switches = a.switches - b.switches;
        let busy = Duration::from_nanos(a.busy_ns - b.busy_ns);
        let idle = Duration::from_nanos(a.idle_ns - b.idle_ns);
        // At least: to the partner and back, to idle and back.
        ut_assert!(switches >= 4, "CPU {}: {} switches", cpu, switches);
        ut_assert!(busy >= BUSY, "CPU {}: busy {:?} across a {:?} busy-wait", cpu, busy, BUSY);
        // Idle from the switch away from the sleeper to the switch back: the
        // sleep's deadline is set just before the first; a vCPU the host
        // deschedules in between (TCG, more vCPUs than host cores) loses
        // that time from the idle span, so only half is certain.
        ut_assert!(idle >= SLEEP / 2, "CPU {}: idle {:?} across a {:?} sleep", cpu, idle, SLEEP);
        ut_assert!(
            busy + idle <= wall,
            "CPU {}: busy {:?} + idle {:?} > {:?} of wall time",
            cpu,
            busy,
            idle,
            wall
        );
        let own = thread.stats();
        // Under preempt main, spawning the next threads on CPU 0, may
        // preempt CPU 0's busy-wait for a moment (the wait is wall time):
        // half of it is certain.
        ut_assert!(own.run_ns >= BUSY.as_nanos() as u64 / 2, "CPU {}: the thread ran {} ns", cpu, own.run_ns);
        ut_assert!(own.switches >= 2, "CPU {}: the thread was switched to {} times", cpu, own.switches);
    }
    Ok(())
}
uktest::test_case!(cpu_statistics_are_plausible);
