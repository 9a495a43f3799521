//! The sleeping reader-writer lock, writer-preferring.
//!
//! The algorithm is the Rust standard library's futex reader-writer lock
//! (`std::sys::sync::rwlock::futex`), with its two futexes replaced by two
//! wait queues: "wait while the word still has this value" is
//! [`WaitQueue::wait_with`] whose check runs after the thread is queued,
//! and "wake" is `wake_one`/`wake_all` after the word changed — the same
//! no-lost-wake-up argument as the futex's.
//!
//! The state word: bits 0..30 count readers (`0x3fff_ffff` = write-locked),
//! bit 30 says readers sleep, bit 31 that writers sleep. A writer that has
//! to wait sets bit 31, and **no new reader enters while it is set**, so the
//! readers inside drain and the writer gets in: writers do not starve. On
//! release, one sleeping writer is woken in preference to the readers;
//! readers are all woken when no writer waits. (So a steady stream of
//! writers can hold readers off: the price of writer preference.)

use crate::{BEFORE_SCHEDULER, NO_THREAD, current_thread_id};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use uksched::WaitQueue;

const READ_LOCKED: u32 = 1;
const MASK: u32 = (1 << 30) - 1;
const WRITE_LOCKED: u32 = MASK;
const MAX_READERS: u32 = MASK - 1;
const READERS_WAITING: u32 = 1 << 30;
const WRITERS_WAITING: u32 = 1 << 31;

fn is_unlocked(state: u32) -> bool {
    state & MASK == 0
}

fn is_write_locked(state: u32) -> bool {
    state & MASK == WRITE_LOCKED
}

fn has_readers_waiting(state: u32) -> bool {
    state & READERS_WAITING != 0
}

fn has_writers_waiting(state: u32) -> bool {
    state & WRITERS_WAITING != 0
}

/// A reader may enter: not write-locked, room for one more, and nobody
/// waiting (a waiting writer keeps new readers out; waiting readers mean an
/// unlock is waking them, and they go first).
fn is_read_lockable(state: u32) -> bool {
    state & MASK < MAX_READERS && !has_readers_waiting(state) && !has_writers_waiting(state)
}

/// The raw sleeping reader-writer lock behind [`RwLock`]: a state word, a
/// writer-notification counter, the writer's thread id and two wait queues
/// (readers, writers).
///
/// ```
/// use lock_api::RawRwLock as _;
/// use uklock::RawRwLock;
///
/// static RAW: RawRwLock = RawRwLock::new();
/// RAW.lock_shared();
/// assert!(RAW.try_lock_shared(), "readers share");
/// assert!(!RAW.try_lock_exclusive());
/// // SAFETY: two shared holds taken just above.
/// unsafe {
///     RAW.unlock_shared();
///     RAW.unlock_shared();
/// }
/// ```
pub struct RawRwLock {
    state: AtomicU32,
    /// Bumped on every writer wake-up (the writers' "futex").
    writer_notify: AtomicU32,
    /// The write holder's thread id (0 when not write-locked).
    writer: AtomicU64,
    readers_q: WaitQueue,
    writers_q: WaitQueue,
}

impl Default for RawRwLock {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for RawRwLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.state.load(Ordering::Relaxed);
        f.debug_struct("RawRwLock")
            .field("write_locked", &is_write_locked(s))
            .field("readers", &if is_write_locked(s) { 0 } else { s & MASK })
            .field("readers_waiting", &has_readers_waiting(s))
            .field("writers_waiting", &has_writers_waiting(s))
            .finish_non_exhaustive()
    }
}

impl RawRwLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        Self {
            state: AtomicU32::new(0),
            writer_notify: AtomicU32::new(0),
            writer: AtomicU64::new(NO_THREAD),
            readers_q: WaitQueue::new(),
            writers_q: WaitQueue::new(),
        }
    }

    /// Readers holding it now (0 when write-locked or free; a snapshot).
    pub fn readers(&self) -> u32 {
        let s = self.state.load(Ordering::Relaxed);
        if is_write_locked(s) { 0 } else { s & MASK }
    }

    /// Whether a writer sleeps waiting for it (new readers are held off).
    pub fn has_waiting_writers(&self) -> bool {
        has_writers_waiting(self.state.load(Ordering::Relaxed))
    }

    // --- shared ---------------------------------------------------------

    /// Takes a shared hold if no writer holds it or waits; never sleeps.
    pub fn try_lock_shared(&self) -> bool {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| {
                is_read_lockable(s).then_some(s + READ_LOCKED)
            })
            .is_ok()
    }

    /// Takes a shared hold, sleeping while a writer holds the lock or waits
    /// for it.
    ///
    /// # Panics
    /// When the calling thread holds it exclusively (a self-deadlock);
    /// when it has to sleep in an interrupt handler or with preemption
    /// disabled.
    #[inline]
    #[track_caller]
    pub fn lock_shared(&self) {
        let state = self.state.load(Ordering::Relaxed);
        if !is_read_lockable(state)
            || self
                .state
                .compare_exchange_weak(state, state + READ_LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            self.read_contended();
        }
    }

    /// Releases a shared hold; the last reader out wakes a waiting writer.
    ///
    /// # Safety
    /// The caller holds the lock shared.
    #[inline]
    pub unsafe fn unlock_shared(&self) {
        let state = self.state.fetch_sub(READ_LOCKED, Ordering::Release) - READ_LOCKED;
        // Readers wait on a read-locked lock only behind a waiting writer.
        debug_assert!(!has_readers_waiting(state) || has_writers_waiting(state));
        if is_unlocked(state) && has_writers_waiting(state) {
            self.wake_writer_or_readers(state);
        }
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn read_contended(&self) {
        let me = current_thread_id();
        if me != BEFORE_SCHEDULER && self.writer.load(Ordering::Relaxed) == me {
            crate::self_deadlock("RwLock (read while holding it for writing)");
        }
        let mut state = self.spin_read();
        loop {
            if is_read_lockable(state) {
                match self.state.compare_exchange_weak(
                    state,
                    state + READ_LOCKED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return,
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
            }
            assert!(state & MASK != MAX_READERS, "uklock: too many readers of an RwLock ({MAX_READERS})");
            // Make sure the readers-waiting bit is set before sleeping.
            if !has_readers_waiting(state)
                && let Err(s) = self.state.compare_exchange(
                    state,
                    state | READERS_WAITING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
            {
                state = s;
                continue;
            }
            // Sleep while the word is unchanged (checked once queued).
            let expected = state | READERS_WAITING;
            self.readers_q.wait_with(|| self.state.load(Ordering::Relaxed) == expected, None);
            state = self.spin_read();
        }
    }

    // --- exclusive ------------------------------------------------------

    /// Takes the lock exclusively if it is free; never sleeps.
    pub fn try_lock_exclusive(&self) -> bool {
        let ok = self
            .state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| {
                is_unlocked(s).then_some(s + WRITE_LOCKED)
            })
            .is_ok();
        if ok {
            self.writer.store(current_thread_id(), Ordering::Relaxed);
        }
        ok
    }

    /// Takes the lock exclusively, sleeping while readers or a writer hold
    /// it. A waiting writer holds off new readers.
    ///
    /// # Panics
    /// When the calling thread holds it exclusively already (a
    /// self-deadlock); when it has to sleep in an interrupt handler or with
    /// preemption disabled.
    #[inline]
    #[track_caller]
    pub fn lock_exclusive(&self) {
        let me = current_thread_id();
        if self.state.compare_exchange_weak(0, WRITE_LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.write_contended(me);
        }
        self.writer.store(me, Ordering::Relaxed);
    }

    /// Releases the exclusive hold: wakes one waiting writer, or else all
    /// waiting readers.
    ///
    /// # Safety
    /// The caller holds the lock exclusively.
    #[inline]
    pub unsafe fn unlock_exclusive(&self) {
        self.writer.store(NO_THREAD, Ordering::Relaxed);
        let state = self.state.fetch_sub(WRITE_LOCKED, Ordering::Release) - WRITE_LOCKED;
        debug_assert!(is_unlocked(state));
        if has_writers_waiting(state) || has_readers_waiting(state) {
            self.wake_writer_or_readers(state);
        }
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn write_contended(&self, me: u64) {
        if me != BEFORE_SCHEDULER && self.writer.load(Ordering::Relaxed) == me {
            crate::self_deadlock("RwLock");
        }
        let mut state = self.spin_write();
        let mut other_writers_waiting = 0;
        loop {
            if is_unlocked(state) {
                match self.state.compare_exchange_weak(
                    state,
                    state | WRITE_LOCKED | other_writers_waiting,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return,
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
            }
            if !has_writers_waiting(state)
                && let Err(s) = self.state.compare_exchange(
                    state,
                    state | WRITERS_WAITING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
            {
                state = s;
                continue;
            }
            // Other writers may sleep too: keep the bit once we lock.
            other_writers_waiting = WRITERS_WAITING;
            // Read the notification counter before re-checking the state,
            // so that no notification between the two is missed.
            let seq = self.writer_notify.load(Ordering::Acquire);
            state = self.state.load(Ordering::Relaxed);
            if is_unlocked(state) || !has_writers_waiting(state) {
                continue;
            }
            self.writers_q.wait_with(|| self.writer_notify.load(Ordering::Relaxed) == seq, None);
            state = self.spin_write();
        }
    }

    /// After an unlock that left the lock free with waiters: wakes one
    /// writer if any waits (readers stay asleep), else all readers.
    #[cold]
    #[inline(never)]
    fn wake_writer_or_readers(&self, mut state: u32) {
        debug_assert!(is_unlocked(state));
        // Only writers wait: wake one.
        if state == WRITERS_WAITING {
            match self.state.compare_exchange(state, 0, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    self.wake_writer();
                    return;
                }
                // Readers may be waiting now too.
                Err(s) => state = s,
            }
        }
        // Both wait: wake one writer, leave the readers waiting.
        if state == READERS_WAITING + WRITERS_WAITING {
            if self
                .state
                .compare_exchange(state, READERS_WAITING, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                // Locked meanwhile: its unlock wakes the waiters.
                return;
            }
            if self.wake_writer() {
                return;
            }
            // No writer was asleep (one may be just about to lock): wake
            // the readers rather than leave them waiting for nobody.
            state = READERS_WAITING;
        }
        if state == READERS_WAITING
            && self.state.compare_exchange(state, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.readers_q.wake_all();
        }
    }

    /// Wakes one writer; true when one was asleep on the queue.
    fn wake_writer(&self) -> bool {
        self.writer_notify.fetch_add(1, Ordering::Release);
        self.writers_q.wake_one()
    }

    fn spin_until(&self, done: impl Fn(u32) -> bool) -> u32 {
        crate::spin_until(&self.state, done)
    }

    fn spin_write(&self) -> u32 {
        // Stop when free, or when writers wait (join them, in order).
        self.spin_until(|s| is_unlocked(s) || has_writers_waiting(s))
    }

    fn spin_read(&self) -> u32 {
        self.spin_until(|s| !is_write_locked(s) || has_readers_waiting(s) || has_writers_waiting(s))
    }

    /// Whether it is held, shared or exclusive.
    pub fn is_locked(&self) -> bool {
        !is_unlocked(self.state.load(Ordering::Relaxed))
    }

    /// Whether it is held exclusively.
    pub fn is_locked_exclusive(&self) -> bool {
        is_write_locked(self.state.load(Ordering::Relaxed))
    }
}

// SAFETY: a writer enters only from a state with no readers and no writer
// (`is_unlocked`), a reader only when not write-locked (`is_read_lockable`
// requires fewer than MAX_READERS, and WRITE_LOCKED is above that); both by
// compare-and-swap on the one state word.
unsafe impl lock_api::RawRwLock for RawRwLock {
    #[allow(clippy::declare_interior_mutable_const, reason = "lock_api's INIT pattern")]
    const INIT: Self = Self::new();

    /// Guards stay with the thread that locked.
    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    #[track_caller]
    fn lock_shared(&self) {
        RawRwLock::lock_shared(self);
    }

    #[inline]
    fn try_lock_shared(&self) -> bool {
        RawRwLock::try_lock_shared(self)
    }

    #[inline]
    unsafe fn unlock_shared(&self) {
        // SAFETY: forwarded contract.
        unsafe { RawRwLock::unlock_shared(self) }
    }

    #[inline]
    #[track_caller]
    fn lock_exclusive(&self) {
        RawRwLock::lock_exclusive(self);
    }

    #[inline]
    fn try_lock_exclusive(&self) -> bool {
        RawRwLock::try_lock_exclusive(self)
    }

    #[inline]
    unsafe fn unlock_exclusive(&self) {
        // SAFETY: forwarded contract.
        unsafe { RawRwLock::unlock_exclusive(self) }
    }

    fn is_locked(&self) -> bool {
        RawRwLock::is_locked(self)
    }

    fn is_locked_exclusive(&self) -> bool {
        RawRwLock::is_locked_exclusive(self)
    }
}

/// A sleeping reader-writer lock: [`lock_api::RwLock`] over
/// [`RawRwLock`]. Readers share it; a writer has it alone. Writer-preferring:
/// once a writer waits, new readers wait behind it, so writers never starve
/// (readers can, under a steady stream of writers).
///
/// Do not take a read lock twice in one thread: a writer arriving between
/// the two makes the second wait for the writer, which waits for the first.
///
/// ```no_run
/// use uklock::RwLock;
///
/// static ROUTES: RwLock<[u32; 4]> = RwLock::new([0; 4]);
/// let writer = uksched::spawn(|| ROUTES.write()[2] = 7);
/// writer.join();
/// let (a, b) = (ROUTES.read(), ROUTES.try_read().expect("readers share"));
/// assert_eq!(a[2] + b[2], 14);
/// assert!(ROUTES.try_write().is_none(), "readers hold it");
/// ```
pub type RwLock<T> = lock_api::RwLock<RawRwLock, T>;
/// A read guard of a [`RwLock`].
pub type RwLockReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, RawRwLock, T>;
/// The write guard of a [`RwLock`].
pub type RwLockWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, RawRwLock, T>;
/// A [`RwLockReadGuard`] mapped to part of the data.
pub type MappedRwLockReadGuard<'a, T> = lock_api::MappedRwLockReadGuard<'a, RawRwLock, T>;
/// A [`RwLockWriteGuard`] mapped to part of the data.
pub type MappedRwLockWriteGuard<'a, T> = lock_api::MappedRwLockWriteGuard<'a, RawRwLock, T>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_writer_keeps_new_readers_out() {
        assert!(is_read_lockable(0));
        assert!(is_read_lockable(3 * READ_LOCKED));
        assert!(!is_read_lockable((3 * READ_LOCKED) | WRITERS_WAITING), "writer preference");
        assert!(!is_read_lockable(READERS_WAITING), "woken readers go first");
        assert!(!is_read_lockable(WRITE_LOCKED));
        assert!(!is_read_lockable(MAX_READERS), "the count would overflow into WRITE_LOCKED");
        // A writer enters only when nobody holds it, whatever waits.
        assert!(is_unlocked(WRITERS_WAITING | READERS_WAITING));
        assert!(!is_unlocked(READ_LOCKED | WRITERS_WAITING));
    }

    /// Sets the state word and runs the post-unlock wake-up decision on a
    /// lock nobody sleeps on (the queues are empty on the host).
    fn wake_from(state: u32) -> RawRwLock {
        let l = RawRwLock::new();
        l.state.store(state, Ordering::Relaxed);
        l.wake_writer_or_readers(state);
        l
    }

    #[test]
    fn an_unlock_wakes_a_writer_first_then_readers() {
        // Only writers wait: the bit is cleared (the woken writer sets it
        // again when it locks) and the writers are notified.
        let l = wake_from(WRITERS_WAITING);
        assert_eq!(l.state.load(Ordering::Relaxed), 0);
        assert_eq!(l.writer_notify.load(Ordering::Relaxed), 1);
        // Both wait, but no writer is asleep on the queue (it may be just
        // about to lock): the readers are not left waiting for nobody.
        let l = wake_from(WRITERS_WAITING | READERS_WAITING);
        assert_eq!(l.state.load(Ordering::Relaxed), 0);
        assert_eq!(l.writer_notify.load(Ordering::Relaxed), 1);
        // Only readers wait: all of them go.
        let l = wake_from(READERS_WAITING);
        assert_eq!(l.state.load(Ordering::Relaxed), 0);
        assert_eq!(l.writer_notify.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_last_reader_out_hands_over_to_a_waiting_writer() {
        let l = RawRwLock::new();
        l.state.store((2 * READ_LOCKED) | WRITERS_WAITING, Ordering::Relaxed);
        // SAFETY: two shared holds, simulated in the word.
        unsafe { l.unlock_shared() };
        assert_eq!(l.state.load(Ordering::Relaxed), READ_LOCKED | WRITERS_WAITING, "not the last reader");
        assert_eq!(l.writer_notify.load(Ordering::Relaxed), 0);
        // SAFETY: as above.
        unsafe { l.unlock_shared() };
        assert_eq!(l.state.load(Ordering::Relaxed), 0);
        assert_eq!(l.writer_notify.load(Ordering::Relaxed), 1, "the writer was notified");
    }
}
