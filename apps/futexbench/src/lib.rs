//! # futexbench — futex benchmarks
//!
//! Run by `cargo xtask bench futex`, which builds it once per sleeping-mutex
//! kind (`--set uklock.mutex=waitqueue` and `futex`, release, 4 CPUs by
//! default), boots each image several times and prints one table with a
//! column per image. Every measurement is one console line,
//!
//! ```text
//! bench: metric=NAME kind=KIND [cpus=C] samples=N key=value ...
//! ```
//!
//! with cycles in TSC cycles (the host converts with the `tsc_hz` of the
//! `machine` line). The machine line also says what the image links:
//! `policy=` (`uksched.policy`), `mutex=` (`uklock.mutex`),
//! `mutex_impl=` (the type behind
//! `uklock::RawMutex`) and `spin=` (`ukspin.kind`), so that the host can
//! tell a wrong image. Main runs pinned to CPU 0. Every baseline is
//! measured in the same boot as what it is compared with.
//!
//! The locks measured, all behind `lock_api::Mutex<_, u64>`:
//!
//! * `uklock-mutex`: `uklock::Mutex`, whichever kind `uklock.mutex` selects
//!   in this image (the wait-queue mutex or the futex one);
//! * `futex-word`: [`RawFutexMutex`], the three-state mutex of Drepper's
//!   "Futexes Are Tricky" written here directly over `posix_futex` (as
//!   Rust's `std` does over Linux): uncontended, one `lock cmpxchg` to lock
//!   and one `xchg` to unlock, no system call; contended, a short spin, then
//!   `futex_wait`, and an unlock that saw waiters calls `futex_wake`. It is
//!   measured in every image: the floor of a futex mutex (no owner check),
//!   and the only futex mutex measured where uklock has none;
//! * `ticket`: `ukspin::TicketLock`, named explicitly (whatever
//!   `ukspin.kind` is): the baseline, 1.00x; `spinlock`: `ukspin::SpinLock`
//!   (the configured kind), measured only when that is not `ticket`.
//!
//! The lines:
//!
//! * `pair` / each lock: `pairs` uncontended `lock()` + guard drop on CPU 0
//!   in a row (the other CPUs idle), total cycles; median of 11 samples,
//!   the kinds alternating. Cycles per pair = `cycles / ops`;
//! * `wake_same` and `wake_cross`: wake-to-run latency, `rounds` events
//!   each, median. `wake_same`: both threads pinned to CPU 0 (the woken one
//!   runs only once the waker blocks); `wake_cross`: the waker on CPU 0,
//!   the sleeper on CPU 1. Kinds:
//!   * `futex-oneway`: the sleeper blocks in `futex_wait` on a word; the
//!     waker reads the TSC, changes the word and calls `futex_wake`, then
//!     blocks in `futex_wait` on an acknowledgement word; the sleeper reads
//!     the TSC when `futex_wait` returned: the difference (the TSC is
//!     synchronised across vCPUs here). Across CPUs the waker first lets
//!     CPU 1 halt (50 us after the sleeper is queued), so the wake-up
//!     includes the IPI; on one CPU it includes the waker's own blocking
//!     and the switch;
//!   * `futex-pingpong`: two threads pass a turn back and forth on one word
//!     with `futex_wait`/`futex_wake` (each changes the word, wakes the
//!     other, then sleeps until it is its turn again); the waker's round
//!     trip / 2 per event — no stamps taken on the other side;
//!   * `waitq-oneway`, `waitq-pingpong`: the same with a bare
//!     `uksched::WaitQueue` (`wait_until` / `wake_one`) in place of the
//!     futex: the baseline, what a futex adds its hash bucket and word
//!     check to;
//! * `contended` / each lock, `cpus=n` for n = 1..N: one thread pinned to
//!   each of CPUs `0..n` locks the shared lock, increments the counter it
//!   guards and unlocks, `iters` times (or until `cap_ms` passed since the
//!   start, so that a vCPU descheduled by the host cannot stretch a boot
//!   without bound); `ops` acquisitions of all threads in `cycles` (from
//!   the start, after all arrived, to the last one's end), the sample with
//!   the median cycles per acquisition of 5, the kinds alternating;
//!   `capped` the samples that hit `cap_ms`. The counter must equal the
//!   acquisitions made (mutual exclusion held), or the app fails.
//!
//! Command-line options (`key=value`): `pairs` (2000), `rounds` (200),
//! `iters` (5000), `cap_ms` (150).
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
//! cycles 1000 uncontended lock + unlock pairs took in one loop on CPU 0,
//! `min`/`max` the fewest and most, for each lock of `pair` (same kinds),
//! and `empty`: the loop with nothing in it, the harness's own cost per
//! iteration.
//!
//! **Needs:** `posix-futex`, `uklock`, `ukspin` (and `lock_api`),
//! `uksched`, `uktime`, `ukbench`, `ukconsole`, `ukplat`, `ukboot`,
//! `ukarch`, `ukconfig`.
#![no_std]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use posix_futex::{futex_wait, futex_wake};
use ukarch::tsc;
use ukbench::{arrive, icount_line, median, median_line, option};
use ukconsole::println;
use uksched::{CpuSet, JoinHandle, WaitQueue, spawn_pinned};

/// Samples of the uncontended pairs per kind.
const PAIR_SAMPLES: usize = 11;
/// Samples of each contended measurement.
const CONTENDED_SAMPLES: usize = 5;
/// Acquisitions between two clock checks of a contended thread.
const CLOCK_EVERY: u64 = 32;

// ---------------------------------------------------------------------------
// The raw futex mutex.

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// Drepper's three-state futex mutex ("Futexes Are Tricky", mutex 3; Rust
/// `std`'s futex mutex): the word is `0` unlocked, `1` locked, `2` locked
/// with possible waiters.
///
/// `lock` is one `lock cmpxchg` `0 → 1`; `unlock` one `xchg` to `0`, and a
/// `futex_wake` only when the old value was `2`. A contended locker spins
/// up to 100 reads while the word is `1`, then swaps in `2` (which takes
/// the lock if it was `0`) and sleeps in `futex_wait` while the word is
/// still `2` — checked by posix-futex under its bucket lock, so an unlock
/// in between is never missed.
pub struct RawFutexMutex {
    word: AtomicU32,
}

impl RawFutexMutex {
    /// An unlocked mutex.
    pub const fn new() -> Self {
        Self { word: AtomicU32::new(UNLOCKED) }
    }

    /// Reads the word up to 100 times while it is locked without waiters.
    fn spin(&self) -> u32 {
        let mut spins = 100;
        loop {
            let state = self.word.load(Ordering::Relaxed);
            if state != LOCKED || spins == 0 {
                return state;
            }
            core::hint::spin_loop();
            spins -= 1;
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut state = self.spin();
        if state == UNLOCKED {
            match self.word.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => state = now,
            }
        }
        loop {
            if state != CONTENDED && self.word.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return;
            }
            // EAGAIN (the word changed) or woken: look again either way.
            let _ = futex_wait(&self.word, CONTENDED, None);
            state = self.spin();
        }
    }
}

impl Default for RawFutexMutex {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the word admits one holder at a time: only a successful `0 → 1`
// compare-and-swap or a swap that returned `0` acquires it, and only
// `unlock` (by the holder) stores `0`.
unsafe impl lock_api::RawMutex for RawFutexMutex {
    #[allow(clippy::declare_interior_mutable_const, reason = "lock_api's INIT pattern")]
    const INIT: Self = Self::new();

    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    fn lock(&self) {
        if self.word.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.word.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        if self.word.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex_wake(&self.word, 1);
        }
    }
}

/// A mutex over [`RawFutexMutex`].
pub type FutexMutex<T> = lock_api::Mutex<RawFutexMutex, T>;

// ---------------------------------------------------------------------------
// What the image links.

/// `uklock.mutex` as this image was built with it (`waitqueue`, `futex`).
fn configured_mutex() -> &'static str {
    ukconfig::uklock::MUTEX.as_str()
}

/// The type behind `uklock::RawMutex`, without spaces (one `key=value`
/// word).
fn mutex_impl() -> alloc::string::String {
    core::any::type_name::<uklock::RawMutex>().chars().filter(|c| !c.is_whitespace()).collect()
}

// ---------------------------------------------------------------------------
// The kinds measured.

/// The mutexes measured, in the order their samples alternate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ticket,
    Spinlock,
    UklockMutex,
    FutexWord,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ticket => "ticket",
            Kind::Spinlock => "spinlock",
            Kind::UklockMutex => "uklock-mutex",
            Kind::FutexWord => "futex-word",
        }
    }
}

/// The kinds this image measures: `spinlock` only when the configured kind
/// is not the ticket lock measured anyway.
fn kinds() -> Vec<Kind> {
    let mut kinds = alloc::vec![Kind::Ticket];
    if ukconfig::ukspin::KIND.as_str() != "ticket" {
        kinds.push(Kind::Spinlock);
    }
    kinds.extend([Kind::UklockMutex, Kind::FutexWord]);
    kinds
}

/// Something that counts under a lock.
trait Counter: Send + Sync + 'static {
    /// Locks, adds one, unlocks.
    fn bump(&self);
    /// Locks and unlocks, nothing in between.
    fn pair(&self);
    /// The count.
    fn count(&self) -> u64;
}

impl<R: lock_api::RawMutex + Send + Sync + 'static> Counter for lock_api::Mutex<R, u64> {
    #[inline(always)]
    fn bump(&self) {
        *self.lock() += 1;
    }

    #[inline(always)]
    fn pair(&self) {
        drop(self.lock());
    }

    fn count(&self) -> u64 {
        *self.lock()
    }
}

// ---------------------------------------------------------------------------
// Uncontended pairs.

/// Pairs per sample of an instruction count (`icount=1`).
const ICOUNT_OPS: u64 = 1000;

/// The instruction counts; see the crate documentation.
fn icount() {
    static TICKET: ukspin::TicketLock<u64> = ukspin::TicketLock::new(0);
    static SPIN: ukspin::SpinLock<u64> = ukspin::SpinLock::new(0);
    static MUTEX: uklock::Mutex<u64> = uklock::Mutex::new(0);
    static FUTEX: FutexMutex<u64> = FutexMutex::new(0);
    icount_line("empty", ICOUNT_OPS, || ());
    for kind in kinds() {
        match kind {
            Kind::Ticket => icount_line(kind.name(), ICOUNT_OPS, || TICKET.pair()),
            Kind::Spinlock => icount_line(kind.name(), ICOUNT_OPS, || SPIN.pair()),
            Kind::UklockMutex => icount_line(kind.name(), ICOUNT_OPS, || MUTEX.pair()),
            Kind::FutexWord => icount_line(kind.name(), ICOUNT_OPS, || FUTEX.pair()),
        }
    }
}

/// `n` lock + unlock pairs in a row (one monomorphic loop per kind).
#[inline(never)]
fn pairs_of<C: Counter>(lock: &C, n: u64) {
    for _ in 0..n {
        lock.pair();
    }
}

/// Cycles of `n` pairs of `kind`.
fn pair_sample(kind: Kind, n: u64) -> u64 {
    static TICKET: ukspin::TicketLock<u64> = ukspin::TicketLock::new(0);
    static SPIN: ukspin::SpinLock<u64> = ukspin::SpinLock::new(0);
    static MUTEX: uklock::Mutex<u64> = uklock::Mutex::new(0);
    static FUTEX: FutexMutex<u64> = FutexMutex::new(0);
    let t0 = tsc::read_ordered();
    match kind {
        Kind::Ticket => pairs_of(&TICKET, n),
        Kind::Spinlock => pairs_of(&SPIN, n),
        Kind::UklockMutex => pairs_of(&MUTEX, n),
        Kind::FutexWord => pairs_of(&FUTEX, n),
    }
    tsc::read_ordered() - t0
}

fn uncontended(n: u64) {
    let kinds = kinds();
    // A warm-up pass: code and lines in place before the first sample.
    for &kind in &kinds {
        pair_sample(kind, n.min(100));
    }
    let mut samples: Vec<Vec<u64>> = kinds.iter().map(|_| Vec::with_capacity(PAIR_SAMPLES)).collect();
    for _ in 0..PAIR_SAMPLES {
        for (kind, s) in kinds.iter().zip(&mut samples) {
            s.push(pair_sample(*kind, n));
        }
    }
    for (kind, mut s) in kinds.iter().zip(samples) {
        println!(
            "bench: metric=pair kind={} samples={PAIR_SAMPLES} ops={n} cycles={}",
            kind.name(),
            median(&mut s)
        );
    }
}

// ---------------------------------------------------------------------------
// Wake-to-run latency.

/// A way to sleep on a word and be woken: a futex, or a bare wait queue.
trait Sleep: Send + Sync + 'static {
    /// Blocks until `word` no longer holds `val`.
    fn wait_while(&self, word: &AtomicU32, val: u32);
    /// Wakes one thread sleeping on `word`.
    fn wake(&self, word: &AtomicU32);
    /// Whether a thread sleeps on `word` now.
    fn sleeping(&self, word: &AtomicU32) -> bool;
}

/// `futex_wait` / `futex_wake` on the word itself.
struct Futex;

impl Sleep for Futex {
    fn wait_while(&self, word: &AtomicU32, val: u32) {
        while word.load(Ordering::Acquire) == val {
            // EAGAIN (changed already) or woken: the loop looks again.
            let _ = futex_wait(word, val, None);
        }
    }

    fn wake(&self, word: &AtomicU32) {
        futex_wake(word, 1);
    }

    fn sleeping(&self, word: &AtomicU32) -> bool {
        posix_futex::waiters(word) > 0
    }
}

/// The baseline: one `uksched::WaitQueue` (`wait_until` / `wake_one`). Only
/// one of the two threads ever sleeps at a time, so one queue serves both.
struct Queue(WaitQueue);

impl Sleep for Queue {
    fn wait_while(&self, word: &AtomicU32, val: u32) {
        self.0.wait_until(|| word.load(Ordering::Acquire) != val);
    }

    fn wake(&self, _word: &AtomicU32) {
        self.0.wake_one();
    }

    fn sleeping(&self, _word: &AtomicU32) -> bool {
        !self.0.is_empty()
    }
}

/// Waits until a thread sleeps on `word` (yielding: it may share this CPU).
fn until_sleeping<S: Sleep>(sleep: &S, word: &AtomicU32) {
    while !sleep.sleeping(word) {
        uksched::yield_now();
    }
}

/// One-way wake-to-run, waker on CPU 0 (this thread), sleeper on `cpu`.
fn oneway<S: Sleep>(sleep: S, cpu: usize, rounds: u32) -> Vec<u64> {
    struct Shared<S> {
        sleep: S,
        signal: AtomicU32,
        ack: AtomicU32,
        stamp: AtomicU64,
    }
    let shared = Arc::new(Shared {
        sleep,
        signal: AtomicU32::new(0),
        ack: AtomicU32::new(0),
        stamp: AtomicU64::new(0),
    });
    let s = shared.clone();
    let sleeper = spawn_pinned(cpu, move || {
        let mut latencies = Vec::with_capacity(rounds as usize);
        for i in 1..=rounds {
            s.sleep.wait_while(&s.signal, i - 1);
            let t1 = tsc::read_ordered();
            latencies.push(t1.saturating_sub(s.stamp.load(Ordering::Relaxed)));
            s.ack.store(i, Ordering::Release);
            s.sleep.wake(&s.ack);
        }
        latencies
    });
    for i in 1..=rounds {
        until_sleeping(&shared.sleep, &shared.signal);
        if cpu != 0 {
            // Time for the sleeper's CPU to halt.
            uktime::busy_wait(Duration::from_micros(50));
        }
        shared.stamp.store(tsc::read_ordered(), Ordering::Relaxed);
        shared.signal.store(i, Ordering::Release);
        shared.sleep.wake(&shared.signal);
        shared.sleep.wait_while(&shared.ack, i - 1);
    }
    sleeper.join()
}

/// Ping-pong: the turn word is 0 for this thread (on CPU 0), 1 for the
/// partner on `cpu`; round trip / 2 per round, as the waker sees it.
fn pingpong<S: Sleep>(sleep: S, cpu: usize, rounds: u32) -> Vec<u64> {
    struct Shared<S> {
        sleep: S,
        turn: AtomicU32,
    }
    let shared = Arc::new(Shared { sleep, turn: AtomicU32::new(0) });
    let s = shared.clone();
    let partner = spawn_pinned(cpu, move || {
        for _ in 0..rounds {
            s.sleep.wait_while(&s.turn, 0);
            s.turn.store(0, Ordering::Release);
            s.sleep.wake(&s.turn);
        }
    });
    // The partner asleep first, so that every round wakes a sleeper.
    until_sleeping(&shared.sleep, &shared.turn);
    let mut half = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let t0 = tsc::read_ordered();
        shared.turn.store(1, Ordering::Release);
        shared.sleep.wake(&shared.turn);
        shared.sleep.wait_while(&shared.turn, 1);
        half.push((tsc::read_ordered() - t0) / 2);
    }
    partner.join();
    half
}

fn wake_latency(cpu: usize, rounds: u32) {
    let metric = if cpu == 0 { "wake_same" } else { "wake_cross" };
    median_line(metric, "waitq-pingpong", &mut pingpong(Queue(WaitQueue::new()), cpu, rounds));
    median_line(metric, "futex-pingpong", &mut pingpong(Futex, cpu, rounds));
    median_line(metric, "waitq-oneway", &mut oneway(Queue(WaitQueue::new()), cpu, rounds));
    median_line(metric, "futex-oneway", &mut oneway(Futex, cpu, rounds));
}

// ---------------------------------------------------------------------------
// Contended throughput.

/// One contended sample: what it did.
struct Sample {
    /// Acquisitions of all threads.
    ops: u64,
    /// Cycles from the start to the last thread's end.
    cycles: u64,
    /// Whether a thread stopped at the cap.
    capped: bool,
    /// Whether the counter equals `ops` (mutual exclusion held).
    exact: bool,
}

/// A thread on each of CPUs `0..n` bumps a new lock of type `C` up to
/// `iters` times, each stopping once `cap` cycles passed since its start.
fn contended_sample<C: Counter>(make: fn() -> C, n: usize, iters: u64, cap: u64) -> Sample {
    let lock = Arc::new(make());
    let arrived = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(AtomicU64::new(0));
    let handles: Vec<JoinHandle<(u64, u64, bool)>> = (0..n)
        .map(|cpu| {
            let (lock, arrived, start) = (lock.clone(), arrived.clone(), start.clone());
            spawn_pinned(cpu, move || {
                arrive(&arrived, n, core::hint::spin_loop);
                if cpu == 0 {
                    start.store(tsc::read_ordered(), Ordering::Release);
                }
                let t0 = tsc::read();
                let (mut done, mut capped) = (0u64, false);
                while done < iters {
                    let batch = CLOCK_EVERY.min(iters - done);
                    for _ in 0..batch {
                        lock.bump();
                    }
                    done += batch;
                    if done < iters && tsc::read().wrapping_sub(t0) > cap {
                        capped = true;
                        break;
                    }
                }
                (done, tsc::read_ordered(), capped)
            })
        })
        .collect();
    let (mut ops, mut end, mut capped) = (0u64, 0u64, false);
    for h in handles {
        let (done, t, c) = h.join();
        ops += done;
        end = end.max(t);
        capped |= c;
    }
    let cycles = end.saturating_sub(start.load(Ordering::Acquire));
    Sample { ops, cycles, capped, exact: lock.count() == ops }
}

/// One sample of `kind` (a monomorphic loop per lock type).
fn contended_kind(kind: Kind, n: usize, iters: u64, cap: u64) -> Sample {
    match kind {
        Kind::Ticket => contended_sample(|| ukspin::TicketLock::new(0u64), n, iters, cap),
        Kind::Spinlock => contended_sample(|| ukspin::SpinLock::new(0u64), n, iters, cap),
        Kind::UklockMutex => contended_sample(|| uklock::Mutex::new(0u64), n, iters, cap),
        Kind::FutexWord => contended_sample(|| FutexMutex::new(0u64), n, iters, cap),
    }
}

/// Every kind at `n` CPUs, samples alternating; false when a count was off.
fn contended(n: usize, iters: u64, cap: u64) -> bool {
    let kinds = kinds();
    let mut samples: Vec<Vec<(u64, u64)>> = kinds.iter().map(|_| Vec::new()).collect();
    let mut capped = alloc::vec![0usize; kinds.len()];
    for _ in 0..CONTENDED_SAMPLES {
        for (k, &kind) in kinds.iter().enumerate() {
            let sample = contended_kind(kind, n, iters, cap);
            if !sample.exact {
                println!("futexbench: {} on {n} CPUs: the counter lost increments", kind.name());
                return false;
            }
            samples[k].push((sample.ops, sample.cycles));
            capped[k] += usize::from(sample.capped);
        }
    }
    for ((kind, mut s), capped) in kinds.iter().zip(samples).zip(capped) {
        // The sample with the median cost per acquisition (cycles/ops,
        // compared as cycles_a * ops_b against cycles_b * ops_a).
        s.sort_unstable_by(|a, b| {
            (u128::from(a.1) * u128::from(b.0)).cmp(&(u128::from(b.1) * u128::from(a.0)))
        });
        let (ops, cycles) = s[(s.len() - 1) / 2];
        println!(
            "bench: metric=contended kind={} cpus={n} samples={} ops={ops} cycles={cycles} capped={capped}",
            kind.name(),
            s.len()
        );
    }
    true
}

/// Runs the benchmarks; see the crate documentation.
pub fn main(_args: &[&str]) -> i32 {
    let cpus = ukplat::cpu::count();
    let pairs = option("pairs", 2000).max(1);
    let rounds = option("rounds", 200).clamp(1, u64::from(u32::MAX)) as u32;
    let iters = option("iters", 5000).max(1);
    let cap_ms = option("cap_ms", 150).max(1);
    println!(
        "bench: metric=machine cpus={cpus} tsc_hz={} policy={} mutex={} mutex_impl={} spin={} pairs={pairs} \
         rounds={rounds} iters={iters} cap_ms={cap_ms}",
        uktime::tsc_hz(),
        uksched::POLICY,
        configured_mutex(),
        mutex_impl(),
        ukconfig::ukspin::KIND.as_str()
    );
    if let Err(e) = uksched::current().set_affinity(CpuSet::single(0)) {
        println!("futexbench: cannot pin main to CPU 0: {e}");
        return 1;
    }
    if option("icount", 0) == 1 {
        icount();
        return 0;
    }

    uncontended(pairs);

    wake_latency(0, rounds);
    if cpus > 1 {
        wake_latency(1, rounds);
    } else {
        println!("futexbench: the cross-CPU wake-ups need 2 CPUs");
    }

    let cap = uktime::ns_to_cycles(cap_ms * 1_000_000);
    for n in 1..=cpus {
        if !contended(n, iters, cap) {
            return 1;
        }
    }
    0
}
