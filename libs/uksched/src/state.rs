//! The thread state word: the wake/sleep protocol.
//!
//! Every thread has one 64-bit atomic word: the low byte is its run state,
//! the rest a *wait sequence number* that the thread bumps each time it
//! starts waiting. A waker names the wait it ends by that number, so a late
//! wake-up (a timer that fired for a wait that already ended, a waker that
//! popped the thread just before its timeout) can never end a later wait.
//!
//! ```text
//!            begin_wait (self)              block (self, in schedule)
//!  RUNNING ───────────────────▶ BLOCKING ─────────────────────────▶ BLOCKED
//!     ▲  ▲                         │  wake (anyone): the thread has      │
//!     │  └─────────────────────────┘  not switched out; it keeps running │
//!     │                                                                   │ wake (anyone):
//!     │ picked by a CPU                                                   │ the waker enqueues it
//!     └──────────────────────────── QUEUED ◀─────────────────────────────┘
//! ```
//!
//! Why no wake-up is lost: a waiter publishes `BLOCKING` (and its wait
//! queue entry) *before* it checks its condition; a waker changes the
//! condition *before* it looks for waiters. Either the waiter sees the new
//! condition and does not block, or the waker finds the entry and moves the
//! state on — from `BLOCKING` to `RUNNING` (the waiter's `block` then fails
//! and it does not sleep) or from `BLOCKED` to `QUEUED` (it is put on a run
//! queue). Exactly one of the waker's compare-and-swap and the waiter's
//! `block` wins, so the thread is enqueued at most once. The loom models in
//! `tests/loom.rs` check this code, with loom's atomics, under every
//! interleaving up to a preemption bound — driven by hand-written
//! stand-ins of the wait queue, the scheduler and the timer that follow
//! `wait.rs` and `sched.rs` (see the crate documentation, *What loom
//! checks*).

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};

/// On a CPU, running.
pub const RUNNING: u8 = 0;
/// Running, but about to sleep: announced a wait, not switched out yet.
pub const BLOCKING: u8 = 1;
/// Switched out, waiting for a wake-up.
pub const BLOCKED: u8 = 2;
/// On a run queue.
pub const QUEUED: u8 = 3;
/// Finished; never runs again.
pub const EXITED: u8 = 4;

const fn pack(seq: u64, state: u8) -> u64 {
    (seq << 8) | state as u64
}

/// The run state of a packed word.
pub const fn state_of(word: u64) -> u8 {
    (word & 0xff) as u8
}

/// The wait sequence number of a packed word.
pub const fn seq_of(word: u64) -> u64 {
    word >> 8
}

/// What a wake-up did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The thread had not switched out yet: it keeps running, nothing to
    /// enqueue.
    StillRunning,
    /// The thread was switched out: the caller now owns putting it on a run
    /// queue (its state is `QUEUED`).
    Enqueue,
    /// Not this wait any more (already woken, or a later wait): nothing done.
    Stale,
}

/// A thread's state word.
pub struct StateWord(AtomicU64);

impl StateWord {
    /// A new thread: queued, wait sequence 0.
    #[cfg(not(loom))]
    pub const fn new_queued() -> Self {
        Self(AtomicU64::new(pack(0, QUEUED)))
    }

    /// A new thread: queued, wait sequence 0.
    #[cfg(loom)]
    pub fn new_queued() -> Self {
        Self(AtomicU64::new(pack(0, QUEUED)))
    }

    /// A thread adopted while it runs (the boot context, an idle loop).
    #[cfg(not(loom))]
    pub const fn new_running() -> Self {
        Self(AtomicU64::new(pack(0, RUNNING)))
    }

    /// A thread adopted while it runs.
    #[cfg(loom)]
    pub fn new_running() -> Self {
        Self(AtomicU64::new(pack(0, RUNNING)))
    }

    /// The current run state.
    pub fn state(&self) -> u8 {
        state_of(self.0.load(Ordering::Acquire))
    }

    /// The whole word.
    pub fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// The running thread starts a wait: `RUNNING` → `BLOCKING` with the
    /// next sequence number, which it returns (wakers name the wait by it).
    /// Only the thread itself calls this, while it runs.
    pub fn begin_wait(&self) -> u64 {
        let word = self.0.load(Ordering::Relaxed);
        debug_assert_eq!(state_of(word), RUNNING, "begin_wait of a thread that is not running");
        let seq = seq_of(word).wrapping_add(1) & (u64::MAX >> 8);
        // SeqCst: ordered before the condition check that follows (which
        // a waker's condition change and its wake pair with), even where
        // the wait queue's lock does not order them. A swap, not a store:
        // on x86 a SeqCst store is an `xchg` anyway, and a read-modify-write
        // keeps a concurrent waker's compare-and-swap (for the previous
        // wait) from interleaving with it in any model.
        self.0.swap(pack(seq, BLOCKING), Ordering::SeqCst);
        seq
    }

    /// The scheduler switches the thread out: `BLOCKING` → `BLOCKED`.
    /// False when a wake-up came first (the state is `RUNNING` again): the
    /// thread must not sleep.
    pub fn block(&self) -> bool {
        let word = self.0.load(Ordering::Acquire);
        if state_of(word) != BLOCKING {
            return false;
        }
        self.0
            .compare_exchange(word, pack(seq_of(word), BLOCKED), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Ends wait `seq`: see [`Wake`].
    pub fn wake(&self, seq: u64) -> Wake {
        let mut word = self.0.load(Ordering::Acquire);
        loop {
            if seq_of(word) != seq {
                return Wake::Stale;
            }
            let (next, result) = match state_of(word) {
                BLOCKING => (pack(seq, RUNNING), Wake::StillRunning),
                BLOCKED => (pack(seq, QUEUED), Wake::Enqueue),
                _ => return Wake::Stale,
            };
            match self.0.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return result,
                Err(now) => word = now,
            }
        }
    }

    /// The thread ends its wait by itself (it did not sleep after all, or
    /// it runs again): whatever the state, it is `RUNNING` now, and later
    /// wake-ups for this wait are stale.
    pub fn end_wait(&self) {
        let word = self.0.load(Ordering::Acquire);
        // Bump the sequence so that a waker still holding this wait's
        // number finds it stale.
        let seq = seq_of(word).wrapping_add(1) & (u64::MAX >> 8);
        // A swap for the same reason as in `begin_wait` (one `xchg` per
        // finished wait).
        self.0.swap(pack(seq, RUNNING), Ordering::AcqRel);
    }

    /// The scheduler picked the thread (`QUEUED`, or a running thread it
    /// keeps): `RUNNING`, same sequence.
    pub fn set_running(&self) {
        let word = self.0.load(Ordering::Acquire);
        self.0.store(pack(seq_of(word), RUNNING), Ordering::Release);
    }

    /// The scheduler puts the running thread back on a run queue (a yield,
    /// a preemption): `QUEUED`, same sequence.
    pub fn set_queued(&self) {
        let word = self.0.load(Ordering::Acquire);
        self.0.store(pack(seq_of(word), QUEUED), Ordering::Release);
    }

    /// The thread finished.
    pub fn set_exited(&self) {
        let word = self.0.load(Ordering::Acquire);
        self.0.store(pack(seq_of(word), EXITED), Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_wake_before_the_switch_keeps_the_thread_running() {
        let s = StateWord::new_running();
        let seq = s.begin_wait();
        assert_eq!(s.wake(seq), Wake::StillRunning);
        assert!(!s.block());
        assert_eq!(s.state(), RUNNING);
    }

    #[test]
    fn a_wake_after_the_switch_enqueues_once() {
        let s = StateWord::new_running();
        let seq = s.begin_wait();
        assert!(s.block());
        assert_eq!(s.state(), BLOCKED);
        assert_eq!(s.wake(seq), Wake::Enqueue);
        assert_eq!(s.state(), QUEUED);
        assert_eq!(s.wake(seq), Wake::Stale);
    }

    #[test]
    fn a_late_wake_cannot_end_a_later_wait() {
        let s = StateWord::new_running();
        let first = s.begin_wait();
        s.end_wait();
        let second = s.begin_wait();
        assert_ne!(first, second);
        assert_eq!(s.wake(first), Wake::Stale);
        assert_eq!(s.state(), BLOCKING);
        assert_eq!(s.wake(second), Wake::StillRunning);
    }

    #[test]
    fn exited_and_queued_threads_are_not_woken() {
        let s = StateWord::new_queued();
        assert_eq!(s.wake(0), Wake::Stale);
        s.set_running();
        s.set_exited();
        assert_eq!(s.wake(0), Wake::Stale);
        assert_eq!(s.state(), EXITED);
    }
}
