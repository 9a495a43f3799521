//! Model checks of the split reference counts (`ukrcu::split`, the real
//! code: a `cfg(loom)` build of the crate contains it, compiled with loom's
//! atomics and with `BATCH` = 2, so that the overflow path,
//! `move_count_in`, is reachable with a handful of loads).
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p ukrcu --release --test loom_split`
//!
//! What the models check is the module documentation's argument: nobody
//! touches an object without holding a counted reference, and the object
//! is freed exactly once, by whoever drops the count to zero.
//!
//! * **Objects.** Each model has up to three objects (0 = A, 1 = B, 2 = C),
//!   each a `Counted<Value>` with an internal count of 1 (the reference of
//!   the link or owner it starts in, as `Counted::new` gives). They are
//!   never deallocated while the model runs: "freeing" one records it in
//!   a counter kept outside the object (`World::frees`), so a late access
//!   is an assertion failure, never real undefined behaviour. Where the
//!   real code frees by itself (`Link::compare_exchange` and `Link::swap`
//!   drop a `Box` when a writer that lost a race to another writer held the
//!   last reference), `Value`'s `Drop` records it the same way, and this
//!   test binary's allocator ([`KeepModelObjects`]) never hands that
//!   memory back, so that it stays readable.
//! * **Use.** A thread that holds a reference asserts that the object is not
//!   freed and reads its value (a plain field, no atomic), after taking
//!   the reference and again just before giving it back.
//! * **Free.** Whoever gets `true` from `split::release` or
//!   `split::drop_ref` frees (records); a second free of one object fails.
//! * **The end.** After the joins: every object that lost all its
//!   references was freed exactly once and its internal count is exactly 0
//!   (a decrement that landed after the free would wrap it); the object
//!   the link still holds was not freed, the link's external count is 0,
//!   its internal count is 1, and dropping that reference frees it. So: no
//!   use after free, no double free, no leak, no premature free.
//!
//! Each model counts (in a plain static) the executions that reached its
//! interesting case, and its test asserts that some did, so that no model
//! passes vacuously.
//!
//! Loom treats `SeqCst` loads, stores and read-modify-writes as
//! `Acquire`/`Release`/`AcqRel` (tokio-rs/loom#180). That is weaker than
//! what `split` asks for, so a model that passes under it passes under
//! `SeqCst` too.
//!
//! State space: the models with three threads run under a preemption bound
//! of 4 (`loom::model::Builder::preemption_bound`): every interleaving with
//! at most four preemptions (about 20 s for the file on the 2-core build
//! machine in a release build; a bound of 3 takes 3 s, no bound runs for
//! minutes).
#![cfg(loom)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering::Relaxed};

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use ukrcu::split::{self, Counted, Link};

/// How many objects a model has at most.
const OBJECTS: usize = 3;
/// Object ids.
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// The value behind a link: plain data that a reader reads as its "use",
/// and where to record a free when the real code frees it (see `Drop`).
/// Aligned to 128 so that `Counted<Value>` has a layout the allocator can
/// tell apart.
#[repr(align(128))]
struct Value {
    id: usize,
    frees: *const [AtomicUsize; OBJECTS],
}

impl Drop for Value {
    /// The real code freed this object (`Box::from_raw` and drop): record
    /// it as a model free.
    fn drop(&mut self) {
        // SAFETY: the world outlives every object (the objects are never
        // dropped after the model's end, see `World::finish`).
        record_free(unsafe { &*self.frees }, self.id);
    }
}

/// Keeps the memory of `Counted<Value>` objects that the real code frees,
/// so that a model can still read them (a late access is then an
/// assertion failure, not undefined behaviour). Everything else goes to
/// the system allocator.
struct KeepModelObjects;

// SAFETY: forwards to `System`, except that it never frees model objects.
unsafe impl GlobalAlloc for KeepModelObjects {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout != Layout::new::<Counted<Value>>() {
            // SAFETY: forwarded.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded (no `Counted<Value>` is ever reallocated).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: KeepModelObjects = KeepModelObjects;

/// Records a free of object `id`; a second one fails the model.
fn record_free(frees: &[AtomicUsize; OBJECTS], id: usize) {
    let before = frees[id].fetch_add(1, Ordering::SeqCst);
    assert_eq!(before, 0, "use-after-free: object {id} was freed a second time");
}

type Object = NonNull<Counted<Value>>;

/// The shared state of one execution: the link under test, the objects'
/// addresses (to tell which object a pointer is) and their free counters.
struct World {
    link: Link<Value>,
    objects: [usize; OBJECTS],
    /// Boxed, so that its address (in every `Value`) is fixed.
    frees: Box<[AtomicUsize; OBJECTS]>,
}

impl World {
    /// Objects A, B and C, each with one reference; the link holds A (and
    /// A's reference). B and C's references are the caller's.
    fn new() -> Arc<World> {
        let frees = Box::new([AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)]);
        let objects: [Object; OBJECTS] = std::array::from_fn(|id| {
            NonNull::from(Box::leak(Box::new(Counted::new(Value { id, frees: &*frees }))))
        });
        Arc::new(World {
            link: Link::new(Some(objects[A])),
            objects: objects.map(|p| p.as_ptr() as usize),
            frees,
        })
    }

    fn object(&self, id: usize) -> Object {
        NonNull::new(self.objects[id] as *mut Counted<Value>).unwrap()
    }

    /// Which object `p` is.
    fn id(&self, p: Object) -> usize {
        self.objects.iter().position(|&a| a == p.as_ptr() as usize).expect("a pointer to no model object")
    }

    fn freed(&self, id: usize) -> usize {
        self.frees[id].load(Ordering::SeqCst)
    }

    /// A use of `p` by `who`, who holds a reference on it.
    fn use_object(&self, p: Object, who: &str) -> usize {
        let id = self.id(p);
        assert_eq!(self.freed(id), 0, "use-after-free: {who} used object {id} after it was freed");
        // SAFETY: never deallocated while the model runs (see the module
        // documentation); the assertion above is the real check.
        assert_eq!(unsafe { p.as_ref() }.value.id, id);
        id
    }

    /// Frees `p` (records it): its last reference was just dropped.
    fn free(&self, p: Object) {
        record_free(&self.frees, self.id(p));
    }

    /// A reader: `loads` references taken through the link, each used, then
    /// each used again and given back; frees what it was last to release.
    /// Returns the ids it saw.
    fn read(&self, loads: usize) -> Vec<usize> {
        let held: Vec<Object> = (0..loads)
            .map(|_| {
                let p = self.link.load().expect("the link is never null in these models");
                self.use_object(p, "a reader, after its load,");
                p
            })
            .collect();
        let mut seen = Vec::new();
        for p in held {
            seen.push(self.use_object(p, "a reader, before its release,"));
            // SAFETY: taken through this link, not used afterwards.
            if unsafe { split::release(self.link.word(), split::count_of(p)) } {
                self.free(p);
            }
        }
        seen
    }

    /// The owner of `p` (the link's reference, swapped out) uses it and
    /// drops its reference. True when that freed it.
    fn drop_owned(&self, p: Object, who: &str) -> bool {
        self.use_object(p, who);
        // SAFETY: the caller's reference, not used afterwards.
        let last = unsafe { split::drop_ref(p) };
        if last {
            self.free(p);
        }
        last
    }

    /// The external count in the link's word.
    fn external_count(&self) -> u64 {
        self.link.word().load(Ordering::SeqCst) >> 48
    }

    /// The end of an execution, all other threads joined: `unlinked` lost
    /// every reference (freed exactly once, internal count 0), `linked` is
    /// what the link holds (not freed, only the link's reference), and
    /// `owned` are objects whose one reference the model's main thread
    /// still holds. Then empties the link and drops the remaining
    /// references, which must free. The objects are leaked, not
    /// deallocated.
    fn finish(world: Arc<World>, unlinked: &[usize], linked: usize, owned: &[usize]) {
        let Ok(mut world) = Arc::try_unwrap(world) else { panic!("a model thread still holds the world") };
        for &id in unlinked {
            assert_eq!(
                world.freed(id),
                1,
                "object {id} lost its last reference but was freed {} times",
                world.freed(id)
            );
            // SAFETY: never deallocated (freed by the model, or by the real
            // code into `KeepModelObjects`).
            let refs = unsafe { world.object(id).as_ref() }.refs();
            assert_eq!(refs, 0, "object {id} was freed with an internal count of {refs}");
        }
        assert_eq!(world.external_count(), 0, "a reader's reference outlived its release");
        let p = world.link.take_mut().expect("the link is never null in these models");
        let id = world.id(p);
        assert_eq!(id, linked, "the link holds object {id}, not {linked}");
        for &id in std::iter::once(&linked).chain(owned) {
            assert_eq!(world.freed(id), 0, "object {id} was freed while still referenced");
            let p = world.object(id);
            // SAFETY: not freed (asserted), never deallocated.
            let refs = unsafe { p.as_ref() }.refs();
            assert_eq!(refs, 1, "object {id}, held once, has an internal count of {refs}");
            assert!(
                world.drop_owned(p, "the end"),
                "object {id}: dropping its last reference did not free it"
            );
        }
    }
}

/// A builder for the models with three threads (see the module
/// documentation).
fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(4);
    builder
}

/// Executions in which a reader (not the writer) freed A: the last
/// reference was a reader's.
static READER_FREED_A: StdAtomicUsize = StdAtomicUsize::new(0);
/// Executions in which the writer freed A.
static WRITER_FREED_A: StdAtomicUsize = StdAtomicUsize::new(0);

/// Load and count against unlink and free. The link holds A; two readers
/// each `load` (one `fetch_add` counts the reference), use the value and
/// `release`; a writer `swap`s B in, uses A (the link's reference, now
/// its own) and `drop_ref`s it. Whoever drops A's last reference frees it.
/// Checks, under every interleaving with at most four preemptions: no
/// reader uses A after it was freed (after its load and just before its
/// release), A is freed exactly once with an internal count of exactly 0,
/// B stays linked with one reference and no external count. With the
/// writer's own counted load in `swap`, the external count reaches
/// `BATCH` = 2 here too, so the overflow path runs in some executions.
#[test]
fn a_loaded_reference_keeps_the_object_until_it_is_released() {
    builder().check(|| {
        let world = World::new();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let world = Arc::clone(&world);
                thread::spawn(move || world.read(1))
            })
            .collect();
        let old = world.link.swap(Some(world.object(B))).expect("the link held A");
        assert_eq!(world.id(old), A);
        let writer_freed = world.drop_owned(old, "the writer, after its swap,");
        for reader in readers {
            reader.join().unwrap();
        }
        // Not the writer: then a reader (`finish` checks that A was freed).
        if writer_freed { &WRITER_FREED_A } else { &READER_FREED_A }.fetch_add(1, Relaxed);
        World::finish(world, &[A], B, &[]);
    });
    assert!(READER_FREED_A.load(Relaxed) > 0, "no execution had a reader free A");
    assert!(WRITER_FREED_A.load(Relaxed) > 0, "no execution had the writer free A");
}

/// Executions in which the external count was moved into the object while
/// a reader held two references.
static MOVED: StdAtomicUsize = StdAtomicUsize::new(0);

/// The overflow path. `BATCH` is 2 under loom: one reader holds two loads
/// at once (its second load finds the external count at `BATCH` and moves
/// it into A: `move_count_in`), a second reader loads once, and the writer
/// swaps B in (its own counted load among them) and drops A, so that
/// `move_count_in` races `swap` (its compare-and-swap of the word against
/// the writer's, its add and undo against the writer's bias) and the
/// readers' `release`s. Same checks as above. The witness that the path
/// ran: the first reader, holding two references on A while the link
/// still held A, saw an external count below 2.
#[test]
fn moving_the_external_count_in_races_swap_and_release() {
    builder().check(|| {
        let world = World::new();
        let double = {
            let world = Arc::clone(&world);
            thread::spawn(move || {
                let p = world.link.load().unwrap();
                world.use_object(p, "a reader, after its load,");
                let q = world.link.load().unwrap();
                world.use_object(q, "a reader, after its load,");
                let word = world.link.word().load(Ordering::SeqCst);
                if p == q && word & ((1 << 48) - 1) == p.as_ptr() as u64 & ((1 << 48) - 1) && word >> 48 < 2 {
                    MOVED.fetch_add(1, Relaxed);
                }
                for r in [p, q] {
                    world.use_object(r, "a reader, before its release,");
                    // SAFETY: taken through this link, not used afterwards.
                    if unsafe { split::release(world.link.word(), split::count_of(r)) } {
                        world.free(r);
                    }
                }
            })
        };
        let single = {
            let world = Arc::clone(&world);
            thread::spawn(move || {
                world.read(1);
            })
        };
        let old = world.link.swap(Some(world.object(B))).expect("the link held A");
        assert_eq!(world.id(old), A);
        world.drop_owned(old, "the writer, after its swap,");
        double.join().unwrap();
        single.join().unwrap();
        World::finish(world, &[A], B, &[]);
    });
    assert!(MOVED.load(Relaxed) > 0, "no execution moved the external count in");
}

/// Executions in which the reader loaded A (before the exchange).
static CAS_READER_SAW_A: StdAtomicUsize = StdAtomicUsize::new(0);

/// A successful `compare_exchange`: the link holds A; a writer's
/// `compare_exchange(Some(A), Some(B))` races a reader's load, use and
/// release. The exchange must succeed (nobody else writes the link) and
/// hand back A with the link's reference; the writer uses A and drops it.
/// Same checks as above.
#[test]
fn compare_exchange_that_succeeds_races_a_reader() {
    loom::model(|| {
        let world = World::new();
        let reader = {
            let world = Arc::clone(&world);
            thread::spawn(move || world.read(1))
        };
        let old = world
            .link
            .compare_exchange(Some(world.object(A)), Some(world.object(B)))
            .unwrap_or_else(|_| panic!("compare_exchange failed on the object the link holds"))
            .expect("the link held A");
        assert_eq!(world.id(old), A);
        world.drop_owned(old, "the writer, after its compare_exchange,");
        if reader.join().unwrap() == [A] {
            CAS_READER_SAW_A.fetch_add(1, Relaxed);
        }
        World::finish(world, &[A], B, &[]);
    });
    assert!(CAS_READER_SAW_A.load(Relaxed) > 0, "no execution had the reader load A");
}

/// A failing `compare_exchange`: the link holds A; a writer's
/// `compare_exchange(Some(C), Some(B))` (C is not linked) races a reader's
/// load, use and release. It must fail, hand B back (B's reference is the
/// writer's again, B not linked, its count unchanged at 1), and leave A's
/// counts as they were: linked, internal count 1, external count 0 once
/// the reader has released; nothing freed.
#[test]
fn compare_exchange_that_fails_hands_new_back_and_changes_no_count() {
    loom::model(|| {
        let world = World::new();
        let reader = {
            let world = Arc::clone(&world);
            thread::spawn(move || world.read(1))
        };
        let back = world
            .link
            .compare_exchange(Some(world.object(C)), Some(world.object(B)))
            .map(|_| ())
            .expect_err("compare_exchange succeeded on an object the link does not hold")
            .expect("new came back as None");
        assert_eq!(world.id(back), B);
        assert_eq!(world.link.peek().map(|p| world.id(p)), Some(A));
        assert_eq!(reader.join().unwrap(), [A]);
        // A: linked, not freed, internal count 1; B and C: the main
        // thread's, one reference each.
        World::finish(world, &[], A, &[B, C]);
    });
}

/// Executions in which the loser of the two writers' race freed an object
/// (by the real code's own `Box` drop, or by the model's `drop_ref`).
static CAS_LOST: StdAtomicUsize = StdAtomicUsize::new(0);
static CAS_WON: StdAtomicUsize = StdAtomicUsize::new(0);

/// Two writers and a reader: `compare_exchange(Some(A), Some(B))` races
/// `swap(Some(C))` and a reader's load and release. Either the exchange
/// goes first (it gets A; the swap then gets B) or the swap does (it gets
/// A; the exchange fails and hands B back): in both A and B lose every
/// reference and C stays linked. This reaches the writers' undo paths
/// (the word no longer holds the object a writer counted and biased: it
/// removes its bias and releases, and may be the last, in which case the
/// real code frees) and the swap's retry on the new object. Same checks.
#[test]
fn compare_exchange_races_swap_and_a_reader() {
    builder().check(|| {
        let world = World::new();
        let swapper = {
            let world = Arc::clone(&world);
            thread::spawn(move || {
                let old = world.link.swap(Some(world.object(C))).expect("the link is never null");
                world.drop_owned(old, "the swapping writer, after its swap,");
            })
        };
        let reader = {
            let world = Arc::clone(&world);
            thread::spawn(move || {
                world.read(1);
            })
        };
        match world.link.compare_exchange(Some(world.object(A)), Some(world.object(B))) {
            Ok(old) => {
                let old = old.expect("the link held A");
                assert_eq!(world.id(old), A);
                world.drop_owned(old, "the exchanging writer, after its compare_exchange,");
                CAS_WON.fetch_add(1, Relaxed);
            }
            Err(back) => {
                let back = back.expect("new came back as None");
                assert_eq!(world.id(back), B);
                // B was never linked: its one reference is ours again.
                assert!(world.drop_owned(back, "the exchanging writer, after its failed compare_exchange,"));
                CAS_LOST.fetch_add(1, Relaxed);
            }
        }
        swapper.join().unwrap();
        reader.join().unwrap();
        World::finish(world, &[A, B], C, &[]);
    });
    assert!(CAS_WON.load(Relaxed) > 0, "the compare_exchange never won");
    assert!(CAS_LOST.load(Relaxed) > 0, "the compare_exchange never lost");
}

/// Executions in which the reader's count landed on the null word (its
/// load found A with the plain load, then null with the `fetch_add`).
static COUNTED_ON_NULL: StdAtomicUsize = StdAtomicUsize::new(0);

/// Unlinking to null and linking again: the link holds A; a writer
/// `swap`s in null (gets A, uses it, drops it), then `swap`s in B (must
/// get null back); a reader loads (A, nothing, or B), uses what it got and
/// releases it. A reader's count that lands on the null word means
/// nothing, and the writer's second swap (its compare-and-swap on the null
/// word) must discard it rather than let it count on B: at the end B has
/// no external count. Same checks as above.
#[test]
fn a_count_on_a_null_word_is_discarded_by_the_next_swap() {
    loom::model(|| {
        let world = World::new();
        let reader = {
            let world = Arc::clone(&world);
            thread::spawn(move || {
                let seen_first = world.link.peek().is_some();
                match world.link.load() {
                    Some(p) => {
                        world.use_object(p, "a reader, after its load,");
                        world.use_object(p, "a reader, before its release,");
                        // SAFETY: taken through this link, not used
                        // afterwards.
                        if unsafe { split::release(world.link.word(), split::count_of(p)) } {
                            world.free(p);
                        }
                    }
                    None if seen_first => {
                        COUNTED_ON_NULL.fetch_add(1, Relaxed);
                    }
                    None => {}
                }
            })
        };
        let old = world.link.swap(None).expect("the link held A");
        assert_eq!(world.id(old), A);
        world.drop_owned(old, "the writer, after its swap,");
        assert!(world.link.swap(Some(world.object(B))).is_none(), "the link was not null");
        reader.join().unwrap();
        World::finish(world, &[A], B, &[]);
    });
    assert!(COUNTED_ON_NULL.load(Relaxed) > 0, "no reader's count landed on the null word");
}

/// Negative control: a broken reader that reads the link's address with a
/// plain load (`Link::peek`) and then counts a reference in the object in a
/// second step (`split::acquire`, the racy increment), under the same
/// writer as the first model (swap B in, drop A). Between the two steps
/// the writer can unlink A and drop its last reference; the reader's
/// increment and use then land on a freed object, and loom must find that
/// interleaving.
#[test]
#[should_panic(expected = "use-after-free")]
fn loading_then_counting_is_caught() {
    loom::model(|| {
        let world = World::new();
        let reader = {
            let world = Arc::clone(&world);
            thread::spawn(move || {
                let p = world.link.peek().expect("the link is never null");
                // SAFETY: none — this is the race under test (the model
                // never deallocates, so it is only a model's use after
                // free).
                unsafe { split::acquire(p) };
                world.drop_owned(p, "a broken reader, after load-then-count,");
            })
        };
        let old = world.link.swap(Some(world.object(B))).expect("the link held A");
        world.drop_owned(old, "the writer, after its swap,");
        reader.join().unwrap();
        World::finish(world, &[A], B, &[]);
    });
}
