//! The wait-queue core: intrusive queues of waiters that know which queue
//! holds them, woken by predicate and moved between queues (requeue).
//!
//! This is the data structure under [`crate::WaitQueue`] and, through it,
//! under `posix-futex`'s hash buckets. It knows nothing of threads: a
//! [`Waiter`] carries a *token* `T` (for the scheduler, the thread and its
//! wait sequence number) that a waker is handed when it takes the waiter
//! off; what waking means is the caller's business. That is what lets
//! `tests/loom.rs` model-check this very file, with loom's mutex and
//! atomics, against stand-ins of the scheduler.
//!
//! ## The protocol (Linux's `futex_q.lock_ptr`, in our words)
//!
//! A waiter is a node on its thread's stack, pinned while it waits. Its
//! `queue` field names the queue that holds it, or is null when no queue
//! does:
//!
//! * it is written **only under the lock of the queue it names**, or names
//!   after the write: [`Locked::push`] sets it to its queue; a waker that
//!   takes the waiter off clears it (the node's last touch by the waker,
//!   with `Release`: after it, the waiter may return and its stack frame
//!   vanish); [`Pair::requeue`] re-points it while holding both locks;
//! * the waiter itself ([`Waiter::dequeue`], after a timeout or an early
//!   return) reads it without a lock, locks that queue, and reads it again:
//!   still the same queue, so the node is on that list and the waiter
//!   unlinks it; null, so a waker took it (it was woken); another queue, so
//!   a requeue moved it meanwhile, and the waiter tries again there.
//!
//! So each waiter leaves the queue exactly once — taken by a waker (who
//! then wakes it, and counts it) or by itself (it was not woken) — however
//! wake-ups, requeues and timeouts interleave, and no list ever holds a
//! node whose owner has returned. A per-waiter "linked" flag could not say
//! *which* list to unlink from once requeues move nodes.
//!
//! ## Lifetimes
//!
//! A node is on a queue only between [`Locked::push`] and its removal, and
//! [`Waiter`]'s `Drop` removes it if it is still queued: a waiter that
//! returns early (a panic included) cannot leave a dangling node. The
//! queues must outlive the nodes they hold: a waiter borrows the queue it
//! pushes itself on for as long as it waits (the safety contract of
//! `push`), and a requeue may only move nodes to a queue that lives at
//! least as long as they may stay there (`'static` in `WaitQueue`'s API:
//! `posix-futex`'s buckets live forever, as Linux's hash buckets do).
//!
//! ## Keys and bitsets
//!
//! Each waiter has a key (`posix-futex`: the futex word's address; 0 for
//! plain wait queues) and a bitset (`FUTEX_WAIT_BITSET`; all ones
//! otherwise). Wakers choose whom to wake with a predicate over both; a
//! requeue can change the key of what it moves (to the target futex word).

use core::cell::Cell;
use core::marker::PhantomPinned;
use core::pin::Pin;
use core::ptr;

#[cfg(not(loom))]
use core::sync::atomic::{AtomicPtr, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicPtr, Ordering};

/// The bitset that matches every waker's bitset (`FUTEX_BITSET_MATCH_ANY`).
pub const MATCH_ANY: u32 = u32::MAX;

#[cfg(not(loom))]
type Lock<T> = ukspin::SpinLockIrq<T>;
#[cfg(not(loom))]
type Guard<'a, T> = ukspin::SpinLockIrqGuard<'a, T>;
#[cfg(loom)]
type Lock<T> = loom::sync::Mutex<T>;
#[cfg(loom)]
type Guard<'a, T> = loom::sync::MutexGuard<'a, T>;

#[cfg(not(loom))]
fn lock<T>(l: &Lock<T>) -> Guard<'_, T> {
    l.lock()
}
#[cfg(loom)]
fn lock<T>(l: &Lock<T>) -> Guard<'_, T> {
    l.lock().unwrap()
}

/// One waiter: a node that a thread links into a [`Queue`] while it waits.
///
/// Build it on the waiting thread's stack, pin it (`core::pin::pin!`), push
/// it under the queue's lock, and after the wait call [`dequeue`]
/// (`Waiter::dequeue`) to learn whether a waker took it. Dropping a
/// still-queued waiter dequeues it.
pub struct Waiter<T> {
    next: Cell<*const Waiter<T>>,
    prev: Cell<*const Waiter<T>>,
    /// The queue that holds this node, or null (see the module doc).
    queue: AtomicPtr<Queue<T>>,
    /// The key wakers match; a requeue may change it (under the locks).
    key: Cell<usize>,
    bitset: u32,
    token: T,
    _pinned: PhantomPinned,
}

// SAFETY: the cells (`next`, `prev`, `key`) are only touched under the lock
// of the queue that holds the node, or by its owner while no queue does;
// `queue` is atomic; the token is shared as `&T`, hence `T: Sync`.
unsafe impl<T: Sync> Sync for Waiter<T> {}
// SAFETY: as above; moving a waiter to another thread moves its token.
unsafe impl<T: Send> Send for Waiter<T> {}

impl<T> Waiter<T> {
    /// A waiter for `key` with `bitset` ([`MATCH_ANY`] when wakers do not
    /// use bitsets), not on any queue.
    pub fn new(token: T, key: usize, bitset: u32) -> Self {
        Self {
            next: Cell::new(ptr::null()),
            prev: Cell::new(ptr::null()),
            queue: AtomicPtr::new(ptr::null_mut()),
            key: Cell::new(key),
            bitset,
            token,
            _pinned: PhantomPinned,
        }
    }

    /// The token a waker is handed.
    pub fn token(&self) -> &T {
        &self.token
    }

    /// The key: the one it was built with, or the last requeue's. Read it
    /// once the waiter is off every queue (a requeue may change it until
    /// then).
    pub fn key(&self) -> usize {
        self.key.get()
    }

    /// Whether a queue holds it now (a hint while others may move it).
    pub fn is_queued(&self) -> bool {
        !self.queue.load(Ordering::Acquire).is_null()
    }

    /// Takes this waiter off whichever queue holds it now. True when it
    /// was still queued (nobody woke it: a timeout, a check that ended the
    /// wait); false when a waker had taken it off (and owns waking it).
    pub fn dequeue(self: Pin<&Self>) -> bool {
        loop {
            let q = self.queue.load(Ordering::Acquire);
            if q.is_null() {
                return false;
            }
            // SAFETY: `q` was read from `queue`, which names a queue that
            // holds this node; queues outlive the nodes they hold (the
            // module's lifetime rules: `push`'s contract and requeue's
            // `'static` target), and this node is still alive, so even if
            // a waker or a requeue moved it since, `q` is still a queue.
            let queue = unsafe { &*q };
            let mut chain = lock(&queue.chain);
            if self.queue.load(Ordering::Relaxed) == q {
                // SAFETY: `queue` names `q` and we hold `q`'s lock, so the
                // node is on `q`'s list.
                unsafe { chain.unlink(self.get_ref()) };
                self.queue.store(ptr::null_mut(), Ordering::Relaxed);
                return true;
            }
            // Moved (requeued) or taken while we locked: look again.
        }
    }
}

impl<T> Drop for Waiter<T> {
    fn drop(&mut self) {
        if !self.queue.load(Ordering::Acquire).is_null() {
            // SAFETY: a queued node was pushed through `Pin<&Self>` and has
            // not moved since (it is being dropped in place).
            let _ = unsafe { Pin::new_unchecked(&*self) }.dequeue();
        }
    }
}

/// A queue's list: the nodes, in arrival order.
struct Chain<T> {
    head: *const Waiter<T>,
    tail: *const Waiter<T>,
    len: usize,
}

// SAFETY: the chain is only used under its queue's lock; the nodes it
// points to are `Sync` waiters.
unsafe impl<T: Send> Send for Chain<T> {}

impl<T> Chain<T> {
    const fn new() -> Self {
        Self { head: ptr::null(), tail: ptr::null(), len: 0 }
    }

    /// Appends a node that is on no list.
    fn push_back(&mut self, w: &Waiter<T>) {
        w.next.set(ptr::null());
        w.prev.set(self.tail);
        if self.tail.is_null() {
            self.head = w;
        } else {
            // SAFETY: the tail is a live node of this list.
            unsafe { &*self.tail }.next.set(w);
        }
        self.tail = w;
        self.len += 1;
    }

    /// Unlinks a node.
    ///
    /// # Safety
    /// `w` is on this list.
    unsafe fn unlink(&mut self, w: &Waiter<T>) {
        let (prev, next) = (w.prev.get(), w.next.get());
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: neighbours of a node on this list are on it too.
            unsafe { &*prev }.next.set(next);
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: as above.
            unsafe { &*next }.prev.set(prev);
        }
        w.next.set(ptr::null());
        w.prev.set(ptr::null());
        self.len -= 1;
    }

    /// Visits the nodes in order; `f` may unlink the node it is given
    /// (and nothing else) and says whether to go on.
    fn for_each(&mut self, mut f: impl FnMut(&mut Self, &Waiter<T>) -> bool) {
        let mut at = self.head;
        while !at.is_null() {
            // SAFETY: `at` is a live node of this list: the head, or the
            // successor read before `f` could unlink its predecessor.
            let w = unsafe { &*at };
            at = w.next.get();
            if !f(self, w) {
                break;
            }
        }
    }
}

/// A queue of [`Waiter`]s under one spinlock (interrupts disabled while it
/// is held).
pub struct Queue<T> {
    chain: Lock<Chain<T>>,
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        let waiting = lock(&self.chain).len;
        assert!(waiting == 0, "uksched: a wait queue dropped while {waiting} thread(s) wait on it");
    }
}

#[cfg(not(loom))]
impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Queue<T> {
    /// An empty queue.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self { chain: Lock::new(Chain::new()) }
    }

    /// An empty queue.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self { chain: Lock::new(Chain::new()) }
    }

    /// Locks the queue.
    pub fn lock(&self) -> Locked<'_, T> {
        Locked { queue: self, chain: lock(&self.chain) }
    }

    /// Locks two queues, lower address first (the one order every CPU
    /// uses, so two pairs locked at once cannot deadlock); one lock when
    /// they are the same queue.
    pub fn lock_pair<'a, 'b>(first: &'a Queue<T>, second: &'b Queue<T>) -> Pair<'a, 'b, T> {
        let (a, b) = (ptr::from_ref(first), ptr::from_ref(second));
        if a == b {
            return Pair { second: None, first: lock(&first.chain), second_queue: second };
        }
        if a < b {
            let first = lock(&first.chain);
            Pair { second: Some(lock(&second.chain)), first, second_queue: second }
        } else {
            let second_guard = lock(&second.chain);
            Pair { first: lock(&first.chain), second: Some(second_guard), second_queue: second }
        }
    }

    /// Waiters queued now.
    pub fn len(&self) -> usize {
        lock(&self.chain).len
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A locked queue.
pub struct Locked<'a, T> {
    queue: &'a Queue<T>,
    chain: Guard<'a, Chain<T>>,
}

impl<T> Locked<'_, T> {
    /// Appends `w`, which is on no queue.
    ///
    /// # Safety
    /// The queue must outlive `w`'s stay on it: the caller keeps the queue
    /// borrowed until `w` is off every queue (its `dequeue` or its drop),
    /// or the queue is `'static`.
    ///
    /// # Panics
    /// When `w` is already on a queue.
    pub unsafe fn push(&mut self, w: Pin<&Waiter<T>>) {
        assert!(w.queue.load(Ordering::Relaxed).is_null(), "uksched: a waiter queued twice");
        self.chain.push_back(&w);
        w.queue.store(ptr::from_ref(self.queue).cast_mut(), Ordering::Release);
    }

    /// Takes up to `max` waiters for which `pick(key, bitset)` holds off
    /// the queue, oldest first, handing each one's token to `woken` (which
    /// must wake it); returns how many.
    pub fn wake(&mut self, max: usize, pick: impl FnMut(usize, u32) -> bool, woken: impl FnMut(&T)) -> usize {
        take(&mut self.chain, max, pick, woken)
    }

    /// Waiters queued now.
    pub fn len(&self) -> usize {
        self.chain.len
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.chain.len == 0
    }

    /// How many queued waiters `pick(key, bitset)` selects.
    pub fn count(&mut self, mut pick: impl FnMut(usize, u32) -> bool) -> usize {
        let mut n = 0;
        self.chain.for_each(|_, w| {
            n += usize::from(pick(w.key.get(), w.bitset));
            true
        });
        n
    }
}

/// Two queues locked together by [`Queue::lock_pair`] (one lock when they
/// are the same queue).
pub struct Pair<'a, 'b, T> {
    // Dropped in this order: the second lock, then the first.
    second: Option<Guard<'b, Chain<T>>>,
    first: Guard<'a, Chain<T>>,
    second_queue: &'b Queue<T>,
}

impl<T> Pair<'_, '_, T> {
    /// [`Locked::wake`] on the first queue.
    pub fn wake_first(
        &mut self,
        max: usize,
        pick: impl FnMut(usize, u32) -> bool,
        woken: impl FnMut(&T),
    ) -> usize {
        take(&mut self.first, max, pick, woken)
    }

    /// [`Locked::wake`] on the second queue (the first, when they are the
    /// same).
    pub fn wake_second(
        &mut self,
        max: usize,
        pick: impl FnMut(usize, u32) -> bool,
        woken: impl FnMut(&T),
    ) -> usize {
        match &mut self.second {
            Some(second) => take(second, max, pick, woken),
            None => take(&mut self.first, max, pick, woken),
        }
    }

    /// Moves up to `max` waiters of the first queue for which `pick(key,
    /// bitset)` holds to the tail of the second, oldest first, giving them
    /// `new_key`; returns how many. When the two are the same queue the
    /// waiters keep their place and only change key.
    ///
    /// # Safety
    /// The second queue must outlive the stay of every waiter moved to it
    /// (their owners borrowed only the first): it is `'static`, or the
    /// caller knows otherwise that it outlives them.
    pub unsafe fn requeue(
        &mut self,
        max: usize,
        mut pick: impl FnMut(usize, u32) -> bool,
        new_key: usize,
    ) -> usize {
        let mut moved = 0;
        match &mut self.second {
            None => self.first.for_each(|_, w| {
                if moved == max {
                    return false;
                }
                if pick(w.key.get(), w.bitset) {
                    w.key.set(new_key);
                    moved += 1;
                }
                true
            }),
            Some(second) => {
                let target = ptr::from_ref(self.second_queue).cast_mut();
                self.first.for_each(|first, w| {
                    if moved == max {
                        return false;
                    }
                    if pick(w.key.get(), w.bitset) {
                        // SAFETY: `w` is a node of the first list.
                        unsafe { first.unlink(w) };
                        second.push_back(w);
                        w.key.set(new_key);
                        // Under both locks: a waiter that read the old
                        // queue re-reads this after locking it, and follows.
                        w.queue.store(target, Ordering::Release);
                        moved += 1;
                    }
                    true
                });
            }
        }
        moved
    }

    /// Waiters on the first queue now.
    pub fn first_len(&self) -> usize {
        self.first.len
    }
}

/// Takes up to `max` waiters that `pick` selects off `chain`, handing each
/// token to `woken` before letting the node go.
fn take<T>(
    chain: &mut Chain<T>,
    max: usize,
    mut pick: impl FnMut(usize, u32) -> bool,
    mut woken: impl FnMut(&T),
) -> usize {
    let mut n = 0;
    chain.for_each(|chain, w| {
        if n == max {
            return false;
        }
        if pick(w.key.get(), w.bitset) {
            // SAFETY: `w` is a node of `chain`.
            unsafe { chain.unlink(w) };
            woken(&w.token);
            // The last touch: from here the owner may find itself off the
            // queue, return, and free the node.
            w.queue.store(ptr::null_mut(), Ordering::Release);
            n += 1;
        }
        true
    });
    n
}
