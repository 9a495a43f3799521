//! Per-CPU scheduling: run queues, the switch, placement, stealing, the
//! idle loop, sleep timers and time slices.
//!
//! Locking: each CPU has one run-queue lock (a `ukspin` spinlock, always
//! taken with interrupts disabled) protecting its run queue, its current
//! and idle thread, its sleep timers and its time slice. No code holds two
//! run-queue locks at once. A wait queue's lock may be held while a
//! run-queue lock is taken, never the other way round.
//!
//! The switch protocol: the switching CPU picks the next thread under its
//! lock, releases the lock, and switches. The previous thread is handed to
//! whatever runs next on that CPU ([`finish_switch`]), which clears its
//! `on_cpu` flag: until then its registers are not saved, and a CPU that
//! picked it (after a wake-up or a steal) waits for the flag to drop.

use crate::cpuset::CpuSet;
use crate::list::{List, Which};
use crate::policy::{self, PREEMPTIVE, SLICE_NS};
use crate::state::{self, BLOCKING, EXITED, RUNNING, StateWord, Wake};
use crate::thread::{Entry, SpawnError, ThreadInner};
use crate::{fpu, hooks, qs, switch};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::any::Any;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use ukplat::cpu::{self, CpuIndex, preempt_count, preempt_disable, preempt_enable, this_cpu};

/// "No deadline".
const NONE: u64 = u64::MAX;

/// What a CPU's run-queue lock protects.
pub(crate) struct RunQueue {
    /// Runnable threads waiting for this CPU, FIFO.
    queue: List,
    /// The thread running here (None before the scheduler adopted the CPU).
    current: Option<Arc<ThreadInner>>,
    /// This CPU's idle thread.
    idle: Option<Arc<ThreadInner>>,
    /// Threads sleeping with a deadline armed on this CPU, soonest first.
    timers: List,
    /// preempt: when the running thread's slice ends (ns), or NONE.
    slice_end: u64,
}

/// `ThreadInner::queued_on` of a thread on no run queue.
pub(crate) const NOT_QUEUED: usize = usize::MAX;

impl RunQueue {
    /// Appends `t` to CPU `cpu`'s queue (this one).
    fn push(&mut self, t: Arc<ThreadInner>, cpu: CpuIndex) {
        t.queued_on.store(cpu, Ordering::Release);
        self.queue.push_back(t);
    }

    /// Takes the first queued thread.
    fn pop(&mut self) -> Option<Arc<ThreadInner>> {
        let t = self.queue.pop_front()?;
        t.queued_on.store(NOT_QUEUED, Ordering::Release);
        Some(t)
    }

    /// Takes the first queued thread for which `pick` is true.
    fn take_first(&mut self, pick: impl FnMut(&ThreadInner) -> bool) -> Option<Arc<ThreadInner>> {
        let t = self.queue.remove_first(pick)?;
        t.queued_on.store(NOT_QUEUED, Ordering::Release);
        Some(t)
    }

    /// Takes `t`, which must be on this queue (its `queued_on` names this
    /// CPU, read under this queue's lock).
    fn take(&mut self, t: &ThreadInner) -> Option<Arc<ThreadInner>> {
        let t = self.queue.remove(t)?;
        t.queued_on.store(NOT_QUEUED, Ordering::Release);
        Some(t)
    }
}

/// The thread handed from a switch to whatever runs next on the CPU.
struct HandOff {
    /// The thread switched away from (null: nothing to finish).
    prev: UnsafeCell<*const ThreadInner>,
    /// The switch's own reference to it, when nothing else may hold one
    /// (it exited) or it must be queued elsewhere (migration); a thread
    /// that went back on the run queue or blocked is referenced by that
    /// queue or by its waker.
    owned: UnsafeCell<Option<Arc<ThreadInner>>>,
    migrate: UnsafeCell<bool>,
}

/// A CPU's scheduler.
pub(crate) struct Cpu {
    rq: ukspin::SpinLock<RunQueue>,
    /// Threads on the run queue (read without the lock for placement and
    /// by the idle loop).
    nr_queued: AtomicUsize,
    /// Whether a thread other than the idle thread runs.
    busy: AtomicBool,
    /// Whether the scheduler runs on this CPU.
    ready: AtomicBool,
    /// The running thread (the run queue's `current`), readable without
    /// the lock by the CPU itself.
    current: AtomicPtr<ThreadInner>,
    handoff: HandOff,
    /// Whether the FPU registers hold the running thread's state (it used
    /// the FPU since it was switched in; CR0.TS is clear).
    pub(crate) fpu_live: AtomicBool,
    last_switch_ns: AtomicU64,
    pub(crate) switches: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) idle_ns: AtomicU64,
    pub(crate) idle_entries: AtomicU64,
    pub(crate) steals: AtomicU64,
    pub(crate) preemptions: AtomicU64,
    pub(crate) fpu_restores: AtomicU64,
    /// Quiescent states (scheduler passes), see [`crate::qs`].
    pub(crate) qs_passes: AtomicU64,
}

// SAFETY: `handoff` is touched only by its own CPU with interrupts
// disabled (the switch and `finish_switch`); the rest is atomic or locked.
unsafe impl Sync for Cpu {}

impl Cpu {
    const fn new() -> Self {
        Self {
            rq: ukspin::SpinLock::new(RunQueue {
                queue: List::new(Which::Run),
                current: None,
                idle: None,
                timers: List::new(Which::Timer),
                slice_end: NONE,
            }),
            nr_queued: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            current: AtomicPtr::new(core::ptr::null_mut()),
            handoff: HandOff {
                prev: UnsafeCell::new(core::ptr::null()),
                owned: UnsafeCell::new(None),
                migrate: UnsafeCell::new(false),
            },
            fpu_live: AtomicBool::new(false),
            last_switch_ns: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            idle_entries: AtomicU64::new(0),
            steals: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            fpu_restores: AtomicU64::new(0),
            qs_passes: AtomicU64::new(0),
        }
    }
}

ukplat::per_cpu! {
    pub(crate) static CPUS: Cpu = Cpu::new();
}

static STARTED: AtomicBool = AtomicBool::new(false);
pub(crate) static CREATED: AtomicU64 = AtomicU64::new(0);
pub(crate) static EXITED_COUNT: AtomicU64 = AtomicU64::new(0);

/// Whether the scheduler runs (its init has run).
pub(crate) fn started() -> bool {
    STARTED.load(Ordering::Acquire)
}

/// Whether the scheduler runs on CPU `cpu`.
pub(crate) fn ready(cpu: CpuIndex) -> bool {
    CPUS.get_for(cpu).ready.load(Ordering::Acquire)
}

/// The calling thread's record, as a raw pointer (null before the
/// scheduler runs on this CPU). Valid while that thread runs, on whatever
/// CPU: preemption is off between finding this CPU and reading its
/// current thread, so a migration cannot make it another CPU's thread.
#[inline(always)]
pub(crate) fn current_ptr() -> *const ThreadInner {
    let _stay = ukplat::cpu::PreemptGuard::new();
    current_ptr_unguarded()
}

/// [`current_ptr`] for callers that already keep the thread on its CPU
/// (preemption or interrupts disabled) — and for the reschedule hook,
/// which must not itself pass through `preempt_enable` (that would call
/// the hook again).
#[inline(always)]
pub(crate) fn current_ptr_unguarded() -> *const ThreadInner {
    CPUS.get().current.load(Ordering::Relaxed)
}

/// The running thread.
///
/// # Panics
/// Before the scheduler runs on this CPU.
pub(crate) fn current() -> Arc<ThreadInner> {
    let p = current_ptr();
    assert!(!p.is_null(), "uksched: no current thread: the scheduler has not started on CPU {}", this_cpu());
    // SAFETY: the run queue holds a strong reference to its current
    // thread — the caller — which cannot go away while it runs; one more
    // reference is taken for the returned Arc.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// The running thread's id, without taking a reference (cheap: for lock
/// owner fields).
///
/// # Panics
/// Before the scheduler runs on this CPU.
#[inline]
pub(crate) fn current_id() -> u64 {
    try_current_id().unwrap_or_else(|| {
        panic!("uksched: no current thread: the scheduler has not started on CPU {}", this_cpu())
    })
}

/// The running thread's id, or None before the scheduler runs on this CPU:
/// one `gs`-relative load (`ukplat::cpu::current_thread_id`, set at every
/// switch), no preemption control needed.
#[inline(always)]
pub(crate) fn try_current_id() -> Option<u64> {
    let id = ukplat::cpu::current_thread_id();
    (id != 0).then_some(id)
}

// ---------------------------------------------------------------------------
// The switch

/// Switches away from the running thread if something else should run;
/// returns when the running thread runs again. The caller raised the
/// preemption counter to exactly 1 (its own `preempt_disable`): a thread
/// holding a spinlock, or in a `PreemptGuard`, cannot switch away.
pub(crate) fn schedule() {
    let count = preempt_count();
    if count != 1 || cpu::in_interrupt() {
        schedule_bug(count);
    }
    let irq = ukplat::irq::save();
    switch_away();
    ukplat::irq::restore(irq);
}

#[cold]
#[inline(never)]
fn schedule_bug(count: u32) -> ! {
    hooks::run_schedule_bug(this_cpu());
    let p = current_ptr_unguarded();
    // SAFETY: the running thread's record lives while it runs.
    let name = if p.is_null() { "?" } else { unsafe { (*p).name.as_str() } };
    if cpu::in_interrupt() {
        panic!("uksched: thread `{name}` tried to block, sleep or yield inside an interrupt handler");
    }
    panic!(
        "uksched: thread `{name}` tried to block, sleep or yield with preemption disabled \
         ({} level(s) deep: a spinlock held or a PreemptGuard alive)",
        count.wrapping_sub(1)
    );
}

/// Gives way to the next runnable thread on this CPU.
pub(crate) fn yield_now() {
    preempt_disable();
    let cpu = CPUS.get();
    let me = current_ptr_unguarded();
    // Nothing else runnable here, and the thread may stay: no switch, no
    // lock. (A thread queued meanwhile runs at the next switch, or at once
    // under `preempt`, which requested a reschedule for it.) Before the
    // scheduler runs on this CPU there is nothing to yield to either.
    // SAFETY: the running thread's record lives while it runs.
    let stay = me.is_null()
        || (cpu.nr_queued.load(Ordering::Relaxed) == 0 && unsafe { (*me).allowed_on(this_cpu()) });
    if stay {
        // Still a pass through the scheduler, so a quiescent state — and
        // so held to the same rule as `schedule`.
        let count = preempt_count();
        if count != 1 || cpu::in_interrupt() {
            schedule_bug(count);
        }
        qs::report(cpu);
    } else {
        schedule();
    }
    preempt_enable();
}

/// The reschedule hook (preempt): ukplat calls it when a reschedule was
/// requested and the running code became preemptible — on return from an
/// interrupt, or at the `preempt_enable` that ends a critical section.
fn resched_hook() {
    if current_ptr_unguarded().is_null() {
        cpu::take_resched_request();
        return;
    }
    CPUS.get().preemptions.fetch_add(1, Ordering::Relaxed);
    preempt_disable();
    schedule();
    preempt_enable();
}

/// The body of [`schedule`], interrupts disabled.
fn switch_away() {
    let me = this_cpu();
    let cpu = CPUS.get();
    // Every pass through here is a quiescent state, whether or not it
    // switches (see `qs`).
    qs::report(cpu);
    cpu::take_resched_request();
    let now = uktime::now().as_nanos();
    let mut rq = cpu.rq.lock();
    let prev = rq.current.take().expect("uksched: a CPU without a current thread switches");
    let prev_ptr = Arc::as_ptr(&prev);
    // The switch's own reference to `prev`, if it keeps one (see HandOff).
    let mut owned = None;
    let mut migrate = false;
    match prev.state.state() {
        RUNNING if prev.is_idle => owned = Some(prev),
        RUNNING if prev.allowed_on(me) => {
            prev.state.set_queued();
            rq.push(prev, me);
        }
        RUNNING => {
            migrate = true;
            owned = Some(prev);
        }
        BLOCKING => {
            if !prev.state.block() {
                // Woken before it switched out: it goes on running.
                rq.current = Some(prev);
                return;
            }
            // Blocked: its wait queue, timer or waker holds it now.
            drop(prev);
        }
        EXITED => owned = Some(prev),
        other => panic!("uksched: thread `{}` switches away while {}", prev.name, state_name(other)),
    }

    // The next thread: the first on the queue that may run here (one whose
    // affinity changed while it was queued moves on), else idle.
    let mut misplaced: [Option<Arc<ThreadInner>>; 4] = [const { None }; 4];
    let mut moved = 0;
    let mut next = None;
    for _ in 0..rq.queue.len() {
        let Some(t) = rq.pop() else { break };
        if t.allowed_on(me) {
            next = Some(t);
            break;
        }
        if moved < misplaced.len() {
            misplaced[moved] = Some(t);
            moved += 1;
        } else {
            rq.push(t, me);
        }
    }
    let next = match next {
        Some(t) => t,
        None => match owned.take() {
            // The idle thread found nothing else: it goes on.
            Some(idle) if idle.is_idle => idle,
            other => {
                owned = other;
                rq.idle.clone().expect("uksched: a CPU without an idle thread")
            }
        },
    };
    cpu.nr_queued.store(rq.queue.len(), Ordering::Relaxed);

    if Arc::as_ptr(&next) == prev_ptr {
        // `prev` again (it was the only runnable thread, or the idle thread
        // with nothing to do): no switch.
        next.state.set_running();
        rq.slice_end = NONE;
        rq.current = Some(next);
        drop(rq);
        requeue(misplaced);
        return;
    }

    // Never resume a thread whose switch away (on another CPU) is not
    // complete: its saved stack pointer is not written yet.
    while next.on_cpu.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    next.state.set_running();
    next.on_cpu.store(true, Ordering::Relaxed);
    next.cpu.store(me, Ordering::Relaxed);
    // SAFETY: `on_cpu` was false (acquire): the last switch away from
    // `next` wrote its stack pointer before releasing it.
    let next_rsp = unsafe { *next.saved_rsp.get() };
    let next_ptr = Arc::as_ptr(&next);
    cpu.current.store(next_ptr.cast_mut(), Ordering::Relaxed);
    ukplat::cpu::set_current_thread_id(next.id);
    cpu.busy.store(!next.is_idle, Ordering::Relaxed);
    if PREEMPTIVE {
        rq.slice_end = if !next.is_idle && !rq.queue.is_empty() { now + SLICE_NS } else { NONE };
        arm_timer(&rq);
    }
    // The run queue's reference moves to `current`; `next_ptr` stays valid
    // while it runs here.
    rq.current = Some(next);
    drop(rq);
    requeue(misplaced);

    // SAFETY: `prev` is kept alive by the hand-off below or by the queue
    // or waker that references it, none of which can free it before
    // `finish_switch` clears `on_cpu`; `next` by `current`.
    let (prev, next) = unsafe { (&*prev_ptr, &*next_ptr) };
    // Accounting: only this CPU writes its counters, and only the CPU
    // running a thread writes the thread's (plain load + store: no locked
    // instruction on the switch path).
    let ran = now.saturating_sub(cpu.last_switch_ns.load(Ordering::Relaxed));
    cpu.last_switch_ns.store(now, Ordering::Relaxed);
    bump(if prev.is_idle { &cpu.idle_ns } else { &cpu.busy_ns }, ran);
    bump(&prev.run_ns, ran);
    bump(&cpu.switches, 1);
    bump(&next.switches, 1);

    hooks::run_switch(me);
    fpu::switch_out(cpu, prev);

    // SAFETY: only this CPU touches its hand-off, with interrupts disabled;
    // the previous hand-off was consumed by `finish_switch`.
    unsafe {
        *cpu.handoff.prev.get() = prev_ptr;
        *cpu.handoff.owned.get() = owned;
        *cpu.handoff.migrate.get() = migrate;
    }
    // SAFETY: interrupts are disabled; `saved_rsp` is the running thread's
    // slot (its record is alive, see above); `next_rsp` was saved by its
    // last switch away (or built by `initial_frame`), and `on_cpu` now
    // keeps every other CPU from resuming it.
    unsafe { switch::switch_context(prev.saved_rsp.get(), next_rsp) };
    finish_switch();
}

/// Adds to a counter that only one CPU writes at a time.
#[inline(always)]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

/// Completes a switch on the thread switched to: the previous thread's
/// registers are saved now, so other CPUs may run it; a thread that must
/// move to another CPU is queued there; an exited thread's last reference
/// may go (its stack is no longer in use).
pub(crate) fn finish_switch() {
    let cpu = CPUS.get();
    fpu::switch_in(cpu);
    // SAFETY: this CPU's hand-off, interrupts disabled (the switch's).
    let (prev, owned, migrate) = unsafe {
        (
            core::mem::replace(&mut *cpu.handoff.prev.get(), core::ptr::null()),
            (*cpu.handoff.owned.get()).take(),
            *cpu.handoff.migrate.get(),
        )
    };
    if prev.is_null() {
        return;
    }
    // SAFETY: the hand-off's contract (see `switch_away`): `prev` is alive
    // until its `on_cpu` drops, which is the last use of the pointer.
    unsafe { (*prev).on_cpu.store(false, Ordering::Release) };
    match owned {
        Some(prev) if migrate => {
            prev.state.set_queued();
            enqueue(prev);
        }
        Some(prev) if prev.state.state() == EXITED => {
            // Off its CPU for good: its stack goes back to ukvmem now, and
            // then joiners may take its value (so a stack count taken after
            // `join` returned is exact).
            drop(prev.stack.lock().take());
            prev.finished.store(true, Ordering::Release);
            prev.joiners.wake_all();
        }
        // This CPU's idle thread.
        other => drop(other),
    }
}

fn requeue(misplaced: [Option<Arc<ThreadInner>>; 4]) {
    for t in misplaced.into_iter().flatten() {
        enqueue(t);
    }
}

// ---------------------------------------------------------------------------
// Placement

/// The CPU a runnable thread goes to: the least loaded CPU its affinity
/// allows (load: queued threads plus a running one), ties going to the CPU
/// it last ran on (warm caches), then to the lowest index.
fn select_cpu(t: &ThreadInner) -> CpuIndex {
    let allowed = t.affinity.load();
    let last = t.cpu.load(Ordering::Relaxed);
    let mut best = None;
    let mut best_load = usize::MAX;
    for c in allowed.iter().take_while(|&c| c < cpu::count()) {
        let s = CPUS.get_for(c);
        if !s.ready.load(Ordering::Acquire) {
            continue;
        }
        let load = 2 * (s.nr_queued.load(Ordering::Relaxed) + usize::from(s.busy.load(Ordering::Relaxed)))
            + usize::from(c != last);
        if load < best_load {
            best_load = load;
            best = Some(c);
        }
    }
    // No allowed CPU runs the scheduler yet (a secondary CPU during
    // start-up): its queue is served once it does.
    best.or_else(|| allowed.iter().find(|&c| c < cpu::count())).unwrap_or(last)
}

/// Puts a runnable (`QUEUED`) thread on a run queue and makes sure a CPU
/// gets to it: an idle target is woken; under `preempt`, a target running
/// a thread with nothing queued behind it reschedules at once.
pub(crate) fn enqueue(t: Arc<ThreadInner>) {
    let _irq = ukplat::irq::IrqGuard::new();
    let target = select_cpu(&t);
    let s = CPUS.get_for(target);
    let mut rq = s.rq.lock();
    t.cpu.store(target, Ordering::Relaxed);
    rq.push(t, target);
    let queued = rq.queue.len();
    s.nr_queued.store(queued, Ordering::SeqCst);
    let target_idle = rq.current.as_ref().is_none_or(|c| c.is_idle);
    drop(rq);
    let preempt_now = PREEMPTIVE && !target_idle && queued == 1;
    if target == this_cpu() {
        if preempt_now {
            cpu::request_resched(target);
        }
    } else if target_idle {
        uksmp::wake(target);
    } else if preempt_now {
        cpu::request_resched(target);
        uksmp::kick(target);
    }
}

/// Ends wait `seq` of `t`; true unless that wait was over already.
pub(crate) fn wake(t: &Arc<ThreadInner>, seq: u64) -> bool {
    match t.state.wake(seq) {
        Wake::Enqueue => {
            enqueue(t.clone());
            true
        }
        Wake::StillRunning => true,
        Wake::Stale => false,
    }
}

/// Moves one queued thread that may run on this CPU from the busiest
/// other CPU's queue to this one's. Interrupts disabled.
fn try_steal(me: CpuIndex) -> bool {
    let n = cpu::count();
    let mut victim = None;
    let mut most = 0;
    for off in 1..n {
        let c = (me + off) % n;
        let queued = CPUS.get_for(c).nr_queued.load(Ordering::Relaxed);
        if queued > most {
            most = queued;
            victim = Some(c);
        }
    }
    let Some(victim) = victim else { return false };
    let v = CPUS.get_for(victim);
    let stolen = {
        let mut rq = v.rq.lock();
        let t = rq.take_first(|t| t.allowed_on(me));
        v.nr_queued.store(rq.queue.len(), Ordering::Relaxed);
        t
    };
    let Some(t) = stolen else { return false };
    let mine = CPUS.get();
    let mut rq = mine.rq.lock();
    t.cpu.store(me, Ordering::Relaxed);
    rq.push(t, me);
    mine.nr_queued.store(rq.queue.len(), Ordering::SeqCst);
    mine.steals.fetch_add(1, Ordering::Relaxed);
    true
}

/// Changes a thread's affinity and moves it if it sits on a CPU it may
/// no longer use: off a run queue at once; a running thread at its next
/// switch (at once under `preempt`, by a reschedule request; the caller
/// itself by yielding); a blocked one when it is woken (placement reads
/// the new affinity). A thread that a racing wake-up queues on a CPU it no
/// longer allows is moved when that CPU picks it (`switch_away`).
pub(crate) fn set_affinity(t: &Arc<ThreadInner>, cpus: CpuSet) -> Result<(), SpawnError> {
    if !cpus.iter().any(|c| c < cpu::count()) {
        return Err(SpawnError::NoCpu(cpus));
    }
    t.affinity.store(cpus);
    loop {
        let queued_on = t.queued_on.load(Ordering::Acquire);
        if queued_on == NOT_QUEUED {
            break;
        }
        if cpus.contains(queued_on) {
            return Ok(());
        }
        // `queued_on` is set and cleared only under that CPU's run-queue
        // lock: while we hold it, the thread is on this queue exactly when
        // `queued_on` still names it.
        let s = CPUS.get_for(queued_on);
        let taken = {
            let _irq = ukplat::irq::IrqGuard::new();
            let mut rq = s.rq.lock();
            let taken = if t.queued_on.load(Ordering::Acquire) == queued_on { rq.take(t) } else { None };
            s.nr_queued.store(rq.queue.len(), Ordering::Relaxed);
            taken
        };
        if let Some(t) = taken {
            enqueue(t);
            return Ok(());
        }
        // It left that queue meanwhile: look again.
    }
    let on = t.cpu.load(Ordering::Acquire);
    let running_there = CPUS.get_for(on).current.load(Ordering::Acquire).cast_const() == Arc::as_ptr(t);
    if running_there && !cpus.contains(on) {
        if on == this_cpu() && Arc::as_ptr(t) == current_ptr() {
            // The caller itself: the switch moves it.
            yield_now();
        } else if PREEMPTIVE {
            cpu::request_resched(on);
            uksmp::kick(on);
        }
        // coop: it moves at its next switch.
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Threads: creation and exit

/// Creates a thread and queues it.
pub(crate) fn spawn(
    name: Option<String>,
    stack_size: usize,
    affinity: CpuSet,
    entry: Entry,
) -> Result<Arc<ThreadInner>, SpawnError> {
    if !started() {
        return Err(SpawnError::NotStarted);
    }
    if !affinity.iter().any(|c| c < cpu::count()) {
        return Err(SpawnError::NoCpu(affinity));
    }
    let stack = ukvmem::GuardedStack::allocate(stack_size.max(1)).map_err(SpawnError::Stack)?;
    let t =
        Arc::new(ThreadInner::new(name, StateWord::new_queued(), Some(stack), affinity, false, Some(entry)));
    prepare_first_switch(&t);
    // Start on the creator's CPU as "last", for the placement tie-break.
    t.cpu.store(this_cpu(), Ordering::Relaxed);
    CREATED.fetch_add(1, Ordering::Relaxed);
    enqueue(t.clone());
    Ok(t)
}

/// Writes a stack-owning thread's first frame.
fn prepare_first_switch(t: &Arc<ThreadInner>) {
    let top = t.stack.lock().as_ref().expect("a new thread has a stack").top();
    // SAFETY: the top of a freshly allocated stack, mapped and unused.
    let rsp = unsafe { switch::initial_frame(top, Arc::as_ptr(t)) };
    // SAFETY: the thread has never run; nobody else reads its slot yet.
    unsafe { *t.saved_rsp.get() = rsp };
}

/// Ends the running thread.
pub(crate) fn exit_current(value: Box<dyn Any + Send>) -> ! {
    let me = current();
    assert!(me.owns_stack, "uksched: the boot thread `{}` cannot exit; return from main instead", me.name);
    crate::tls::destroy(&me);
    *me.result.lock() = Some(value);
    preempt_disable();
    ukplat::irq::disable();
    me.state.set_exited();
    EXITED_COUNT.fetch_add(1, Ordering::Relaxed);
    // Joiners are woken by the switch away (`finish_switch`).
    drop(me);
    schedule();
    unreachable!("uksched: an exited thread was resumed");
}

// ---------------------------------------------------------------------------
// Sleeping and timers

/// Arms this CPU's timer for the earliest of its sleep deadlines and its
/// slice end, unless an earlier event is pending already (which re-arms
/// when it fires). Run-queue lock held, on the CPU it belongs to.
fn arm_timer(rq: &RunQueue) {
    let first_timer = rq.timers.front().map_or(NONE, |t| t.timer_deadline.get());
    let next = first_timer.min(rq.slice_end);
    if next == NONE {
        return; // tickless: a pending event fires once, finds nothing, re-arms nothing
    }
    match uktime::timer::pending() {
        Some(p) if p.as_nanos() <= next => {}
        _ => uktime::timer::arm_at(uktime::Instant::from_nanos(next)),
    }
}

/// Arms a wake-up of the running thread for wait `seq` at `deadline` (ns)
/// on this CPU; returns the CPU (for [`cancel_timer`]).
pub(crate) fn add_timer(me: &Arc<ThreadInner>, deadline: u64, seq: u64) -> CpuIndex {
    let _irq = ukplat::irq::IrqGuard::new();
    let here = this_cpu();
    let mut rq = CPUS.get_for(here).rq.lock();
    me.timer_deadline.set(deadline);
    me.timer_seq.set(seq);
    rq.timers.insert_before(me.clone(), |t| t.timer_deadline.get() > deadline);
    arm_timer(&rq);
    here
}

/// Removes the running thread's timer on CPU `cpu`, if it has not fired.
pub(crate) fn cancel_timer(me: &ThreadInner, cpu: CpuIndex) {
    let _irq = ukplat::irq::IrqGuard::new();
    let mut rq = CPUS.get_for(cpu).rq.lock();
    drop(rq.timers.remove(me));
}

/// The timer interrupt (both policies): wakes the sleepers that are due,
/// and under `preempt` ends the running thread's slice.
fn on_timer(now: u64) {
    const BATCH: usize = 16;
    let me = this_cpu();
    let s = CPUS.get();
    let mut due: [Option<(Arc<ThreadInner>, u64)>; BATCH] = [const { None }; BATCH];
    let mut n = 0;
    let mut rq = s.rq.lock();
    while n < BATCH {
        match rq.timers.front() {
            Some(t) if t.timer_deadline.get() <= now => {
                let t = rq.timers.pop_front().expect("front exists");
                let seq = t.timer_seq.get();
                due[n] = Some((t, seq));
                n += 1;
            }
            _ => break,
        }
    }
    if PREEMPTIVE && rq.slice_end <= now {
        rq.slice_end = NONE;
        let running_thread = rq.current.as_ref().is_some_and(|c| !c.is_idle);
        if running_thread && !rq.queue.is_empty() {
            cpu::request_resched(me);
        }
    }
    if n == BATCH && rq.timers.front().is_some_and(|t| t.timer_deadline.get() <= now) {
        uktime::timer::arm_at(uktime::Instant::from_nanos(now));
    } else {
        arm_timer(&rq);
    }
    drop(rq);
    for (t, seq) in due.into_iter().flatten() {
        wake(&t, seq);
    }
}

/// Blocks the running thread until `deadline` (ns).
pub(crate) fn sleep_until(deadline: u64) {
    let me = current();
    while uktime::now().as_nanos() < deadline {
        preempt_disable();
        let seq = me.state.begin_wait();
        let on = add_timer(&me, deadline, seq);
        schedule();
        me.state.end_wait();
        cancel_timer(&me, on);
        preempt_enable();
    }
}

// ---------------------------------------------------------------------------
// The idle loop and start-up

/// Every CPU's idle thread: runs the idle hooks, takes work from the own
/// queue or steals from the busiest CPU, else halts until an interrupt.
fn idle_loop() -> ! {
    let me = this_cpu();
    let s = CPUS.get();
    let has_work = || s.nr_queued.load(Ordering::SeqCst) > 0;
    loop {
        ukplat::irq::disable();
        qs::report(s);
        hooks::run_idle(me);
        s.idle_entries.fetch_add(1, Ordering::Relaxed);
        if !has_work() && !try_steal(me) {
            // Halted: an extended quiescent state, which grace periods
            // see without waking this CPU.
            cpu::eqs_enter();
            uksmp::idle_halt(has_work);
            cpu::eqs_exit();
        }
        if has_work() {
            preempt_disable();
            schedule();
            preempt_enable();
        }
    }
}

/// Makes the running context thread `current` of this CPU, with `idle` as
/// its idle thread.
fn adopt(current: Arc<ThreadInner>, idle: Arc<ThreadInner>) {
    let me = this_cpu();
    let s = CPUS.get();
    let _irq = ukplat::irq::IrqGuard::new();
    let mut rq = s.rq.lock();
    current.on_cpu.store(true, Ordering::Relaxed);
    current.cpu.store(me, Ordering::Relaxed);
    idle.cpu.store(me, Ordering::Relaxed);
    s.current.store(Arc::as_ptr(&current).cast_mut(), Ordering::Relaxed);
    ukplat::cpu::set_current_thread_id(current.id);
    s.busy.store(!current.is_idle, Ordering::Relaxed);
    s.last_switch_ns.store(uktime::now().as_nanos(), Ordering::Relaxed);
    rq.current = Some(current);
    rq.idle = Some(idle);
    drop(rq);
    s.ready.store(true, Ordering::Release);
}

fn idle_thread(cpu: CpuIndex, stack: Option<ukvmem::GuardedStack>) -> Arc<ThreadInner> {
    let entry: Option<Entry> =
        stack.is_some().then(|| Box::new(|| -> Box<dyn Any + Send> { idle_loop() }) as Entry);
    Arc::new(ThreadInner::new(
        Some(alloc::format!("idle/{cpu}")),
        StateWord::new_running(),
        stack,
        CpuSet::single(cpu),
        true,
        entry,
    ))
}

/// A secondary CPU's idle loop, taken over: its context becomes the CPU's
/// idle thread.
fn secondary_takeover() -> ! {
    let me = this_cpu();
    fpu::init_cpu(CPUS.get(), false);
    let idle = idle_thread(me, None);
    adopt(idle.clone(), idle);
    idle_loop()
}

/// Starts the scheduler: the boot context becomes thread `main` on the
/// boot CPU, every CPU gets an idle thread, the secondary CPUs' idle loops
/// are taken over.
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only init"))]
fn init() {
    let policy = <policy::Configured as policy::Policy>::marker();
    uktime::timer::set_handler(on_timer);
    if PREEMPTIVE {
        ukplat::cpu::set_resched_hook(resched_hook);
    }
    fpu::install();
    crate::fault::install();
    let me = this_cpu();
    // `main` first: it gets thread id 1.
    let main = Arc::new(ThreadInner::new(
        Some(String::from("main")),
        StateWord::new_running(),
        None,
        CpuSet::all(),
        false,
        None,
    ));
    let stack = ukvmem::GuardedStack::allocate(IDLE_STACK)
        .unwrap_or_else(|e| panic!("uksched: no stack for the boot CPU's idle thread: {e}"));
    let idle = idle_thread(me, Some(stack));
    prepare_first_switch(&idle);
    fpu::init_cpu(CPUS.get(), true);
    adopt(main, idle);
    STARTED.store(true, Ordering::Release);

    let n = cpu::count();
    uksmp::set_idle_takeover(secondary_takeover);
    for c in (0..n).filter(|&c| c != me) {
        uksmp::kick(c);
    }
    let limit = core::time::Duration::from_millis(ukconfig::uksmp::CALL_TIMEOUT_MS as u64);
    let deadline = uktime::now() + limit;
    while !(0..n).all(ready) {
        assert!(
            uktime::now() < deadline,
            "uksched: only {} of {n} CPUs entered the scheduler within {limit:?}",
            (0..n).filter(|&c| ready(c)).count()
        );
        core::hint::spin_loop();
    }
    log::info!(
        "uksched: {policy} scheduler on {n} CPU(s){}",
        if PREEMPTIVE { alloc::format!(", {} us time slices", SLICE_NS / 1000) } else { String::new() }
    );
}

/// The boot CPU's idle thread's stack (it runs nothing but the loop).
const IDLE_STACK: usize = 16 * 1024;

#[cfg(target_os = "none")]
ukboot::init!(ukboot::priority::LIBRARY, init);

/// Last step of the boot: the boot thread `main` becomes an ordinary
/// thread, with interrupts enabled like every other (`thread_start` enables
/// them for new threads). Otherwise it could never be preempted, its CPU
/// would take no IPI while it runs (a cross-CPU call to it, or RCU asking
/// it for a quiescent state, would wait for it to block), and its time
/// slices would never end.
#[cfg(target_os = "none")]
fn main_thread_interruptible() {
    ukplat::irq::enable();
}

#[cfg(target_os = "none")]
ukboot::init!(ukboot::priority::LATE, main_thread_interruptible);

/// A run state's name, for reports.
const fn state_name(s: u8) -> &'static str {
    match s {
        state::RUNNING => "running",
        state::BLOCKING => "blocking",
        state::BLOCKED => "blocked",
        state::QUEUED => "queued",
        _ => "exited",
    }
}
