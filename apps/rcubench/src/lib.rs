//! # rcubench — RCU benchmarks
//!
//! Run by `cargo xtask bench rcu`, which builds it for both policies
//! (`uksched.policy=coop` and `preempt`) and both RCU flavours
//! (`ukrcu.flavor=qsbr` and `refcount`), release, and each CPU count, boots
//! each image several times and prints one table per CPU count. Every
//! measurement is one console line,
//!
//! ```text
//! bench: metric=NAME kind=KIND [cpus=C] [samples=N] key=value ...
//! ```
//!
//! with cycles in TSC cycles (the host converts with the `tsc_hz` of the
//! `machine` line, which also names the scheduling policy and the linked
//! RCU flavour, `policy=` and `flavor=`, so that the host can tell a wrong
//! image). Main runs pinned to CPU 0; the grace-period thread
//! `rcu_gp` is left where the scheduler puts it (on each wake-up, the
//! least loaded CPU: an idle one when there is one), as in any app that
//! does not pin it. Every baseline is measured in the same boot as what it
//! is compared with:
//!
//! * `read_cost` / `rcu`: `read_iters` iterations of `read_lock()`,
//!   `RcuCell::load`, reading a field, dropping the guard; baseline
//!   `plain`: the same loop (the same generic function) with a `Relaxed`
//!   load of an `AtomicPtr` to the same value in place of the read-side
//!   section. Total cycles for `ops` iterations, median of 11 samples, the
//!   two kinds alternating;
//! * `read_tput`: one reader thread pinned to each of CPUs `0..cpus`, for
//!   1..N CPUs, reading the same value for `read_ms` milliseconds
//!   through RCU (`rcu`), `ukspin::RwSpinLock::read` (`rwspin`),
//!   `uklock::RwLock::read` (`uklock-rw`) and a plain pointer load
//!   (`plain`, the floor), in 5 rounds of `read_ms / 5` per kind with
//!   the kinds alternating: reads of all readers (`ops`), the window in
//!   cycles, the fewest and most reads of one reader (`min`, `max`);
//! * `call_rtt` / `idle`, `busy`: `uksmp::run_on(1, || ())` round trips
//!   from CPU 0, with CPU 1 halted in idle, or running a busy reader: the
//!   cost of one interrupt to another CPU and back, the baseline of an
//!   expedited grace period (which interrupts the CPUs that hold it up);
//! * `gp` / `sync-idle`, `exp-idle`: `synchronize()` and
//!   `synchronize_expedited()` from CPU 0 with every other CPU idle
//!   (`gp_samples` calls each, median; each round trip, `synchronize` and
//!   `synchronize_expedited` in turn), and `sync-busy`, `exp-busy` the
//!   same while a reader thread on every other CPU runs read-side sections
//!   back to back, yielding once every `reader_yield_us` (under `coop`
//!   nothing else gives a quiescent state); `gps` and `forced` are the
//!   grace periods and forcing interrupts over all the calls;
//! * `call_rcu` / `queue`: `callbacks` closures (each capturing 8 bytes)
//!   queued with `call_rcu` from CPU 0, total cycles; `barrier`: then
//!   `barrier()` until they all ran, with the grace periods it took
//!   (`gps`); baseline `box-push`: boxing the same closures and pushing
//!   them onto a `Vec` (the allocation every `call_rcu` makes). 5 samples;
//! * `rcu_stats`: `ukrcu::stats()` at the end (stall reports included).
//!
//! Command-line options (`key=value`): `read_iters` (100000), `read_ms`
//! (20), `gp_samples` (51), `reader_yield_us` (200), `callbacks` (10000).
//!
//! With `icount=1` on the command line (`cargo xtask bench icount`, which
//! boots it under TCG with `platform.icount`, where TSC deltas are
//! instructions) it runs only the instruction counts instead, one line each,
//!
//! ```text
//! bench: metric=icount kind=KIND samples=11 ops=N cycles=C min=A max=B
//! ```
//!
//! with `cycles` the median over 11 samples (after one warm-up) of the
//! cycles 10000 operations took in one loop on CPU 0, `min`/`max` the
//! fewest and most: `empty` (the loop with a constant in place of a read,
//! the harness's own cost per iteration), `plain-read` (the `plain` read
//! above) and `rcu-read` (the `rcu` read: `read_lock`, `RcuCell::load`,
//! the field, the guard dropped).
//!
//! **Needs:** `ukrcu`, `uksched`, `uklock`, `ukspin` (and `lock_api`),
//! `uksmp`, `uktime`, `ukbench`, `ukconsole`, `ukplat`, `ukboot`, `ukarch`.
#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::black_box;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use ukarch::tsc;
use ukbench::{arrive, icount_line, median, median_line, option, throughput_line};
use ukconsole::println;
use ukrcu::RcuCell;
use uksched::{CpuSet, JoinHandle, spawn_pinned};

/// Samples of the read-side cost per kind.
const COST_SAMPLES: usize = 11;
/// Samples of the `call_rcu` measurements.
const CALLBACK_SAMPLES: usize = 5;
/// Reads between two clock checks of a throughput reader (the TSC read is
/// far dearer than a read under TCG, so it must be rare).
const BATCH: u64 = 256;

/// What every reader reads.
struct Data {
    value: u64,
    _other: u64,
}

const DATA: Data = Data { value: 1, _other: 2 };

/// The value behind RCU.
static DATA_RCU: RcuCell<Data> = RcuCell::null();
/// A plain pointer to the same value (the baseline).
static DATA_PLAIN: AtomicPtr<Data> = AtomicPtr::new(ptr::null_mut());
/// The same value behind the reader-writer spinlock ...
static DATA_RWSPIN: ukspin::RwSpinLock<Data> = ukspin::RwSpinLock::new(DATA);
/// ... and behind the sleeping reader-writer lock.
static DATA_UKLOCK: uklock::RwLock<Data> = uklock::RwLock::new(DATA);

/// One read of the shared value.
trait Read: Sync + 'static {
    /// Reads it and returns its field.
    fn once(&self) -> u64;
}

/// The baseline: a `Relaxed` load of a plain `AtomicPtr` and a dereference.
struct Plain;

impl Read for Plain {
    #[inline(always)]
    fn once(&self) -> u64 {
        let p = DATA_PLAIN.load(Ordering::Relaxed);
        // SAFETY: `DATA_PLAIN` is null or points at the value published in
        // `DATA_RCU`, which is set once in `main` before any reader runs and
        // never replaced or freed afterwards.
        unsafe { p.as_ref() }.map_or(0, |d| d.value)
    }
}

/// A read-side critical section around `RcuCell::load`.
struct Rcu;

impl Read for Rcu {
    #[inline(always)]
    fn once(&self) -> u64 {
        let guard = ukrcu::read_lock();
        let value = DATA_RCU.load(&guard).map_or(0, |d| d.value);
        drop(guard);
        value
    }
}

/// A read lock of any lock_api reader-writer lock (`ukspin::RwSpinLock`,
/// `uklock::RwLock`).
impl<R: lock_api::RawRwLock + Send + Sync + 'static> Read for lock_api::RwLock<R, Data> {
    #[inline(always)]
    fn once(&self) -> u64 {
        self.read().value
    }
}

/// `iters` reads in a row: one function for every kind, so the loops have
/// the same shape.
#[inline(never)]
fn read_loop<R: Read>(reader: &R, iters: u64) -> u64 {
    let mut sum = 0u64;
    for _ in 0..iters {
        sum = sum.wrapping_add(reader.once());
    }
    sum
}

/// The read-side cost against the plain load, samples alternating.
fn read_cost(iters: u64) {
    let (mut plain, mut rcu) = (Vec::new(), Vec::new());
    let mut sum = 0u64;
    for _ in 0..COST_SAMPLES {
        let t0 = tsc::read_ordered();
        sum = sum.wrapping_add(read_loop(&Plain, iters));
        let t1 = tsc::read_ordered();
        sum = sum.wrapping_add(read_loop(&Rcu, iters));
        let t2 = tsc::read_ordered();
        plain.push(t1 - t0);
        rcu.push(t2 - t1);
    }
    black_box(sum);
    for (kind, mut samples) in [("plain", plain), ("rcu", rcu)] {
        println!(
            "bench: metric=read_cost kind={kind} samples={} ops={iters} cycles={}",
            samples.len(),
            median(&mut samples)
        );
    }
}

/// One reader pinned to each of CPUs `0..cpus` reads through `reader` for
/// `window` cycles, all starting together; returns each one's reads.
fn readers<R: Read>(reader: &'static R, cpus: usize, window: u64) -> Vec<u64> {
    let arrived = Arc::new(AtomicUsize::new(0));
    let handles: Vec<JoinHandle<u64>> = (0..cpus)
        .map(|cpu| {
            let arrived = arrived.clone();
            spawn_pinned(cpu, move || {
                arrive(&arrived, cpus, core::hint::spin_loop);
                let end = tsc::read() + window;
                let (mut ops, mut sum) = (0u64, 0u64);
                while tsc::read() < end {
                    for _ in 0..BATCH {
                        sum = sum.wrapping_add(reader.once());
                    }
                    ops += BATCH;
                }
                black_box(sum);
                ops
            })
        })
        .collect();
    handles.into_iter().map(JoinHandle::join).collect()
}

/// The throughput kinds, in the order their rounds alternate.
const READ_KINDS: [&str; 4] = ["plain", "rcu", "rwspin", "uklock-rw"];

/// Read throughput of every kind with `cpus` readers: `ROUNDS` rounds of
/// `window / ROUNDS` cycles per kind, the kinds alternating (so that a
/// change in the host's load touches them alike); one line per kind with
/// the totals.
fn read_throughput(cpus: usize, window: u64) {
    const ROUNDS: u64 = 5;
    let round = window / ROUNDS;
    let mut totals = [(); READ_KINDS.len()].map(|()| alloc::vec![0u64; cpus]);
    for _ in 0..ROUNDS {
        for (k, total) in totals.iter_mut().enumerate() {
            let ops = match k {
                0 => readers(&Plain, cpus, round),
                1 => readers(&Rcu, cpus, round),
                2 => readers(&DATA_RWSPIN, cpus, round),
                _ => readers(&DATA_UKLOCK, cpus, round),
            };
            for (t, o) in total.iter_mut().zip(ops) {
                *t += o;
            }
        }
    }
    for (kind, ops) in READ_KINDS.iter().zip(&totals) {
        throughput_line("read_tput", kind, cpus, round * ROUNDS, ops);
    }
}

/// Grace-period latency in one `phase` (`idle` or `busy`): `samples`
/// rounds of a `uksmp::run_on(1, || ())` round trip (when there is a CPU
/// 1), a `synchronize()` and a `synchronize_expedited()`, interleaved so
/// that the baseline sees the same conditions; then a line for each with
/// its median, and the grace periods and forcing interrupts it took.
fn grace_periods(phase: &str, samples: usize, cpus: usize) {
    let (mut rtt, mut sync, mut exp) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sync_counts, mut exp_counts) = ((0, 0), (0, 0));
    let timed = |f: &dyn Fn(), cycles: &mut Vec<u64>, counts: &mut (u64, u64)| {
        let before = ukrcu::stats();
        let t0 = tsc::read_ordered();
        f();
        cycles.push(tsc::read_ordered() - t0);
        let after = ukrcu::stats();
        counts.0 += after.grace_periods - before.grace_periods;
        counts.1 += after.forced - before.forced;
    };
    for _ in 0..samples {
        if cpus > 1 {
            let t0 = tsc::read_ordered();
            uksmp::run_on(1, || ());
            rtt.push(tsc::read_ordered() - t0);
        }
        timed(&ukrcu::synchronize, &mut sync, &mut sync_counts);
        timed(&ukrcu::synchronize_expedited, &mut exp, &mut exp_counts);
    }
    if !rtt.is_empty() {
        median_line("call_rtt", phase, &mut rtt);
    }
    for (kind, cycles, (gps, forced)) in [("sync", &mut sync, sync_counts), ("exp", &mut exp, exp_counts)] {
        println!(
            "bench: metric=gp kind={kind}-{phase} samples={samples} cycles={} gps={gps} forced={forced}",
            median(cycles)
        );
    }
}

/// Readers on CPUs 1..cpus running read-side sections back to back,
/// yielding once every `yield_cycles`, until stopped.
struct BusyReaders {
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<u64>>,
}

impl BusyReaders {
    fn start(cpus: usize, yield_cycles: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let arrived = Arc::new(AtomicUsize::new(0));
        let readers = (1..cpus)
            .map(|cpu| {
                let (stop, arrived) = (stop.clone(), arrived.clone());
                spawn_pinned(cpu, move || {
                    arrived.fetch_add(1, Ordering::AcqRel);
                    let (mut ops, mut sum) = (0u64, 0u64);
                    let mut next_yield = tsc::read() + yield_cycles;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..BATCH {
                            sum = sum.wrapping_add(Rcu.once());
                        }
                        ops += BATCH;
                        let now = tsc::read();
                        if now >= next_yield {
                            uksched::yield_now();
                            next_yield = now + yield_cycles;
                        }
                    }
                    black_box(sum);
                    ops
                })
            })
            .collect();
        while arrived.load(Ordering::Acquire) < cpus - 1 {
            core::hint::spin_loop();
        }
        Self { stop, readers }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for reader in self.readers {
            reader.join();
        }
    }
}

/// Callbacks run so far.
static INVOKED: AtomicU64 = AtomicU64::new(0);

/// The callback: as small as a `kfree_rcu`, with 8 bytes of state.
fn callback(v: u64) -> impl FnOnce() + Send + 'static {
    move || {
        black_box(v);
        INVOKED.fetch_add(1, Ordering::Relaxed);
    }
}

/// `call_rcu` throughput and the barrier after it; false when a callback
/// went missing.
fn callbacks(n: u64) -> bool {
    let (mut boxed, mut queued, mut barrier, mut gps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut pending: Vec<Box<dyn FnOnce() + Send>> = Vec::with_capacity(n as usize);
    for _ in 0..CALLBACK_SAMPLES {
        // The baseline: the same allocation, queued on a plain vector.
        let t0 = tsc::read_ordered();
        for i in 0..n {
            pending.push(Box::new(callback(black_box(i))));
        }
        let t1 = tsc::read_ordered();
        boxed.push(t1 - t0);
        let expected = INVOKED.load(Ordering::Relaxed) + 2 * n;
        for f in pending.drain(..) {
            f();
        }

        let g0 = ukrcu::grace_periods();
        let t0 = tsc::read_ordered();
        for i in 0..n {
            ukrcu::call_rcu(callback(black_box(i)));
        }
        let t1 = tsc::read_ordered();
        ukrcu::barrier();
        let t2 = tsc::read_ordered();
        queued.push(t1 - t0);
        barrier.push(t2 - t1);
        gps.push(ukrcu::grace_periods() - g0);
        let invoked = INVOKED.load(Ordering::Relaxed);
        if invoked != expected {
            println!("rcubench: barrier() returned after {invoked} callbacks of {expected}");
            return false;
        }
    }
    let samples = CALLBACK_SAMPLES;
    println!("bench: metric=call_rcu kind=box-push samples={samples} ops={n} cycles={}", median(&mut boxed));
    println!("bench: metric=call_rcu kind=queue samples={samples} ops={n} cycles={}", median(&mut queued));
    println!(
        "bench: metric=call_rcu kind=barrier samples={samples} ops={n} cycles={} gps={}",
        median(&mut barrier),
        median(&mut gps)
    );
    true
}

/// Operations per sample of an instruction count (`icount=1`).
const ICOUNT_OPS: u64 = 10_000;

/// The instruction counts; see the crate documentation.
fn icount() {
    icount_line("empty", ICOUNT_OPS, || 0u64);
    icount_line("plain-read", ICOUNT_OPS, || Plain.once());
    icount_line("rcu-read", ICOUNT_OPS, || Rcu.once());
}

/// Runs the benchmarks; see the crate documentation.
pub fn main(_args: &[&str]) -> i32 {
    let cpus = ukplat::cpu::count();
    let read_iters = option("read_iters", 100_000).max(1);
    let read_ms = option("read_ms", 20).max(1);
    let gp_samples = option("gp_samples", 51).max(1) as usize;
    let reader_yield_us = option("reader_yield_us", 200).max(1);
    let n_callbacks = option("callbacks", 10_000).max(1);
    println!(
        "bench: metric=machine cpus={cpus} tsc_hz={} policy={} flavor={} read_iters={read_iters} read_ms={read_ms} \
         gp_samples={gp_samples} reader_yield_us={reader_yield_us} callbacks={n_callbacks} batch={BATCH}",
        uktime::tsc_hz(),
        uksched::POLICY,
        ukrcu::flavor()
    );
    if let Err(e) = uksched::current().set_affinity(CpuSet::single(0)) {
        println!("rcubench: cannot pin main to CPU 0: {e}");
        return 1;
    }
    DATA_RCU.store(Some(Box::new(DATA)));
    {
        let guard = ukrcu::read_lock();
        let published = DATA_RCU.load(&guard).map_or(ptr::null_mut(), |d| ptr::from_ref(d).cast_mut());
        DATA_PLAIN.store(published, Ordering::Relaxed);
    }
    if option("icount", 0) == 1 {
        icount();
        return 0;
    }

    read_cost(read_iters);

    let window = uktime::ns_to_cycles(read_ms * 1_000_000);
    for c in 1..=cpus {
        read_throughput(c, window);
    }

    // A first grace period and cross-CPU call outside the measurements.
    ukrcu::synchronize();
    if cpus > 1 {
        uksmp::run_on(1, || ());
    }
    grace_periods("idle", gp_samples, cpus);
    if cpus > 1 {
        let busy = BusyReaders::start(cpus, uktime::ns_to_cycles(reader_yield_us * 1000));
        grace_periods("busy", gp_samples, cpus);
        busy.stop();
    }

    if !callbacks(n_callbacks) {
        return 1;
    }

    let s = ukrcu::stats();
    println!(
        "bench: metric=rcu_stats grace_periods={} expedited={} forced={} stalls={} queued={} invoked={}",
        s.grace_periods, s.expedited, s.forced, s.stalls, s.callbacks_queued, s.callbacks_invoked
    );
    0
}
