//! # schedbench — scheduler benchmarks
//!
//! Run by `cargo xtask bench sched`, which builds it for both policies
//! (`uksched.policy=coop` and `preempt`, release), boots each several times
//! and prints one table. Every measurement is one console line,
//!
//! ```text
//! bench: metric=NAME kind=KIND samples=N cycles=C
//! ```
//!
//! with `cycles` the median over `samples` repeats in TSC cycles (the host
//! converts with the `tsc_hz` of the `machine` line). Main runs pinned to
//! CPU 0; the other CPU used is CPU 1 (the cross-CPU cases need 2 CPUs).
//!
//! * `yield` / `alone`: `yield_now` with nothing else runnable on the CPU
//!   (no switch happens) — the floor of a scheduler call;
//! * `switch` / `same-cpu`: two threads pinned to one CPU yield to each
//!   other; cycles per switch = time / the CPU's switch count over the
//!   same window (each repeat 200 yields per thread);
//! * `spawn_join` / `same-cpu` and `any`: spawning a thread running an
//!   empty closure and joining it, the thread pinned to the caller's CPU,
//!   or placed by the scheduler (an idle CPU is preferred: that includes a
//!   wake-up IPI);
//! * `wakeup` / `waitqueue`: a thread on CPU 1 blocks on a `WaitQueue`
//!   (its CPU halts); CPU 0 reads the TSC and calls `wake_one`; the woken
//!   thread reads the TSC when it runs: the difference (the TSC is
//!   synchronised across vCPUs here). Baseline `spin-flag`: the same with
//!   the thread spinning on the flag instead of sleeping — the cost of
//!   moving one cache line, what a wake-up adds to;
//! * `handoff` / `uklock-mutex`: two threads on CPUs 0 and 1 take turns
//!   incrementing a counter under a `uklock::Mutex` (each locks, increments
//!   if it is its turn, unlocks, in a loop): time per increment = per
//!   hand-off. The same pattern with a `ukspin::SpinLock` (`ukspin`) and
//!   with a bare atomic turn variable (`atomic-turn`, no lock: the floor).
//!
//! `rounds=N` on the command line scales the inner loops (default 100).
//!
//! With `icount=1` on the command line (`cargo xtask bench icount`, which
//! boots it under TCG with `platform.icount`, where TSC deltas are
//! instructions) it runs only the instruction counts instead, one line each,
//!
//! ```text
//! bench: metric=icount kind=KIND samples=11 ops=N cycles=C min=A max=B odd=K
//! ```
//!
//! with `cycles` the median over 11 samples (after one warm-up) of the
//! cycles `N` operations took in one loop, `min`/`max` the fewest and most,
//! and `odd` the samples that did not make exactly `N` operations (a
//! switch count off by a preemption): `empty` (the loop with nothing in it,
//! the harness's own cost per iteration), `yield-alone` (`yield_now`,
//! nothing else runnable), 1000 calls each, and `switch` (the context
//! switch above: two threads on CPU 0 yielding to each other, 2000
//! switches per sample).
//!
//! **Needs:** `uksched`, `uklock`, `ukspin`, `uktime`, `ukbench`,
//! `ukconsole`, `ukplat`, `ukarch`.
#![no_std]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use ukarch::tsc;
use ukbench::{arrive, icount_line_counted, median_line, timed};
use ukconsole::println;
use uksched::{Builder, CpuSet, WaitQueue, spawn_pinned};

/// Repeats of each measurement in one boot (medians over them).
const SAMPLES: usize = 11;
/// Samples of the single-event measurements (spawn + join, wake-ups).
const EVENTS: usize = 51;

fn yield_alone(rounds: u64) {
    let mut samples: Vec<u64> = (0..SAMPLES)
        .map(|_| {
            let t0 = tsc::read_ordered();
            for _ in 0..rounds {
                uksched::yield_now();
            }
            (tsc::read_ordered() - t0) / rounds
        })
        .collect();
    median_line("yield", "alone", &mut samples);
}

fn switch_same_cpu(cpu: usize, rounds: u64) {
    let mut samples: Vec<u64> = (0..SAMPLES)
        .map(|_| {
            let arrived = Arc::new(AtomicUsize::new(0));
            let a = arrived.clone();
            let partner = spawn_pinned(cpu, move || {
                arrive(&a, 2, uksched::yield_now);
                for _ in 0..rounds {
                    uksched::yield_now();
                }
            });
            let measured = spawn_pinned(cpu, move || {
                arrive(&arrived, 2, uksched::yield_now);
                let (s0, t0) = {
                    let _still = uksched::preempt::Guard::new();
                    (uksched::cpu_stats(cpu).switches, tsc::read_ordered())
                };
                for _ in 0..rounds {
                    uksched::yield_now();
                }
                let (s1, t1) = {
                    let _still = uksched::preempt::Guard::new();
                    (uksched::cpu_stats(cpu).switches, tsc::read_ordered())
                };
                (t1 - t0) / (s1 - s0).max(1)
            });
            partner.join();
            measured.join()
        })
        .collect();
    median_line("switch", "same-cpu", &mut samples);
}

fn spawn_join(kind: &str, affinity: CpuSet) {
    let mut samples: Vec<u64> = (0..EVENTS)
        .map(|_| {
            let t0 = tsc::read_ordered();
            let h = Builder::new().affinity(affinity).spawn(|| ()).expect("schedbench: spawn");
            h.join();
            tsc::read_ordered() - t0
        })
        .collect();
    median_line("spawn_join", kind, &mut samples);
}

/// A thread on CPU 1 waits for each of `EVENTS` signals from CPU 0,
/// sleeping on a wait queue (`sleeping`) or spinning on the flag; returns
/// the cycles from CPU 0's TSC read before the signal to the thread's TSC
/// read after it.
fn wakeup(sleeping: bool) -> Vec<u64> {
    struct Shared {
        queue: WaitQueue,
        signal: AtomicU64,
        stamp: AtomicU64,
        ack: AtomicU64,
    }
    let shared = Arc::new(Shared {
        queue: WaitQueue::new(),
        signal: AtomicU64::new(0),
        stamp: AtomicU64::new(0),
        ack: AtomicU64::new(0),
    });
    let s = shared.clone();
    let waiter = spawn_pinned(1, move || {
        let mut latencies = Vec::with_capacity(EVENTS);
        for i in 1..=EVENTS as u64 {
            if sleeping {
                s.queue.wait_until(|| s.signal.load(Ordering::Acquire) == i);
            } else {
                while s.signal.load(Ordering::Acquire) != i {
                    core::hint::spin_loop();
                }
            }
            let t1 = tsc::read_ordered();
            latencies.push(t1.wrapping_sub(s.stamp.load(Ordering::Relaxed)));
            s.ack.store(i, Ordering::Release);
        }
        latencies
    });
    for i in 1..=EVENTS as u64 {
        if sleeping {
            // Until the waiter is asleep, then a moment for its CPU to halt.
            while shared.queue.is_empty() {
                core::hint::spin_loop();
            }
        }
        uktime::busy_wait(core::time::Duration::from_micros(50));
        shared.stamp.store(tsc::read_ordered(), Ordering::Relaxed);
        shared.signal.store(i, Ordering::Release);
        if sleeping {
            shared.queue.wake_one();
        }
        while shared.ack.load(Ordering::Acquire) != i {
            core::hint::spin_loop();
        }
    }
    waiter.join()
}

/// Something two threads take turns through: `step(me, total)` makes one
/// attempt and returns whether the count reached `total`.
trait Turns: Send + Sync + 'static {
    fn step(&self, me: u64, total: u64) -> bool;
}

/// Any lock_api mutex: `uklock::Mutex`, `ukspin::SpinLock`.
impl<R: lock_api::RawMutex + Send + Sync + 'static> Turns for lock_api::Mutex<R, u64> {
    fn step(&self, me: u64, total: u64) -> bool {
        let mut count = self.lock();
        if *count < total && *count % 2 == me {
            *count += 1;
        }
        *count >= total
    }
}

/// The floor: a turn variable without a lock.
struct AtomicTurn(AtomicU64);

impl Turns for AtomicTurn {
    fn step(&self, me: u64, total: u64) -> bool {
        let mut count = self.0.load(Ordering::Acquire);
        if count < total && count % 2 == me {
            count += 1;
            self.0.store(count, Ordering::Release);
        }
        count >= total
    }
}

/// Cycles per hand-off of `lock` between threads on CPUs 0 and 1, `total`
/// hand-offs per sample.
fn handoff<L: Turns>(kind: &str, total: u64, make: impl Fn() -> L) {
    let mut samples: Vec<u64> = (0..SAMPLES)
        .map(|_| {
            let lock = Arc::new(make());
            let arrived = Arc::new(AtomicUsize::new(0));
            let start = Arc::new(AtomicU64::new(0));
            let side = |cpu: usize| {
                let (lock, arrived, start) = (lock.clone(), arrived.clone(), start.clone());
                spawn_pinned(cpu, move || {
                    arrive(&arrived, 2, core::hint::spin_loop);
                    if cpu == 0 {
                        start.store(tsc::read_ordered(), Ordering::Release);
                    }
                    while !lock.step(cpu as u64, total) {}
                    tsc::read_ordered()
                })
            };
            let (a, b) = (side(0), side(1));
            let end = a.join().max(b.join());
            (end - start.load(Ordering::Acquire)) / total
        })
        .collect();
    median_line("handoff", kind, &mut samples);
}

// ---------------------------------------------------------------------------
// Instruction counts (`icount=1`).

/// Operations per sample of the loops (`empty`, `yield-alone`); the
/// switch's sample is this many yields of each thread.
const ICOUNT_OPS: u64 = 1000;

/// One window of the same-CPU switch for the instruction count: threads
/// pinned to `cpu` yield to each other, the measured one `rounds` times (2
/// switches each), its partner once more so that it never runs out first;
/// the measured thread's cycles and the CPU's switches in its window.
fn switch_window(cpu: usize, rounds: u64) -> (u64, u64) {
    let arrived = Arc::new(AtomicUsize::new(0));
    let a = arrived.clone();
    let partner = spawn_pinned(cpu, move || {
        arrive(&a, 2, uksched::yield_now);
        // `0..rounds + 1`, not `0..=rounds`: the same loop as the measured
        // thread's (an inclusive range costs more per iteration).
        for _ in 0..rounds + 1 {
            uksched::yield_now();
        }
    });
    let measured = spawn_pinned(cpu, move || {
        arrive(&arrived, 2, uksched::yield_now);
        // The TSC reads next to the loop, the switch counts outside them.
        let (s0, t0) = {
            let _still = uksched::preempt::Guard::new();
            let s0 = uksched::cpu_stats(cpu).switches;
            (s0, tsc::read_ordered())
        };
        for _ in 0..rounds {
            uksched::yield_now();
        }
        let (t1, s1) = {
            let _still = uksched::preempt::Guard::new();
            let t1 = tsc::read_ordered();
            (t1, uksched::cpu_stats(cpu).switches)
        };
        (t1 - t0, s1 - s0)
    });
    partner.join();
    measured.join()
}

/// The instruction counts; see the crate documentation.
fn icount() {
    let n = ICOUNT_OPS;
    icount_line_counted("empty", n, || (timed(n, || ()), n));
    icount_line_counted("yield-alone", n, || (timed(n, uksched::yield_now), n));
    icount_line_counted("switch", 2 * n, || switch_window(0, n));
}

/// Runs the benchmarks; see the crate documentation.
pub fn main(_args: &[&str]) -> i32 {
    let cpus = ukplat::cpu::count();
    let rounds = ukbench::option("rounds", 100).max(1);
    println!("bench: metric=machine cpus={cpus} tsc_hz={} policy={}", uktime::tsc_hz(), uksched::POLICY);
    if let Err(e) = uksched::current().set_affinity(CpuSet::single(0)) {
        println!("schedbench: cannot pin main to CPU 0: {e}");
        return 1;
    }
    if ukbench::option("icount", 0) == 1 {
        icount();
        return 0;
    }
    yield_alone(rounds);
    switch_same_cpu(0, 2 * rounds);
    spawn_join("same-cpu", CpuSet::single(0));
    spawn_join("any", CpuSet::all());
    if cpus < 2 {
        println!("schedbench: the cross-CPU measurements need 2 CPUs");
        return 0;
    }
    median_line("wakeup", "waitqueue", &mut wakeup(true));
    median_line("wakeup", "spin-flag", &mut wakeup(false));
    let total = 2 * rounds;
    handoff("uklock-mutex", total, || uklock::Mutex::new(0));
    handoff("ukspin", total, || ukspin::SpinLock::new(0));
    handoff("atomic-turn", total, || AtomicTurn(AtomicU64::new(0)));
    0
}
