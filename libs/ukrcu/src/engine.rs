//! The grace-period engine, shared by both flavours: the grace-period
//! thread, the per-CPU callback queues, `synchronize`, `call_rcu`,
//! `barrier`, and the pacing of a grace period (forcing, stall reports);
//! the flavour says which readers a grace period waits for. See the crate
//! documentation for the design.

use crate::flavor;
use crate::gp::{self, GpSeq};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use ukplat::cpu;
use uksched::WaitQueue;

/// The grace-period sequence.
pub(crate) static GP: GpSeq = GpSeq::new();
/// Where `synchronize` callers wait.
static GP_DONE: WaitQueue = WaitQueue::new();
/// Where the grace-period thread waits for work.
static GP_WANTED: WaitQueue = WaitQueue::new();
/// Where `barrier` callers wait.
static BARRIER_DONE: WaitQueue = WaitQueue::new();
/// The highest snapshot anyone asked to expedite.
static EXPEDITE: AtomicU64 = AtomicU64::new(0);

/// A callback and the snapshot it waits for.
struct Callback {
    snap: u64,
    func: Box<dyn FnOnce() + Send>,
}

ukplat::per_cpu! {
    /// Callbacks queued on each CPU, oldest first.
    static CALLBACKS: ukspin::SpinLockIrq<VecDeque<Callback>> = ukspin::SpinLockIrq::new(VecDeque::new());
}

ukplat::per_cpu! {
    /// Callbacks taken off each CPU's queue that are running now (set
    /// under the queue's lock): `barrier` must wait for them too.
    static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
}

/// Counters behind [`crate::stats`].
pub(crate) struct Counters {
    pub(crate) expedited: AtomicU64,
    pub(crate) forced: AtomicU64,
    pub(crate) stalls: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) invoked: AtomicU64,
}

pub(crate) static COUNTERS: Counters = Counters {
    expedited: AtomicU64::new(0),
    forced: AtomicU64::new(0),
    stalls: AtomicU64::new(0),
    queued: AtomicU64::new(0),
    invoked: AtomicU64::new(0),
};

const BROKEN: bool = ukconfig::ukrcu::BROKEN_GRACE_PERIODS;
const FORCE_AFTER: Duration = Duration::from_micros(ukconfig::ukrcu::FORCE_AFTER_US as u64);
const STALL_AFTER: Duration = Duration::from_millis(ukconfig::ukrcu::STALL_TIMEOUT_MS as u64);
/// Rescans of the CPUs right after a yield, before the engine sleeps
/// between scans.
const QUICK_SCANS: u32 = 4;
/// Longest pause between two scans of the CPUs in a normal grace period.
const MAX_PAUSE: Duration = Duration::from_millis(1);

/// Asks for the grace period `snap` names, waking the grace-period thread
/// when it may be asleep.
fn request(snap: u64) {
    if GP.request(snap) {
        GP_WANTED.wake_one();
    }
}

/// `synchronize` and `synchronize_expedited`.
pub(crate) fn synchronize(expedited: bool) {
    crate::read::assert_not_reading("synchronize");
    let snap = GP.snap();
    if expedited {
        EXPEDITE.fetch_max(snap, Ordering::SeqCst);
        COUNTERS.expedited.fetch_add(1, Ordering::Relaxed);
    }
    request(snap);
    GP_DONE.wait_until(|| GP.done(snap));
}

/// `call_rcu`.
pub(crate) fn call(func: Box<dyn FnOnce() + Send>) {
    let snap = {
        let mut queue = CALLBACKS.get().lock();
        // Under the lock, so each queue's snapshots never decrease.
        let snap = GP.snap();
        queue.push_back(Callback { snap, func });
        snap
    };
    COUNTERS.queued.fetch_add(1, Ordering::Relaxed);
    request(snap);
}

/// `barrier`: a marker callback at the tail of every CPU's queue that
/// holds callbacks or is running one; each queue runs in order, so when
/// every marker ran, every callback queued before them did.
pub(crate) fn barrier() {
    crate::read::assert_not_reading("barrier");
    let pending = Arc::new(AtomicUsize::new(1));
    let mut newest = None;
    for c in 0..cpu::count() {
        let mut queue = CALLBACKS.get_for(c).lock();
        if queue.is_empty() && IN_FLIGHT.get_for(c).load(Ordering::SeqCst) == 0 {
            continue;
        }
        pending.fetch_add(1, Ordering::SeqCst);
        let marker = Arc::clone(&pending);
        let snap = GP.snap();
        queue.push_back(Callback {
            snap,
            func: Box::new(move || {
                if marker.fetch_sub(1, Ordering::SeqCst) == 1 {
                    BARRIER_DONE.wake_all();
                }
            }),
        });
        newest = Some(snap);
    }
    if let Some(snap) = newest {
        request(snap);
    }
    pending.fetch_sub(1, Ordering::SeqCst);
    BARRIER_DONE.wait_until(|| pending.load(Ordering::SeqCst) == 0);
}

/// One grace period, start to end: the flavour's [`flavor::Readers`] say
/// when the readers it waits for are done; the pacing, forcing and stall
/// reports are the same for both.
fn grace_period() {
    GP.start();
    if BROKEN {
        // TEST ONLY (`ukrcu.broken_grace_periods`): wait for nobody.
        GP.end();
        return;
    }
    let mut readers = flavor::Readers::start();
    let started = uktime::now();
    let mut next_force = started + FORCE_AFTER;
    let mut next_stall = started + STALL_AFTER;
    let mut forced_now = false;
    let mut pause = Duration::from_micros(10);
    let mut scans = 0u32;
    while !readers.done() {
        scans += 1;
        let now = uktime::now();
        // Somebody waits for this grace period expedited: force at once.
        let expedite = EXPEDITE.load(Ordering::SeqCst) > GP.seq();
        if (expedite && !forced_now) || now >= next_force {
            readers.force();
            forced_now = true;
            next_force = now + FORCE_AFTER;
        }
        if now >= next_stall {
            COUNTERS.stalls.fetch_add(1, Ordering::Relaxed);
            readers.report_stall(gp::completed(GP.seq()) + 1, started.elapsed());
            next_stall = now + STALL_AFTER;
        }
        // The first rescans come right after a yield: a CPU that was about
        // to block or go idle (a `synchronize` caller, typically) has done
        // so by then. Later ones sleep, 10 us doubling to 1 ms.
        if expedite || scans <= QUICK_SCANS {
            uksched::yield_now();
        } else {
            uksched::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
    GP.end();
}

/// Runs the callbacks whose grace period has ended, each CPU's in order.
fn invoke_callbacks() {
    let seq = GP.seq();
    for c in 0..cpu::count() {
        loop {
            let ready = {
                let mut queue = CALLBACKS.get_for(c).lock();
                match queue.front() {
                    Some(cb) if gp::done(seq, cb.snap) => {
                        IN_FLIGHT.get_for(c).fetch_add(1, Ordering::SeqCst);
                        queue.pop_front()
                    }
                    _ => None,
                }
            };
            let Some(cb) = ready else { break };
            (cb.func)();
            IN_FLIGHT.get_for(c).fetch_sub(1, Ordering::SeqCst);
            COUNTERS.invoked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The grace-period thread (`rcu_gp`): waits for a request, runs a grace
/// period, wakes its waiters, runs the callbacks it made ready.
fn gp_thread() {
    loop {
        GP_WANTED.wait_until(|| GP.needed());
        // Batching: woken by the first request, let its sender go on (under
        // `preempt` the wake-up may have preempted it on this CPU), so that
        // the requests it makes next — a `call_rcu` loop — share this grace
        // period instead of each starting one. Not when someone waits
        // expedited.
        if EXPEDITE.load(Ordering::SeqCst) <= GP.seq() {
            uksched::yield_now();
        }
        grace_period();
        GP_DONE.wake_all();
        invoke_callbacks();
    }
}

/// The grace-period thread's handle, set at init.
static GP_THREAD: ukplat::once::Once<uksched::Thread> = ukplat::once::Once::new();

/// The grace-period thread (`rcu_gp`), to pin it or read its statistics.
pub(crate) fn gp_thread_handle() -> Option<uksched::Thread> {
    GP_THREAD.get().cloned()
}

fn init() {
    let handle = uksched::Builder::new()
        .name("rcu_gp")
        .spawn(gp_thread)
        .expect("ukrcu: cannot start the grace-period thread");
    GP_THREAD.call_once(|| handle.thread().clone());
    handle.detach();
}

// After uksched's own init (LIBRARY), which starts the scheduler.
ukboot::init!(ukboot::priority::LIBRARY + 1, init);
