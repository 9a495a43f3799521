//! Intrusive lists of threads: run queues, wait queues, sleep timers.
//!
//! A thread is on at most one run queue and at most one CPU's timer list at
//! a time, so each of those lists threads through a [`Link`] inside the
//! thread itself. (Wait queues link nodes on the waiters' stacks instead:
//! see `waitq.rs`.) Nothing is allocated to queue or
//! wake a thread — which matters because the timer interrupt wakes
//! sleepers, and an interrupt handler must not enter the heap allocator
//! (the interrupted code may hold its lock).
//!
//! A list owns one strong reference to each member (`Arc::into_raw` on
//! insertion, `Arc::from_raw` on removal). Every list lives inside a lock,
//! and a thread's link for that list is only touched under that lock.

use crate::thread::ThreadInner;
use alloc::sync::Arc;
use core::cell::Cell;
use core::ptr;

/// Which of a thread's links a list uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Which {
    /// A CPU's run queue.
    Run,
    /// A CPU's sleep timers.
    Timer,
}

/// Forward and back pointers of one list, inside a thread.
pub(crate) struct Link {
    next: Cell<*const ThreadInner>,
    prev: Cell<*const ThreadInner>,
    /// Whether the thread is on this kind of list now.
    linked: Cell<bool>,
}

impl Link {
    pub(crate) const fn new() -> Self {
        Self { next: Cell::new(ptr::null()), prev: Cell::new(ptr::null()), linked: Cell::new(false) }
    }
}

fn link(t: &ThreadInner, which: Which) -> &Link {
    match which {
        Which::Run => &t.run_link,
        Which::Timer => &t.timer_link,
    }
}

/// A doubly-linked list of threads through their `which` link.
pub(crate) struct List {
    head: *const ThreadInner,
    tail: *const ThreadInner,
    len: usize,
    which: Which,
}

// SAFETY: a list is only used inside the lock that protects it and the
// links of its members; the members are `Sync` threads.
unsafe impl Send for List {}

impl List {
    pub(crate) const fn new(which: Which) -> Self {
        Self { head: ptr::null(), tail: ptr::null(), len: 0, which }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first member.
    pub(crate) fn front(&self) -> Option<&ThreadInner> {
        // SAFETY: members stay alive while on the list (it owns a reference).
        (!self.head.is_null()).then(|| unsafe { &*self.head })
    }

    /// Appends `t`.
    ///
    /// # Panics
    /// When `t` is already on a list of this kind (a scheduler bug).
    pub(crate) fn push_back(&mut self, t: Arc<ThreadInner>) {
        let raw = Arc::into_raw(t);
        // SAFETY: `raw` came from a live Arc, whose reference the list now owns.
        let l = link(unsafe { &*raw }, self.which);
        assert!(!l.linked.get(), "uksched: a thread queued twice on a {:?} list", self.which);
        l.linked.set(true);
        l.next.set(ptr::null());
        l.prev.set(self.tail);
        if self.tail.is_null() {
            self.head = raw;
        } else {
            // SAFETY: the tail is a live member.
            link(unsafe { &*self.tail }, self.which).next.set(raw);
        }
        self.tail = raw;
        self.len += 1;
    }

    /// Inserts `t` before the first member for which `before` is true
    /// (at the end if none is).
    pub(crate) fn insert_before(
        &mut self,
        t: Arc<ThreadInner>,
        mut before: impl FnMut(&ThreadInner) -> bool,
    ) {
        let mut at = self.head;
        // SAFETY: members are live.
        while !at.is_null() && !before(unsafe { &*at }) {
            // SAFETY: as above.
            at = link(unsafe { &*at }, self.which).next.get();
        }
        if at.is_null() {
            return self.push_back(t);
        }
        let raw = Arc::into_raw(t);
        // SAFETY: `raw` and `at` are live; the list owns `raw`'s reference now.
        let (l, at_link) = unsafe { (link(&*raw, self.which), link(&*at, self.which)) };
        assert!(!l.linked.get(), "uksched: a thread queued twice on a {:?} list", self.which);
        l.linked.set(true);
        let prev = at_link.prev.get();
        l.prev.set(prev);
        l.next.set(at);
        at_link.prev.set(raw);
        if prev.is_null() {
            self.head = raw;
        } else {
            // SAFETY: `prev` is a live member.
            link(unsafe { &*prev }, self.which).next.set(raw);
        }
        self.len += 1;
    }

    /// Removes and returns the first member.
    pub(crate) fn pop_front(&mut self) -> Option<Arc<ThreadInner>> {
        let head = self.head;
        // SAFETY: `head` is a live member of this list.
        (!head.is_null()).then(|| unsafe { self.unlink(head) })
    }

    /// Removes `t`, which must be on this list if it is on any list of
    /// this kind (the caller knows which list it is on, e.g. its CPU's run
    /// queue). None when it is not linked.
    pub(crate) fn remove(&mut self, t: &ThreadInner) -> Option<Arc<ThreadInner>> {
        // SAFETY: linked means linked here, by the caller's contract.
        link(t, self.which).linked.get().then(|| unsafe { self.unlink(t) })
    }

    /// Removes and returns the first member for which `pick` is true.
    pub(crate) fn remove_first(
        &mut self,
        mut pick: impl FnMut(&ThreadInner) -> bool,
    ) -> Option<Arc<ThreadInner>> {
        let mut at = self.head;
        while !at.is_null() {
            // SAFETY: `at` is a live member.
            let t = unsafe { &*at };
            if pick(t) {
                // SAFETY: as above.
                return Some(unsafe { self.unlink(at) });
            }
            at = link(t, self.which).next.get();
        }
        None
    }

    /// Unlinks a member and hands back the list's reference.
    ///
    /// # Safety
    /// `t` must be a member of this list.
    unsafe fn unlink(&mut self, t: *const ThreadInner) -> Arc<ThreadInner> {
        // SAFETY: the caller guarantees membership, so `t` is live.
        let l = link(unsafe { &*t }, self.which);
        let (prev, next) = (l.prev.get(), l.next.get());
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: `prev` is a live member.
            link(unsafe { &*prev }, self.which).next.set(next);
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: `next` is a live member.
            link(unsafe { &*next }, self.which).prev.set(prev);
        }
        l.linked.set(false);
        l.next.set(ptr::null());
        l.prev.set(ptr::null());
        self.len -= 1;
        // SAFETY: the list took this reference with `Arc::into_raw`.
        unsafe { Arc::from_raw(t) }
    }
}

impl Drop for List {
    fn drop(&mut self) {
        while self.pop_front().is_some() {}
    }
}
