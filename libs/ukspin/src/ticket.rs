//! Ticket spinlock: FIFO through two counters.

use crate::SINGLE_CPU;
use crate::sync::{AtomicU32, Ordering, Spin, compiler_fence, const_fn, preempt_off, preempt_on};

/// Pauses a waiter inserts between two reads of the `serving` counter per
/// waiter queued ahead of it (beyond the one holding the lock).
///
/// Every release writes `serving`, which invalidates the line in every
/// waiter's cache; each waiter then re-reads it. A waiter far back in the
/// queue gains nothing from watching every hand-off, so it reads less
/// often — "proportional backoff" (Mellor-Crummey & Scott, 1991). The next
/// waiter in line never backs off, so the hand-off latency is unchanged; 32
/// pauses is a fraction of a short critical section, so the estimate errs on
/// the side of waking early.
pub const TICKET_PAUSES_PER_WAITER: u32 = 32;
/// Most pauses between two reads of `serving`, however long the queue.
pub const TICKET_BACKOFF_MAX: u32 = 1024;

/// Ticket spinlock: FIFO, 8 bytes.
///
/// Two 32-bit counters: `next` (the next ticket to hand out) and `serving`
/// (the ticket allowed in). Equal counters mean free.
///
/// * **Acquire:** one `lock xadd` on `next` takes a ticket; when it equals
///   `serving` the lock is ours. Otherwise the contended path
///   (`ticket_lock_contended`) spins reading `serving` with proportional
///   backoff ([`TICKET_PAUSES_PER_WAITER`] per waiter ahead, at most
///   [`TICKET_BACKOFF_MAX`]).
/// * **Release:** a plain store of `serving + 1` (only the holder writes
///   `serving`): no atomic read-modify-write.
/// * **Fairness:** strict FIFO; a waiter waits for at most the CPUs queued
///   ahead of it.
/// * **Under contention:** all waiters spin on the same `serving` line, so
///   each hand-off costs a cache-line transfer to *every* waiter (O(n)
///   traffic); [`RawMcsLock`](crate::RawMcsLock) avoids that.
///   A waiter that is delayed (e.g. by a hypervisor descheduling its vCPU)
///   delays everyone queued behind it.
/// * **Memory:** 8 bytes.
///
/// 2³² tickets wrap around harmlessly: only the difference of the counters
/// matters (fewer than 2³² CPUs wait at once).
///
/// ```
/// use lock_api::{RawMutex, RawMutexFair};
/// use ukspin::RawTicketLock;
///
/// let raw = RawTicketLock::new();
/// raw.lock();
/// assert!(raw.is_locked() && !raw.try_lock());
/// // SAFETY: locked just above, on this thread.
/// unsafe { raw.unlock_fair() };
/// assert!(!raw.is_locked());
///
/// static TABLE: ukspin::TicketLock<[u32; 4]> = ukspin::TicketLock::new([0; 4]);
/// TABLE.lock()[2] = 7;
/// assert_eq!(TABLE.lock()[2], 7);
/// ```
#[repr(C, align(8))]
pub struct RawTicketLock {
    pub(crate) next: AtomicU32,
    pub(crate) serving: AtomicU32,
}

impl RawTicketLock {
    /// The configuration name of this kind (`ukspin.kind = "ticket"`).
    pub const NAME: &'static str = "ticket";

    const_fn! {
        /// An unlocked lock.
        pub fn new() -> Self {
            Self { next: AtomicU32::new(0), serving: AtomicU32::new(0) }
        }
    }

    /// Acquires the lock, waiting for the CPUs queued ahead (preemption
    /// disabled from here until [`unlock`](Self::unlock)).
    #[inline]
    pub fn lock(&self) {
        preempt_off();
        if SINGLE_CPU {
            self.up_lock();
            return;
        }
        // Relaxed: the Acquire load of `serving` that lets us in is what
        // synchronises with the previous holder's release.
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        if self.serving.load(Ordering::Acquire) != ticket {
            ticket_lock_contended(&self.serving, ticket);
        }
    }

    /// Acquires the lock if it is free (no CPU holds or waits for it);
    /// never waits. Preemption stays disabled only on success.
    #[inline]
    pub fn try_lock(&self) -> bool {
        preempt_off();
        let taken = if SINGLE_CPU {
            self.up_try_lock()
        } else {
            // `serving` only grows (by its holder) and never passes `next`:
            // if `next` still equals the `serving` read before, nobody took
            // a ticket in between and the lock is free. (A false "equal"
            // would need 2³² acquisitions between the load and the CAS.)
            let serving = self.serving.load(Ordering::Acquire);
            self.next
                .compare_exchange(serving, serving.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        };
        if !taken {
            preempt_on();
        }
        taken
    }

    /// Releases the lock to the next ticket.
    ///
    /// # Safety
    /// The lock is held, by this CPU.
    #[inline]
    pub unsafe fn unlock(&self) {
        if SINGLE_CPU {
            compiler_fence(Ordering::Release);
            self.next.store(0, Ordering::Relaxed);
        } else {
            // Only the holder writes `serving`: load + store, no RMW.
            let serving = self.serving.load(Ordering::Relaxed);
            self.serving.store(serving.wrapping_add(1), Ordering::Release);
        }
        preempt_on();
    }

    /// Whether some CPU holds the lock (a snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.next.load(Ordering::Relaxed) != self.serving.load(Ordering::Relaxed)
    }

    /// CPUs holding or waiting for the lock (a snapshot: 0 when free).
    #[inline]
    pub fn queue_len(&self) -> u32 {
        self.next.load(Ordering::Relaxed).wrapping_sub(self.serving.load(Ordering::Relaxed))
    }

    /// One CPU: `next` is a held flag (1 held, 0 free; `serving` stays 0),
    /// written with plain stores (see the crate documentation, "One CPU").
    #[inline(always)]
    pub(crate) fn up_lock(&self) {
        if !self.up_try_lock() {
            crate::sync::self_deadlock(Self::NAME, core::ptr::from_ref(self).cast());
        }
    }

    #[inline(always)]
    pub(crate) fn up_try_lock(&self) -> bool {
        if self.next.load(Ordering::Relaxed) != 0 {
            return false;
        }
        self.next.store(1, Ordering::Relaxed);
        compiler_fence(Ordering::Acquire);
        true
    }
}

impl Default for RawTicketLock {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for RawTicketLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawTicketLock")
            .field("next", &self.next.load(Ordering::Relaxed))
            .field("serving", &self.serving.load(Ordering::Relaxed))
            .finish()
    }
}

/// The contended path of [`RawTicketLock::lock`]: wait for `ticket` to be
/// served. Out of line (and named after its kind) so that an image's symbol
/// table shows which algorithm is linked.
#[inline(never)]
#[cold]
fn ticket_lock_contended(serving: &AtomicU32, ticket: u32) {
    let mut spin = Spin::new();
    loop {
        let now = serving.load(Ordering::Acquire);
        let ahead = ticket.wrapping_sub(now);
        if ahead == 0 {
            return;
        }
        // `ahead - 1` waiters stand between us and the holder.
        let waiters = ahead - 1;
        if waiters == 0 {
            spin.wait();
        } else {
            spin.pause(waiters.saturating_mul(TICKET_PAUSES_PER_WAITER).min(TICKET_BACKOFF_MAX));
        }
    }
}

crate::sync::forward_raw_mutex!(
    RawTicketLock,
    fair,
    safety = "every acquirer draws a distinct ticket (`fetch_add`/CAS on `next`) and enters only when `serving` equals it; only the holder advances `serving`, by one, at release: one holder at a time. With one CPU, `next` is a flag checked and set with preemption disabled and no other CPU."
);
