//! Wait queues: block until a condition holds, woken by whoever changes it.
//!
//! The protocol is Linux's `prepare_to_wait` / `wake_up`, on the state
//! word of `state.rs`. A waiter, with preemption disabled, announces
//! `BLOCKING` and puts a node for itself on the queue under the queue's
//! lock, *then* checks its condition — or checks it under the lock, before
//! queueing ([`WaitQueue::wait_if`], the futex way) — and switches out only
//! if the condition is still false and nobody woke it meanwhile. A waker
//! changes the condition *first*, then takes waiters off the queue (under
//! the lock) and wakes them. So either the waiter's check sees the change,
//! or the waker finds the waiter on the queue: a wake-up is never lost, on
//! any number of CPUs.
//!
//! The queue itself (`waitq.rs`) is a list of nodes on the waiters' stacks,
//! each naming the queue that holds it: a waker takes a node off and wakes
//! its thread; a requeue moves it to another queue; a waiter that runs
//! again looks where its node is — on no queue (a waker took it: woken),
//! or on some queue (a timeout, or a check that ended the wait: it takes
//! itself off, from whichever queue holds it now). So a waiter is woken by
//! exactly one of the two, and `wake_one` wakes exactly one waiter.
//! Wake-ups are collected under the lock and done after it is released
//! (up to eight at a time), so the lock is not held across run-queue locks
//! and IPIs in the common case.
//!
//! `tests/loom.rs` model-checks `waitq.rs` itself and the state word, with
//! loom's atomics and mutex, against stand-ins of the scheduler and the
//! timer (see the crate documentation, *What loom checks*).

use crate::sched;
use crate::thread::ThreadInner;
use crate::waitq::{self, Waiter};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::Cell;
use core::pin::{Pin, pin};
use core::time::Duration;
use ukplat::cpu::{preempt_disable, preempt_enable};
use uktime::Instant;

pub use waitq::MATCH_ANY;

/// How a [`WaitQueue::wait_with`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// A `wake_one`/`wake_all` took this thread off the queue.
    Woken,
    /// The deadline passed first.
    TimedOut,
}

/// How a [`WaitQueue::wait_if`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The check, run under the queue's lock, said not to wait: the thread
    /// was never queued.
    NotQueued,
    /// A waker took the thread off the queue (possibly after requeues).
    Woken,
    /// The deadline passed first; the thread took itself off.
    TimedOut,
}

/// How a [`wait_any`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyOutcome {
    /// The check of entry `i` said not to wait (nothing had woken an entry
    /// queued before it).
    NotQueued(usize),
    /// A waker took entry `i` off its queue (the lowest such index).
    Woken(usize),
    /// The deadline passed first.
    TimedOut,
}

/// How one round of waiting ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// The check under the lock refused to queue.
    NotQueued,
    /// The check after queueing passed: no sleep.
    Satisfied,
    Woken,
    TimedOut,
}

/// What a waker needs to wake a waiter: its thread and the sequence number
/// of this wait (set before the node is queued).
struct Wakee {
    thread: Arc<ThreadInner>,
    seq: Cell<u64>,
}

// SAFETY: `seq` is written by the waiting thread before its node is queued
// and read by wakers under the lock of the queue that holds the node (the
// lock orders the two); `ThreadInner` is `Sync`.
unsafe impl Sync for Wakee {}

/// Threads to wake once the queue locks are released: up to [`BATCH`]
/// are kept; more are woken at once, still under the lock (waking takes a
/// run-queue lock, which ranks below every wait-queue lock).
struct Batch {
    pending: [Option<(Arc<ThreadInner>, u64)>; BATCH],
    len: usize,
}

const BATCH: usize = 8;

impl Batch {
    const fn new() -> Self {
        Self { pending: [const { None }; BATCH], len: 0 }
    }

    fn add(&mut self, w: &Wakee) {
        if self.len == BATCH {
            self.flush();
        }
        self.pending[self.len] = Some((w.thread.clone(), w.seq.get()));
        self.len += 1;
    }

    fn flush(&mut self) {
        for slot in &mut self.pending[..self.len] {
            if let Some((t, seq)) = slot.take() {
                sched::wake(&t, seq);
            }
        }
        self.len = 0;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.flush();
    }
}

fn any(_: usize, _: u32) -> bool {
    true
}

/// A queue of threads waiting for something.
///
/// Each waiter has a *key* and a *bitset* that wakers can select on
/// ([`wake_where`](Self::wake_where)); the plain waits use key 0 and
/// [`MATCH_ANY`]. A caller can run its check under the queue's lock before
/// sleeping ([`wait_if`](Self::wait_if): nobody can wake the queue between
/// the check and the queueing), wake and move waiters between two queues
/// atomically ([`WaitQueue::pair`]), and time out, be woken and be requeued
/// in any race without a waiter left behind on a list: each waiter knows
/// which queue holds it (see the `waitq` module).
///
/// ```no_run
/// use core::sync::atomic::{AtomicBool, Ordering};
/// use uksched::WaitQueue;
///
/// static READY: AtomicBool = AtomicBool::new(false);
/// static QUEUE: WaitQueue = WaitQueue::new();
///
/// let consumer = uksched::spawn(|| {
///     QUEUE.wait_until(|| READY.load(Ordering::Acquire));
///     "ready"
/// });
/// READY.store(true, Ordering::Release); // change the condition first,
/// QUEUE.wake_all(); // then wake
/// assert_eq!(consumer.join(), "ready");
/// ```
pub struct WaitQueue {
    q: waitq::Queue<Wakee>,
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        Self { q: waitq::Queue::new() }
    }

    /// Threads waiting now.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Whether no thread waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One round: check under the lock (`under_lock` false: not queued),
    /// queue, check after queueing (`after` true: done), sleep until woken
    /// or `deadline`, then take itself off if nobody did.
    fn round(
        &self,
        key: usize,
        bitset: u32,
        deadline: Option<Instant>,
        under_lock: &mut dyn FnMut() -> bool,
        after: &mut dyn FnMut() -> bool,
    ) -> Round {
        let me = sched::current();
        preempt_disable();
        let node = pin!(Waiter::new(Wakee { thread: me, seq: Cell::new(0) }, key, bitset));
        let me = &node.token().thread;
        let seq = {
            let mut q = self.q.lock();
            if !under_lock() {
                drop(q);
                preempt_enable();
                return Round::NotQueued;
            }
            let seq = me.state.begin_wait();
            node.token().seq.set(seq);
            // SAFETY: `self` stays borrowed until the node is off every
            // queue (below, or in its drop); a requeue only moves it to a
            // `'static` queue.
            unsafe { q.push(node.as_ref()) };
            seq
        };
        if after() {
            node.as_ref().dequeue();
            me.state.end_wait();
            preempt_enable();
            return Round::Satisfied;
        }
        let timer = deadline.map(|d| sched::add_timer(me, d.as_nanos(), seq));
        sched::schedule();
        let still_queued = node.as_ref().dequeue();
        me.state.end_wait();
        if let Some(cpu) = timer {
            sched::cancel_timer(me, cpu);
        }
        preempt_enable();
        debug_assert!(!still_queued || deadline.is_some(), "a waiter without deadline ran again unwoken");
        if still_queued { Round::TimedOut } else { Round::Woken }
    }

    /// Blocks until `condition` returns true. It is checked first, then
    /// again after every wake-up (a wake-up is a hint, not a promise), and
    /// runs with preemption disabled: keep it short, and do not block in it.
    pub fn wait_until(&self, mut condition: impl FnMut() -> bool) {
        while !condition() {
            if self.round(0, MATCH_ANY, None, &mut || true, &mut condition) == Round::Satisfied {
                return;
            }
        }
    }

    /// [`wait_until`](Self::wait_until) with a deadline: returns whether the
    /// condition holds (false: the deadline passed first).
    pub fn wait_until_deadline(&self, mut condition: impl FnMut() -> bool, deadline: Instant) -> bool {
        loop {
            if condition() {
                return true;
            }
            if uktime::now() >= deadline {
                return false;
            }
            match self.round(0, MATCH_ANY, Some(deadline), &mut || true, &mut condition) {
                Round::Satisfied => return true,
                Round::TimedOut => return condition(),
                Round::Woken | Round::NotQueued => {}
            }
        }
    }

    /// [`wait_until`](Self::wait_until) for at most `timeout`.
    pub fn wait_until_timeout(&self, condition: impl FnMut() -> bool, timeout: Duration) -> bool {
        self.wait_until_deadline(condition, uktime::now() + timeout)
    }

    /// The building block of sleeping locks and condition variables: puts
    /// the thread on the queue, then calls `before_sleep` (e.g. to release a
    /// lock, or to check a lock word once more and return `false` to not
    /// sleep), then sleeps until a wake-up or `deadline`. `before_sleep`
    /// runs with preemption disabled and must not block. Returns
    /// [`WaitResult::Woken`] also when `before_sleep` returned false.
    pub fn wait_with(&self, before_sleep: impl FnOnce() -> bool, deadline: Option<Instant>) -> WaitResult {
        let mut before = Some(before_sleep);
        let mut check = || before.take().is_some_and(|f| !f());
        match self.round(0, MATCH_ANY, deadline, &mut || true, &mut check) {
            Round::Satisfied | Round::Woken | Round::NotQueued => WaitResult::Woken,
            Round::TimedOut => WaitResult::TimedOut,
        }
    }

    /// Waits once as `key` with `bitset`, if `check` — run under the
    /// queue's lock, with interrupts disabled — says so: the futex
    /// protocol. A waker that changes what `check` reads and then wakes
    /// this queue either runs before the check (which sees the change) or
    /// finds the thread queued: no wake-up is lost. Unlike the other waits
    /// this does not loop: it returns after one wake-up, timeout or
    /// refusal.
    pub fn wait_if(
        &self,
        key: usize,
        bitset: u32,
        check: impl FnOnce() -> bool,
        deadline: Option<Instant>,
    ) -> WaitOutcome {
        let mut check = Some(check);
        let mut under_lock = || check.take().is_some_and(|f| f());
        match self.round(key, bitset, deadline, &mut under_lock, &mut || false) {
            Round::NotQueued => WaitOutcome::NotQueued,
            Round::Woken | Round::Satisfied => WaitOutcome::Woken,
            Round::TimedOut => WaitOutcome::TimedOut,
        }
    }

    /// Wakes the longest-waiting thread; returns whether there was one.
    pub fn wake_one(&self) -> bool {
        self.wake_where(1, any) == 1
    }

    /// Wakes every thread waiting now, in one hold of the lock; returns
    /// how many.
    pub fn wake_all(&self) -> usize {
        self.wake_where(usize::MAX, any)
    }

    /// Wakes up to `n` threads; returns how many.
    pub fn wake_n(&self, n: usize) -> usize {
        self.wake_where(n, any)
    }

    /// Wakes up to `max` of the threads for which `pick(key, bitset)`
    /// holds, longest-waiting first, in one hold of the lock; returns how
    /// many. `pick` runs under the lock with interrupts disabled.
    pub fn wake_where(&self, max: usize, pick: impl FnMut(usize, u32) -> bool) -> usize {
        let mut batch = Batch::new();
        let mut q = self.q.lock();
        q.wake(max, pick, |w| batch.add(w))
    }

    /// How many waiting threads `pick(key, bitset)` selects now.
    pub fn count_where(&self, pick: impl FnMut(usize, u32) -> bool) -> usize {
        self.q.lock().count(pick)
    }

    /// Locks two queues together (lower address first; one lock when they
    /// are the same queue) to wake on both and move waiters from `first`
    /// to `second` as one atomic step, after an optional check under both
    /// locks (`FUTEX_CMP_REQUEUE`, `FUTEX_WAKE_OP`). Wake-ups happen when
    /// the [`QueuePair`] drops, after the locks are released.
    pub fn pair<'a, 'b>(first: &'a WaitQueue, second: &'b WaitQueue) -> QueuePair<'a, 'b> {
        // Declared first so that it drops last, after the locks.
        let batch = Batch::new();
        QueuePair { locks: waitq::Queue::lock_pair(&first.q, &second.q), batch }
    }
}

/// Two wait queues locked together ([`WaitQueue::pair`]).
pub struct QueuePair<'a, 'b> {
    // Fields drop in order: the locks, then the wake-ups.
    locks: waitq::Pair<'a, 'b, Wakee>,
    batch: Batch,
}

impl QueuePair<'_, '_> {
    /// Wakes up to `max` waiters of the first queue that `pick(key,
    /// bitset)` selects; returns how many.
    pub fn wake_first(&mut self, max: usize, pick: impl FnMut(usize, u32) -> bool) -> usize {
        let batch = &mut self.batch;
        self.locks.wake_first(max, pick, |w| batch.add(w))
    }

    /// Wakes up to `max` waiters of the second queue that `pick(key,
    /// bitset)` selects; returns how many.
    pub fn wake_second(&mut self, max: usize, pick: impl FnMut(usize, u32) -> bool) -> usize {
        let batch = &mut self.batch;
        self.locks.wake_second(max, pick, |w| batch.add(w))
    }

    /// Waiters on the first queue now.
    pub fn first_len(&self) -> usize {
        self.locks.first_len()
    }
}

impl QueuePair<'_, 'static> {
    /// Moves up to `max` waiters of the first queue that `pick(key,
    /// bitset)` selects to the second, giving them `new_key`; returns how
    /// many. They keep waiting there (their timeouts still run) and leave
    /// by a wake-up on the second queue, or by themselves. The second queue
    /// is `'static` because the moved threads only borrowed the first.
    pub fn requeue(&mut self, max: usize, pick: impl FnMut(usize, u32) -> bool, new_key: usize) -> usize {
        // SAFETY: the second queue is `'static`.
        unsafe { self.locks.requeue(max, pick, new_key) }
    }
}

/// One entry of [`wait_any`]: a queue, the key and bitset to wait as, and
/// the check to run under that queue's lock before queueing.
pub struct AnyEntry<'a> {
    /// The queue.
    pub queue: &'a WaitQueue,
    /// The key to wait as.
    pub key: usize,
    /// The bitset to wait with.
    pub bitset: u32,
    /// Run under the queue's lock before queueing: false means do not
    /// wait at all.
    pub check: &'a dyn Fn() -> bool,
}

/// Waits on several queues at once (`futex_waitv`): queues the thread on
/// each entry's queue in order, each after its check under that queue's
/// lock, then sleeps until a waker takes any entry off, or `deadline`.
/// When a check refuses, the entries queued so far are taken off again;
/// if a waker took one meanwhile, that counts as woken. On return the
/// thread is on no queue.
pub fn wait_any(entries: &[AnyEntry<'_>], deadline: Option<Instant>) -> AnyOutcome {
    let me = sched::current();
    preempt_disable();
    let seq = me.state.begin_wait();
    let nodes: Vec<Waiter<Wakee>> = entries
        .iter()
        .map(|e| Waiter::new(Wakee { thread: me.clone(), seq: Cell::new(seq) }, e.key, e.bitset))
        .collect();
    let nodes: Pin<Box<[Waiter<Wakee>]>> = Box::into_pin(nodes.into_boxed_slice());
    // SAFETY: the slice is pinned, so each element is.
    let node = |i: usize| unsafe { Pin::new_unchecked(&nodes[i]) };
    let mut refused = None;
    for (i, e) in entries.iter().enumerate() {
        let mut q = e.queue.q.lock();
        if !(e.check)() {
            refused = Some(i);
            break;
        }
        // SAFETY: every queue is borrowed for this call, and every node is
        // off its queue before the call returns (below, or when `nodes`
        // drops).
        unsafe { q.push(node(i)) };
    }
    // Takes every entry off; the lowest index a waker took.
    let dequeue_all = |upto: usize| {
        let mut woken = None;
        for i in 0..upto {
            if !node(i).dequeue() && woken.is_none() {
                woken = Some(i);
            }
        }
        woken
    };
    let outcome = if let Some(i) = refused {
        match dequeue_all(i) {
            Some(w) => AnyOutcome::Woken(w),
            None => AnyOutcome::NotQueued(i),
        }
    } else {
        let timer = deadline.map(|d| sched::add_timer(&me, d.as_nanos(), seq));
        sched::schedule();
        let woken = dequeue_all(entries.len());
        if let Some(cpu) = timer {
            sched::cancel_timer(&me, cpu);
        }
        match woken {
            Some(w) => AnyOutcome::Woken(w),
            None => {
                debug_assert!(deadline.is_some(), "wait_any without deadline ran again unwoken");
                AnyOutcome::TimedOut
            }
        }
    };
    me.state.end_wait();
    drop(nodes);
    preempt_enable();
    outcome
}
