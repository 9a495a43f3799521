//! # rcu — rcutorture for `ukrcu`
//!
//! A torture test of read-copy-update in the manner of Linux's
//! `kernel/rcu/rcutorture.c`, run for `duration_ms` and summed up in one
//! line:
//!
//! ```text
//! rcutorture: reads=R grace_periods=G pipe=[h0 h1 ... h10] errors=E barrier_errors=B
//! ```
//!
//! It exits with status 0 only when `E == 0`, `B == 0`, `G > 0` and
//! `R > 0`, and with status 1 otherwise, after a `rcutorture: FAILED: ...`
//! line saying why. `cargo xtask run --app rcu --smp 4` runs it; with
//! `--set ukrcu.broken_grace_periods=true` (grace periods that end at once)
//! it must fail, under either flavour (`--set ukrcu.flavor=refcount`); so
//! must the refcount flavour with `--set ukrcu.broken_refcount=true`
//! (readers that load, then count: a freed handle, or the heap's
//! double-free panic when the late reference goes).
//!
//! ## What runs
//!
//! * **A pool** of 64 elements in a static array, never given to the heap
//!   (`pool.rs`). Each has an age (`pipe`: 0 when published, 1 once
//!   unlinked, one more per grace period after that) and `mbtest` (1 while
//!   allocated, 0 once freed); freeing one poisons it and puts it back on
//!   the pool's free list, so a use after free is seen as poison. What is
//!   published, in an `RcuCell`, is a small boxed handle to an element,
//!   whose drop frees the element.
//! * **Readers**, `readers_per_cpu` pinned to every CPU: in a read section
//!   they load the published element, read its generation and `mbtest`,
//!   sometimes nest a second read section, wait a random time (mostly
//!   none, often up to `short_delay_us`, one time in `long_delay_one_in`
//!   `long_delay_us`), then read its age again and record it in a
//!   histogram (ages >= 10 in the last bucket). An age >= 2, a poisoned
//!   element, an element reused during the section (its generation
//!   changed) or a freed handle is an error. Outside the section they
//!   yield one time in `yield_one_in`, so `coop` makes progress too.
//! * **One writer** publishing a fresh element each round with `replace`,
//!   setting the old one's age to 1 and retiring it by each of ukrcu's
//!   paths in turn: (a) kept on a list, one grace period
//!   (`synchronize()`, `synchronize_expedited()` one time in four) per
//!   such round, after which everything on the list is one older and
//!   what is 10 old is freed (dropping its `Retired`); (b) a `call_rcu`
//!   chain, rcutorture's `rcu_torture_cb`: each callback makes it one
//!   older and re-queues itself until it is 10 old, then frees it; (c)
//!   `Retired::free_after_grace_period`; (d) dropping the `Retired` at
//!   once (which defers the free itself). When the pool is empty it waits
//!   for a grace period or a `barrier()`.
//! * **Two fake writers**: `synchronize()` / `synchronize_expedited()` in a
//!   loop with sleeps of up to half a millisecond.
//! * **A barrier tester**: every few milliseconds, up to 32 callbacks
//!   queued from each CPU in turn (it moves itself; one in four busy for
//!   up to 50 µs), then `barrier()`, at once or after up to 3 ms (so that
//!   it may come while the grace-period thread is running those very
//!   callbacks); each callback that had not run by then is a barrier
//!   error, and a line says whether it ran later. Main runs 20 more after
//!   the torture, with 64 callbacks per CPU and `barrier()` after 0, 150,
//!   ..., 2850 µs, and 3 that do not depend on timing: a callback that,
//!   once running, sleeps for 20 ms, and `barrier()` called while it runs
//!   must not return before it has finished.
//!
//! At the deadline every thread stops and is joined; the last element is
//! unlinked (`replace(None)` + `synchronize()`), main calls `barrier()`
//! until every callback chain has ended, and then every pool element must
//! be back on the free list, poisoned, and the heap must hold exactly as
//! many allocations as before the torture (measured after a warm-up that
//! started as many threads and used every ukrcu path once, and given up
//! to 100 ms to settle: the grace-period thread frees a callback's box
//! just after running it, so `barrier()` may return a moment before).
//!
//! Then the **flood**: `flood` callbacks (10,000 by default) queued from a
//! thread pinned to every CPU, then one `barrier()`: each must have run
//! exactly once (a missing one is a barrier error, a duplicate an error),
//! and the heap must be back at its level before the flood.
//!
//! ## The data structures
//!
//! `platform.cmdline=tests` runs, instead of the torture, ukrcu's own
//! uktest cases and those of two structures built on it: the course
//! notes' searchable stack
//! (`stack.rs`: push, pop, search under a read guard; writers under one
//! lock; a popped node freed after a grace period) and a hash map of
//! per-bucket RCU lists (`hashmap.rs`: lookups with no lock; insert,
//! update and remove under the bucket's lock).
//!
//! ## Options (`platform.cmdline`, `key=value`)
//!
//! | option | default | what |
//! |---|---|---|
//! | `duration_ms` | 3000 | how long the torture runs |
//! | `readers_per_cpu` | 2 | reader threads pinned to each CPU |
//! | `short_delay_us` | 20 | the longest short delay in a read section |
//! | `long_delay_us` | 2000 | a long delay in a read section |
//! | `long_delay_one_in` | 2000 | read sections per long delay (on average) |
//! | `yield_one_in` | 16 | read sections per yield (on average) |
//! | `flood` | 10000 | callbacks of the flood (at most 16384) |
//!
//! **Needs:** `ukrcu`, `uksched`, `ukspin`, `ukalloc`, `ukboot`, `ukplat`,
//! `uktime`, `ukconfig`, `ukconsole`.
#![no_std]

extern crate alloc;

mod flood;
mod hashmap;
mod pool;
mod stack;
mod torture;

use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use core::time::Duration;
use torture::{ReaderStats, WriterStats};
use ukconsole::println;
use uksched::{Builder, CpuSet, JoinHandle};

/// The status of a failed torture.
pub const FAILED: i32 = 1;

/// The command-line options.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How long the torture runs.
    pub duration_ms: u64,
    /// Reader threads pinned to each CPU.
    pub readers_per_cpu: u64,
    /// The longest short delay in a read section, in microseconds.
    pub short_delay_us: u64,
    /// A long delay in a read section, in microseconds.
    pub long_delay_us: u64,
    /// Read sections per long delay, on average.
    pub long_delay_one_in: u64,
    /// Read sections per yield, on average.
    pub yield_one_in: u64,
    /// Callbacks of the flood.
    pub flood: u64,
}

impl Options {
    fn from_cmdline() -> Options {
        let get = |key: &str, default: u64| {
            ukboot::cmdline_value(ukplat::boot_info().cmdline, key)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Options {
            duration_ms: get("duration_ms", 3000),
            readers_per_cpu: get("readers_per_cpu", 2).max(1),
            short_delay_us: get("short_delay_us", 20).max(1),
            long_delay_us: get("long_delay_us", 2000),
            long_delay_one_in: get("long_delay_one_in", 2000).max(1),
            yield_one_in: get("yield_one_in", 16).max(1),
            flood: get("flood", 10_000).min(flood::MAX as u64),
        }
    }
}

/// The generator of one thread, seeded from `seed` and the clock.
pub fn rng(seed: u64) -> uktest::Rng {
    uktest::Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ uktime::now().as_nanos())
}

/// Spawns `f` as a thread named `name`, pinned to `cpu` if given.
fn spawn<T: Send + 'static>(
    name: &str,
    cpu: Option<usize>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<JoinHandle<T>> {
    let b = Builder::new().name(name);
    let b = match cpu {
        Some(c) => b.affinity(CpuSet::single(c)),
        None => b,
    };
    match b.spawn(f) {
        Ok(h) => Some(h),
        Err(e) => {
            println!("rcutorture: spawning `{name}`: {e}");
            None
        }
    }
}

/// Polls `done` (sleeping 100 us between tries) until it holds or `limit`
/// has passed; returns whether it holds.
pub(crate) fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = uktime::now() + limit;
    while !done() {
        if uktime::now() >= deadline {
            return done();
        }
        uksched::sleep(Duration::from_micros(100));
    }
    true
}

/// Live heap allocations.
fn allocations() -> usize {
    ukalloc::heap_stats().allocations
}

/// Live heap allocations once two readings 2 ms apart agree (at most
/// 50 tries): the level to come back to.
fn settled_allocations() -> usize {
    let mut last = allocations();
    for _ in 0..50 {
        uksched::sleep(Duration::from_millis(2));
        let now = allocations();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// Live heap allocations once they are back at `level`, or after 100 ms.
/// `barrier()` returns when the last callback has run, which may be just
/// before the grace-period thread frees that callback's own box: give it
/// a moment.
fn allocations_back_to(level: usize) -> usize {
    let deadline = uktime::now() + Duration::from_millis(100);
    loop {
        let now = allocations();
        if now == level || uktime::now() >= deadline {
            return now;
        }
        uksched::sleep(Duration::from_millis(1));
    }
}

/// Threads besides readers: the writer, two fake writers, the barrier tester.
const OTHER_THREADS: usize = 4;

/// Starts as many threads as the torture will, all alive at once, and uses
/// every ukrcu path once, so that what the scheduler, the stacks and ukrcu
/// set up on first use (and keep) exists before the heap is measured.
fn warm_up(threads: usize) {
    // ukrcu first: a thread of its own that it starts on first use must
    // exist while the stacks of the torture's threads are set up below.
    let _ = torture::barrier_round(1, Duration::ZERO, &mut rng(4000));
    // Two publications: the second one's old value is dropped at once
    // (which defers its free), the last one freed after a grace period.
    for _ in 0..2 {
        if let Some(p) = pool::alloc() {
            drop(torture::CURRENT.replace(Some(p)));
        }
    }
    if let Some(old) = torture::CURRENT.replace(None) {
        old.free_after_grace_period();
    }
    ukrcu::synchronize();
    ukrcu::synchronize_expedited();
    ukrcu::barrier();
    let gate = alloc::sync::Arc::new(core::sync::atomic::AtomicBool::new(false));
    let cpus = ukplat::cpu::count();
    let handles: Vec<_> = (0..threads)
        .filter_map(|i| {
            let gate = gate.clone();
            spawn("warm-up", Some(i % cpus), move || {
                uksched::sleep(Duration::from_micros(100));
                while !gate.load(Ordering::Acquire) {
                    uksched::yield_now();
                }
            })
        })
        .collect();
    uksched::sleep(Duration::from_millis(1));
    gate.store(true, Ordering::Release);
    for h in handles {
        h.join();
    }
    ukrcu::barrier();
}

/// Everything the run counted.
#[derive(Default)]
struct Totals {
    readers: ReaderStats,
    writer: WriterStats,
    fake_gps: u64,
    barrier_tests: u64,
    barrier_missed: u64,
    /// Errors found by main: threads that did not start, the pool, the
    /// heap, chains, the flood's duplicates.
    other_errors: u64,
}

/// The app's entry point.
pub fn main(args: &[&str]) -> i32 {
    match args.iter().find(|a| !a.contains('=')) {
        None => {}
        // The searchable stack's and the hash map's tests (uktest).
        Some(&"tests") => return uktest::run_all(),
        Some(other) => {
            println!("rcu: unknown argument \"{other}\"; usage: rcu [tests] [key=value]...");
            return 2;
        }
    }
    let opts = Options::from_cmdline();
    let cpus = ukplat::cpu::count();
    let readers = cpus * opts.readers_per_cpu as usize;
    println!(
        "rcu: rcutorture on {cpus} CPU(s), {} policy, {} flavour, {readers} reader(s), {} ms, broken_grace_periods={} broken_refcount={}",
        uksched::POLICY,
        ukrcu::flavor(),
        opts.duration_ms,
        ukconfig::ukrcu::BROKEN_GRACE_PERIODS,
        ukconfig::ukrcu::BROKEN_REFCOUNT
    );
    pool::init();
    let booted = uktime::now();
    warm_up(readers + OTHER_THREADS);
    let warm = booted.elapsed();
    let heap0 = settled_allocations();
    let gp0 = ukrcu::grace_periods();
    let mut t = Totals::default();

    let start = uktime::now();
    torture::STOP.store(false, Ordering::SeqCst);
    // Readers find an element from the start (the writer replaces it).
    if let Some(first) = pool::alloc() {
        drop(torture::CURRENT.replace(Some(first)));
    }
    let mut reader_handles = Vec::with_capacity(readers);
    for i in 0..readers {
        let cpu = i % cpus;
        match spawn("reader", Some(cpu), move || torture::reader(opts, i as u64)) {
            Some(h) => reader_handles.push(h),
            None => t.other_errors += 1,
        }
    }
    let writer = spawn("writer", None, || torture::writer(1000));
    let fakes: Vec<_> =
        (0..2).filter_map(|i| spawn("fake-writer", None, move || torture::fake_writer(2000 + i))).collect();
    let barrier = spawn("barrier", None, || torture::barrier_tester(3000));
    t.other_errors += (writer.is_none() as u64) + (2 - fakes.len() as u64) + (barrier.is_none() as u64);

    uksched::sleep_until(start + Duration::from_millis(opts.duration_ms));
    torture::STOP.store(true, Ordering::SeqCst);
    for h in reader_handles {
        t.readers.add(&h.join());
    }
    if let Some(h) = writer {
        t.writer = h.join();
    }
    for h in fakes {
        t.fake_gps += h.join();
    }
    if let Some(h) = barrier {
        (t.barrier_tests, t.barrier_missed) = h.join();
    }
    let elapsed = start.elapsed();

    // Unlink the last element and wait for every callback chain.
    if let Some(last) = torture::CURRENT.replace(None) {
        ukrcu::synchronize();
        drop(last);
    }
    let mut barriers = 0;
    while torture::CHAINS.load(Ordering::SeqCst) > 0 && barriers < 4 * pool::PIPE_LEN {
        ukrcu::barrier();
        barriers += 1;
    }
    ukrcu::barrier();
    let chains_left = torture::CHAINS.load(Ordering::SeqCst);
    if chains_left > 0 {
        println!("rcutorture: {chains_left} callback chain(s) unfinished after {barriers} barrier() calls");
        t.other_errors += chains_left as u64;
    }
    let chain_errors = torture::CHAIN_ERRORS.load(Ordering::SeqCst);
    if chain_errors > 0 {
        println!("rcutorture: {chain_errors} callback chain step(s) found their handle freed");
        t.other_errors += chain_errors;
    }
    // Barrier tests on a quiet system, barrier() called after 0 to 3 ms:
    // at some of these it comes while the callbacks are being run.
    let mut rng = rng(5000);
    for i in 0..20 {
        t.barrier_missed += torture::barrier_round(64, Duration::from_micros(i * 150), &mut rng);
        t.barrier_tests += 1;
    }
    for _ in 0..3 {
        t.barrier_missed += torture::barrier_during_callback();
        t.barrier_tests += 1;
    }
    let gps = ukrcu::grace_periods() - gp0;
    let cleanup = start.elapsed() - elapsed;

    if let Err((what, index)) = pool::check_all_free() {
        println!("rcutorture: pool: {what} ({index}; {} of {} free)", pool::free_count(), pool::POOL_SIZE);
        t.other_errors += 1;
    }
    let heap1 = allocations_back_to(heap0);
    if heap1 != heap0 {
        println!("rcutorture: heap: {heap0} allocations before the torture, {heap1} after");
        t.other_errors += 1;
    }

    // The flood.
    let heap2 = settled_allocations();
    let flood_start = uktime::now();
    let f = flood::run(opts.flood as usize);
    let flood_time = flood_start.elapsed();
    let heap3 = allocations_back_to(heap2);
    println!(
        "rcu: flood: {} call_rcu callbacks from {cpus} CPU(s) in {} ms, then barrier() (done after {} ms): {} missing, {} run twice, heap {} -> {} allocations",
        f.queued,
        f.queueing.as_millis(),
        flood_time.as_millis(),
        f.missing,
        f.duplicated,
        heap2,
        heap3
    );
    t.barrier_missed += f.missing as u64;
    t.other_errors += (f.duplicated + f.spawn_errors) as u64 + u64::from(heap3 != heap2);

    let r = &t.readers;
    let w = &t.writer;
    println!(
        "rcu: warm-up {} ms, torture {} ms, clean-up {} ms, flood {} ms; readers: {} empty, {} long delays; errors: {} too old, {} poisoned, {} reused, {} freed handles",
        warm.as_millis(),
        elapsed.as_millis(),
        cleanup.as_millis(),
        flood_time.as_millis(),
        r.empty,
        r.long_delays,
        r.too_old,
        r.poisoned,
        r.reused,
        r.bad_handle
    );
    println!(
        "rcu: writer: {} updates (retired: {} list, {} call_rcu chains, {} free_after_grace_period, {} dropped), {} synchronize, {} expedited, pool empty {} time(s); fake writers: {} grace periods; {} barrier tests",
        w.updates,
        w.paths[0],
        w.paths[1],
        w.paths[2],
        w.paths[3],
        w.syncs,
        w.expedited,
        w.exhausted,
        t.fake_gps,
        t.barrier_tests
    );
    let errors = r.errors() + w.errors + t.other_errors;
    println!(
        "rcutorture: reads={} grace_periods={gps} pipe=[{}] errors={errors} barrier_errors={}",
        r.reads,
        Joined(&r.pipe),
        t.barrier_missed
    );
    let mut why: Vec<&str> = Vec::new();
    if errors > 0 {
        why.push("errors > 0");
    }
    if t.barrier_missed > 0 {
        why.push("barrier errors > 0");
    }
    if gps == 0 {
        why.push("no grace period completed");
    }
    if r.reads == 0 {
        why.push("no read found an element");
    }
    if why.is_empty() {
        0
    } else {
        println!("rcutorture: FAILED: {}", why.join("; "));
        FAILED
    }
}

/// Displays a slice's items separated by spaces.
struct Joined<'a, T>(&'a [T]);

impl<T: core::fmt::Display> core::fmt::Display for Joined<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, x) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{x}")?;
        }
        Ok(())
    }
}
