//! Spinlock stress on every CPU at once (`ukspin`): exact counts for every
//! kind, the irqsave variants against a real interrupt handler on the same
//! CPUs, and the reader-writer lock's readers never seeing half a write.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use lock_api::{Mutex, RawMutex};
use ukspin::{RawMcsLock, RawSpinLockIrq, RawTasLock, RawTicketLock, RwSpinLock};
use uktest::{TestResult, ut_assert_eq};

/// Increments per CPU (M of N·M), and the bound on a test's time.
///
/// Every increment is a hand-off between CPUs, and under TCG with more vCPUs
/// than host cores a hand-off to a vCPU the host has descheduled waits for a
/// host time slice (measured here: ~0.85 ms with 4 vCPUs on 2 cores; TCG has
/// no pause-loop exiting to give the core to the waiter). FIFO locks (ticket,
/// MCS) pay that on nearly every hand-off, and how often depends on the
/// host's scheduling. So each CPU does M increments unless [`BUDGET`] runs
/// out first — then it stops after at least [`MIN_INCREMENTS`] — and reports
/// how many it did: the count must equal their sum exactly (N·M when nobody
/// ran out, as on an unloaded host). Mutual exclusion is checked just as
/// hard either way: every increment is a read–pause–write inside the lock,
/// with all CPUs started together.
fn increments() -> u64 {
    match ukarch::cpu::hypervisor() {
        // kvm_pvm emulates every instruction.
        ukarch::cpu::Hypervisor::Kvm => 500,
        _ => 2_000,
    }
}

/// Increments every CPU does even past the budget.
const MIN_INCREMENTS: u64 = 32;
/// Time after which a CPU stops at its next increment past the minimum.
const BUDGET: core::time::Duration = core::time::Duration::from_millis(400);

/// Runs `increment` on this CPU up to M times, within the budget from
/// `start`; returns how many ran.
fn bounded(start: uktime::Instant, mut increment: impl FnMut()) -> u64 {
    let m = increments();
    let deadline = start + BUDGET;
    let mut done = 0;
    while done < m && (done < MIN_INCREMENTS || uktime::now() < deadline) {
        increment();
        done += 1;
    }
    done
}

/// Waits until every CPU of the call arrived, so they all contend.
fn start_together(arrived: &AtomicUsize, n: usize) {
    arrived.fetch_add(1, Ordering::AcqRel);
    while arrived.load(Ordering::Acquire) < n {
        ukarch::barrier::spin_hint();
    }
}

/// N CPUs × M increments of a counter under `lock`, each increment a
/// non-atomic read, pause, write: a lock that lets two CPUs in loses
/// updates (see [`increments`] for M).
fn exact_count<R: RawMutex + Sync>(lock: &Mutex<R, u64>) -> TestResult {
    uktest::require_cpus(2, "CPUs contending for the lock")?;
    let n = uksmp::cpu_count();
    *lock.lock() = 0;
    let arrived = AtomicUsize::new(0);
    let start = uktime::now();
    let done = uksmp::run_on_all(|_| {
        start_together(&arrived, n);
        bounded(start, || {
            let mut count = lock.lock();
            let seen = *count;
            ukarch::barrier::spin_hint();
            *count = seen + 1;
        })
    });
    ut_assert_eq!(*lock.lock(), done.iter().sum::<u64>(), "increments per CPU: {:?}", done);
    Ok(())
}

fn tas_lock_counts_exactly_on_every_cpu() -> TestResult {
    static LOCK: Mutex<RawTasLock, u64> = Mutex::new(0);
    exact_count(&LOCK)
}
uktest::test_case!(tas_lock_counts_exactly_on_every_cpu);

fn ticket_lock_counts_exactly_on_every_cpu() -> TestResult {
    static LOCK: Mutex<RawTicketLock, u64> = Mutex::new(0);
    exact_count(&LOCK)
}
uktest::test_case!(ticket_lock_counts_exactly_on_every_cpu);

fn mcs_lock_counts_exactly_on_every_cpu() -> TestResult {
    static LOCK: Mutex<RawMcsLock, u64> = Mutex::new(0);
    exact_count(&LOCK)
}
uktest::test_case!(mcs_lock_counts_exactly_on_every_cpu);

fn irqsave_locks_count_exactly_on_every_cpu() -> TestResult {
    static TAS: Mutex<ukspin::IrqSave<RawTasLock>, u64> = Mutex::new(0);
    static TICKET: Mutex<ukspin::IrqSave<RawTicketLock>, u64> = Mutex::new(0);
    static MCS: Mutex<ukspin::IrqSave<RawMcsLock>, u64> = Mutex::new(0);
    exact_count(&TAS)?;
    exact_count(&TICKET)?;
    exact_count(&MCS)
}
uktest::test_case!(irqsave_locks_count_exactly_on_every_cpu);

/// Shared by every CPU's timer handler and the code it interrupts. TAS
/// underneath: what is tested is the irqsave protocol against a real
/// handler, the same for every kind (`IrqSave<R>`); the FIFO kinds' own
/// checks are the exact counts above. With FIFO hand-offs of ~1 ms under an
/// oversubscribed TCG (8 vCPUs on 2 cores) the handlers of 8 CPUs would
/// need more hand-offs per second than the lock can make.
static SHARED: Mutex<ukspin::IrqSave<RawTasLock>, u64> = Mutex::new(0);
static HANDLER_INCREMENTS: AtomicU64 = AtomicU64::new(0);

fn tick_takes_the_lock(_now_ns: u64) {
    *SHARED.lock() += 1;
    HANDLER_INCREMENTS.fetch_add(1, Ordering::Relaxed);
}

/// Every CPU increments a counter under an irqsave lock with interrupts
/// enabled while its own periodic timer interrupt (200 Hz) increments the
/// same counter under the same lock: the irqsave lock keeps the handler out
/// while its CPU holds the lock (a plain spinlock would deadlock there),
/// and no increment is lost.
fn irqsave_lock_is_shared_with_interrupt_handlers() -> TestResult {
    let n = uksmp::cpu_count();
    *SHARED.lock() = 0;
    HANDLER_INCREMENTS.store(0, Ordering::Relaxed);
    uktime::timer::set_handler(tick_takes_the_lock);
    let arrived = AtomicUsize::new(0);
    let start = uktime::now();
    let per_cpu: Vec<(u64, u64)> = uksmp::run_on_all(|_| {
        start_together(&arrived, n);
        let fired = uktime::timer::fired_on(ukplat::cpu::this_cpu());
        let started = uktime::timer::start_periodic(200).is_ok();
        // A cross-CPU call runs with interrupts disabled: open them.
        ukplat::irq::enable();
        let done = bounded(start, || {
            let mut count = SHARED.lock();
            let seen = *count;
            ukarch::barrier::spin_hint();
            *count = seen + 1;
        });
        ukplat::irq::disable();
        uktime::timer::disarm();
        let ticks = if started { uktime::timer::fired_on(ukplat::cpu::this_cpu()) - fired } else { u64::MAX };
        (done, ticks)
    });
    ut_assert_eq!(
        per_cpu.iter().filter(|&&(_, t)| t == u64::MAX).count(),
        0,
        "a periodic timer did not start"
    );
    let handled = HANDLER_INCREMENTS.load(Ordering::Relaxed);
    ut_assert_eq!(handled, per_cpu.iter().map(|&(_, t)| t).sum::<u64>(), "handler calls vs timer events");
    let done: u64 = per_cpu.iter().map(|&(d, _)| d).sum();
    ut_assert_eq!(*SHARED.lock(), done + handled, "(increments, ticks) per CPU: {:?}", per_cpu);
    Ok(())
}
uktest::test_case!(irqsave_lock_is_shared_with_interrupt_handlers);

/// The configured kind behind `SpinLock` works like the explicit ones.
fn configured_spinlock_counts_exactly() -> TestResult {
    static LOCK: Mutex<ukspin::RawSpinLock, u64> = Mutex::new(0);
    static IRQ: Mutex<RawSpinLockIrq, u64> = Mutex::new(0);
    exact_count(&LOCK)?;
    exact_count(&IRQ)
}
uktest::test_case!(configured_spinlock_counts_exactly);

/// Two fields a writer changes one after the other.
struct Pair {
    a: u64,
    b: u64,
}

/// Every CPU both reads (checking `a == b`) and, one iteration in eight,
/// writes (`a += 1`, a pause, `b += 1`): readers must never see a half-done
/// write, and no write may be lost.
fn rwlock_readers_never_see_half_a_write() -> TestResult {
    static LOCK: RwSpinLock<Pair> = RwSpinLock::new(Pair { a: 0, b: 0 });
    uktest::require_cpus(2, "readers and writers on different CPUs")?;
    let n = uksmp::cpu_count();
    {
        let mut pair = LOCK.write();
        (pair.a, pair.b) = (0, 0);
    }
    let arrived = AtomicUsize::new(0);
    let start = uktime::now();
    let per_cpu: Vec<(u64, u64)> = uksmp::run_on_all(|_| {
        start_together(&arrived, n);
        let (mut i, mut writes, mut torn) = (0u64, 0u64, 0u64);
        bounded(start, || {
            if i % 8 == 0 {
                let mut pair = LOCK.write();
                pair.a += 1;
                ukarch::barrier::spin_hint();
                pair.b += 1;
                writes += 1;
            } else {
                let pair = LOCK.read();
                let a = pair.a;
                ukarch::barrier::spin_hint();
                if pair.b != a {
                    torn += 1;
                }
            }
            i += 1;
        });
        (writes, torn)
    });
    ut_assert_eq!(
        per_cpu.iter().map(|&(_, t)| t).sum::<u64>(),
        0,
        "(writes, torn reads) per CPU: {:?}",
        per_cpu
    );
    let writes: u64 = per_cpu.iter().map(|&(w, _)| w).sum();
    let pair = LOCK.read();
    ut_assert_eq!((pair.a, pair.b), (writes, writes));
    Ok(())
}
uktest::test_case!(rwlock_readers_never_see_half_a_write);
