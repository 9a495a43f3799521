//! In-guest tests of ukrcu (registered with uktest).

use crate::{RcuCell, barrier, call_rcu, read_lock, synchronize, synchronize_expedited};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use uktest::{OrFail, TestResult, test_case, ut_assert, ut_assert_eq};

/// Spawns `f` as thread `name`, pinned to CPU `cpu`.
fn pinned<T: Send + 'static>(
    name: &str,
    cpu: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<uksched::JoinHandle<T>, uktest::Stop> {
    uksched::Builder::new().name(name).affinity(uksched::CpuSet::single(cpu)).spawn(f).or_fail()
}

/// Pins the calling thread to CPU 0 until dropped: tests that keep CPU 1
/// busy (a reader spinning in its section, which under `coop` never gives
/// the CPU up) must not run there themselves.
struct OnCpu0(uksched::Thread);

impl OnCpu0 {
    fn pin() -> Result<Self, uktest::Stop> {
        let me = uksched::current();
        me.set_affinity(uksched::CpuSet::single(0)).or_fail()?;
        Ok(Self(me))
    }
}

impl Drop for OnCpu0 {
    fn drop(&mut self) {
        let _ = self.0.set_affinity(uksched::CpuSet::all());
    }
}

/// A value that records when it is freed.
struct Tracked(Arc<AtomicBool>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// `synchronize` waits for a reader that is inside its section on another
/// CPU (or, on one CPU, for nothing but the grace period), and a retired
/// value is freed only after it.
fn synchronize_waits_for_an_open_reader() -> TestResult {
    uktest::require_cpus(2, "a reader on another CPU")?;
    let _here = OnCpu0::pin()?;
    let freed = Arc::new(AtomicBool::new(false));
    let cell = Arc::new(RcuCell::new(Box::new(Tracked(Arc::clone(&freed)))));
    let inside = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let reader = {
        let (cell, inside, release) = (Arc::clone(&cell), Arc::clone(&inside), Arc::clone(&release));
        pinned("rcu-reader", 1, move || {
            let guard = read_lock();
            let seen = cell.load(&guard).map(|t| Arc::clone(&t.0));
            inside.store(true, Ordering::SeqCst);
            // Hold the section until the writer has waited a while.
            while !release.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
            // Still valid: the grace period cannot have ended.
            let freed_under_us = seen.is_some_and(|f| f.load(Ordering::SeqCst));
            drop(guard);
            freed_under_us
        })?
    };
    while !inside.load(Ordering::SeqCst) {
        uksched::yield_now();
    }
    let old = cell.replace(None);
    ut_assert!(old.is_some());
    let waiter = {
        let done = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&done);
        let h = uksched::spawn(move || {
            synchronize();
            d.store(true, Ordering::SeqCst);
        });
        (h, done)
    };
    uksched::sleep(Duration::from_millis(20));
    ut_assert!(!waiter.1.load(Ordering::SeqCst), "synchronize returned while a reader held its section");
    release.store(true, Ordering::SeqCst);
    ut_assert!(!reader.join(), "the value was freed under an open read-side section");
    waiter.0.join();
    ut_assert!(old.as_ref().is_some_and(|o| o.grace_period_done()));
    drop(old);
    ut_assert!(freed.load(Ordering::SeqCst), "dropping a retired value after synchronize frees it");
    Ok(())
}
test_case!(synchronize_waits_for_an_open_reader);

/// A retired value dropped before any grace period is not freed then,
/// but after one.
fn an_early_drop_defers_the_free() -> TestResult {
    let freed = Arc::new(AtomicBool::new(false));
    let cell = RcuCell::new(Box::new(Tracked(Arc::clone(&freed))));
    let old = cell.replace(None).expect("a value");
    let early = old.grace_period_done();
    drop(old);
    if !early {
        ut_assert!(!freed.load(Ordering::SeqCst), "freed before a grace period");
    }
    barrier();
    ut_assert!(freed.load(Ordering::SeqCst), "not freed after barrier()");
    Ok(())
}
test_case!(an_early_drop_defers_the_free);

/// Callbacks from every CPU each run exactly once, after `barrier`.
fn call_rcu_callbacks_run_once_by_barrier() -> TestResult {
    const PER_CPU: usize = 200;
    let cpus = ukplat::cpu::count();
    let ran: Arc<Vec<AtomicU64>> = Arc::new((0..cpus * PER_CPU).map(|_| AtomicU64::new(0)).collect());
    let before = crate::stats();
    let mut threads = Vec::new();
    for cpu in 0..cpus {
        let ran = Arc::clone(&ran);
        threads.push(pinned("rcu-test", cpu, move || {
            for i in 0..PER_CPU {
                let ran = Arc::clone(&ran);
                call_rcu(move || {
                    ran[cpu * PER_CPU + i].fetch_add(1, Ordering::SeqCst);
                });
            }
        })?);
    }
    for t in threads {
        t.join();
    }
    barrier();
    let counts: Vec<u64> = ran.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    ut_assert!(counts.iter().all(|&c| c == 1), "callbacks ran {:?} times", counts.iter().max());
    let after = crate::stats();
    ut_assert!(after.callbacks_invoked - before.callbacks_invoked >= (cpus * PER_CPU) as u64);
    Ok(())
}
test_case!(call_rcu_callbacks_run_once_by_barrier);

/// Grace periods complete while other CPUs idle, without waking them:
/// with this thread and the grace-period thread on CPU 0, no other CPU's
/// wake-up count grows during five grace periods.
fn grace_periods_leave_idle_cpus_asleep() -> TestResult {
    uktest::require_cpus(2, "an idle CPU besides this one")?;
    let _here = OnCpu0::pin()?;
    let gp = crate::gp_thread().expect("ukrcu started its thread");
    gp.set_affinity(uksched::CpuSet::single(0)).or_fail()?;
    // Let the grace-period thread move and every other CPU go idle.
    synchronize();
    uksched::sleep(Duration::from_millis(5));
    let others: Vec<usize> = (1..ukplat::cpu::count()).collect();
    let before: Vec<u64> = others.iter().map(|&c| uksmp::wakeups(c)).collect();
    let gps = crate::grace_periods();
    for _ in 0..5 {
        synchronize();
    }
    let after: Vec<u64> = others.iter().map(|&c| uksmp::wakeups(c)).collect();
    let _ = gp.set_affinity(uksched::CpuSet::all());
    ut_assert!(crate::grace_periods() >= gps + 5);
    ut_assert!(before == after, "idle CPUs woke during 5 grace periods: {:?} -> {:?}", before, after);
    Ok(())
}
test_case!(grace_periods_leave_idle_cpus_asleep);

/// A thread spinning without ever yielding does not hold grace periods up
/// under `preempt`: it is forced.
fn a_spinning_cpu_is_forced_under_preempt() -> TestResult {
    uktest::require_cpus(2, "a spinning thread on another CPU")?;
    if crate::flavor() != "qsbr" {
        uktest::ut_skip!(
            "ukrcu.flavor = \"{}\" waits for read sections, not for CPUs: a spinning CPU outside a section holds nothing up",
            crate::flavor()
        );
    }
    let _here = OnCpu0::pin()?;
    if uksched::POLICY != "preempt" {
        uktest::ut_skip!(
            "needs preemption; uksched.policy = \"{}\" cannot force a running thread",
            uksched::POLICY
        );
    }
    // The grace-period thread away from the spinner's CPU, where its
    // wake-up would preempt the spinner (a quiescent state without forcing).
    let gp = crate::gp_thread().expect("ukrcu started its thread");
    gp.set_affinity(uksched::CpuSet::single(0)).or_fail()?;
    let stop = Arc::new(AtomicBool::new(false));
    let spinning = Arc::new(AtomicBool::new(false));
    let spinner = {
        let (stop, spinning) = (Arc::clone(&stop), Arc::clone(&spinning));
        pinned("spinner", 1, move || {
            spinning.store(true, Ordering::SeqCst);
            while !stop.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        })?
    };
    // Running (not still on its way to CPU 1, which would be idle).
    while !spinning.load(Ordering::SeqCst) {
        uksched::sleep(Duration::from_micros(100));
    }
    let forced = crate::stats().forced;
    let start = uktime::now();
    synchronize_expedited();
    synchronize();
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    spinner.join();
    let _ = gp.set_affinity(uksched::CpuSet::all());
    ut_assert!(crate::stats().forced > forced, "no CPU was forced");
    ut_assert!(took < Duration::from_millis(500), "two grace periods took {:?} with a spinner", took);
    Ok(())
}
test_case!(a_spinning_cpu_is_forced_under_preempt);

/// Concurrent `synchronize` callers share grace periods: eight callers
/// that arrive while a reader on another CPU holds the grace period up
/// need at most two between them (the one that was running when the first
/// arrived, and the next), however slowly they arrive.
fn concurrent_callers_share_grace_periods() -> TestResult {
    const CALLERS: usize = 8;
    uktest::require_cpus(2, "a reader on another CPU holding grace periods up")?;
    let _here = OnCpu0::pin()?;
    let inside = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let reader = {
        let (inside, release) = (Arc::clone(&inside), Arc::clone(&release));
        pinned("rcu-test", 1, move || {
            let _guard = read_lock();
            inside.store(true, Ordering::SeqCst);
            while !release.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
        })?
    };
    while !inside.load(Ordering::SeqCst) {
        uksched::yield_now();
    }
    let gps = crate::grace_periods();
    let arrived = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (arrived, done) = (Arc::clone(&arrived), Arc::clone(&done));
            pinned("rcu-test", 0, move || {
                arrived.fetch_add(1, Ordering::SeqCst);
                synchronize();
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect::<Result<_, _>>()?;
    while arrived.load(Ordering::SeqCst) < CALLERS {
        uksched::sleep(Duration::from_millis(1));
    }
    // Let the last of them reach its wait.
    uksched::sleep(Duration::from_millis(5));
    let early = done.load(Ordering::SeqCst);
    release.store(true, Ordering::SeqCst);
    reader.join();
    for t in threads {
        t.join();
    }
    ut_assert_eq!(early, 0, "callers returned while the reader held its section");
    ut_assert_eq!(done.load(Ordering::SeqCst), CALLERS);
    let used = crate::grace_periods() - gps;
    ut_assert!((1..=2).contains(&used), "{} callers used {} grace periods", CALLERS, used);
    Ok(())
}
test_case!(concurrent_callers_share_grace_periods);

/// A thread that only yields, alone on its CPU (so no yield switches),
/// still passes quiescent states: every pass through the scheduler counts.
/// Under `coop` nothing else would end a grace period there.
fn a_thread_that_only_yields_passes_quiescent_states() -> TestResult {
    uktest::require_cpus(2, "a yielding thread alone on another CPU")?;
    let _here = OnCpu0::pin()?;
    let gp = crate::gp_thread().expect("ukrcu started its thread");
    gp.set_affinity(uksched::CpuSet::single(0)).or_fail()?;
    let stop = Arc::new(AtomicBool::new(false));
    let yields = Arc::new(AtomicU64::new(0));
    let yielder = {
        let (stop, yields) = (Arc::clone(&stop), Arc::clone(&yields));
        pinned("yielder", 1, move || {
            while !stop.load(Ordering::Relaxed) {
                uksched::yield_now();
                yields.fetch_add(1, Ordering::Relaxed);
            }
        })?
    };
    // Yielding already (CPU 1 is not idle, which would be quiescent).
    while yields.load(Ordering::Relaxed) == 0 {
        uksched::sleep(Duration::from_micros(100));
    }
    let done = Arc::new(AtomicBool::new(false));
    let waiter = {
        let done = Arc::clone(&done);
        pinned("rcu-test", 0, move || {
            for _ in 0..3 {
                synchronize();
            }
            done.store(true, Ordering::SeqCst);
        })?
    };
    let deadline = uktime::now() + Duration::from_secs(2);
    while !done.load(Ordering::SeqCst) && uktime::now() < deadline {
        uksched::sleep(Duration::from_millis(1));
    }
    let finished = done.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    yielder.join();
    let yields = yields.load(Ordering::Relaxed);
    if finished {
        waiter.join();
    } else {
        waiter.detach();
    }
    let _ = gp.set_affinity(uksched::CpuSet::all());
    ut_assert!(
        finished,
        "3 grace periods did not end within 2 s beside a thread that yields {} times",
        yields
    );
    Ok(())
}
test_case!(a_thread_that_only_yields_passes_quiescent_states);

/// `refcount`: an unlinked value that a reader holds is freed by the
/// reader's guard when it drops, not before and not later; with no reader
/// it is freed where the `Retired` drops, with no grace period.
fn refcount_the_last_reference_frees() -> TestResult {
    if crate::flavor() != "refcount" {
        uktest::ut_skip!("qsbr frees after a grace period, not on the last reference");
    }
    let freed = Arc::new(AtomicBool::new(false));
    let cell = RcuCell::new(Box::new(Tracked(Arc::clone(&freed))));
    let guard = read_lock();
    let seen = cell.load(&guard).map(|t| Arc::clone(&t.0));
    let old = cell.replace(None).expect("a value");
    ut_assert!(!old.grace_period_done(), "a reader holds it");
    let gps = crate::grace_periods();
    drop(old);
    ut_assert!(!freed.load(Ordering::SeqCst), "freed under a reader");
    ut_assert!(seen.is_some_and(|f| !f.load(Ordering::SeqCst)));
    drop(guard);
    ut_assert!(freed.load(Ordering::SeqCst), "not freed by the last reader's guard");
    // No reader: freed at once, no grace period needed.
    let freed = Arc::new(AtomicBool::new(false));
    cell.store(Some(Box::new(Tracked(Arc::clone(&freed)))));
    let old = cell.replace(None).expect("a value");
    ut_assert!(old.grace_period_done());
    drop(old);
    ut_assert!(freed.load(Ordering::SeqCst), "not freed with no reader");
    ut_assert_eq!(crate::grace_periods(), gps, "a grace period was used");
    Ok(())
}
test_case!(refcount_the_last_reference_frees);

/// `refcount`: a reader may sleep inside its section (on any CPU, and be
/// preempted or moved meanwhile); what it loaded stays valid, and
/// `synchronize` waits for it.
fn refcount_readers_may_sleep() -> TestResult {
    if crate::flavor() != "refcount" {
        uktest::ut_skip!("qsbr readers must not sleep (debug builds report it)");
    }
    let freed = Arc::new(AtomicBool::new(false));
    let cell = Arc::new(RcuCell::new(Box::new(Tracked(Arc::clone(&freed)))));
    let inside = Arc::new(AtomicBool::new(false));
    let reader = {
        let (cell, inside) = (Arc::clone(&cell), Arc::clone(&inside));
        uksched::Builder::new()
            .name("rcu-sleeper")
            .spawn(move || {
                let guard = read_lock();
                let seen = cell.load(&guard).map(|t| Arc::clone(&t.0));
                inside.store(true, Ordering::SeqCst);
                uksched::sleep(Duration::from_millis(30));
                let freed_under_us = seen.is_some_and(|f| f.load(Ordering::SeqCst));
                drop(guard);
                freed_under_us
            })
            .or_fail()?
    };
    while !inside.load(Ordering::SeqCst) {
        uksched::sleep(Duration::from_micros(100));
    }
    let old = cell.replace(None).expect("a value");
    let start = uktime::now();
    synchronize();
    let waited = start.elapsed();
    ut_assert!(!reader.join(), "freed under a sleeping reader");
    ut_assert!(
        waited >= Duration::from_millis(10),
        "synchronize returned after {:?} under a sleeping reader",
        waited
    );
    ut_assert!(old.grace_period_done());
    drop(old);
    ut_assert!(freed.load(Ordering::SeqCst));
    Ok(())
}
test_case!(refcount_readers_may_sleep);
