//! The torture threads: readers pinned to every CPU, one writer, fake
//! writers and a barrier tester, all running until [`STOP`].

use crate::Options;
use crate::pool::{self, PIPE_LEN, POISON, PoolRef};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use ukrcu::{RcuCell, Retired};
use uksched::CpuSet;
use uktest::Rng;

/// Buckets of the age histogram: ages 0 ..= `PIPE_LEN`, the last one
/// holding every age >= `PIPE_LEN` (poison included).
pub const BUCKETS: usize = PIPE_LEN as usize + 1;

/// The published element.
pub static CURRENT: RcuCell<PoolRef> = RcuCell::null();

/// Every torture thread stops when this is set.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// Callback chains (`call_rcu` re-queueing itself) not finished yet.
pub static CHAINS: AtomicUsize = AtomicUsize::new(0);

/// Whether the torture threads should stop.
fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// What one reader saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReaderStats {
    /// Read sections that found an element.
    pub reads: u64,
    /// Read sections that found no element.
    pub empty: u64,
    /// Ages seen at the end of each read section.
    pub pipe: [u64; BUCKETS],
    /// Ages >= 2 (not poison): the element outlived a whole grace period
    /// that began after it was unlinked, while this reader held it.
    pub too_old: u64,
    /// Poisoned elements (`mbtest == 0` or `pipe == POISON`): freed while
    /// still in use.
    pub poisoned: u64,
    /// Elements freed and taken again for a new publication inside one
    /// read section (their generation changed).
    pub reused: u64,
    /// Handles (`PoolRef` boxes) that looked freed: the box itself was
    /// freed while in use.
    pub bad_handle: u64,
    /// Long read sections.
    pub long_delays: u64,
}

impl ReaderStats {
    /// Every error this reader counted.
    pub fn errors(&self) -> u64 {
        self.too_old + self.poisoned + self.reused + self.bad_handle
    }

    /// Adds another reader's counts.
    pub fn add(&mut self, o: &ReaderStats) {
        self.reads += o.reads;
        self.empty += o.empty;
        for (a, b) in self.pipe.iter_mut().zip(o.pipe.iter()) {
            *a += b;
        }
        self.too_old += o.too_old;
        self.poisoned += o.poisoned;
        self.reused += o.reused;
        self.bad_handle += o.bad_handle;
        self.long_delays += o.long_delays;
    }
}

/// A random delay inside a read section: mostly none, often a few
/// microseconds, rarely `long_delay_us` (rcutorture's `rcu_read_delay`).
fn read_delay(rng: &mut Rng, opts: &Options, stats: &mut ReaderStats) {
    if rng.one_in(opts.long_delay_one_in) {
        stats.long_delays += 1;
        uktime::busy_wait(Duration::from_micros(opts.long_delay_us));
    } else if rng.one_in(4) {
        uktime::busy_wait(Duration::from_nanos(rng.below(opts.short_delay_us * 1000)));
    }
}

/// A reader: read sections until [`STOP`], yielding outside them every
/// few reads (the only way a CPU passes a quiescent state under `coop`).
pub fn reader(opts: Options, seed: u64) -> ReaderStats {
    let mut rng = crate::rng(seed);
    let mut s = ReaderStats::default();
    while !stopping() {
        {
            let guard = ukrcu::read_lock();
            if let Some(p) = CURRENT.load(&guard) {
                match p.element() {
                    None => s.bad_handle += 1,
                    Some(e) => {
                        let generation = e.generation.load(Ordering::SeqCst);
                        let mut poisoned = e.mbtest.load(Ordering::SeqCst) == 0;
                        if rng.one_in(8) {
                            // A nested section, ended before the delay: the
                            // outer one must still protect `e`.
                            let inner = ukrcu::read_lock();
                            if CURRENT.load(&inner).is_none() {
                                s.empty += 1;
                            }
                        }
                        read_delay(&mut rng, &opts, &mut s);
                        let pipe = e.pipe.load(Ordering::SeqCst);
                        poisoned |= e.mbtest.load(Ordering::SeqCst) == 0 || pipe == POISON;
                        if e.generation.load(Ordering::SeqCst) != generation {
                            s.reused += 1;
                        }
                        if poisoned {
                            s.poisoned += 1;
                        } else if pipe >= 2 {
                            s.too_old += 1;
                        }
                        s.pipe[(pipe.min(PIPE_LEN)) as usize] += 1;
                        s.reads += 1;
                    }
                }
            } else {
                s.empty += 1;
            }
        }
        if rng.one_in(opts.yield_one_in) {
            uksched::yield_now();
        }
    }
    s
}

/// What the writer did.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriterStats {
    /// Elements published.
    pub updates: u64,
    /// Old elements retired through each path: the synchronous list, a
    /// `call_rcu` chain, `free_after_grace_period`, dropping the `Retired`.
    pub paths: [u64; 4],
    /// `synchronize()` calls.
    pub syncs: u64,
    /// `synchronize_expedited()` calls.
    pub expedited: u64,
    /// Times the pool was empty.
    pub exhausted: u64,
    /// Retired handles whose element could not be found (a bug).
    pub errors: u64,
}

/// One `call_rcu` step of an element's deferred retirement, as
/// rcutorture's `rcu_torture_cb`: one grace period older each time, freed
/// when `PIPE_LEN` old.
fn chain_step(old: Retired<PoolRef>) {
    let Some(e) = old.element() else {
        CHAIN_ERRORS.fetch_add(1, Ordering::Relaxed);
        CHAINS.fetch_sub(1, Ordering::AcqRel);
        return;
    };
    let age = e.pipe.fetch_add(1, Ordering::SeqCst) + 1;
    if age >= PIPE_LEN {
        drop(old);
        CHAINS.fetch_sub(1, Ordering::AcqRel);
    } else {
        ukrcu::call_rcu(move || chain_step(old));
    }
}

/// Chain steps that found a freed handle.
pub static CHAIN_ERRORS: AtomicU64 = AtomicU64::new(0);

/// One grace period for the synchronous list (expedited one time in
/// four), then each element on it is one older and those `PIPE_LEN` old
/// are freed.
fn advance(list: &mut Vec<Retired<PoolRef>>, rng: &mut Rng, s: &mut WriterStats) {
    if rng.one_in(4) {
        ukrcu::synchronize_expedited();
        s.expedited += 1;
    } else {
        ukrcu::synchronize();
        s.syncs += 1;
    }
    let mut i = 0;
    while i < list.len() {
        let age = list[i].element().map_or(PIPE_LEN, |e| e.pipe.fetch_add(1, Ordering::SeqCst) + 1);
        if age >= PIPE_LEN {
            // A grace period has completed since its retirement: this
            // frees it at once.
            drop(list.swap_remove(i));
        } else {
            i += 1;
        }
    }
}

/// The writer: publishes a fresh element each round and retires the old
/// one through each of ukrcu's four paths in turn.
pub fn writer(seed: u64) -> WriterStats {
    let mut rng = crate::rng(seed);
    let mut s = WriterStats::default();
    let mut list: Vec<Retired<PoolRef>> = Vec::with_capacity(pool::POOL_SIZE);
    while !stopping() {
        let Some(new) = pool::alloc() else {
            s.exhausted += 1;
            if list.is_empty() {
                ukrcu::barrier();
            } else {
                advance(&mut list, &mut rng, &mut s);
            }
            continue;
        };
        let path = (s.updates % 4) as usize;
        s.updates += 1;
        if let Some(old) = CURRENT.replace(Some(new)) {
            match old.element() {
                Some(e) => e.pipe.store(1, Ordering::SeqCst),
                None => s.errors += 1,
            }
            s.paths[path] += 1;
            match path {
                0 => {
                    list.push(old);
                    advance(&mut list, &mut rng, &mut s);
                }
                1 => {
                    CHAINS.fetch_add(1, Ordering::AcqRel);
                    ukrcu::call_rcu(move || chain_step(old));
                }
                2 => old.free_after_grace_period(),
                _ => drop(old),
            }
        }
        if rng.one_in(4) {
            uksched::sleep(Duration::from_micros(rng.below(200)));
        } else {
            uksched::yield_now();
        }
    }
    // Whatever is left on the list: one more grace period, then each
    // frees at once.
    ukrcu::synchronize();
    s.syncs += 1;
    list.clear();
    s
}

/// A fake writer: grace periods with nothing to free, normal or expedited,
/// with short sleeps between; returns how many it waited for.
pub fn fake_writer(seed: u64) -> u64 {
    let mut rng = crate::rng(seed);
    let mut n = 0;
    while !stopping() {
        if rng.one_in(3) {
            ukrcu::synchronize_expedited();
        } else {
            ukrcu::synchronize();
        }
        n += 1;
        uksched::sleep(Duration::from_micros(50 + rng.below(500)));
    }
    n
}

/// One barrier test: `per_cpu` callbacks queued from each CPU in turn
/// (the calling thread moves itself), then, after `pause`, `barrier()`:
/// returns how many had not run when it returned. Some callbacks take a
/// few microseconds, so that a `barrier()` that only looks at what is
/// still queued (and not at a callback being run) is caught returning
/// early.
pub fn barrier_round(per_cpu: u64, pause: Duration, rng: &mut Rng) -> u64 {
    let ran = Arc::new(AtomicU64::new(0));
    let me = uksched::current();
    let before = me.affinity();
    let cpus = ukplat::cpu::count();
    for cpu in 0..cpus {
        if cpus > 1 {
            // Moving to an online CPU cannot fail; if it did, the
            // callbacks are queued here instead, which tests as much.
            let _ = me.set_affinity(CpuSet::single(cpu));
        }
        for _ in 0..per_cpu {
            let ran = ran.clone();
            let work = if rng.one_in(4) { rng.below(50) } else { 0 };
            ukrcu::call_rcu(move || {
                uktime::busy_wait(Duration::from_micros(work));
                ran.fetch_add(1, Ordering::SeqCst);
            });
        }
    }
    let _ = me.set_affinity(before);
    if !pause.is_zero() {
        uksched::sleep(pause);
    }
    ukrcu::barrier();
    let queued = per_cpu * cpus as u64;
    let missed = queued.saturating_sub(ran.load(Ordering::SeqCst));
    if missed > 0 {
        // Say whether they ran later (barrier() returned early) or never.
        let returned = uktime::now();
        let later = crate::wait_until(Duration::from_millis(100), || ran.load(Ordering::SeqCst) == queued);
        ukconsole::println!(
            "rcutorture: barrier() returned before {missed} of {queued} callbacks had run; {}",
            if later {
                alloc::format!("all had run {} us later", returned.elapsed().as_micros())
            } else {
                alloc::format!("{} still had not run 100 ms later", queued - ran.load(Ordering::SeqCst))
            }
        );
    }
    missed
}

/// A barrier test that does not depend on timing: one callback that,
/// once running, sleeps for 20 ms (unless told to stop), and `barrier()`
/// called while it runs — it must wait for it. Returns 1 when `barrier()`
/// returned before the callback had finished, 0 otherwise.
pub fn barrier_during_callback() -> u64 {
    static RUNNING: AtomicBool = AtomicBool::new(false);
    static FINISHED: AtomicBool = AtomicBool::new(false);
    static RELEASE: AtomicBool = AtomicBool::new(false);
    RUNNING.store(false, Ordering::SeqCst);
    FINISHED.store(false, Ordering::SeqCst);
    RELEASE.store(false, Ordering::SeqCst);
    ukrcu::call_rcu(|| {
        RUNNING.store(true, Ordering::SeqCst);
        let deadline = uktime::now() + Duration::from_millis(20);
        while !RELEASE.load(Ordering::SeqCst) && uktime::now() < deadline {
            uksched::sleep(Duration::from_micros(200));
        }
        FINISHED.store(true, Ordering::SeqCst);
    });
    if !crate::wait_until(Duration::from_secs(5), || RUNNING.load(Ordering::SeqCst)) {
        ukconsole::println!("rcutorture: a callback did not start within 5 s");
        RELEASE.store(true, Ordering::SeqCst);
        ukrcu::barrier();
        return 1;
    }
    let called = uktime::now();
    ukrcu::barrier();
    if FINISHED.load(Ordering::SeqCst) {
        return 0;
    }
    let returned = called.elapsed();
    RELEASE.store(true, Ordering::SeqCst);
    let finished = crate::wait_until(Duration::from_secs(1), || FINISHED.load(Ordering::SeqCst));
    ukconsole::println!(
        "rcutorture: barrier() returned after {} us while a callback queued before it was still running{}",
        returned.as_micros(),
        if finished { "" } else { " (and it did not finish within 1 s)" }
    );
    // Let it finish before its statics are reused.
    crate::wait_until(Duration::from_secs(1), || FINISHED.load(Ordering::SeqCst));
    1
}

/// The barrier tester: a barrier test every few milliseconds until
/// [`STOP`]; returns (tests, callbacks that had not run).
pub fn barrier_tester(seed: u64) -> (u64, u64) {
    let mut rng = crate::rng(seed);
    let (mut rounds, mut missed) = (0, 0);
    while !stopping() {
        // Now and then wait first, so that barrier() may come while the
        // grace-period thread is running these very callbacks.
        let pause = if rng.one_in(2) { Duration::from_micros(rng.below(3000)) } else { Duration::ZERO };
        missed += barrier_round(1 + rng.below(32), pause, &mut rng);
        rounds += 1;
        uksched::sleep(Duration::from_millis(5 + rng.below(20)));
    }
    (rounds, missed)
}
