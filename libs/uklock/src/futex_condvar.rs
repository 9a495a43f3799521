//! The futex condition variable: a sequence word the waiters sleep on,
//! and a `notify_all` that wakes one waiter and moves the others onto the
//! mutex's futex word (`FUTEX_CMP_REQUEUE`, as glibc's condition variable
//! did before 2.25) instead of waking them all to fight over the mutex.
//!
//! **Waiting.** A waiter, holding the mutex, registers (under the
//! binding lock: the count of waiters, and which mutex they use), reads
//! the sequence word, releases the mutex and sleeps while the word still
//! holds what it read. Afterwards it deregisters and re-takes the mutex
//! with [`RawMutex::lock_after_wake`].
//!
//! **Notifying.** `notify_one` increments the word and wakes one sleeper;
//! `notify_all` increments it and, in one futex operation, wakes one
//! sleeper and requeues all the others onto the mutex's word. A waiter that
//! read the word before a notification (it checked its condition under the
//! mutex, before the notifier changed it) either sees the incremented word
//! when its futex wait checks it under the bucket lock (and does not
//! sleep), or is queued before the notifier's wake-up or requeue, which
//! then finds it: no lost wake-up. (Only exactly 2^32 notifications
//! between a waiter's read and its futex check would bring the word back
//! to the value it read — then it sleeps until the next one, as with
//! `std`'s futex condition variable.) The notifier's fast path — nobody
//! registered — is one load: a waiter registers before it releases the
//! mutex, so a notifier that changed the condition under the mutex sees
//! it.
//!
//! **Why the requeue is safe.** Requeued waiters sleep on the mutex's word
//! without having checked it, so something must wake them: the one waiter
//! `notify_all` woke (it was taken off the condition variable in the same
//! atomic step that moved the others) re-takes the mutex with
//! `lock_after_wake`, the mutex's contended path without its `0 → 1`
//! attempt. It swaps `2` into the word (or finds `2` there) before it does
//! anything else: if the mutex was free it now holds it as `2`, otherwise
//! the holder will find `2` when it unlocks. Either way the next `unlock`
//! sees `2` and wakes one sleeper of the word — the first requeued waiter,
//! which also re-takes the mutex with `lock_after_wake`, leaving `2` for
//! the next, and so on: the waiters get the mutex one after the other,
//! each woken by its predecessor's `unlock`, and each wake-up finds the
//! mutex free instead of N threads waking to find it taken. Had the woken
//! waiter taken the mutex `0 → 1`, its `unlock` would wake nobody and the
//! requeued waiters would sleep forever. A requeued waiter whose timeout
//! passes leaves the mutex's queue without consuming a wake-up (posix-futex
//! ends a wait by exactly one of waker and timer), so the chain goes on
//! without it. If no waiter was left on the condition variable to wake,
//! none was there to requeue either.
//!
//! **Which mutex.** `notify_all` must know the mutex word to requeue onto.
//! Each waiter records it under the binding lock: the first waiter while
//! nobody waits sets it; a waiter with another mutex while others wait
//! (legal here, as with the wait-queue Condvar, if unusual) marks the
//! binding *mixed*, and until every waiter has left, `notify_all` falls
//! back to waking them all. `notify_all` holds the binding lock from
//! reading the binding to the end of its requeue, and waiters deregister
//! under it: so every waiter it can requeue registered with that very
//! mutex, and that mutex — borrowed by those waiters until they
//! deregister — is alive while the requeue names it.

use crate::futex_mutex::RawMutex;
use crate::sys::{self, AtomicU32, Instant, Lock, Wait, const_fn};
use core::sync::atomic::Ordering;

/// The mutex the registered waiters use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Nobody waited yet.
    Unbound,
    /// The futex word of the one mutex every registered waiter uses.
    One(*const AtomicU32),
    /// Waiters with different mutexes: `notify_all` wakes them all.
    Mixed,
}

/// The binding, under its lock.
struct Binding {
    target: Target,
}

// SAFETY: the pointer is only an address until `notify_all` dereferences
// it, which it does under the binding lock while a registered waiter —
// in another thread, borrowing that mutex until it deregisters under the
// same lock — keeps it alive; moving the binding between threads changes
// none of that.
unsafe impl Send for Binding {}

/// A condition variable for [`futex::Mutex`](crate::futex::Mutex) (and
/// [`crate::Condvar`] with `uklock.mutex = "futex"`): a thread waits
/// (releasing the mutex while it sleeps) until another notifies it.
/// Wake-ups may be spurious — always re-check the condition, or use
/// [`wait_while`](Self::wait_while).
///
/// The same interface as the wait-queue
/// [`waitqueue::Condvar`](crate::waitqueue::Condvar); [`notify_all`](Self::notify_all)
/// wakes one waiter and requeues the others onto the mutex, which hands
/// itself to them one at a time.
///
/// ```no_run
/// use uklock::futex::{Condvar, Mutex};
///
/// static QUEUE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// static NOT_EMPTY: Condvar = Condvar::new();
///
/// let consumers: Vec<_> = (0..4)
///     .map(|_| {
///         uksched::spawn(|| {
///             let mut q = QUEUE.lock();
///             NOT_EMPTY.wait_while(&mut q, |q| q.is_empty());
///             q.pop()
///         })
///     })
///     .collect();
/// QUEUE.lock().extend([1, 2, 3, 4]);
/// // One consumer wakes; the other three sleep on the mutex and get it in turn.
/// NOT_EMPTY.notify_all();
/// assert!(consumers.into_iter().all(|c| c.join().is_some()));
/// ```
pub struct Condvar {
    /// The futex word the waiters sleep on: incremented by every
    /// notification.
    seq: AtomicU32,
    /// Registered waiters (between registering and deregistering; a
    /// requeued one counts until it wakes). Written under `binding`.
    waiters: AtomicU32,
    /// Which mutex the waiters use.
    binding: Lock<Binding>,
}

impl Default for Condvar {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Condvar")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("waiters", &self.waiters.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Condvar {
    const_fn! {
        /// A condition variable nobody waits on.
        pub fn new() -> Self {
            Self {
                seq: AtomicU32::new(0),
                waiters: AtomicU32::new(0),
                binding: Lock::new(Binding { target: Target::Unbound }),
            }
        }
    }

    /// The wait: [`release_and_sleep`](Self::release_and_sleep), then
    /// re-take `mutex` as `2` (see the module documentation). True: the
    /// deadline passed.
    ///
    /// # Safety
    /// The calling thread holds `mutex`; it holds it again on return.
    #[track_caller]
    unsafe fn wait_on(&self, mutex: &RawMutex, deadline: Option<Instant>) -> bool {
        // SAFETY: forwarded contract.
        let timed_out = unsafe { self.release_and_sleep(mutex, deadline) };
        mutex.lock_after_wake();
        timed_out
    }

    /// Registers, releases `mutex`, sleeps on the sequence word until
    /// notified, `deadline` or a spurious wake-up, and deregisters; the
    /// caller re-takes `mutex`. True: the deadline passed.
    ///
    /// # Safety
    /// The calling thread holds `mutex`; it no longer does on return.
    #[track_caller]
    unsafe fn release_and_sleep(&self, mutex: &RawMutex, deadline: Option<Instant>) -> bool {
        let word: *const AtomicU32 = mutex.word();
        let seq = {
            let mut binding = self.binding.lock();
            let waiting = self.waiters.load(Ordering::Relaxed);
            binding.target = match binding.target {
                _ if waiting == 0 => Target::One(word),
                Target::One(w) if w == word => Target::One(w),
                _ => Target::Mixed,
            };
            self.waiters.store(waiting + 1, Ordering::SeqCst);
            self.seq.load(Ordering::SeqCst)
        };
        // SAFETY: the caller holds it (the contract).
        unsafe { mutex.unlock() };
        let r = sys::wait(&self.seq, seq, deadline);
        {
            let _binding = self.binding.lock();
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
        r == Wait::TimedOut
    }

    /// loom: the wait on a raw mutex ([`RawMutex`] has no `lock_api`
    /// wrapper under loom). True: timed out.
    ///
    /// # Safety
    /// The calling thread holds `mutex`; it holds it again on return.
    #[cfg(loom)]
    pub unsafe fn wait_raw(&self, mutex: &RawMutex, deadline: Option<Instant>) -> bool {
        // SAFETY: forwarded contract.
        unsafe { self.wait_on(mutex, deadline) }
    }

    /// loom's negative control: [`wait_raw`](Self::wait_raw) (untimed)
    /// re-taking the mutex with a plain `lock` — `0 → 1` when it is free —
    /// instead of as `2`, which strands the waiters `notify_all` requeued.
    ///
    /// # Safety
    /// As [`wait_raw`](Self::wait_raw).
    #[cfg(loom)]
    pub unsafe fn wait_raw_broken(&self, mutex: &RawMutex) {
        // SAFETY: forwarded contract.
        unsafe { self.release_and_sleep(mutex, None) };
        mutex.lock();
    }

    /// Wakes one waiting thread, if any; returns whether one was woken.
    pub fn notify_one(&self) -> bool {
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return false;
        }
        self.seq.fetch_add(1, Ordering::SeqCst);
        sys::wake(&self.seq, 1) != 0
    }

    /// Wakes every thread waiting now: one directly, the others by moving
    /// them onto the mutex, whose `unlock`s then wake them one at a time.
    /// Returns how many it woke or moved (each of them returns from its
    /// wait).
    pub fn notify_all(&self) -> usize {
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        // Held to the end: no waiter deregisters (so the mutex named by
        // the binding outlives the requeue) and none registers with
        // another mutex meanwhile.
        let binding = self.binding.lock();
        if self.waiters.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut expected = self.seq.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        let Target::One(word) = binding.target else {
            return sys::wake(&self.seq, usize::MAX);
        };
        // SAFETY: waiters are registered (checked under the binding lock,
        // which keeps them from deregistering), all with the mutex whose
        // word this is, and each borrows that mutex until it deregisters:
        // it is alive until the lock is released.
        let to = unsafe { &*word };
        loop {
            match sys::cmp_requeue(&self.seq, to, 1, usize::MAX, expected) {
                Some(n) => return n,
                // A `notify_one` incremented the word meanwhile: requeue
                // whoever sleeps on it now (waking a later waiter too is a
                // spurious wake-up, allowed).
                None => expected = self.seq.load(Ordering::SeqCst),
            }
        }
    }

    /// The sequence word (what the tests count sleepers on).
    #[cfg(all(feature = "uktest", not(loom)))]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.seq
    }

    /// Registered waiters: asleep on the condition variable, requeued onto
    /// the mutex, or woken but not yet deregistered.
    #[cfg(all(feature = "uktest", not(loom)))]
    pub(crate) fn waiting(&self) -> u32 {
        self.waiters.load(Ordering::SeqCst)
    }
}

#[cfg(not(loom))]
mod typed {
    use super::Condvar;
    use crate::futex::MutexGuard;
    use uksched::Instant;

    condvar_waits!(MutexGuard<'_, T>);

    impl Condvar {
        #[track_caller]
        fn wait_guard<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>, deadline: Option<Instant>) -> bool {
            // SAFETY: the raw mutex is only used to release and retake the
            // lock this guard holds, leaving it held again before
            // returning, as `MutexGuard::unlocked` does; the guard's `&mut`
            // keeps the data unborrowed meanwhile.
            let raw = unsafe { lock_api::MutexGuard::mutex(guard).raw() };
            // SAFETY: the guard holds the lock in this thread, and holds it
            // again when `wait_on` returns.
            unsafe { self.wait_on(raw, deadline) }
        }
    }
}
