//! Read-side critical sections.

use core::marker::PhantomData;
#[cfg(debug_assertions)]
use core::sync::atomic::{AtomicU32, Ordering};

/// Whether a read-side critical section disables preemption: under
/// `uksched.policy = "preempt"` that is what keeps the scheduler — the
/// source of quiescent states — away; under `coop` nothing preempts a
/// thread, so release builds do nothing at all. Debug builds disable it
/// under both, so that blocking or yielding inside a section is reported
/// by the scheduler (see [`explain`]).
const DISABLES_PREEMPTION: bool =
    matches!(ukconfig::uksched::POLICY, ukconfig::uksched::Policy::Preempt) || cfg!(debug_assertions);

#[cfg(debug_assertions)]
ukplat::per_cpu! {
    /// Read-side sections open on each CPU (debug builds).
    static DEPTH: AtomicU32 = AtomicU32::new(0);
}

/// An open read-side critical section ([`read_lock`]). References loaded
/// under it ([`crate::RcuCell::load`]) cannot outlive it. Not `Send`: the
/// section belongs to the CPU and thread that opened it.
#[must_use = "the read-side critical section ends when the guard is dropped"]
pub struct ReadGuard {
    _not_send: PhantomData<*const ()>,
}

/// Opens a read-side critical section (`rcu_read_lock`): data published
/// with [`crate::RcuCell`] and loaded under the returned guard stays valid
/// until the guard is dropped (`rcu_read_unlock`). Sections nest. The
/// cost: a preemption-counter increment and decrement under `preempt`,
/// nothing under `coop` (release builds).
///
/// Inside a section do not block, sleep or yield (debug builds panic,
/// naming the section), and do not call [`crate::synchronize`] or
/// [`crate::barrier`] (they would wait for the section itself).
///
/// ```no_run
/// static CONFIG: ukrcu::RcuCell<u32> = ukrcu::RcuCell::null();
/// let guard = ukrcu::read_lock();
/// let value = CONFIG.load(&guard).copied();
/// drop(guard);
/// # let _ = value;
/// ```
#[inline(always)]
pub fn read_lock() -> ReadGuard {
    if DISABLES_PREEMPTION {
        ukplat::cpu::preempt_disable();
    }
    #[cfg(debug_assertions)]
    DEPTH.get().fetch_add(1, Ordering::Relaxed);
    ReadGuard { _not_send: PhantomData }
}

impl Drop for ReadGuard {
    // Always inlined: an out-of-line call would cost more than the section.
    #[inline(always)]
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        DEPTH.get().fetch_sub(1, Ordering::Relaxed);
        if DISABLES_PREEMPTION {
            ukplat::cpu::preempt_enable();
        }
    }
}

/// Read-side sections open on this CPU (debug builds; 0 in release builds).
pub fn depth() -> u32 {
    #[cfg(debug_assertions)]
    {
        DEPTH.get().load(Ordering::Relaxed)
    }
    #[cfg(not(debug_assertions))]
    0
}

/// Panics when `what` (a blocking call) is made inside a read-side
/// section on this CPU (debug builds).
#[track_caller]
pub(crate) fn assert_not_reading(what: &str) {
    if cfg!(debug_assertions) && depth() != 0 {
        panic!(
            "ukrcu: {what}() inside an RCU read-side critical section (ukrcu::read_lock) would wait for itself"
        );
    }
}

/// The scheduler's hook before it panics on a thread that tried to block
/// or yield where it must not: says so when a read-side section is open
/// (Linux: "voluntary context switch within RCU read-side critical
/// section").
fn explain(_cpu: ukplat::cpu::CpuIndex) {
    let depth = depth();
    if depth != 0 {
        ukconsole::println!(
            "ukrcu: a thread blocks, sleeps or yields inside {depth} RCU read-side critical section(s) (ukrcu::read_lock)"
        );
    }
}

fn init() {
    uksched::hooks::on_schedule_bug(explain).expect("ukrcu: a free uksched hook slot");
}

ukboot::init!(ukboot::priority::LIBRARY + 1, init);
