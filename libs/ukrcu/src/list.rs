//! [`RcuList`]: a linked list that readers walk with no lock while one
//! writer at a time adds, removes and replaces elements (Linux's
//! `list_add_rcu`, `list_add_tail_rcu`, `list_del_rcu`, `list_replace_rcu`
//! and `list_for_each_entry_rcu`).
//!
//! ## Design
//!
//! **Singly linked, with a tail pointer that only writers see.** RCU
//! readers only ever walk forwards — Linux's `list_del_rcu` poisons the
//! `prev` pointer of a removed entry precisely because readers must not
//! use it — so a `prev` pointer would serve writers alone. Every writer
//! operation here starts from a walk under the writer lock (by predicate
//! or with a [`Cursor`]), which knows the predecessor anyway, and the tail
//! pointer (kept inside the writer lock, next to the length) makes
//! [`Writer::push_back`] O(1). One link per node, and exactly one
//! published store per operation.
//!
//! **Publication.** A node is fully initialised (its value and its `next`)
//! before one `SeqCst` store of its address into the link before it makes
//! it reachable; readers load every link with a `SeqCst` load (a plain
//! `mov` on x86), as [`crate::RcuCell`] does.
//!
//! **Removal** stores the removed node's successor into its predecessor's
//! link and leaves the removed node's own `next` untouched, so a reader
//! standing on it still reaches the rest of the list (`list_del_rcu`).
//! The node comes back as a [`Retired`]`<`[`Node`]`<T>>`. Under
//! `ukrcu.flavor = "qsbr"` that frees it only after a grace period: no
//! reader that could have reached it is still inside its read-side section
//! by then, and none can reach it afterwards. Under `refcount` every link
//! owns a counted reference to the node it points to, a reader counts one
//! on each node it walks onto, and a node is freed when its last reference
//! goes: a removed node keeps its successor alive through its own `next`
//! until it is freed itself (iteratively, so a long chain of removed nodes
//! does not recurse).
//!
//! **The writer lock is a [`ukspin::SpinLock`]**, and the type system
//! enforces it: the only way to change the list is through the
//! [`Writer`] that [`RcuList::lock`] returns, which holds the lock until
//! it is dropped. Writers never block while holding it: removal hands the
//! node back as a [`Retired`] instead of waiting for a grace period, and
//! the caller frees it without blocking
//! ([`Retired::free_after_grace_period`], or just dropping it, which
//! defers its own free), or drops the [`Writer`] first and then calls
//! [`crate::synchronize`]. Calling `synchronize` with the [`Writer`]
//! still held would sleep under a spinlock (the scheduler panics in debug
//! builds). A sleeping lock was the alternative; a spinlock keeps writers
//! short, lets them run with preemption disabled, and needs nothing beyond
//! `ukspin`. Do not use a list from interrupt handlers: the lock is not
//! taken with interrupts disabled.

use crate::flavor::{self, Link, Owned};
use crate::{ReadGuard, Retired};
use alloc::boxed::Box;
use core::fmt;
use core::iter::FusedIterator;
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr;
use ukspin::{SpinLock, SpinLockGuard};

/// One element of an [`RcuList`]: the value and the link to the next
/// node. Writers get removed and replaced nodes back as
/// [`Retired`]`<Node<T>>`; a node dereferences to its value.
///
/// ```no_run
/// use ukrcu::list::RcuList;
/// let list = RcuList::new();
/// list.lock().push_back(7u32);
/// let node = list.lock().pop_front().expect("one element");
/// assert_eq!(*node.value(), 7);
/// ukrcu::synchronize();
/// let value = node.into_box().ok().expect("a grace period has passed").into_inner();
/// assert_eq!(value, 7);
/// ```
pub struct Node<T> {
    value: T,
    /// The next node, or null at the end. Under `qsbr` a link, not an
    /// owner (the list owns every node reachable from its head); under
    /// `refcount` a counted reference.
    next: Link<Node<T>>,
}

impl<T> Node<T> {
    /// A new node on the heap, linked to `next` (whose reference it takes),
    /// not yet published.
    fn alloc(value: T, next: Option<Owned<Node<T>>>) -> Owned<Node<T>> {
        Owned::new(Node { value, next: Link::new(next) })
    }

    /// The value.
    ///
    /// ```no_run
    /// # let list = ukrcu::list::RcuList::new();
    /// list.lock().push_front(1u8);
    /// if let Some(node) = list.lock().pop_front() {
    ///     assert_eq!(*node.value(), 1);
    /// }
    /// ```
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The value, moved out of a node that no reader can hold any more
    /// (one that [`Retired::into_box`] gave back).
    ///
    /// ```no_run
    /// # let list = ukrcu::list::RcuList::new();
    /// list.lock().push_front(String::from("x"));
    /// let node = list.lock().pop_front().unwrap();
    /// ukrcu::synchronize();
    /// let s: String = node.into_box().ok().unwrap().into_inner();
    /// assert_eq!(s, "x");
    /// ```
    pub fn into_inner(self) -> T {
        let mut node = core::mem::ManuallyDrop::new(self);
        if flavor::LINKS_OWN {
            release_chain(node.next.take_mut());
        }
        // SAFETY: read once; the node is never dropped (its link holds
        // nothing now, and a link has no drop of its own).
        unsafe { ptr::read(&node.value) }
    }
}

impl<T> Deref for Node<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> Drop for Node<T> {
    fn drop(&mut self) {
        // `refcount`: the node's `next` owns a reference to its successor.
        if flavor::LINKS_OWN {
            release_chain(self.next.take_mut());
        }
    }
}

/// Gives up `first` (the reference of a link being dropped) and, for each
/// node that frees, its `next` in turn: iteratively, however long the
/// chain. Under `qsbr` each node is freed (the caller owns them all).
fn release_chain<T>(mut next: Option<Owned<Node<T>>>) {
    while let Some(owned) = next {
        // SAFETY: a link's reference, given up once: under `qsbr`, the
        // list's own node that nobody can reach (`&mut` on the list, or no
        // reader since a grace period), under `refcount` freed only when it
        // was the last reference.
        match unsafe { owned.release() } {
            Some(mut node) => {
                // Taken before the node drops, so its drop does not recurse.
                next = node.next.take_mut();
            }
            None => break,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Node<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Node").field(&self.value).finish()
    }
}

/// What only writers see, inside the writer lock.
struct Links<T> {
    /// The last node (null when the list is empty).
    tail: *const Node<T>,
    /// Elements in the list.
    len: usize,
}

// SAFETY: `tail` points to a node the list owns; it is only read and
// written by the holder of the writer lock, and the nodes' values move
// between threads only when `T: Send`.
unsafe impl<T: Send> Send for Links<T> {}

/// A linked list that readers walk with no lock under a [`ReadGuard`]
/// while writers change it under its writer lock; removed elements are
/// freed only once no reader can hold them (see the [module
/// documentation](self)).
///
/// ```no_run
/// use ukrcu::list::RcuList;
///
/// static ROUTES: RcuList<(u32, u32)> = RcuList::new();
///
/// // Writers, one at a time:
/// ROUTES.lock().push_back((10, 1));
/// ROUTES.lock().push_back((20, 2));
/// if let Some(old) = ROUTES.lock().remove(|r| r.0 == 10) {
///     old.free_after_grace_period();
/// }
///
/// // Readers, on any CPU, with no lock:
/// let guard = ukrcu::read_lock();
/// let hops: Vec<u32> = ROUTES.iter(&guard).map(|r| r.1).collect();
/// assert_eq!(hops, [2]);
/// ```
pub struct RcuList<T> {
    /// The first node (null when empty): the only link not inside a node.
    head: Link<Node<T>>,
    /// The writer lock, and the writers' own bookkeeping.
    links: SpinLock<Links<T>>,
    /// Owns its nodes.
    _owns: PhantomData<Box<Node<T>>>,
}

// SAFETY: readers on every CPU share `&T` (`T: Sync`); writers on any CPU
// move values in and out of the list (`T: Send`). The raw pointers are
// nodes the list owns, changed only under the writer lock.
unsafe impl<T: Send + Sync> Sync for RcuList<T> {}
// SAFETY: moving the list moves the nodes it owns (`T: Send`); no other
// thread holds a reference to it then.
unsafe impl<T: Send> Send for RcuList<T> {}

impl<T> RcuList<T> {
    /// An empty list (usable in a `static`).
    ///
    /// ```no_run
    /// static NAMES: ukrcu::list::RcuList<&str> = ukrcu::list::RcuList::new();
    /// assert!(NAMES.is_empty());
    /// ```
    pub const fn new() -> Self {
        Self {
            head: Link::null(),
            links: SpinLock::new(Links { tail: ptr::null(), len: 0 }),
            _owns: PhantomData,
        }
    }

    /// The elements, first to last, valid while `guard` is
    /// (`list_for_each_entry_rcu`). No lock: writers may change the list
    /// meanwhile; the walk sees every element that stays in the list
    /// throughout it, perhaps some that were added or removed during it,
    /// and never a freed one.
    ///
    /// ```no_run
    /// # let list = ukrcu::list::RcuList::new();
    /// # list.lock().push_back(3u64);
    /// let guard = ukrcu::read_lock();
    /// let total: u64 = list.iter(&guard).sum();
    /// # let _ = total;
    /// ```
    pub fn iter<'g>(&'g self, guard: &'g ReadGuard) -> Iter<'g, T> {
        Iter { link: Some(&self.head), section: Some(&guard.section) }
    }

    /// The first element for which `pred` holds, valid while `guard` is.
    ///
    /// ```no_run
    /// # let list = ukrcu::list::RcuList::new();
    /// # list.lock().push_back((1u32, "one"));
    /// let guard = ukrcu::read_lock();
    /// let name = list.find(&guard, |e| e.0 == 1).map(|e| e.1);
    /// assert_eq!(name, Some("one"));
    /// ```
    pub fn find<'g>(&'g self, guard: &'g ReadGuard, mut pred: impl FnMut(&T) -> bool) -> Option<&'g T> {
        self.iter(guard).find(|v| pred(v))
    }

    /// The first element, valid while `guard` is.
    ///
    /// ```no_run
    /// # let list = ukrcu::list::RcuList::<u8>::new();
    /// let guard = ukrcu::read_lock();
    /// assert_eq!(list.first(&guard), None);
    /// ```
    pub fn first<'g>(&'g self, guard: &'g ReadGuard) -> Option<&'g T> {
        self.iter(guard).next()
    }

    /// Whether the list is empty now (a snapshot: writers may change it).
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::<u8>::new();
    /// assert!(list.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Takes the writer lock (spinning while another writer holds it):
    /// the only way to change the list. Do not block, sleep or call
    /// [`crate::synchronize`] while holding the returned [`Writer`].
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// let mut w = list.lock();
    /// w.push_back(1);
    /// w.push_back(2);
    /// assert_eq!(w.len(), 2);
    /// ```
    pub fn lock(&self) -> Writer<'_, T> {
        Writer { list: self, links: self.links.lock() }
    }

    /// The writer lock if no other writer holds it.
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::<u8>::new();
    /// let w = list.lock();
    /// assert!(list.try_lock().is_none());
    /// drop(w);
    /// assert!(list.try_lock().is_some());
    /// ```
    pub fn try_lock(&self) -> Option<Writer<'_, T>> {
        self.links.try_lock().map(|links| Writer { list: self, links })
    }

    /// Exclusive access: no reader or writer can hold a reference.
    ///
    /// ```no_run
    /// let mut list = ukrcu::list::RcuList::new();
    /// list.lock().push_back(1);
    /// for v in list.iter_mut() {
    ///     *v += 1;
    /// }
    /// ```
    pub fn iter_mut(&mut self) -> IterMut<'_, T> {
        IterMut { link: Some(&mut self.head) }
    }
}

impl<T> Default for RcuList<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for RcuList<T> {
    fn drop(&mut self) {
        // `&mut self`: no reader or writer holds a reference into the list
        // (readers' references borrow it). Under `qsbr` every node reachable
        // from the head is the list's alone (removed nodes are not
        // reachable from it and belong to their `Retired`); under
        // `refcount` a node that a removed one still points to is freed
        // with that one.
        release_chain(self.head.take_mut());
    }
}

/// The elements as the writer sees them, or `<locked>` while a writer
/// holds the lock (as `std::sync::Mutex` does: formatting never waits for
/// it, so it cannot deadlock against a writer on this CPU).
impl<T: fmt::Debug> fmt::Debug for RcuList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_lock() {
            Some(w) => f.debug_list().entries(w.iter()).finish(),
            None => f.write_str("RcuList { <locked> }"),
        }
    }
}

/// The elements of an [`RcuList`], walked with no lock ([`RcuList::iter`]),
/// or by the writer ([`Writer::iter`]). Not `Send`: it belongs to the read
/// section (or the writer) it was made under.
///
/// ```no_run
/// let list = ukrcu::list::RcuList::new();
/// list.lock().push_back(1);
/// let guard = ukrcu::read_lock();
/// let mut it: ukrcu::list::Iter<'_, i32> = list.iter(&guard);
/// assert_eq!(it.next(), Some(&1));
/// assert_eq!(it.next(), None);
/// ```
pub struct Iter<'g, T: 'g> {
    /// The link to follow next (`None`: the end was reached).
    link: Option<&'g Link<Node<T>>>,
    /// The read section the walk counts its references in (`refcount`);
    /// `None` for a writer's walk, which needs none.
    section: Option<&'g flavor::Section>,
}

impl<'g, T> Iterator for Iter<'g, T> {
    type Item = &'g T;

    #[inline]
    fn next(&mut self) -> Option<&'g T> {
        let link = self.link?;
        let node = match self.section {
            // A reader: the node stays valid for the section (see
            // `RcuCell::load`).
            Some(section) => link.load(section),
            // SAFETY: a writer's walk, borrowing the writer for `'g`: a
            // writer frees nothing it has not unlinked, and cannot unlink
            // while `'g` borrows it.
            None => unsafe { link.peek_ref() },
        };
        self.link = node.map(|n| &n.next);
        node.map(|n| &n.value)
    }
}

impl<T> FusedIterator for Iter<'_, T> {}

/// Mutable references to the elements of a list nobody else can see
/// ([`RcuList::iter_mut`]).
///
/// ```no_run
/// let mut list = ukrcu::list::RcuList::new();
/// list.lock().push_back(1);
/// let it: ukrcu::list::IterMut<'_, i32> = list.iter_mut();
/// it.for_each(|v| *v *= 10);
/// ```
pub struct IterMut<'a, T: 'a> {
    link: Option<&'a mut Link<Node<T>>>,
}

impl<'a, T> Iterator for IterMut<'a, T> {
    type Item = &'a mut T;

    fn next(&mut self) -> Option<&'a mut T> {
        // The list is borrowed mutably for `'a`: no other reference to any
        // of its nodes exists, and each node is visited once.
        let node = self.link.take()?.get_mut()?;
        self.link = Some(&mut node.next);
        Some(&mut node.value)
    }
}

impl<T> FusedIterator for IterMut<'_, T> {}

/// The writer lock of an [`RcuList`] ([`RcuList::lock`]): every change to
/// the list goes through it. Each change publishes with one `SeqCst`
/// store; removed and replaced nodes come back as [`Retired`] values.
///
/// ```no_run
/// let list = ukrcu::list::RcuList::new();
/// let mut w = list.lock();
/// w.push_back("b");
/// w.push_front("a");
/// let old = w.replace(|s| *s == "b", "c").ok();
/// drop(w); // the lock, before waiting
/// ukrcu::synchronize();
/// drop(old); // freed here
/// ```
pub struct Writer<'a, T> {
    list: &'a RcuList<T>,
    links: SpinLockGuard<'a, Links<T>>,
}

impl<'a, T> Writer<'a, T> {
    /// Elements in the list.
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::<u8>::new();
    /// assert_eq!(list.lock().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.links.len
    }

    /// Whether the list is empty.
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::<u8>::new();
    /// assert!(list.lock().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.links.len == 0
    }

    /// The elements, first to last, as the writer sees them (no read guard
    /// needed: nothing is freed while the writer is borrowed).
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// let mut w = list.lock();
    /// w.push_back(1);
    /// w.push_back(2);
    /// assert!(w.iter().copied().eq([1, 2]));
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { link: Some(&self.list.head), section: None }
    }

    /// The first element for which `pred` holds.
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// let mut w = list.lock();
    /// w.push_back(5);
    /// assert_eq!(w.find(|v| *v > 4), Some(&5));
    /// ```
    pub fn find(&self, mut pred: impl FnMut(&T) -> bool) -> Option<&T> {
        self.iter().find(|v| pred(v))
    }

    /// A cursor on the first element (or on the end of an empty list).
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// let mut w = list.lock();
    /// w.push_back(1);
    /// w.push_back(3);
    /// let mut c = w.cursor();
    /// c.move_next();
    /// c.insert_before(2); // 1, 2, 3: the cursor stays on 3
    /// assert_eq!(c.current(), Some(&3));
    /// ```
    pub fn cursor(&mut self) -> Cursor<'_, 'a, T> {
        Cursor { writer: self, prev: ptr::null() }
    }

    /// Adds `value` at the front (`list_add_rcu`).
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// list.lock().push_front(2);
    /// list.lock().push_front(1);
    /// assert_eq!(list.lock().iter().next(), Some(&1));
    /// ```
    pub fn push_front(&mut self, value: T) {
        self.cursor().insert_before(value);
    }

    /// Adds `value` at the back (`list_add_tail_rcu`), in constant time.
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// list.lock().push_back(1);
    /// list.lock().push_back(2);
    /// assert_eq!(list.lock().iter().last(), Some(&2));
    /// ```
    pub fn push_back(&mut self, value: T) {
        let tail = self.links.tail;
        Cursor { writer: self, prev: tail }.insert_before(value);
    }
}

impl<'a, T: Send + 'static> Writer<'a, T> {
    /// Unlinks the first element (`list_del_rcu` of the first entry).
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// list.lock().push_back(1);
    /// let first = list.lock().pop_front();
    /// assert_eq!(first.as_deref().map(|n| **n), Some(1));
    /// first.unwrap().free_after_grace_period();
    /// ```
    pub fn pop_front(&mut self) -> Option<Retired<Node<T>>> {
        self.cursor().remove_current()
    }

    /// Unlinks the first element for which `pred` holds (`list_del_rcu`).
    /// Readers standing on it continue to its successor; it is freed only
    /// once no reader can hold it.
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// list.lock().push_back(1);
    /// list.lock().push_back(2);
    /// let removed = list.lock().remove(|v| *v == 1);
    /// if let Some(node) = removed {
    ///     node.free_after_grace_period();
    /// }
    /// ```
    pub fn remove(&mut self, pred: impl FnMut(&T) -> bool) -> Option<Retired<Node<T>>> {
        let mut c = self.cursor();
        c.seek(pred).then(|| c.remove_current()).flatten()
    }

    /// Replaces the first element for which `pred` holds with `value`
    /// (`list_replace_rcu`): readers see the old element or the new one,
    /// never neither.
    ///
    /// # Errors
    /// `value`, given back, when no element matches.
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// list.lock().push_back((1, "old"));
    /// let old = list.lock().replace(|e| e.0 == 1, (1, "new")).ok().expect("found");
    /// assert_eq!(old.1, "old");
    /// old.free_after_grace_period();
    /// ```
    pub fn replace(&mut self, pred: impl FnMut(&T) -> bool, value: T) -> Result<Retired<Node<T>>, T> {
        let mut c = self.cursor();
        if c.seek(pred) { c.replace_current(value) } else { Err(value) }
    }

    /// Replaces the first element for which `pred` holds with what `update`
    /// makes from it: read, copy, update.
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// list.lock().push_back((1, 10));
    /// let old = list.lock().replace_with(|e| e.0 == 1, |e| (e.0, e.1 + 1));
    /// old.unwrap().free_after_grace_period();
    /// ```
    pub fn replace_with(
        &mut self,
        pred: impl FnMut(&T) -> bool,
        update: impl FnOnce(&T) -> T,
    ) -> Option<Retired<Node<T>>> {
        let mut c = self.cursor();
        if !c.seek(pred) {
            return None;
        }
        let new = update(c.current()?);
        c.replace_current(new).ok()
    }
}

/// A writer's position in an [`RcuList`] ([`Writer::cursor`]): on an
/// element, or on the end. Removing, replacing and inserting at the cursor
/// each publish with one store.
///
/// ```no_run
/// // Keep the list sorted: insert before the first greater element.
/// let list = ukrcu::list::RcuList::new();
/// for v in [3, 1, 2] {
///     let mut w = list.lock();
///     let mut c = w.cursor();
///     c.seek(|x| *x > v);
///     c.insert_before(v);
/// }
/// assert!(list.lock().iter().copied().eq([1, 2, 3]));
/// ```
pub struct Cursor<'w, 'a, T> {
    writer: &'w mut Writer<'a, T>,
    /// The node before the cursor, whose `next` is the cursor's link (null:
    /// the cursor is on the head).
    prev: *const Node<T>,
}

impl<T> Cursor<'_, '_, T> {
    /// The link that points at the cursor's element.
    fn link(&self) -> &Link<Node<T>> {
        // SAFETY: `prev` is null or a node in the list: only the writer
        // unlinks nodes, and the cursor borrows it mutably, so `prev`
        // stays in the list (and allocated) while the cursor lives.
        match unsafe { self.prev.as_ref() } {
            Some(prev) => &prev.next,
            None => &self.writer.list.head,
        }
    }

    /// The element under the cursor (`None`: the end).
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// list.lock().push_back(1);
    /// let mut w = list.lock();
    /// assert_eq!(w.cursor().current(), Some(&1));
    /// ```
    pub fn current(&self) -> Option<&T> {
        self.node().map(|n| &n.value)
    }

    /// The node under the cursor.
    fn node(&self) -> Option<&Node<T>> {
        // SAFETY: a node in the list, which only this writer (borrowed by
        // the cursor, and so by the returned reference) can unlink.
        unsafe { self.link().peek_ref() }
    }

    /// Moves to the next element; false (and stays) at the end.
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// list.lock().push_back(1);
    /// let mut w = list.lock();
    /// let mut c = w.cursor();
    /// assert!(c.move_next());
    /// assert!(!c.move_next());
    /// assert_eq!(c.current(), None);
    /// ```
    pub fn move_next(&mut self) -> bool {
        let Some(node) = self.node() else {
            return false;
        };
        self.prev = node;
        true
    }

    /// Moves forwards to the first element, from the cursor on, for which
    /// `pred` holds; false when there is none (the cursor is then on the
    /// end).
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// list.lock().push_back(1);
    /// list.lock().push_back(2);
    /// let mut w = list.lock();
    /// let mut c = w.cursor();
    /// assert!(c.seek(|v| *v == 2));
    /// assert!(!c.seek(|v| *v == 1));
    /// ```
    pub fn seek(&mut self, mut pred: impl FnMut(&T) -> bool) -> bool {
        loop {
            match self.current() {
                None => return false,
                Some(v) if pred(v) => return true,
                Some(_) => {
                    self.move_next();
                }
            }
        }
    }

    /// Inserts `value` before the cursor's element (at the end, when the
    /// cursor is there); the cursor stays on the same element. The new node
    /// is initialised before one `SeqCst` store publishes it.
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// let mut w = list.lock();
    /// let mut c = w.cursor();
    /// c.insert_before(2);
    /// c.insert_before(3); // at the end, after 2
    /// assert_eq!(c.current(), None);
    /// ```
    pub fn insert_before(&mut self, value: T) {
        let link = self.link();
        // SAFETY: the writer's node (see `node`); the link's hold on it
        // moves to the new node's `next` by the swap below.
        let next = unsafe { link.peek_owned() };
        let at_end = next.is_none();
        let node = Node::alloc(value, next);
        let new = node.as_ptr();
        // Publish: the node's value and `next` are written above; the
        // `SeqCst` swap orders them before the address becomes visible. The
        // link's old hold went to the new node's `next`.
        if let Some(old) = link.swap(Some(node)) {
            old.forget();
        }
        if at_end {
            self.writer.links.tail = new;
        }
        self.writer.links.len += 1;
        self.prev = new;
    }
}

impl<T: Send + 'static> Cursor<'_, '_, T> {
    /// Unlinks the cursor's element, which comes back as a [`Retired`]; the
    /// cursor moves to the element after it. The removed node keeps its
    /// `next`, so readers standing on it continue (`list_del_rcu`).
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// for v in 0..10 {
    ///     list.lock().push_back(v);
    /// }
    /// // Remove every odd element.
    /// let mut w = list.lock();
    /// let mut c = w.cursor();
    /// while let Some(&v) = c.current() {
    ///     if v % 2 == 1 {
    ///         c.remove_current().unwrap().free_after_grace_period();
    ///     } else {
    ///         c.move_next();
    ///     }
    /// }
    /// ```
    pub fn remove_current(&mut self) -> Option<Retired<Node<T>>> {
        let node = ptr::from_ref(self.node()?);
        let link = self.link();
        // SAFETY: the successor is in the list (see `node`); the
        // predecessor's link takes a second hold on it (`refcount`: a
        // second reference), as the removed node keeps its own.
        let next = unsafe { (*node).next.peek_owned().map(|n| n.dup()) };
        // Unlink; the node's own `next` stays as it is.
        let removed = link.swap(next)?;
        if self.writer.links.tail == node {
            self.writer.links.tail = self.prev;
        }
        self.writer.links.len -= 1;
        Some(Retired::from_owned(removed))
    }

    /// Replaces the cursor's element with `value` (`list_replace_rcu`); the
    /// cursor is then on the new element. The new node is initialised,
    /// linked to the old one's successor, then published with one store.
    ///
    /// # Errors
    /// `value`, given back, when the cursor is on the end.
    ///
    /// ```no_run
    /// let list = ukrcu::list::RcuList::new();
    /// list.lock().push_back(1);
    /// let mut w = list.lock();
    /// let old = w.cursor().replace_current(2).ok().unwrap();
    /// assert_eq!(**old, 1);
    /// ```
    pub fn replace_current(&mut self, value: T) -> Result<Retired<Node<T>>, T> {
        let Some(old) = self.node() else {
            return Err(value);
        };
        let old = ptr::from_ref(old);
        // SAFETY: the successor is in the list; the new node takes a second
        // hold on it, as the old one keeps its own.
        let next = unsafe { (*old).next.peek_owned().map(|n| n.dup()) };
        let node = Node::alloc(value, next);
        let new = node.as_ptr();
        // Publish the initialised node in the old one's place; the old
        // one keeps its `next`.
        let Some(replaced) = self.link().swap(Some(node)) else {
            unreachable!("ukrcu: the writer's node vanished from its link");
        };
        if self.writer.links.tail == old {
            self.writer.links.tail = new;
        }
        Ok(Retired::from_owned(replaced))
    }
}

#[cfg(feature = "uktest")]
mod tests {
    use super::RcuList;
    use crate::{barrier, read_lock, synchronize, synchronize_expedited};
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use uktest::{OrFail, TestResult, test_case, ut_assert, ut_assert_eq};

    /// What a dropped [`Item`] leaves in its seal.
    const POISON: u64 = 0xdead_dead_dead_dead;

    /// Live and dropped items of one test.
    #[derive(Default)]
    struct Counts {
        made: AtomicUsize,
        dropped: AtomicUsize,
    }

    impl Counts {
        fn live(&self) -> usize {
            self.made.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
        }
    }

    /// An element whose seal says it is live and belongs to its key and
    /// version; its drop poisons the seal and counts itself.
    struct Item {
        key: u64,
        version: u64,
        seal: AtomicU64,
        counts: Arc<Counts>,
    }

    fn seal(key: u64, version: u64) -> u64 {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version).rotate_left(17) ^ 0x5a5a
    }

    impl Item {
        fn new(key: u64, version: u64, counts: &Arc<Counts>) -> Self {
            counts.made.fetch_add(1, Ordering::SeqCst);
            Self { key, version, seal: AtomicU64::new(seal(key, version)), counts: Arc::clone(counts) }
        }

        fn valid(&self) -> bool {
            self.seal.load(Ordering::SeqCst) == seal(self.key, self.version)
        }
    }

    impl Drop for Item {
        fn drop(&mut self) {
            self.seal.store(POISON, Ordering::SeqCst);
            self.counts.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn keys(list: &RcuList<Item>) -> Vec<u64> {
        let guard = read_lock();
        list.iter(&guard).map(|i| i.key).collect()
    }

    /// Order of `push_front`/`push_back`, removal (first, middle, last:
    /// the tail follows), replacement, the cursor, `find`, and every node
    /// freed: removed ones after `barrier()`, the rest with the list.
    fn list_sequential_semantics() -> TestResult {
        let counts = Arc::new(Counts::default());
        let list = RcuList::new();
        {
            let mut w = list.lock();
            ut_assert!(w.is_empty());
            w.push_back(Item::new(2, 0, &counts));
            w.push_back(Item::new(3, 0, &counts));
            w.push_front(Item::new(1, 0, &counts));
            w.push_front(Item::new(0, 0, &counts));
            ut_assert_eq!(w.len(), 4);
        }
        ut_assert_eq!(keys(&list), [0, 1, 2, 3]);
        {
            let guard = read_lock();
            ut_assert_eq!(list.find(&guard, |i| i.key == 2).map(|i| i.version), Some(0));
            ut_assert!(list.find(&guard, |i| i.key == 9).is_none());
            ut_assert_eq!(list.first(&guard).map(|i| i.key), Some(0));
        }

        // Middle, then the last (the tail moves back), then append.
        let mut retired = Vec::new();
        let r = list.lock().remove(|i| i.key == 2);
        ut_assert_eq!(r.as_ref().map(|n| n.key), Some(2));
        retired.extend(r);
        ut_assert!(list.lock().remove(|i| i.key == 2).is_none(), "removed twice");
        let r = list.lock().remove(|i| i.key == 3);
        ut_assert_eq!(r.as_ref().map(|n| n.key), Some(3));
        retired.extend(r);
        list.lock().push_back(Item::new(4, 0, &counts));
        ut_assert_eq!(keys(&list), [0, 1, 4]);

        // Replace the last (the tail follows), then append after it.
        let old = list.lock().replace(|i| i.key == 4, Item::new(4, 1, &counts));
        ut_assert_eq!(old.as_ref().ok().map(|n| (n.key, n.version)), Some((4, 0)));
        retired.extend(old.ok());
        list.lock().push_back(Item::new(5, 0, &counts));
        let missing = list.lock().replace(|i| i.key == 9, Item::new(9, 0, &counts));
        ut_assert_eq!(missing.as_ref().err().map(|i| i.key), Some(9), "no match gives the value back");
        drop(missing);
        let updated = list.lock().replace_with(|i| i.key == 1, |i| Item::new(i.key, i.version + 1, &counts));
        retired.extend(updated);
        {
            let guard = read_lock();
            let seen: Vec<(u64, u64)> = list.iter(&guard).map(|i| (i.key, i.version)).collect();
            ut_assert_eq!(seen, [(0, 0), (1, 1), (4, 1), (5, 0)]);
            ut_assert!(list.iter(&guard).all(Item::valid));
        }

        // The front, and the cursor: insert in order, remove in a walk.
        let front = list.lock().pop_front();
        ut_assert_eq!(front.as_ref().map(|n| n.key), Some(0));
        retired.extend(front);
        {
            let mut w = list.lock();
            let mut c = w.cursor();
            ut_assert!(c.seek(|i| i.key > 3));
            c.insert_before(Item::new(3, 0, &counts));
            ut_assert_eq!(c.current().map(|i| i.key), Some(4));
            ut_assert!(!c.seek(|i| i.key > 10));
            c.insert_before(Item::new(10, 0, &counts)); // at the end
            ut_assert!(c.current().is_none());
        }
        ut_assert_eq!(keys(&list), [1, 3, 4, 5, 10]);
        {
            let mut w = list.lock();
            let mut c = w.cursor();
            while let Some(key) = c.current().map(|i| i.key) {
                if key % 2 == 1 {
                    retired.extend(c.remove_current());
                } else {
                    c.move_next();
                }
            }
            ut_assert_eq!(w.len(), 2);
            w.push_back(Item::new(12, 0, &counts)); // the tail is 10
        }
        ut_assert_eq!(keys(&list), [4, 10, 12]);

        // qsbr: nothing removed is freed before a grace period; all after
        // one. refcount: with no reader, each is freed by its last
        // reference (a removed node that another removed node points to,
        // with that one).
        ut_assert_eq!(counts.live(), 3 + retired.len());
        let early: usize = retired.iter().filter(|r| !r.grace_period_done()).count();
        for r in retired.drain(..) {
            r.free_after_grace_period();
        }
        if crate::flavor() == "refcount" {
            ut_assert_eq!(counts.live(), 3, "removed nodes that nobody holds were not freed");
        } else if early > 0 {
            ut_assert!(counts.live() > 3, "retired nodes were freed before a grace period");
        }
        barrier();
        ut_assert_eq!(counts.live(), 3, "removed nodes not freed after barrier()");

        // One writer at a time; exclusive access without the lock.
        let w = list.lock();
        ut_assert!(list.try_lock().is_none(), "a second writer got the lock");
        drop(w);
        ut_assert!(list.try_lock().is_some_and(|w| w.len() == 3));
        let mut list = list;
        for item in list.iter_mut() {
            item.version += 100;
        }
        ut_assert!(list.lock().iter().all(|i| i.version >= 100));
        drop(list);
        ut_assert_eq!(counts.live(), 0, "dropping the list frees its nodes");
        ut_assert_eq!(counts.made.load(Ordering::SeqCst), 12);
        Ok(())
    }
    test_case!(list_sequential_semantics);

    /// A reader standing on a node that is removed (and then its successor
    /// too) continues along the removed nodes' `next` links; neither node
    /// is freed while the reader's section is open.
    fn list_removed_node_keeps_its_next() -> TestResult {
        let counts = Arc::new(Counts::default());
        let list = RcuList::new();
        for k in 0..5 {
            list.lock().push_back(Item::new(k, 0, &counts));
        }
        let guard = read_lock();
        let mut it = list.iter(&guard);
        ut_assert_eq!(it.next().map(|i| i.key), Some(0));
        let on = it.next();
        ut_assert_eq!(on.map(|i| i.key), Some(1));
        // Remove the node the reader is on, its successor, and replace the
        // one after that; add a new first element.
        let mut w = list.lock();
        let r1 = w.remove(|i| i.key == 1);
        let r2 = w.remove(|i| i.key == 2);
        let r3 = w.replace(|i| i.key == 3, Item::new(3, 1, &counts)).ok();
        w.push_front(Item::new(9, 0, &counts));
        drop(w);
        ut_assert!(r1.is_some() && r2.is_some() && r3.is_some());
        // Drop them now: each defers its own free past this section.
        drop((r1, r2, r3));
        let rest: Vec<(u64, u64, bool)> = it.map(|i| (i.key, i.version, i.valid())).collect();
        ut_assert_eq!(rest, [(2, 0, true), (3, 0, true), (4, 0, true)]);
        ut_assert!(on.is_some_and(Item::valid));
        ut_assert_eq!(counts.dropped.load(Ordering::SeqCst), 0, "freed under an open read-side section");
        drop(guard);
        ut_assert_eq!(keys(&list), [9, 0, 3, 4]);
        barrier();
        ut_assert_eq!(counts.dropped.load(Ordering::SeqCst), 3);
        drop(list);
        ut_assert_eq!(counts.live(), 0);
        Ok(())
    }
    test_case!(list_removed_node_keeps_its_next);

    /// Sets its flag when dropped.
    struct StopOnDrop(Arc<AtomicBool>);

    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Keys in the concurrent test.
    const KEYS: u64 = 48;
    /// Keys that are multiples of this are anchors: in the list from the
    /// start, only ever replaced.
    const ANCHOR_EVERY: u64 = 8;
    /// Writer operations in the concurrent test.
    const OPS: u64 = 3000;

    /// One reader's results.
    #[derive(Default)]
    struct ReaderStats {
        passes: u64,
        nodes: u64,
        errors: u64,
    }

    /// Walks the list until told to stop: every element valid (not
    /// poisoned, its seal matching its key and version), the keys strictly
    /// increasing (the writer keeps the list sorted, and every link, even
    /// a removed node's, points to a greater key), and every anchor key
    /// seen on every pass (anchors are only ever replaced: a walk sees the
    /// old node or the new one, never neither, even from a removed node).
    fn reader(list: &RcuList<Item>, stop: &AtomicBool) -> ReaderStats {
        let mut s = ReaderStats::default();
        while !stop.load(Ordering::Relaxed) {
            {
                let guard = read_lock();
                let mut last = None;
                let mut anchors = 0;
                for item in list.iter(&guard) {
                    s.nodes += 1;
                    if !item.valid() || last.is_some_and(|l| l >= item.key) {
                        s.errors += 1;
                    }
                    if item.key.is_multiple_of(ANCHOR_EVERY) {
                        anchors += 1;
                    }
                    last = Some(item.key);
                }
                if anchors != KEYS / ANCHOR_EVERY {
                    s.errors += 1;
                }
            }
            s.passes += 1;
            uksched::yield_now();
        }
        s
    }

    /// Readers on every CPU walk the list continuously while a writer
    /// inserts (sorted), removes and replaces, freeing what it unlinks by
    /// every path (deferred free, early drop, `synchronize` then
    /// `into_box`, expedited): no reader ever sees an invalid or poisoned
    /// element or an out-of-order link, the final contents are exactly
    /// the writer's model, and every node is freed by the end.
    fn list_concurrent_readers_and_writer() -> TestResult {
        let counts = Arc::new(Counts::default());
        let list = Arc::new(RcuList::new());
        // The writer (this thread) keeps a model of the list, key -> version;
        // the anchors are there before the readers start.
        let mut model: Vec<Option<u64>> =
            (0..KEYS).map(|k| k.is_multiple_of(ANCHOR_EVERY).then_some(0)).collect();
        for key in (0..KEYS).step_by(ANCHOR_EVERY as usize) {
            list.lock().push_back(Item::new(key, 0, &counts));
        }
        let stop = Arc::new(AtomicBool::new(false));
        // Stops the readers however this test ends.
        let _stop_readers = StopOnDrop(Arc::clone(&stop));
        let mut readers = Vec::new();
        for cpu in 0..ukplat::cpu::count() {
            let (list, stop) = (Arc::clone(&list), Arc::clone(&stop));
            readers.push(
                uksched::Builder::new()
                    .name("list-reader")
                    .affinity(uksched::CpuSet::single(cpu))
                    .spawn(move || reader(&list, &stop))
                    .or_fail()?,
            );
        }

        let mut rng = uktest::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut held = Vec::new();
        let (mut inserts, mut removes, mut replaces) = (0u64, 0u64, 0u64);
        for op in 1..=OPS {
            let key = rng.below(KEYS);
            let slot = &mut model[key as usize];
            let retired = {
                let mut w = list.lock();
                match *slot {
                    None => {
                        let mut c = w.cursor();
                        c.seek(|i| i.key >= key);
                        c.insert_before(Item::new(key, op, &counts));
                        *slot = Some(op);
                        inserts += 1;
                        None
                    }
                    Some(version) => {
                        let r = if !key.is_multiple_of(ANCHOR_EVERY) && rng.below(2) == 0 {
                            *slot = None;
                            removes += 1;
                            w.remove(|i| i.key == key)
                        } else {
                            *slot = Some(op);
                            replaces += 1;
                            w.replace(|i| i.key == key, Item::new(key, op, &counts)).ok()
                        };
                        let Some(r) = r else {
                            uktest::ut_fail!("op {}: key {} is not in the list", op, key)
                        };
                        ut_assert_eq!((r.key, r.version), (key, version), "op {}: the wrong node", op);
                        Some(r)
                    }
                }
            };
            if let Some(r) = retired {
                match rng.below(4) {
                    0 => r.free_after_grace_period(),
                    1 => drop(r),
                    _ => held.push(r),
                }
            }
            if held.len() >= 16 {
                if rng.below(2) == 0 {
                    synchronize()
                } else {
                    synchronize_expedited()
                }
                for r in held.drain(..) {
                    match r.into_box() {
                        Ok(node) => ut_assert!(node.valid()),
                        Err(_) => {
                            uktest::ut_fail!("a node retired before synchronize() is not freeable after it")
                        }
                    }
                }
            }
            uksched::yield_now();
        }
        stop.store(true, Ordering::SeqCst);
        let mut total = ReaderStats::default();
        for r in readers {
            let s = r.join();
            ut_assert!(s.passes > 0, "a reader never ran");
            total.passes += s.passes;
            total.nodes += s.nodes;
            total.errors += s.errors;
        }
        ut_assert_eq!(total.errors, 0, "readers saw invalid, poisoned or unordered elements");
        ut_assert!(inserts > 0 && removes > 0 && replaces > 0);

        let expected: Vec<(u64, u64)> =
            model.iter().enumerate().filter_map(|(k, v)| v.map(|v| (k as u64, v))).collect();
        {
            let guard = read_lock();
            let seen: Vec<(u64, u64)> = list.iter(&guard).map(|i| (i.key, i.version)).collect();
            ut_assert_eq!(seen, expected);
        }
        ut_assert_eq!(list.lock().len(), expected.len());
        drop(held);
        barrier();
        ut_assert_eq!(counts.live(), expected.len(), "removed nodes not all freed after barrier()");
        let Ok(list) = Arc::try_unwrap(list) else { uktest::ut_fail!("the list is still shared") };
        drop(list);
        ut_assert_eq!(counts.live(), 0);
        ukconsole::println!(
            "ukrcu::list: {} reader passes over {} nodes on {} CPU(s) beside {} inserts, {} removes, {} replaces",
            total.passes,
            total.nodes,
            ukplat::cpu::count(),
            inserts,
            removes,
            replaces
        );
        Ok(())
    }
    test_case!(list_concurrent_readers_and_writer);
}
