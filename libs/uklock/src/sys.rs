//! What the futex-based locks (`futex_mutex.rs`, `futex_condvar.rs`,
//! `once.rs`) are written against: atomics, a lock, deadlines and the
//! three futex calls they make — `posix-futex` normally, loom's atomics and
//! a stand-in futex under `cfg(loom)` (the model checks in
//! `tests/loom_futex.rs` run the real lock code on top of them).
//!
//! The stand-in keeps the futex contract the algorithms rely on:
//!
//! * [`wait`] checks the word and queues the caller **under one lock**, so a
//!   waker that changes the word and then wakes either makes the check
//!   fail (`Changed`) or finds the waiter queued;
//! * [`wake`] takes up to `max` waiters of the word off, oldest first, in
//!   one hold of the lock;
//! * [`cmp_requeue`] compares the source word under the same lock, wakes
//!   the first `nr_wake` waiters and moves the next `nr_requeue` to the
//!   target word, in one step;
//! * a timed wait ends either woken or timed out, never both: the timeout
//!   takes the waiter off under the lock, and only if no waker did.
//!
//! A waiter nobody wakes stays parked (`loom::thread::park`), so a lost
//! wake-up shows as loom's "deadlock" failure; a timed waiter may time out
//! at any point after it queued itself (loom explores both outcomes).

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};

/// A deadline of a timed wait: the monotonic clock's [`uksched::Instant`].
#[cfg(not(loom))]
pub type Instant = uksched::Instant;

/// loom: a deadline is only "this wait may time out"; the stand-in futex
/// lets it time out at any point (loom explores when).
#[cfg(loom)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instant;

/// Constructors that are `const fn` normally and plain `fn` under loom
/// (ukspin's macro; the `cfg(loom)` is this crate's).
pub(crate) use ukspin::const_fn_unless_loom as const_fn;

/// How a futex wait (or a [`Sleep`](crate::futex::Sleep)'s wait) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A wake-up (possibly after a requeue to another word).
    Woken,
    /// The word did not hold the expected value: not queued (`EAGAIN`).
    Changed,
    /// The deadline passed first (`ETIMEDOUT`).
    TimedOut,
}

/// A short lock over a few fields: a `ukspin` spinlock normally, loom's
/// mutex under loom. Held for a handful of instructions and, by
/// `Condvar::notify_all`, across one requeue (which takes the futex
/// buckets' spinlocks and never sleeps).
pub(crate) struct Lock<T> {
    #[cfg(not(loom))]
    inner: ukspin::SpinLock<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

impl<T> Lock<T> {
    /// A lock over `value`.
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Self {
        Self { inner: ukspin::SpinLock::new(value) }
    }

    /// A lock over `value`.
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        Self { inner: loom::sync::Mutex::new(value) }
    }

    /// Takes the lock (spinning with preemption disabled, in the guest).
    #[inline]
    pub(crate) fn lock(&self) -> impl core::ops::DerefMut<Target = T> + '_ {
        #[cfg(not(loom))]
        {
            self.inner.lock()
        }
        #[cfg(loom)]
        {
            self.inner.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

#[cfg(not(loom))]
pub(crate) use futex::{cmp_requeue, wait, wake};
#[cfg(loom)]
pub(crate) use stand_in::{cmp_requeue, wait, wake};

/// The real futex calls: `posix-futex`'s safe API.
#[cfg(not(loom))]
mod futex {
    use super::{AtomicU32, Instant, Wait};
    use posix_futex::{Deadline, FUTEX_BITSET_MATCH_ANY, errno};

    /// Sleeps while `word` holds `expected`, until a wake-up or `deadline`:
    /// `futex_wait` without a deadline, `futex_wait_bitset` with an
    /// absolute monotonic one (no clock read here).
    pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wait {
        let r = match deadline {
            None => posix_futex::futex_wait(word, expected, None),
            Some(at) => posix_futex::futex_wait_bitset(
                word,
                expected,
                FUTEX_BITSET_MATCH_ANY,
                Some(Deadline::Monotonic(at)),
            ),
        };
        match r {
            Ok(()) => Wait::Woken,
            Err(e) if e.0 == errno::ETIMEDOUT => Wait::TimedOut,
            // EAGAIN (EINVAL and EFAULT cannot happen: a non-zero bitset,
            // and the safe API does not check the address).
            Err(_) => Wait::Changed,
        }
    }

    /// Wakes up to `max` waiters of `word`; returns how many.
    #[inline]
    pub(crate) fn wake(word: &AtomicU32, max: usize) -> usize {
        posix_futex::futex_wake(word, max)
    }

    /// `FUTEX_CMP_REQUEUE`: if `from` still holds `expected`, wakes up to
    /// `nr_wake` of its waiters and moves up to `nr_requeue` more to `to`;
    /// returns how many it woke and moved, or None (`EAGAIN`) when `from`
    /// changed.
    pub(crate) fn cmp_requeue(
        from: &AtomicU32,
        to: &AtomicU32,
        nr_wake: usize,
        nr_requeue: usize,
        expected: u32,
    ) -> Option<usize> {
        posix_futex::futex_cmp_requeue(from, to, nr_wake, nr_requeue, expected).ok()
    }
}

/// loom's stand-in for the futex calls: one global list of sleepers (each
/// with the word it waits on) under a loom mutex. Nothing in it has a
/// destructor that reaches into loom's runtime (no loom `Arc`, no guard
/// held while parked), so an execution that deadlocks — a lost wake-up —
/// fails with loom's report instead of aborting in its clean-up.
#[cfg(loom)]
mod stand_in {
    use super::{AtomicU32, Instant, Wait};
    use core::sync::atomic::Ordering;
    use loom::sync::{Mutex, MutexGuard};
    use std::vec::Vec;

    /// A parked waiter.
    struct Sleeper {
        /// Which wait this is.
        id: usize,
        /// The word it waits on (its address); a requeue changes it.
        key: usize,
        /// Unparked by the waker that takes it off the list.
        thread: loom::thread::Thread,
    }

    /// The futex "buckets": every sleeper, oldest first.
    struct Sleepers {
        next_id: usize,
        list: Vec<Sleeper>,
    }

    impl Sleepers {
        fn holds(&self, id: usize) -> bool {
            self.list.iter().any(|s| s.id == id)
        }
    }

    loom::lazy_static! {
        static ref SLEEPERS: Mutex<Sleepers> = Mutex::new(Sleepers { next_id: 0, list: Vec::new() });
    }

    fn sleepers() -> MutexGuard<'static, Sleepers> {
        SLEEPERS.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(word: &AtomicU32) -> usize {
        core::ptr::from_ref(word) as usize
    }

    /// Takes up to `max` sleepers of `key` off, oldest first, and unparks
    /// them; returns how many.
    fn wake_locked(s: &mut Sleepers, key: usize, max: usize) -> usize {
        let mut woken = 0;
        let mut i = 0;
        while i < s.list.len() && woken < max {
            if s.list[i].key == key {
                s.list.remove(i).thread.unpark();
                woken += 1;
            } else {
                i += 1;
            }
        }
        woken
    }

    pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wait {
        let id = {
            let mut s = sleepers();
            // The value check under the lock that wakers take: the futex
            // contract.
            if word.load(Ordering::SeqCst) != expected {
                return Wait::Changed;
            }
            let id = s.next_id;
            s.next_id += 1;
            s.list.push(Sleeper { id, key: key(word), thread: loom::thread::current() });
            id
        };
        if deadline.is_some() {
            // The timer fires at some point after the waiter queued itself:
            // let the others run, then it takes the waiter off — unless a
            // waker already did (exactly one of them ends the wait).
            loom::thread::yield_now();
            let mut s = sleepers();
            if !s.holds(id) {
                return Wait::Woken;
            }
            s.list.retain(|x| x.id != id);
            return Wait::TimedOut;
        }
        loop {
            loom::thread::park();
            // Woken: a waker took it off the list (under the lock, which
            // orders what the waker did before).
            if !sleepers().holds(id) {
                return Wait::Woken;
            }
        }
    }

    pub(crate) fn wake(word: &AtomicU32, max: usize) -> usize {
        wake_locked(&mut sleepers(), key(word), max)
    }

    pub(crate) fn cmp_requeue(
        from: &AtomicU32,
        to: &AtomicU32,
        nr_wake: usize,
        nr_requeue: usize,
        expected: u32,
    ) -> Option<usize> {
        let mut s = sleepers();
        if from.load(Ordering::SeqCst) != expected {
            return None;
        }
        let (from, to) = (key(from), key(to));
        let woken = wake_locked(&mut s, from, nr_wake);
        let mut moved = 0;
        for sleeper in s.list.iter_mut().filter(|x| x.key == from).take(nr_requeue) {
            sleeper.key = to;
            moved += 1;
        }
        Some(woken + moved)
    }
}
