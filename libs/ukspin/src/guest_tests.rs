//! In-guest tests of the spinlocks on the CPU running the tests (feature
//! `uktest`). They hold for any `platform.cpus`: with one CPU the locks run
//! in one-CPU mode, otherwise the real algorithms run, uncontended. The
//! multi-CPU stress tests live in the SMP test app.

use crate::{
    IrqSave, KIND, McsLock, RawMcsLock, RawRwSpinLock, RawSpinLock, RawTasLock, RawTicketLock, RwSpinLock,
    RwSpinLockIrq, SINGLE_CPU, SpinLock, SpinLockIrq, TasLock, TicketLock, irq,
};
use lock_api::RawMutex;
use ukplat::cpu::preempt_count;
use uktest::{TestResult, test_case, ut_assert, ut_assert_eq};

/// lock / try_lock / unlock of one raw mutex kind, with the preemption
/// counter raised by exactly one while held.
fn raw_mutex_semantics<R: RawMutex>() -> TestResult {
    let raw = R::INIT;
    let base = preempt_count();
    ut_assert!(!raw.is_locked());
    raw.lock();
    ut_assert!(raw.is_locked());
    ut_assert_eq!(preempt_count(), base + 1, "preemption disabled while held");
    ut_assert!(!raw.try_lock(), "try_lock of a held lock");
    ut_assert_eq!(preempt_count(), base + 1, "a failed try_lock leaves the counter");
    // SAFETY: held by this CPU.
    unsafe { raw.unlock() };
    ut_assert!(!raw.is_locked());
    ut_assert_eq!(preempt_count(), base, "restored after unlock");
    ut_assert!(raw.try_lock(), "try_lock of a free lock");
    ut_assert_eq!(preempt_count(), base + 1);
    // SAFETY: held by this CPU.
    unsafe { raw.unlock() };
    ut_assert_eq!(preempt_count(), base);
    Ok(())
}

fn tas_lock_unlock_try_lock() -> TestResult {
    raw_mutex_semantics::<RawTasLock>()?;
    let lock = TasLock::new(1u32);
    *lock.lock() += 1;
    ut_assert_eq!(lock.try_lock().map(|v| *v), Some(2));
    Ok(())
}
test_case!(tas_lock_unlock_try_lock);

fn ticket_lock_unlock_try_lock() -> TestResult {
    raw_mutex_semantics::<RawTicketLock>()?;
    let lock = TicketLock::new(1u32);
    *lock.lock() += 1;
    ut_assert_eq!(lock.try_lock().map(|v| *v), Some(2));
    Ok(())
}
test_case!(ticket_lock_unlock_try_lock);

fn mcs_lock_unlock_try_lock() -> TestResult {
    raw_mutex_semantics::<RawMcsLock>()?;
    let cpu = ukplat::cpu::this_cpu();
    let (a, b) = (McsLock::new(1u32), McsLock::new(2u32));
    {
        // Two MCS locks held at once on this CPU: two nodes of its pool
        // (none in one-CPU mode, which needs no queue).
        let (ga, gb) = (a.lock(), b.lock());
        let nodes = if SINGLE_CPU { 0 } else { 2 };
        ut_assert_eq!(RawMcsLock::nodes_in_use(cpu), nodes);
        ut_assert_eq!(*ga + *gb, 3);
        drop(ga); // out of order
        ut_assert!(a.try_lock().is_some());
    }
    ut_assert_eq!(RawMcsLock::nodes_in_use(cpu), 0);
    Ok(())
}
test_case!(mcs_lock_unlock_try_lock);

fn configured_kind_is_linked() -> TestResult {
    raw_mutex_semantics::<RawSpinLock>()?;
    let name = core::any::type_name::<RawSpinLock>();
    let expected = match ukconfig::ukspin::KIND {
        ukconfig::ukspin::Kind::Tas => "ukspin::tas::RawTasLock",
        ukconfig::ukspin::Kind::Ticket => "ukspin::ticket::RawTicketLock",
        ukconfig::ukspin::Kind::Mcs => "ukspin::mcs::RawMcsLock",
    };
    ut_assert_eq!(name, expected);
    ut_assert_eq!(crate::select::name_of::<RawSpinLock>(), Some(KIND.as_str()));
    ut_assert_eq!(crate::select::configured_name(), KIND.as_str());
    static COUNTER: SpinLock<u64> = SpinLock::new(0);
    *COUNTER.lock() += 1;
    ut_assert_eq!(*COUNTER.lock(), 1);
    Ok(())
}
test_case!(configured_kind_is_linked);

/// One-CPU mode (locks reduced to preemption control, no MCS queue) is
/// sound only while a single CPU runs, and the real algorithms must run
/// whenever more do. What the MCS lock does while held — take a node from
/// this CPU's pool, or none — must match the CPUs the platform started.
fn one_cpu_mode_runs_exactly_when_one_cpu_runs() -> TestResult {
    let running = ukplat::cpu::count();
    let lock = McsLock::new(());
    let nodes = {
        let _held = lock.lock();
        RawMcsLock::nodes_in_use(ukplat::cpu::this_cpu())
    };
    ut_assert_eq!(
        nodes == 0,
        running == 1,
        "{} CPU(s) run, and a held MCS lock takes {} node(s) of its CPU's pool",
        running,
        nodes
    );
    Ok(())
}
test_case!(one_cpu_mode_runs_exactly_when_one_cpu_runs);

fn rwlock_readers_share_writers_exclude() -> TestResult {
    let base = preempt_count();
    let lock = RwSpinLock::new(5u32);
    {
        let (r1, r2) = (lock.read(), lock.read());
        ut_assert_eq!(*r1 + *r2, 10, "two read guards at once");
        ut_assert_eq!(preempt_count(), base + 2);
        ut_assert!(lock.try_write().is_none(), "try_write while readers hold it");
        ut_assert_eq!(preempt_count(), base + 2);
    }
    ut_assert_eq!(preempt_count(), base);
    {
        let mut w = lock.write();
        *w = 6;
        ut_assert_eq!(preempt_count(), base + 1);
        ut_assert!(lock.try_read().is_none(), "try_read while a writer holds it");
        ut_assert!(lock.try_write().is_none());
    }
    ut_assert_eq!(*lock.read(), 6);
    let raw = RawRwSpinLock::new();
    raw.lock_exclusive();
    // SAFETY: write-locked just above.
    unsafe { raw.downgrade() };
    ut_assert!(raw.try_lock_shared(), "shared after a downgrade");
    // SAFETY: two shared holds.
    unsafe {
        raw.unlock_shared();
        raw.unlock_shared();
    }
    ut_assert!(!raw.is_locked());
    ut_assert_eq!(preempt_count(), base);
    Ok(())
}
test_case!(rwlock_readers_share_writers_exclude);

/// Runs `f` with interrupts enabled (`on`) or disabled before it, and puts
/// the previous state back.
fn with_interrupts(on: bool, f: impl FnOnce() -> TestResult) -> TestResult {
    let was = ukplat::irq::enabled();
    if on {
        ukplat::irq::enable();
    } else {
        ukplat::irq::disable();
    }
    let result = f();
    if was {
        ukplat::irq::enable();
    } else {
        ukplat::irq::disable();
    }
    result
}

fn irqsave_disables_and_restores_enabled() -> TestResult {
    static SHARED: SpinLockIrq<u32> = SpinLockIrq::new(0);
    with_interrupts(true, || {
        let base = preempt_count();
        {
            let mut g = SHARED.lock();
            *g += 1;
            ut_assert!(!ukplat::irq::enabled(), "interrupts off while held");
            ut_assert_eq!(preempt_count(), base + 1);
        }
        ut_assert!(ukplat::irq::enabled(), "interrupts back on after release");
        ut_assert_eq!(preempt_count(), base);
        // Nested, released out of order: on again only after the last.
        let other = lock_api::Mutex::<IrqSave<RawMcsLock>, ()>::new(());
        let (ga, gb) = (SHARED.lock(), other.lock());
        ut_assert_eq!(irq::depth(), 2);
        drop(ga);
        ut_assert!(!ukplat::irq::enabled(), "still off: one irqsave lock held");
        drop(gb);
        ut_assert!(ukplat::irq::enabled());
        ut_assert_eq!(irq::depth(), 0);
        // A failed try_lock restores at once.
        let g = SHARED.lock();
        ut_assert!(SHARED.try_lock().is_none());
        ut_assert!(!ukplat::irq::enabled());
        drop(g);
        ut_assert!(ukplat::irq::enabled());
        Ok(())
    })
}
test_case!(irqsave_disables_and_restores_enabled);

fn irqsave_keeps_disabled_disabled() -> TestResult {
    static SHARED: SpinLockIrq<u32> = SpinLockIrq::new(0);
    with_interrupts(false, || {
        {
            let _g = SHARED.lock();
            ut_assert!(!ukplat::irq::enabled());
        }
        ut_assert!(!ukplat::irq::enabled(), "were disabled before: stay disabled");
        Ok(())
    })
}
test_case!(irqsave_keeps_disabled_disabled);

fn irqsave_rwlock() -> TestResult {
    static TABLE: RwSpinLockIrq<[u8; 2]> = RwSpinLockIrq::new([0; 2]);
    with_interrupts(true, || {
        {
            let (r1, r2) = (TABLE.read(), TABLE.read());
            ut_assert!(!ukplat::irq::enabled());
            ut_assert!(TABLE.try_write().is_none());
            drop(r1);
            ut_assert!(!ukplat::irq::enabled(), "a reader still holds it");
            drop(r2);
        }
        ut_assert!(ukplat::irq::enabled());
        TABLE.write()[1] = 3;
        ut_assert!(ukplat::irq::enabled());
        ut_assert_eq!(TABLE.read()[1], 3);
        Ok(())
    })?;
    with_interrupts(false, || {
        drop(TABLE.write());
        drop(TABLE.read());
        ut_assert!(!ukplat::irq::enabled());
        Ok(())
    })
}
test_case!(irqsave_rwlock);
