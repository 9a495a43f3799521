//! Wait queues: block until a condition holds, woken by whoever changes it.
//!
//! The protocol is Linux's `prepare_to_wait` / `wake_up`, on the state
//! word of `state.rs`. A waiter, with preemption disabled, puts itself on
//! the queue and announces `BLOCKING` under the queue's lock, *then*
//! checks its condition, and switches out only if the condition is still
//! false and nobody woke it meanwhile. A waker changes the condition
//! *first*, then takes waiters off the queue (under the lock) and wakes
//! them. So either the waiter's check sees the change, or the waker finds
//! the waiter on the queue: a wake-up is never lost, on any number of
//! CPUs. `tests/loom.rs` model-checks this protocol as transcribed by
//! hand into its models (`waiter`, `timed_waiter`), around the real state
//! word: a change here must be made there too to be checked.
//!
//! A waker takes the waiter off the queue; the waiter, when it runs again,
//! looks whether it is still on it: if not, it was woken; if so, its
//! timeout fired, and it takes itself off. So a waiter is woken by exactly
//! one of the two, and `wake_one` wakes exactly one waiter.

use crate::list::{List, Which};
use crate::sched;
use core::time::Duration;
use ukplat::cpu::{preempt_disable, preempt_enable};
use uktime::Instant;

/// How a [`WaitQueue::wait_with`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// A `wake_one`/`wake_all` took this thread off the queue.
    Woken,
    /// The deadline passed first.
    TimedOut,
}

/// How one round of waiting ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// The check passed after queueing: no sleep.
    Satisfied,
    Woken,
    TimedOut,
}

/// A queue of threads waiting for something.
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
    waiters: ukspin::SpinLockIrq<List>,
}

impl Drop for WaitQueue {
    fn drop(&mut self) {
        let waiting = self.waiters.get_mut().len();
        assert!(
            waiting == 0,
            "uksched: a WaitQueue dropped while {waiting} thread(s) wait on it (they could never wake)"
        );
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        Self { waiters: ukspin::SpinLockIrq::new(List::new(Which::Wait)) }
    }

    /// Threads waiting now.
    pub fn len(&self) -> usize {
        self.waiters.lock().len()
    }

    /// Whether no thread waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One round: queue, check, sleep (until woken or `deadline`).
    fn round(&self, deadline: Option<Instant>, check: &mut dyn FnMut() -> bool) -> Round {
        let me = sched::current();
        preempt_disable();
        let seq = {
            let mut q = self.waiters.lock();
            let seq = me.state.begin_wait();
            me.wait_seq.set(seq);
            q.push_back(me.clone());
            seq
        };
        if check() {
            drop(self.waiters.lock().remove(&me));
            me.state.end_wait();
            preempt_enable();
            return Round::Satisfied;
        }
        let timer = deadline.map(|d| sched::add_timer(&me, d.as_nanos(), seq));
        sched::schedule();
        let still_queued = self.waiters.lock().remove(&me).is_some();
        me.state.end_wait();
        if let Some(cpu) = timer {
            sched::cancel_timer(&me, cpu);
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
            if self.round(None, &mut condition) == Round::Satisfied {
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
            match self.round(Some(deadline), &mut condition) {
                Round::Satisfied => return true,
                Round::TimedOut => return condition(),
                Round::Woken => {}
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
        match self.round(deadline, &mut check) {
            Round::Satisfied | Round::Woken => WaitResult::Woken,
            Round::TimedOut => WaitResult::TimedOut,
        }
    }

    /// Wakes the longest-waiting thread; returns whether there was one.
    pub fn wake_one(&self) -> bool {
        let taken = {
            let mut q = self.waiters.lock();
            q.pop_front().map(|t| {
                let seq = t.wait_seq.get();
                (t, seq)
            })
        };
        match taken {
            Some((t, seq)) => {
                sched::wake(&t, seq);
                true
            }
            None => false,
        }
    }

    /// Wakes every thread waiting now; returns how many. (Threads that
    /// start waiting meanwhile stay queued.)
    pub fn wake_all(&self) -> usize {
        let mut left = self.len();
        let mut woken = 0;
        while left > 0 && self.wake_one() {
            left -= 1;
            woken += 1;
        }
        woken
    }

    /// Wakes up to `n` threads; returns how many.
    pub fn wake_n(&self, n: usize) -> usize {
        (0..n).take_while(|_| self.wake_one()).count()
    }
}
