//! # uksmp — cross-CPU calls and idle CPUs
//!
//! What it offers:
//!
//! * **cross-CPU function calls**, as Linux's `smp_call_function*`:
//!   [`run_on`] (one CPU, waits, returns the result), [`run_on_all`] (every
//!   CPU, waits, returns every CPU's result), [`run_on_nowait`] and
//!   [`run_on_all_nowait`] (queue and return at once);
//! * the **idle loop** of the secondary CPUs, which halts (`sti; hlt`)
//!   until an interrupt, and [`wake`], which ends a CPU's halt with an IPI
//!   ([`is_idle`] tells whether it is halted, [`wakeups`] counts how often
//!   it woke); [`kick`] interrupts a CPU whether idle or not;
//! * for a scheduler: [`idle_halt`], one step of an idle loop that pairs
//!   with [`wake`] (no lost wake-up), and [`set_idle_takeover`], which turns
//!   the secondary CPUs' idle loops into the scheduler's idle threads;
//! * the release of the parked secondary CPUs at boot (init level
//!   `ukboot::priority::SMP`): after it every CPU is [`online`].
//!
//! # How a call travels
//!
//! Every CPU has a call queue: a lock-free stack of intrusive call
//! descriptors, pushed by any CPU with one compare-and-swap and taken whole
//! by its owner with one swap (then reversed, so calls run in the order they
//! were queued). The caller pushes a descriptor and sends the call IPI only
//! when it found the queue empty — a non-empty queue already has an IPI on
//! its way — so a burst of calls to one CPU costs one interrupt. The IPI
//! handler drains the queue.
//!
//! A waiting call's descriptor lives on the caller's stack; the callee
//! signals completion with a release store and never touches the
//! descriptor again, so the caller may return at once. A non-waiting call's
//! descriptor is boxed and freed by the callee. While it waits, the caller
//! drains its own queue, so two CPUs calling each other with interrupts
//! disabled make progress instead of deadlocking.
//!
//! # Migration-safe
//!
//! Under a preemptive scheduler (`uksched.policy = "preempt"`) a thread may
//! be switched out, and moved to another CPU, at any preemption point. Every
//! call here is migration-safe: it disables preemption
//! (`ukplat::cpu::PreemptGuard`) *before* it reads which CPU it runs on,
//! and keeps it disabled until the part that depends on the answer is
//! over: the local call has run on that CPU, every other CPU was sent its
//! call and, for the waiting calls, every call has completed (the wait
//! drains the queue of the CPU that issued the calls, not of one the thread
//! moved to). Only `run_on_all`'s allocation of its descriptors and its
//! collection of the results happen with preemption enabled. (Otherwise a
//! thread moved after reading its CPU runs the local part on the wrong CPU,
//! and `run_on_all` queues a call for its new CPU behind a broadcast IPI
//! that leaves the sender out: that call runs only when a waiter drains
//! that CPU's queue, and until then later callers, finding the queue
//! non-empty, send that CPU no IPI either.)
//!
//! Waiting with preemption disabled is safe: the callee runs in interrupt
//! context and never needs the caller's CPU to schedule anything, and the
//! caller keeps interrupts as they were (enabled in a thread), so its CPU
//! still takes other CPUs' call IPIs while it waits. The other threads of
//! that CPU wait as long as the call does; a reschedule requested meanwhile
//! happens when it returns. What the *caller* read before the call may be
//! stale, as always: `run_on(this_cpu(), f)` from a preemptible thread runs
//! `f` on the CPU it named, which may no longer be the thread's.
//!
//! # Rules for the function
//!
//! It runs on the target CPU with interrupts disabled: in the call IPI's
//! handler, or drained from the queue by a caller that waits on that CPU
//! for a call of its own — or directly when the target is the calling CPU.
//! It must not block. A call that has not completed after `uksmp.call_timeout_ms`
//! panics, naming the CPU, instead of hanging the machine.
//!
//! **Needs:** `ukarch`, `ukplat` (CPUs, vectors, IPIs, the secondaries' release),
//! `ukboot` (init), `uktime` (the call timeout), `ukalloc`
//! (the non-waiting calls box their closure; `run_on_all` collects results
//! in a `Vec`).
//!
//! **Config options:** `call_timeout_ms`.
//!
//! ```no_run
//! // Every CPU reports its APIC id.
//! let ids = uksmp::run_on_all(|_cpu| ukplat::cpu::this_apic_id());
//! assert_eq!(ids.len(), uksmp::cpu_count());
//! // One CPU runs a closure and answers.
//! let doubled = uksmp::run_on(1, || 21 * 2);
//! assert_eq!(doubled, 42);
//! ```
#![cfg_attr(not(test), no_std)]

extern crate alloc;

#[cfg(feature = "uktest")]
mod guest_tests;

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use ukplat::cpu::{CpuIndex, PreemptGuard, this_cpu};
use ukplat::irq::{self, TrapFrame, vector};
use ukplat::slot::FnSlot;

/// The header of every call descriptor (the first field of [`Call`]).
#[repr(C)]
struct Header {
    /// Next descriptor in the target's queue.
    next: AtomicPtr<Header>,
    /// Runs the call: `run(header)` with the descriptor's own type.
    run: unsafe fn(*const Header),
}

/// A call descriptor: the header, the closure and its result.
#[repr(C)]
struct Call<F, R> {
    header: Header,
    func: UnsafeCell<Option<F>>,
    result: UnsafeCell<Option<R>>,
    done: AtomicBool,
    /// Boxed (non-waiting): the callee frees it.
    owned: bool,
}

impl<F: FnOnce() -> R, R> Call<F, R> {
    fn new(func: F, owned: bool) -> Self {
        Self {
            header: Header { next: AtomicPtr::new(core::ptr::null_mut()), run: Self::run },
            func: UnsafeCell::new(Some(func)),
            result: UnsafeCell::new(None),
            done: AtomicBool::new(false),
            owned,
        }
    }

    /// Runs the closure of the descriptor at `header`.
    ///
    /// # Safety
    /// `header` is the header of a live `Call<F, R>` that was queued once
    /// and is run once, by the CPU that dequeued it.
    unsafe fn run(header: *const Header) {
        let call = header.cast::<Self>();
        // SAFETY: `header` is the first field of a `#[repr(C)]` Call<F, R>
        // (caller contract); until `done` is set only this CPU touches
        // `func` and `result`.
        unsafe {
            let func = (*(*call).func.get()).take().expect("uksmp: a call ran twice");
            let result = func();
            if (*call).owned {
                // Nobody waits: free the box (the result is dropped).
                drop(Box::from_raw(call.cast_mut()));
            } else {
                *(*call).result.get() = Some(result);
                // After this store the caller may free the descriptor.
                (*call).done.store(true, Ordering::Release);
            }
        }
    }
}

/// A CPU's queue of pending calls.
struct Queue {
    head: AtomicPtr<Header>,
}

impl Queue {
    const fn new() -> Self {
        Self { head: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// Pushes `call`; returns whether the queue was empty (the pusher then
    /// sends the IPI).
    fn push(&self, call: *const Header) -> bool {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `call` is a live descriptor not yet in any queue; only
            // this pusher writes its `next` until the push succeeds.
            unsafe { (*call).next.store(head, Ordering::Relaxed) };
            match self.head.compare_exchange_weak(head, call.cast_mut(), Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return head.is_null(),
                Err(now) => head = now,
            }
        }
    }

    /// Takes every queued call and runs them, oldest first.
    fn drain(&self) -> usize {
        let mut list = self.head.swap(core::ptr::null_mut(), Ordering::Acquire);
        // The stack is newest first: reverse it.
        let mut oldest_first: *mut Header = core::ptr::null_mut();
        while !list.is_null() {
            // SAFETY: every node in the list is a live descriptor pushed by
            // `push` and owned by this CPU now that the list was swapped out.
            let next = unsafe { (*list).next.load(Ordering::Relaxed) };
            // SAFETY: as above.
            unsafe { (*list).next.store(oldest_first, Ordering::Relaxed) };
            oldest_first = list;
            list = next;
        }
        let mut ran = 0;
        while !oldest_first.is_null() {
            // Read `next` before running: a finished waiting call's memory
            // may be reused by its caller right away.
            // SAFETY: as above.
            let (next, run) = unsafe { ((*oldest_first).next.load(Ordering::Relaxed), (*oldest_first).run) };
            // SAFETY: the descriptor was queued once and is run once, here.
            unsafe { run(oldest_first) };
            ran += 1;
            oldest_first = next;
        }
        ran
    }
}

ukplat::per_cpu! {
    static QUEUE: Queue = Queue::new();
    static ONLINE: AtomicBool = AtomicBool::new(false);
    static IDLE: AtomicBool = AtomicBool::new(false);
    static WAKEUPS: AtomicU64 = AtomicU64::new(0);
    static CALLS_RUN: AtomicU64 = AtomicU64::new(0);
}

static ONLINE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// CPUs running (all of them come online at boot).
pub fn cpu_count() -> usize {
    ukplat::cpu::count()
}

/// Whether CPU `cpu` has reached its idle loop (or is the boot CPU).
pub fn online(cpu: CpuIndex) -> bool {
    cpu < ukplat::cpu::MAX_CPUS && ONLINE.get_for(cpu).load(Ordering::Acquire)
}

/// CPUs online.
pub fn online_count() -> usize {
    ONLINE_COUNT.load(Ordering::Acquire)
}

/// Calls run on CPU `cpu` through its queue since boot (by the call IPI's
/// handler, or by a caller on that CPU draining it while it waits).
pub fn calls_run(cpu: CpuIndex) -> u64 {
    CALLS_RUN.get_for(cpu).load(Ordering::Relaxed)
}

/// Runs the calls queued for this CPU. Call with interrupts disabled (so
/// the thread stays on this CPU, and a call IPI cannot start a second drain
/// that would run later calls before earlier ones).
fn drain_this_cpu() {
    let ran = QUEUE.get().drain();
    if ran > 0 {
        CALLS_RUN.get().fetch_add(ran as u64, Ordering::Relaxed);
    }
}

fn on_call_ipi(_frame: &mut TrapFrame) {
    irq::eoi();
    drain_this_cpu();
}

/// Queues `call` on `cpu` and sends the IPI when needed.
fn enqueue(cpu: CpuIndex, call: *const Header) {
    if QUEUE.get_for(cpu).push(call) {
        ukplat::ipi::send(cpu, vector::CALL);
    }
}

/// Waits for `done`, draining this CPU's own queue meanwhile; panics after
/// the configured timeout.
///
/// The caller keeps preemption disabled (`_stay`), so "this CPU" is the one
/// it queued its calls from for the whole wait. Interrupts stay as the
/// caller has them: enabled in a thread, so this CPU still takes the call
/// IPIs of others; the drain covers a caller with interrupts disabled (two
/// CPUs calling each other from interrupt context make progress instead of
/// deadlocking). Each drain runs with interrupts disabled, as every call
/// does.
fn wait(done: &AtomicBool, cpu: CpuIndex, _stay: &PreemptGuard) {
    let limit = Duration::from_millis(ukconfig::uksmp::CALL_TIMEOUT_MS as u64);
    let deadline = uktime::now() + limit;
    let mut spins = 0u32;
    while !done.load(Ordering::Acquire) {
        if !QUEUE.get().head.load(Ordering::Relaxed).is_null() {
            let _irq = ukplat::irq::IrqGuard::new();
            drain_this_cpu();
        }
        ukarch::barrier::spin_hint();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) && uktime::now() > deadline {
            panic!("uksmp: CPU {cpu} did not complete a call within {limit:?} (uksmp.call_timeout_ms)");
        }
    }
}

/// Runs `f` on CPU `cpu` and returns its result, waiting for it (see the
/// crate documentation for the context it runs in).
///
/// # Panics
/// When `cpu` is not online, or the call times out.
pub fn run_on<R: Send>(cpu: CpuIndex, f: impl FnOnce() -> R + Send) -> R {
    assert!(online(cpu), "uksmp::run_on: CPU {cpu} is not online ({} online)", online_count());
    // Migration-safe: on this CPU from the comparison to the end of the wait.
    let stay = PreemptGuard::new();
    if cpu == this_cpu() {
        let _irq = ukplat::irq::IrqGuard::new();
        return f();
    }
    let call = Call::new(f, false);
    enqueue(cpu, &call.header);
    wait(&call.done, cpu, &stay);
    drop(stay);
    // SAFETY: `done` was set with release after the result was written,
    // and observed with acquire; the callee no longer touches the call.
    unsafe { (*call.result.get()).take() }.expect("uksmp: a finished call has a result")
}

/// Runs `f(cpu)` on every online CPU (the calling one included) at the same
/// time and returns the results indexed by CPU, waiting for all.
///
/// # Panics
/// When a call times out.
pub fn run_on_all<R: Send>(f: impl Fn(CpuIndex) -> R + Sync) -> Vec<R> {
    let n = cpu_count();
    let f = &f;
    // Allocated before preemption is disabled; the calling CPU's entry is
    // left unused.
    let calls: Vec<Call<_, R>> = (0..n).map(|cpu| Call::new(move || f(cpu), false)).collect();
    let mut results = Vec::with_capacity(n);
    // Migration-safe: `me` stays the running CPU until every call is done,
    // so the local call runs on it and every other CPU is sent one.
    let stay = PreemptGuard::new();
    let me = this_cpu();
    let mut need_ipi = false;
    for (cpu, call) in calls.iter().enumerate().filter(|&(cpu, _)| cpu != me) {
        assert!(online(cpu), "uksmp::run_on_all: CPU {cpu} is not online");
        need_ipi |= QUEUE.get_for(cpu).push(&call.header);
    }
    if need_ipi {
        // One broadcast instead of one IPI per CPU; a CPU whose queue was
        // already non-empty just finds nothing more to do.
        ukplat::ipi::send_all_others(vector::CALL);
    }
    let own = {
        let _irq = ukplat::irq::IrqGuard::new();
        f(me)
    };
    for (cpu, call) in calls.iter().enumerate() {
        if cpu == me {
            continue;
        }
        wait(&call.done, cpu, &stay);
    }
    drop(stay);
    let mut own = Some(own);
    for (cpu, call) in calls.iter().enumerate() {
        if cpu == me {
            results.push(own.take().expect("own result taken once"));
        } else {
            // SAFETY: as in `run_on`: done observed with acquire.
            results
                .push(unsafe { (*call.result.get()).take() }.expect("uksmp: a finished call has a result"));
        }
    }
    results
}

/// Queues `f` to run on CPU `cpu` and returns at once. When `cpu` is the
/// calling CPU, `f` runs before this returns (with interrupts disabled).
///
/// # Panics
/// When `cpu` is not online.
pub fn run_on_nowait(cpu: CpuIndex, f: impl FnOnce() + Send + 'static) {
    assert!(online(cpu), "uksmp::run_on_nowait: CPU {cpu} is not online");
    // Migration-safe: a call for this CPU runs here, not on the next one.
    let _stay = PreemptGuard::new();
    if cpu == this_cpu() {
        let _irq = ukplat::irq::IrqGuard::new();
        f();
        return;
    }
    let call = Box::into_raw(Box::new(Call::new(f, true)));
    // SAFETY: the box is live; the callee frees it after running.
    enqueue(cpu, unsafe { &(*call).header });
}

/// Queues `f(cpu)` on every online CPU (the calling one runs it before this
/// returns) and returns without waiting for the others.
pub fn run_on_all_nowait(f: impl Fn(CpuIndex) + Send + Sync + 'static) {
    let f = Arc::new(f);
    // Migration-safe: every other CPU is sent a call and this one runs its
    // own, all before the thread can move.
    let _stay = PreemptGuard::new();
    let me = this_cpu();
    for cpu in (0..cpu_count()).filter(|&cpu| cpu != me) {
        let f = Arc::clone(&f);
        run_on_nowait(cpu, move || f(cpu));
    }
    let _irq = ukplat::irq::IrqGuard::new();
    f(me);
}

/// Ends CPU `cpu`'s halt, if it is halted (or about to halt) in its idle
/// loop: an IPI; no-op when the CPU is busy.
///
/// Publish the work the CPU should find before calling `wake`: the store
/// of the work, the fence here and the idle loop's announcement (a
/// sequentially consistent store before it checks for work and halts, see
/// [`idle_halt`]) pair up Dekker-style, so either the CPU sees the work
/// before halting or `wake` sees it idle and interrupts the halt.
pub fn wake(cpu: CpuIndex) {
    core::sync::atomic::fence(Ordering::SeqCst);
    if cpu != this_cpu() && IDLE.get_for(cpu).load(Ordering::SeqCst) {
        kick(cpu);
    }
}

/// Sends CPU `cpu` the wake-up IPI whether or not it is idle: a busy CPU
/// takes the interrupt and, on its way back, passes the scheduler's
/// preemption point (`ukplat::cpu::request_resched` first, to make it
/// switch). The interrupt's handler only acknowledges it.
pub fn kick(cpu: CpuIndex) {
    ukplat::ipi::send(cpu, vector::WAKEUP);
}

/// Whether CPU `cpu` is halted in its idle loop.
pub fn is_idle(cpu: CpuIndex) -> bool {
    IDLE.get_for(cpu).load(Ordering::Acquire)
}

/// How often CPU `cpu` woke from a halt in its idle loop.
pub fn wakeups(cpu: CpuIndex) -> u64 {
    WAKEUPS.get_for(cpu).load(Ordering::Relaxed)
}

/// One idle step of this CPU: announces it idle (for [`wake`]), asks
/// `has_work` — which must read the work that wakers publish before they
/// call [`wake`] — and halts unless it said yes, until an interrupt. Call
/// with interrupts disabled; returns with them disabled, the CPU no longer
/// announced idle. A scheduler's idle thread loops on it.
pub fn idle_halt(has_work: impl FnOnce() -> bool) {
    let idle = IDLE.get();
    idle.store(true, Ordering::SeqCst);
    if !has_work() {
        ukplat::irq::enable_and_halt();
        ukplat::irq::disable();
        WAKEUPS.get().fetch_add(1, Ordering::Relaxed);
    }
    idle.store(false, Ordering::Relaxed);
}

/// What the idle loops become once a scheduler takes the CPUs over.
static TAKEOVER: FnSlot<fn() -> !> = FnSlot::new();

/// Hands every CPU's idle loop to `entry`: each CPU halted in
/// [`idle_loop`] calls it (with interrupts disabled) at its next wake-up,
/// and it never returns — the scheduler turns the idle loop's context into
/// that CPU's idle thread. Call [`wake`] (or broadcast the wake-up IPI)
/// afterwards to make the halted CPUs notice.
pub fn set_idle_takeover(entry: fn() -> !) {
    TAKEOVER.store(entry);
}

/// The idle loop: halts with interrupts enabled until an interrupt (a
/// call, a [`wake`]), counts the wake-up, halts again. Interrupt handlers
/// (the call IPI's included) do the work. Once a scheduler registered with
/// [`set_idle_takeover`], the loop jumps into it instead.
pub fn idle_loop() -> ! {
    loop {
        ukplat::irq::disable();
        if let Some(entry) = TAKEOVER.load() {
            entry();
        }
        idle_halt(|| TAKEOVER.is_set());
    }
}

fn mark_online(cpu: CpuIndex) {
    ONLINE.get_for(cpu).store(true, Ordering::Release);
    ONLINE_COUNT.fetch_add(1, Ordering::AcqRel);
}

/// What a released secondary CPU runs.
fn secondary_main(cpu: CpuIndex) -> ! {
    mark_online(cpu);
    idle_loop()
}

/// Installs the call IPI handler and releases the secondary CPUs; returns
/// once every CPU is online.
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only init"))]
fn init() {
    if let Err(e) = irq::register(vector::CALL, on_call_ipi) {
        panic!("uksmp: cannot install the call interrupt: {e}");
    }
    mark_online(this_cpu());
    let n = cpu_count();
    if n > 1 {
        ukplat::cpu::release_secondaries(secondary_main);
        ukplat::ipi::send_all_others(vector::WAKEUP);
        let limit = Duration::from_millis(ukconfig::uksmp::CALL_TIMEOUT_MS as u64);
        let deadline = uktime::now() + limit;
        while online_count() < n {
            assert!(
                uktime::now() < deadline,
                "uksmp: only {} of {n} CPUs came online within {limit:?}",
                online_count()
            );
            ukarch::barrier::spin_hint();
        }
    }
}

#[cfg(target_os = "none")]
ukboot::init!(ukboot::priority::SMP, init);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    static ORDER: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];
    static NEXT: AtomicU32 = AtomicU32::new(1);

    #[test]
    fn queue_runs_calls_oldest_first_and_results_come_back() {
        let queue = Queue::new();
        let calls: Vec<_> = (0..3)
            .map(|i| {
                Call::new(
                    move || ORDER[i].store(NEXT.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst),
                    false,
                )
            })
            .collect();
        assert!(queue.push(&calls[0].header), "first push finds the queue empty");
        assert!(!queue.push(&calls[1].header));
        assert!(!queue.push(&calls[2].header));
        assert_eq!(queue.drain(), 3);
        let order: Vec<u32> = ORDER.iter().map(|o| o.load(Ordering::SeqCst)).collect();
        assert_eq!(order, [1, 2, 3]);
        assert!(calls.iter().all(|c| c.done.load(Ordering::Acquire)));
        assert_eq!(queue.drain(), 0);
    }

    #[test]
    fn owned_calls_are_freed_by_the_callee() {
        let queue = Queue::new();
        let token = Arc::new(());
        let held = Arc::clone(&token);
        let call = Box::into_raw(Box::new(Call::new(move || drop(held), true)));
        // SAFETY: a live box; drain runs and frees it.
        assert!(queue.push(unsafe { &(*call).header }));
        assert_eq!(queue.drain(), 1);
        assert_eq!(Arc::strong_count(&token), 1, "the closure and its box were dropped");
    }

    #[test]
    fn concurrent_pushes_lose_nothing() {
        static Q: Queue = Queue::new();
        static RAN: AtomicU32 = AtomicU32::new(0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..1000 {
                        let call = Box::into_raw(Box::new(Call::new(
                            || {
                                RAN.fetch_add(1, Ordering::Relaxed);
                            },
                            true,
                        )));
                        // SAFETY: a live box, freed by whoever drains it.
                        Q.push(unsafe { &(*call).header });
                    }
                })
            })
            .collect();
        let mut drained = 0;
        while threads.iter().any(|t| !t.is_finished()) {
            drained += Q.drain();
        }
        for t in threads {
            t.join().unwrap();
        }
        drained += Q.drain();
        assert_eq!(drained, 4000);
        assert_eq!(RAN.load(Ordering::Relaxed), 4000);
    }
}
