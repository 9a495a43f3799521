//! The searchable stack of the OS course notes, on RCU.
//!
//! `push` and `pop` are writers, serialised by one lock; `search` is a
//! reader that walks the stack from the top under a read guard, with no
//! lock, while pushes and pops go on:
//!
//! ```text
//! push(v):   lock; n = new node(v, next = top); top = n (publish); unlock
//! pop():     lock; n = top; top = n.next (n.next is left as it is); unlock;
//!            synchronize(); v = n.value; free(n); return v
//! search(k): read_lock; for n = top; n; n = n.next: if n.value == k: found;
//!            read_unlock
//! ```
//!
//! The nodes are those of [`ukrcu::list::RcuList`]: its writer lock is the
//! stack's lock, `push` is `push_front`, `pop` is `pop_front`, and a search
//! is a walk of the list. A popped node is freed only after a grace period:
//! `pop` waits for one ([`ukrcu::synchronize`], after releasing the lock)
//! and then moves the value out, so a searcher that was standing on the
//! node when it was popped has finished with it by then.

use alloc::vec::Vec;
use ukrcu::ReadGuard;
use ukrcu::list::RcuList;

/// A stack that readers search without a lock ([`Stack::search`]) while
/// writers push and pop.
pub struct Stack<T> {
    nodes: RcuList<T>,
}

impl<T: Send + Sync + 'static> Stack<T> {
    /// An empty stack (usable in a `static`).
    pub const fn new() -> Self {
        Self { nodes: RcuList::new() }
    }

    /// Pushes `value` on top: the node is initialised, then published with
    /// one store under the writers' lock.
    pub fn push(&self, value: T) {
        self.nodes.lock().push_front(value);
    }

    /// Pops the top value: unlinks its node under the writers' lock, then
    /// (with the lock released) waits for a grace period, after which no
    /// searcher can still hold the node, and moves the value out. Blocks
    /// for that grace period; do not call it inside a read-side section.
    pub fn pop(&self) -> Option<T> {
        // The lock is released at the end of this statement, before waiting.
        let mut popped = self.nodes.lock().pop_front()?;
        loop {
            ukrcu::synchronize();
            match popped.into_box() {
                Ok(node) => return Some(node.into_inner()),
                // Not reached: `synchronize` waits for a grace period that
                // began after the unlink. Wait again rather than assume.
                Err(again) => popped = again,
            }
        }
    }

    /// Whether `key` is on the stack: a walk from the top under `guard`,
    /// with no lock. Concurrent pushes and pops may or may not be seen; a
    /// value that stays on the stack throughout is always found.
    pub fn search<Q: ?Sized>(&self, guard: &ReadGuard, key: &Q) -> bool
    where
        T: PartialEq<Q>,
    {
        self.nodes.iter(guard).any(|v| v == key)
    }

    /// The values from the top down, valid while `guard` is.
    pub fn iter<'g>(&'g self, guard: &'g ReadGuard) -> impl Iterator<Item = &'g T> + 'g {
        self.nodes.iter(guard)
    }

    /// Values on the stack (under the writers' lock).
    pub fn len(&self) -> usize {
        self.nodes.lock().len()
    }

    /// Whether the stack is empty now.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Pops everything, top first, with one grace period for all.
    pub fn drain(&self) -> Vec<T> {
        let mut popped = Vec::new();
        {
            let mut w = self.nodes.lock();
            while let Some(node) = w.pop_front() {
                popped.push(node);
            }
        }
        if popped.is_empty() {
            return Vec::new();
        }
        ukrcu::synchronize();
        let mut values = Vec::with_capacity(popped.len());
        for mut node in popped {
            loop {
                match node.into_box() {
                    Ok(node) => break values.push(node.into_inner()),
                    Err(again) => {
                        node = again;
                        ukrcu::synchronize();
                    }
                }
            }
        }
        values
    }
}

impl<T: Send + Sync + 'static> Default for Stack<T> {
    fn default() -> Self {
        Self::new()
    }
}

mod tests {
    use super::Stack;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use core::fmt::Write;
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
    use ukspin::SpinLock;
    use uktest::{OrFail, TestResult, test_case, ut_assert, ut_assert_eq, ut_fail};

    /// What a dropped [`Item`] leaves in its seal.
    const POISON: u64 = 0xdead_dead_dead_dead;
    /// A value's life state while it lives, and after its drop.
    const LIVE: u64 = 0x11fe;
    const DEAD: u64 = 0xdead;

    /// The out-of-line part of an [`Item`], which outlives it.
    struct Life {
        /// `LIVE`, then `DEAD` from the item's drop on.
        state: AtomicU64,
        /// Searchers holding the item now (inside their read sections).
        holders: AtomicU32,
    }

    /// Items made and dropped in one test.
    #[derive(Default)]
    struct Counts {
        made: AtomicUsize,
        dropped: AtomicUsize,
        /// Every value's out-of-line [`Life`], kept until the test ends:
        /// a reader that reaches a value after its drop finds `DEAD` there
        /// even if its node was freed (and the value moved out of it)
        /// while the heap left the node's bytes alone.
        lives: SpinLock<Vec<Arc<Life>>>,
    }

    impl Counts {
        fn live(&self) -> usize {
            self.made.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
        }
    }

    /// A value whose seal says it is live and belongs to its id; its drop
    /// poisons the seal and marks its [`Life`] dead.
    struct Item {
        id: u64,
        seal: AtomicU64,
        life: Arc<Life>,
        counts: Arc<Counts>,
    }

    fn seal(id: u64) -> u64 {
        id.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23) ^ 0x0123_4567
    }

    impl Item {
        fn new(id: u64, counts: &Arc<Counts>) -> Self {
            counts.made.fetch_add(1, Ordering::SeqCst);
            let life = Arc::new(Life { state: AtomicU64::new(LIVE), holders: AtomicU32::new(0) });
            counts.lives.lock().push(Arc::clone(&life));
            Self { id, seal: AtomicU64::new(seal(id)), life, counts: Arc::clone(counts) }
        }

        fn valid(&self) -> bool {
            self.seal.load(Ordering::SeqCst) == seal(self.id)
                && self.life.state.load(Ordering::SeqCst) == LIVE
        }
    }

    impl PartialEq<u64> for Item {
        fn eq(&self, id: &u64) -> bool {
            self.id == *id
        }
    }

    impl Drop for Item {
        fn drop(&mut self) {
            self.seal.store(POISON, Ordering::SeqCst);
            self.life.state.store(DEAD, Ordering::SeqCst);
            self.counts.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn ids(stack: &Stack<Item>) -> Vec<u64> {
        let guard = ukrcu::read_lock();
        stack.iter(&guard).map(|i| i.id).collect()
    }

    /// Last in, first out; search finds exactly what is on the stack; pop
    /// of an empty stack; drain; every item dropped exactly once.
    fn stack_sequential_semantics() -> TestResult {
        let counts = Arc::new(Counts::default());
        let stack = Stack::default();
        ut_assert!(stack.is_empty());
        ut_assert!(stack.pop().is_none());
        for id in 1..=3 {
            stack.push(Item::new(id, &counts));
        }
        ut_assert_eq!(stack.len(), 3);
        ut_assert_eq!(ids(&stack), [3, 2, 1]);
        {
            let guard = ukrcu::read_lock();
            ut_assert!(stack.search(&guard, &2));
            ut_assert!(!stack.search(&guard, &4));
        }
        let top = stack.pop();
        ut_assert_eq!(top.as_ref().map(|i| (i.id, i.valid())), Some((3, true)));
        drop(top);
        ut_assert_eq!(stack.pop().map(|i| i.id), Some(2));
        {
            let guard = ukrcu::read_lock();
            ut_assert!(!stack.search(&guard, &2), "a popped value is still found");
            ut_assert!(stack.search(&guard, &1));
        }
        stack.push(Item::new(4, &counts));
        stack.push(Item::new(5, &counts));
        ut_assert_eq!(ids(&stack), [5, 4, 1]);
        ut_assert_eq!(stack.pop().map(|i| i.id), Some(5));
        let rest: Vec<u64> = stack.drain().iter().map(|i| i.id).collect();
        ut_assert_eq!(rest, [4, 1]);
        ut_assert!(stack.is_empty());
        ut_assert!(stack.pop().is_none());
        ut_assert_eq!(stack.len(), 0);
        ut_assert_eq!(counts.made.load(Ordering::SeqCst), 5);
        ut_assert_eq!(counts.live(), 0, "every popped value is dropped by its owner");
        Ok(())
    }
    test_case!(stack_sequential_semantics);

    /// Pushes and pops by each worker.
    const PER_WORKER: u64 = 200;

    /// Sets its flag when dropped.
    struct StopOnDrop(Arc<AtomicBool>);

    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// One searcher's results.
    #[derive(Default)]
    struct SearchStats {
        passes: u64,
        seen: u64,
        found: u64,
        errors: u64,
    }

    /// Searches until told to stop. Each pass holds the top `HELD` values
    /// (counted in their [`Life`]'s `holders`), where pops happen, while it
    /// walks the whole stack and a while more: a worker that popped one
    /// checks, after its grace period, that nobody holds it any more.
    /// Errors: a value walked over or held that is not valid (poisoned:
    /// popped values are dropped only after a grace period), or the bottom
    /// value (pushed first and never popped while searchers run) not found.
    fn searcher(stack: &Stack<Item>, stop: &AtomicBool, cpu: u64) -> SearchStats {
        let mut s = SearchStats::default();
        let mut probe = cpu;
        while !stop.load(Ordering::Relaxed) {
            {
                let guard = ukrcu::read_lock();
                let mut held: [Option<&Item>; HELD] = [None; HELD];
                for (i, item) in stack.iter(&guard).enumerate() {
                    s.seen += 1;
                    if !item.valid() {
                        s.errors += 1;
                    }
                    if let Some(slot) = held.get_mut(i).filter(|_| item.id != BOTTOM) {
                        item.life.holders.fetch_add(1, Ordering::SeqCst);
                        *slot = Some(item);
                    }
                }
                if !stack.search(&guard, &BOTTOM) {
                    s.errors += 1;
                }
                probe = (probe * 7 + 13) % (WORKERS_MAX * PER_WORKER);
                if stack.search(&guard, &probe) {
                    s.found += 1;
                }
                for _ in 0..probe {
                    core::hint::spin_loop();
                }
                for item in held.into_iter().flatten() {
                    s.errors += u64::from(!item.valid());
                    item.life.holders.fetch_sub(1, Ordering::SeqCst);
                }
            }
            s.passes += 1;
            uksched::yield_now();
        }
        s
    }

    /// Values from the top that each search pass holds.
    const HELD: usize = 32;
    /// The id of the value at the bottom of the stack.
    const BOTTOM: u64 = u64::MAX;
    /// Workers at most (ids are `worker * PER_WORKER + i`).
    const WORKERS_MAX: u64 = 8;

    /// Searchers pinned to every CPU walk the stack while workers (one
    /// per CPU, at least two) push unique values and pop after every
    /// other push, each pop waiting for its grace period: no searcher sees a poisoned value or misses
    /// the bottom one, every value pushed is popped exactly once (by a
    /// worker or at the end), and every one is dropped.
    fn stack_concurrent_search_push_pop() -> TestResult {
        let counts = Arc::new(Counts::default());
        let stack = Arc::new(Stack::new());
        stack.push(Item::new(BOTTOM, &counts));
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_searchers = StopOnDrop(Arc::clone(&stop));
        let cpus = ukplat::cpu::count();
        let mut searchers = Vec::new();
        for cpu in 0..cpus {
            let (stack, stop) = (Arc::clone(&stack), Arc::clone(&stop));
            searchers.push(
                uksched::Builder::new()
                    .name("stack-searcher")
                    .affinity(uksched::CpuSet::single(cpu))
                    .spawn(move || searcher(&stack, &stop, cpu as u64))
                    .or_fail()?,
            );
        }
        let workers = (cpus as u64).clamp(2, WORKERS_MAX);
        let mut handles = Vec::new();
        for w in 0..workers {
            let (stack, counts) = (Arc::clone(&stack), Arc::clone(&counts));
            handles.push(
                uksched::Builder::new()
                    .name("stack-worker")
                    .spawn(move || {
                        // (ids popped, popped values that were invalid, still
                        // held by a searcher, or the bottom one)
                        let mut popped = Vec::new();
                        let mut invalid = 0u64;
                        for i in 0..PER_WORKER {
                            stack.push(Item::new(w * PER_WORKER + i, &counts));
                            // Let searchers find it on top before it is popped.
                            uksched::yield_now();
                            if i % 2 == 0 {
                                match stack.pop() {
                                    Some(item) if item.id == BOTTOM => {
                                        // Never: every worker pushes before it
                                        // pops, so there is always a value
                                        // above the bottom one. Put it back.
                                        invalid += 1;
                                        stack.push(item);
                                    }
                                    Some(item) => {
                                        // After its grace period: valid, and
                                        // no searcher holds it any more.
                                        let held = item.life.holders.load(Ordering::SeqCst);
                                        invalid += u64::from(!item.valid() || held != 0);
                                        popped.push(item.id);
                                    }
                                    None => {}
                                }
                            }
                        }
                        (popped, invalid)
                    })
                    .or_fail()?,
            );
        }
        let mut times_popped = alloc::vec![0u32; (workers * PER_WORKER) as usize];
        let mut invalid = 0;
        for h in handles {
            let (popped, bad) = h.join();
            invalid += bad;
            for id in popped {
                times_popped[id as usize] += 1;
            }
        }
        stop.store(true, Ordering::SeqCst);
        let mut total = SearchStats::default();
        for s in searchers {
            let s = s.join();
            ut_assert!(s.passes > 0, "a searcher never ran");
            total.passes += s.passes;
            total.seen += s.seen;
            total.found += s.found;
            total.errors += s.errors;
        }
        ut_assert_eq!(invalid, 0, "a worker popped a poisoned value, one still held, or the bottom one");
        ut_assert_eq!(total.errors, 0, "searchers saw poisoned values or missed the bottom one");
        let popped_by_workers: u32 = times_popped.iter().sum();
        let left = stack.len();
        let rest = stack.drain();
        ut_assert_eq!(rest.len(), left);
        let mut bottom = 0;
        for item in &rest {
            if item.id == BOTTOM {
                bottom += 1;
            } else if let Some(n) = times_popped.get_mut(item.id as usize) {
                *n += 1;
            } else {
                ut_fail!("an id nobody pushed: {}", item.id);
            }
        }
        ut_assert_eq!(bottom, 1, "the bottom value is on the stack once");
        ut_assert!(times_popped.iter().all(|&n| n == 1), "a value popped twice or lost");
        ut_assert_eq!(popped_by_workers as usize + left, (workers * PER_WORKER) as usize + 1);
        drop(rest);
        ut_assert!(stack.is_empty());
        ut_assert_eq!(counts.made.load(Ordering::SeqCst), (workers * PER_WORKER) as usize + 1);
        ut_assert_eq!(counts.live(), 0, "values not dropped");
        let _ = writeln!(
            ukplat::console::Writer,
            "rcu::stack: {} searches saw {} values on {} CPU(s) beside {} workers: {} pops, {} left",
            total.passes,
            total.seen,
            cpus,
            workers,
            popped_by_workers,
            left
        );
        Ok(())
    }
    test_case!(stack_concurrent_search_push_pop);
}
