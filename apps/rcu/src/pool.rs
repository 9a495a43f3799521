//! The fixed pool of torture elements.
//!
//! Elements live in a static array and are never given back to the heap:
//! freeing one poisons it (`mbtest = 0`, `pipe = POISON`) and puts it on
//! the pool's free list, so a reader that still uses an element after its
//! free sees the poison, deterministically, instead of whatever the heap
//! put there. What is published is a [`PoolRef`]: a small boxed handle to
//! one element (the `T` of `RcuCell<T>`), whose drop frees the element.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use ukspin::SpinLock;

/// Elements in the pool.
pub const POOL_SIZE: usize = 64;

/// Ages counted by the readers: 0 (published), 1 (unlinked), then one more
/// per grace period; the writer frees an element once its age reaches
/// `PIPE_LEN`.
pub const PIPE_LEN: u32 = 10;

/// `pipe` of a freed element (any age >= `PIPE_LEN` lands in the last bucket).
pub const POISON: u32 = 0xdead_beef;

/// `PoolRef::magic` of a live handle, and what its drop leaves there.
const HANDLE_LIVE: u32 = 0x7ec0_1ee7;
const HANDLE_DEAD: u32 = 0xdead_0ff5;

/// No next element.
const END: usize = usize::MAX;

/// One torture element.
pub struct Element {
    /// Age: 0 when published, 1 once unlinked, +1 per grace period after
    /// that; [`POISON`] once freed.
    pub pipe: AtomicU32,
    /// 1 while allocated, 0 once freed (poisoned).
    pub mbtest: AtomicU32,
    /// Bumped each time the element is taken from the free list: a reader
    /// that sees it change inside one read section saw the element freed
    /// and reused under it.
    pub generation: AtomicU64,
    /// The next free element's index ([`END`]: none); changed only under
    /// the free list's lock.
    next: AtomicUsize,
}

impl Element {
    const fn new() -> Self {
        Self {
            pipe: AtomicU32::new(POISON),
            mbtest: AtomicU32::new(0),
            generation: AtomicU64::new(0),
            next: AtomicUsize::new(END),
        }
    }
}

static POOL: [Element; POOL_SIZE] = [const { Element::new() }; POOL_SIZE];

/// The free list: its head and length.
struct FreeList {
    head: usize,
    len: usize,
}

static FREE: SpinLock<FreeList> = SpinLock::new(FreeList { head: END, len: 0 });

/// Puts every element on the free list, poisoned. Call once, before any
/// thread uses the pool.
pub fn init() {
    let mut free = FREE.lock();
    free.head = END;
    free.len = 0;
    for (i, e) in POOL.iter().enumerate().rev() {
        e.pipe.store(POISON, Ordering::Relaxed);
        e.mbtest.store(0, Ordering::Relaxed);
        e.next.store(free.head, Ordering::Relaxed);
        free.head = i;
        free.len += 1;
    }
}

/// A handle to one allocated element: boxed, it is what the torture
/// publishes. Dropping it poisons the element and frees it to the pool.
pub struct PoolRef {
    /// [`HANDLE_LIVE`] until dropped. The box itself is heap memory that a
    /// use after free may find reused: readers check this first.
    magic: u32,
    index: u32,
}

impl PoolRef {
    /// The element, or `None` when the handle itself looks freed or
    /// corrupt (only a reader using it after its free can see that).
    pub fn element(&self) -> Option<&'static Element> {
        // Volatile: a handle used after its free must really be read, not
        // assumed from what the compiler knows of a live `&self`.
        // SAFETY: `self` is a valid reference to a `PoolRef` (an RCU bug
        // could make it point to freed heap memory, which is still mapped
        // memory of the heap; the torture's point is to detect that).
        let (magic, index) =
            unsafe { (core::ptr::read_volatile(&self.magic), core::ptr::read_volatile(&self.index)) };
        if magic != HANDLE_LIVE {
            return None;
        }
        POOL.get(index as usize)
    }
}

impl Drop for PoolRef {
    fn drop(&mut self) {
        let index = self.index as usize;
        // Volatile: the store must happen although the box is freed
        // right after (a dead store the compiler could drop otherwise).
        // SAFETY: `self.magic` is a field of a live `PoolRef` we own.
        unsafe { core::ptr::write_volatile(&mut self.magic, HANDLE_DEAD) };
        let Some(e) = POOL.get(index) else { return };
        e.mbtest.store(0, Ordering::SeqCst);
        e.pipe.store(POISON, Ordering::SeqCst);
        let mut free = FREE.lock();
        e.next.store(free.head, Ordering::Relaxed);
        free.head = index;
        free.len += 1;
    }
}

/// Takes a free element, sets it up to be published (age 0, `mbtest` 1)
/// and boxes its handle; `None` when the pool is exhausted.
pub fn alloc() -> Option<Box<PoolRef>> {
    let index = {
        let mut free = FREE.lock();
        let index = free.head;
        let e = POOL.get(index)?;
        free.head = e.next.swap(END, Ordering::Relaxed);
        free.len -= 1;
        index
    };
    let e = &POOL[index];
    e.generation.fetch_add(1, Ordering::SeqCst);
    e.pipe.store(0, Ordering::SeqCst);
    e.mbtest.store(1, Ordering::SeqCst);
    Some(Box::new(PoolRef { magic: HANDLE_LIVE, index: index as u32 }))
}

/// Checks that every element is back on the free list, once, poisoned;
/// the problem and the element (or length) concerned otherwise.
pub fn check_all_free() -> Result<(), (&'static str, usize)> {
    let free = FREE.lock();
    let mut seen = [false; POOL_SIZE];
    let mut count = 0;
    let mut cursor = free.head;
    let mut problem: Option<(&'static str, usize)> = None;
    while cursor != END {
        match seen.get_mut(cursor) {
            Some(s) if !*s => *s = true,
            Some(_) => {
                problem = Some(("element on the free list twice", cursor));
                break;
            }
            None => {
                problem = Some(("free-list link out of the pool", cursor));
                break;
            }
        }
        count += 1;
        cursor = POOL[cursor].next.load(Ordering::Relaxed);
    }
    if problem.is_none() {
        if let Some(i) = seen.iter().position(|s| !s) {
            problem = Some(("element not back on the free list", i));
        } else if let Some(i) = POOL
            .iter()
            .position(|e| e.mbtest.load(Ordering::SeqCst) != 0 || e.pipe.load(Ordering::SeqCst) != POISON)
        {
            problem = Some(("free element not poisoned", i));
        } else if count != free.len || count != POOL_SIZE {
            problem = Some(("free-list length", free.len));
        }
    }
    problem.map_or(Ok(()), Err)
}

/// Free elements now.
pub fn free_count() -> usize {
    FREE.lock().len
}
