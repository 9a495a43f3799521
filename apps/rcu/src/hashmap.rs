//! A concurrent hash map on RCU: a fixed number of buckets, each an
//! [`RcuList`] of entries.
//!
//! * **Readers** ([`RcuHashMap::get`], [`RcuHashMap::contains`]) hash the
//!   key, walk that bucket's list under a read guard and take no lock.
//! * **Writers** ([`RcuHashMap::insert`], [`RcuHashMap::update`],
//!   [`RcuHashMap::update_with`], [`RcuHashMap::remove`]) take the writer
//!   lock of the key's bucket only: writers to different buckets run in
//!   parallel. An update never changes an entry in place: it publishes a
//!   new node in the old one's place (`list_replace_rcu`), so a reader sees
//!   the old value or the new one, whole, never neither.
//! * **Reclamation:** every node a writer unlinks is freed after a grace
//!   period ([`ukrcu::Retired::free_after_grace_period`], queued after the
//!   bucket lock is released); writers never block on a grace period.
//!   [`ukrcu::barrier`] waits until every such free has run.

use alloc::boxed::Box;
use core::hash::{Hash, Hasher};
use ukrcu::list::RcuList;
use ukrcu::{ReadGuard, Retired};

/// One key and its value, a node of a bucket's list.
struct Entry<K, V> {
    key: K,
    value: V,
}

/// FNV-1a over what `Hash` writes, with a final mix so that the low bits
/// (the bucket index) depend on every input byte.
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

/// Frees `old`, if any, after a grace period (called with no bucket lock
/// held); whether there was one.
fn free_after_grace_period<T: Send + Sync + 'static>(old: Option<Retired<T>>) -> bool {
    match old {
        Some(old) => {
            old.free_after_grace_period();
            true
        }
        None => false,
    }
}

/// A hash map whose lookups take no lock (see the [module documentation](self)).
pub struct RcuHashMap<K, V> {
    buckets: Box<[RcuList<Entry<K, V>>]>,
}

impl<K, V> RcuHashMap<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// An empty map with `buckets` buckets (at least 1; the count never
    /// changes).
    pub fn new(buckets: usize) -> Self {
        Self { buckets: (0..buckets.max(1)).map(|_| RcuList::new()).collect() }
    }

    /// The number of buckets.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// The bucket that holds `key`.
    fn bucket(&self, key: &K) -> &RcuList<Entry<K, V>> {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        key.hash(&mut h);
        // The remainder is below the bucket count, a `usize`.
        &self.buckets[(h.finish() % self.buckets.len() as u64) as usize]
    }

    /// The value of `key`, valid while `guard` is. No lock.
    pub fn get<'g>(&'g self, guard: &'g ReadGuard, key: &K) -> Option<&'g V> {
        self.bucket(key).find(guard, |e| e.key == *key).map(|e| &e.value)
    }

    /// Whether `key` is in the map. No lock.
    pub fn contains(&self, guard: &ReadGuard, key: &K) -> bool {
        self.get(guard, key).is_some()
    }

    /// Sets `key` to `value`: a new entry at the end of its bucket, or a
    /// new node in place of the old entry (freed after a grace period).
    /// Returns whether the key was new.
    pub fn insert(&self, key: K, value: V) -> bool {
        let bucket = self.bucket(&key);
        let old = {
            let mut w = bucket.lock();
            let mut c = w.cursor();
            if c.seek(|e| e.key == key) {
                c.replace_current(Entry { key, value }).ok()
            } else {
                // The cursor is on the end: append.
                c.insert_before(Entry { key, value });
                return true;
            }
        };
        !free_after_grace_period(old)
    }

    /// Replaces the value of `key`, if it is in the map, with `value`
    /// (a new node; the old one is freed after a grace period). Returns
    /// whether it was there.
    pub fn update(&self, key: K, value: V) -> bool {
        let bucket = self.bucket(&key);
        let old = {
            let mut w = bucket.lock();
            let mut c = w.cursor();
            if !c.seek(|e| e.key == key) {
                return false;
            }
            c.replace_current(Entry { key, value }).ok()
        };
        free_after_grace_period(old)
    }

    /// Read, copy, update: replaces the value of `key`, if it is in the
    /// map, with what `f` makes from the current one. Returns whether it
    /// was there.
    pub fn update_with(&self, key: &K, f: impl FnOnce(&V) -> V) -> bool
    where
        K: Clone,
    {
        let old = self
            .bucket(key)
            .lock()
            .replace_with(|e| e.key == *key, |e| Entry { key: e.key.clone(), value: f(&e.value) });
        free_after_grace_period(old)
    }

    /// Removes `key`; its node is freed after a grace period (readers that
    /// found it may go on using it until then). Returns whether it was
    /// there.
    pub fn remove(&self, key: &K) -> bool {
        let old = self.bucket(key).lock().remove(|e| e.key == *key);
        free_after_grace_period(old)
    }

    /// Entries in the map (each bucket counted under its lock, one after
    /// the other: exact only while no writer runs).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.lock().len()).sum()
    }

    /// Whether the map is empty (see [`RcuHashMap::len`]).
    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(RcuList::is_empty)
    }
}

mod tests {
    use super::RcuHashMap;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use core::fmt::Write;
    use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use ukspin::SpinLock;
    use uktest::{OrFail, Stop, TestResult, test_case, ut_assert, ut_assert_eq, ut_fail};

    /// What a dropped [`Val`] leaves in its seal.
    const POISON: u64 = 0xdead_dead_dead_dead;
    /// A value's life flag while it lives, and after its drop.
    const LIVE: u64 = 0x11fe;
    const DEAD: u64 = 0xdead;

    /// Values made and dropped in one test.
    #[derive(Default)]
    struct Counts {
        made: AtomicUsize,
        dropped: AtomicUsize,
        /// Every value's out-of-line life flag, kept until the test ends:
        /// a reader that reaches a value after its drop finds `DEAD` there
        /// even if its node was freed (and the value moved out of it)
        /// while the heap left the node's bytes alone.
        lives: SpinLock<Vec<Arc<AtomicU64>>>,
    }

    impl Counts {
        fn live(&self) -> usize {
            self.made.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
        }
    }

    /// A value that encodes its key and generation; its seal says it is
    /// live, and its drop poisons the seal.
    struct Val {
        key: u64,
        generation: u64,
        seal: AtomicU64,
        life: Arc<AtomicU64>,
        counts: Arc<Counts>,
    }

    fn seal(key: u64, generation: u64) -> u64 {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ generation).rotate_left(29) ^ 0x00c0_ffee
    }

    impl Val {
        fn new(key: u64, generation: u64, counts: &Arc<Counts>) -> Self {
            counts.made.fetch_add(1, Ordering::SeqCst);
            let life = Arc::new(AtomicU64::new(LIVE));
            counts.lives.lock().push(Arc::clone(&life));
            Self {
                key,
                generation,
                seal: AtomicU64::new(seal(key, generation)),
                life,
                counts: Arc::clone(counts),
            }
        }

        fn valid(&self) -> bool {
            self.seal.load(Ordering::SeqCst) == seal(self.key, self.generation)
                && self.life.load(Ordering::SeqCst) == LIVE
        }
    }

    impl Drop for Val {
        fn drop(&mut self) {
            self.seal.store(POISON, Ordering::SeqCst);
            self.life.store(DEAD, Ordering::SeqCst);
            self.counts.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// `key -> generation`, as a reader sees it now.
    fn lookup(map: &RcuHashMap<u64, Val>, key: u64) -> Option<u64> {
        let guard = ukrcu::read_lock();
        map.get(&guard, &key).map(|v| v.generation)
    }

    /// insert (new and existing), get, contains, update, update_with and
    /// remove (present and absent), with more keys than buckets; every
    /// replaced or removed value freed after `barrier()`, the rest with
    /// the map.
    fn hashmap_sequential_semantics() -> TestResult {
        let counts = Arc::new(Counts::default());
        let map = RcuHashMap::new(4);
        ut_assert_eq!(map.buckets(), 4);
        ut_assert!(map.is_empty());
        for k in 0..20 {
            ut_assert!(map.insert(k, Val::new(k, 1, &counts)), "key {} is new", k);
        }
        ut_assert_eq!(map.len(), 20);
        for k in 0..20 {
            ut_assert_eq!(lookup(&map, k), Some(1));
        }
        {
            let guard = ukrcu::read_lock();
            ut_assert!(map.contains(&guard, &19));
            ut_assert!(!map.contains(&guard, &20));
            ut_assert!(map.get(&guard, &7).is_some_and(|v| v.key == 7 && v.valid()));
        }
        ut_assert!(!map.insert(3, Val::new(3, 2, &counts)), "key 3 was there");
        ut_assert_eq!(lookup(&map, 3), Some(2));
        ut_assert!(map.update(4, Val::new(4, 2, &counts)));
        ut_assert!(!map.update(40, Val::new(40, 1, &counts)), "key 40 is absent");
        ut_assert!(map.update_with(&5, |v| Val::new(v.key, v.generation + 9, &v.counts)));
        ut_assert!(!map.update_with(&50, |v| Val::new(v.key, 0, &v.counts)));
        ut_assert!(map.remove(&6));
        ut_assert!(!map.remove(&6), "removed twice");
        ut_assert!(!map.remove(&60));
        ut_assert_eq!(lookup(&map, 4), Some(2));
        ut_assert_eq!(lookup(&map, 5), Some(10));
        ut_assert_eq!(lookup(&map, 6), None);
        ut_assert_eq!(lookup(&map, 40), None);
        ut_assert_eq!(map.len(), 19);
        // Re-insert a removed key.
        ut_assert!(map.insert(6, Val::new(6, 3, &counts)));
        ut_assert_eq!(lookup(&map, 6), Some(3));
        {
            let guard = ukrcu::read_lock();
            let ok = (0..20).all(|k| map.get(&guard, &k).is_some_and(|v| v.key == k && v.valid()));
            ut_assert!(ok, "a value under the wrong key, or poisoned");
        }
        // Made: 20 + 3 + 4 + 40 + 5 + 6; the 40 was dropped at once (not
        // inserted); old 3, 4, 5 and the removed 6 await a grace period.
        ut_assert_eq!(counts.made.load(Ordering::SeqCst), 25);
        ukrcu::barrier();
        ut_assert_eq!(counts.live(), 20, "replaced and removed values not freed after barrier()");
        drop(map);
        ut_assert_eq!(counts.live(), 0, "dropping the map frees its entries");
        Ok(())
    }
    test_case!(hashmap_sequential_semantics);

    /// Keys in the concurrent test.
    const KEYS: u64 = 96;
    /// Buckets in the concurrent test: several keys per bucket, and the
    /// writers' keys share buckets.
    const BUCKETS: usize = 8;
    /// Keys that are multiples of this are anchors: inserted before the
    /// readers start, then only updated, never removed.
    const ANCHOR_EVERY: u64 = 6;
    /// Operations per writer.
    const OPS: u64 = 1500;
    /// Writers; writer `w` owns the keys `k` with `k % WRITERS == w`.
    const WRITERS: u64 = 2;

    /// Sets its flag when dropped.
    struct StopOnDrop(Arc<AtomicBool>);

    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// One reader's results.
    #[derive(Default)]
    struct ReaderStats {
        lookups: u64,
        hits: u64,
        errors: u64,
    }

    /// Looks keys up until told to stop. An error: a value under the wrong
    /// key, a poisoned value, a generation older than one this reader saw
    /// before for the same key (each key has one writer, whose generations
    /// only grow), or an anchor key not found.
    fn reader(map: &RcuHashMap<u64, Val>, stop: &AtomicBool, seed: u64) -> ReaderStats {
        let mut s = ReaderStats::default();
        let mut rng = uktest::Rng::new(seed);
        let mut newest = alloc::vec![0u64; KEYS as usize];
        while !stop.load(Ordering::Relaxed) {
            {
                let guard = ukrcu::read_lock();
                let mut held = None;
                for _ in 0..8 {
                    let key = rng.below(KEYS);
                    s.lookups += 1;
                    match map.get(&guard, &key) {
                        Some(v) => {
                            s.hits += 1;
                            if v.key != key || !v.valid() || v.generation < newest[key as usize] {
                                s.errors += 1;
                            }
                            newest[key as usize] = v.generation;
                            held = Some(v);
                        }
                        // An anchor is never absent.
                        None => s.errors += u64::from(key.is_multiple_of(ANCHOR_EVERY)),
                    }
                }
                // Sometimes hold the last value found a while, as rcutorture's
                // readers do: it must still be valid at the end of the section,
                // however many writers replaced or removed it meanwhile.
                if let Some(v) = held.filter(|_| rng.below(4) == 0) {
                    spin(rng.below(4000));
                    s.errors += u64::from(!v.valid());
                }
            }
            uksched::yield_now();
        }
        s
    }

    /// Busy-waits for about `n` spin-loop hints (no clock needed).
    fn spin(n: u64) {
        for _ in 0..n {
            core::hint::spin_loop();
        }
    }

    /// One writer: random operations on its own keys, checked against its
    /// model (key -> generation). Returns the model, or what went wrong.
    fn writer(map: &RcuHashMap<u64, Val>, counts: &Arc<Counts>, w: u64) -> Result<Vec<Option<u64>>, Stop> {
        let mut rng = uktest::Rng::new(0x9e37_79b9_7f4a_7c15 ^ (w + 1));
        let mut model: Vec<Option<u64>> =
            (0..KEYS).map(|k| (k % WRITERS == w && k.is_multiple_of(ANCHOR_EVERY)).then_some(1)).collect();
        for op in 2..OPS + 2 {
            let key = rng.below(KEYS / WRITERS) * WRITERS + w;
            let slot = &mut model[key as usize];
            let anchor = key.is_multiple_of(ANCHOR_EVERY);
            match (rng.below(5), *slot) {
                (0 | 1, _) => {
                    let new = map.insert(key, Val::new(key, op, counts));
                    ut_assert_eq!(new, slot.is_none(), "insert of key {}", key);
                    *slot = Some(op);
                }
                (2, _) => {
                    let was = map.update(key, Val::new(key, op, counts));
                    ut_assert_eq!(was, slot.is_some(), "update of key {}", key);
                    if was {
                        *slot = Some(op);
                    }
                }
                (3, old) => {
                    let was = map.update_with(&key, |v| Val::new(v.key, op, &v.counts));
                    ut_assert_eq!(was, old.is_some(), "update_with of key {}", key);
                    if was {
                        *slot = Some(op);
                    }
                }
                (_, _) if anchor => {
                    ut_assert!(map.update(key, Val::new(key, op, counts)), "update of anchor {}", key);
                    *slot = Some(op);
                }
                (_, old) => {
                    ut_assert_eq!(map.remove(&key), old.is_some(), "remove of key {}", key);
                    *slot = None;
                }
            }
            uksched::yield_now();
        }
        Ok(model)
    }

    /// Readers on every CPU look keys up (every value must encode its key,
    /// be unpoisoned and never older than one seen before; anchors always
    /// found) while two writers insert, update and remove on their own
    /// keys, which share buckets: the final contents are exactly the
    /// writers' models, and every value is freed by the end.
    fn hashmap_concurrent_readers_and_writers() -> TestResult {
        let counts = Arc::new(Counts::default());
        let map = Arc::new(RcuHashMap::new(BUCKETS));
        for key in (0..KEYS).step_by(ANCHOR_EVERY as usize) {
            ut_assert!(map.insert(key, Val::new(key, 1, &counts)));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_readers = StopOnDrop(Arc::clone(&stop));
        let cpus = ukplat::cpu::count();
        let mut readers = Vec::new();
        for cpu in 0..cpus {
            let (map, stop) = (Arc::clone(&map), Arc::clone(&stop));
            readers.push(
                uksched::Builder::new()
                    .name("map-reader")
                    .affinity(uksched::CpuSet::single(cpu))
                    .spawn(move || reader(&map, &stop, 0x1234_5678 * (cpu as u64 + 1)))
                    .or_fail()?,
            );
        }
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (map, counts) = (Arc::clone(&map), Arc::clone(&counts));
            writers.push(
                uksched::Builder::new()
                    .name("map-writer")
                    .spawn(move || writer(&map, &counts, w))
                    .or_fail()?,
            );
        }
        let mut expected: Vec<Option<u64>> = alloc::vec![None; KEYS as usize];
        for (w, h) in writers.into_iter().enumerate() {
            let model = h.join()?;
            for (k, v) in model.into_iter().enumerate() {
                if k as u64 % WRITERS == w as u64 {
                    expected[k] = v;
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        let mut total = ReaderStats::default();
        for r in readers {
            let s = r.join();
            ut_assert!(s.lookups > 0, "a reader never ran");
            total.lookups += s.lookups;
            total.hits += s.hits;
            total.errors += s.errors;
        }
        ut_assert_eq!(total.errors, 0, "readers saw a wrong, poisoned or older value, or missed an anchor");
        for (k, want) in expected.iter().enumerate() {
            let got = lookup(&map, k as u64);
            if got != *want {
                ut_fail!("key {}: the map has {:?}, the writer's model {:?}", k, got, want);
            }
        }
        let present = expected.iter().filter(|v| v.is_some()).count();
        ut_assert_eq!(map.len(), present);
        ukrcu::barrier();
        ut_assert_eq!(counts.live(), present, "replaced and removed values not all freed after barrier()");
        let Ok(map) = Arc::try_unwrap(map) else { ut_fail!("the map is still shared") };
        drop(map);
        ut_assert_eq!(counts.live(), 0);
        let _ = writeln!(
            ukplat::console::Writer,
            "rcu::hashmap: {} lookups ({} hits) on {} CPU(s) beside {} writers x {} ops; {} keys left",
            total.lookups,
            total.hits,
            cpus,
            WRITERS,
            OPS,
            present
        );
        Ok(())
    }
    test_case!(hashmap_concurrent_readers_and_writers);
}
