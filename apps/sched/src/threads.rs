//! Threads and wait queues: ping-pong, join values, a thousand threads,
//! thread-local data.

use crate::{cpus, scaled, spawn_on};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use uksched::WaitQueue;
use uktest::{TestResult, ut_assert, ut_assert_eq};

/// A ping-pong turn that takes this long counts as a lost wake-up.
const LOST: Duration = Duration::from_secs(2);

/// Two sides handing a turn back and forth: side `i` plays when
/// `turn % 2 == i`, then passes the turn and wakes the other side.
struct PingPong {
    turn: AtomicU64,
    queues: [WaitQueue; 2],
}

/// What one side saw.
#[derive(Debug, Default)]
struct Side {
    /// Turns it played.
    played: u64,
    /// Turns that arrived with an unexpected counter.
    out_of_order: u64,
    /// Waits that ran into the [`LOST`] timeout.
    lost: u64,
    /// Turns played on another CPU than the one it is pinned to.
    wrong_cpu: u64,
}

fn play(pp: &PingPong, me: usize, rounds: u64, cpu: usize) -> Side {
    let mut side = Side::default();
    for r in 0..rounds {
        let mine = || pp.turn.load(Ordering::Acquire) % 2 == me as u64;
        while !pp.queues[me].wait_until_timeout(mine, LOST) {
            side.lost += 1;
        }
        if pp.turn.load(Ordering::Acquire) != 2 * r + me as u64 {
            side.out_of_order += 1;
        }
        if ukplat::cpu::this_cpu() != cpu {
            side.wrong_cpu += 1;
        }
        side.played += 1;
        // Change the condition first, then wake.
        pp.turn.fetch_add(1, Ordering::AcqRel);
        pp.queues[1 - me].wake_one();
    }
    side
}

/// N round trips between a thread on `cpu_a` and one on `cpu_b`.
fn ping_pong(cpu_a: usize, cpu_b: usize) -> TestResult {
    let rounds = scaled(1000, 200);
    let pp = Arc::new(PingPong { turn: AtomicU64::new(0), queues: [WaitQueue::new(), WaitQueue::new()] });
    let (p0, p1) = (pp.clone(), pp.clone());
    let a = spawn_on("ping", Some(cpu_a), move || play(&p0, 0, rounds, cpu_a))?;
    let b = spawn_on("pong", Some(cpu_b), move || play(&p1, 1, rounds, cpu_b))?;
    let (a, b) = (a.join(), b.join());
    for (name, side) in [("ping", &a), ("pong", &b)] {
        ut_assert_eq!(side.played, rounds, "`{}` played {:?}", name, side);
        ut_assert_eq!(
            side.lost,
            0,
            "`{}` waited {:?} for its turn {} time(s): lost wake-ups",
            name,
            LOST,
            side.lost
        );
        ut_assert_eq!(side.out_of_order, 0, "`{}` saw turns out of order: {:?}", name, side);
        ut_assert_eq!(side.wrong_cpu, 0, "`{}` played on a CPU it is not pinned to: {:?}", name, side);
    }
    ut_assert_eq!(pp.turn.load(Ordering::Acquire), 2 * rounds);
    ut_assert!(pp.queues[0].is_empty() && pp.queues[1].is_empty(), "a waiter is left on a queue");
    Ok(())
}

fn ping_pong_on_one_cpu() -> TestResult {
    let cpu = cpus() - 1;
    ping_pong(cpu, cpu)
}
uktest::test_case!(ping_pong_on_one_cpu);

fn ping_pong_across_cpus() -> TestResult {
    uktest::require_cpus(2, "one thread on each of two CPUs")?;
    ping_pong(cpus() - 1, cpus() - 2)
}
uktest::test_case!(ping_pong_across_cpus);

fn join_returns_each_threads_value() -> TestResult {
    let handles =
        (0..32u64).map(|i| spawn_on("square", None, move || i * i)).collect::<Result<Vec<_>, _>>()?;
    // Joined in reverse order of creation: a value must follow its thread,
    // not the order in which threads finish.
    for (i, h) in handles.into_iter().enumerate().rev() {
        let i = i as u64;
        ut_assert_eq!(h.join(), i * i, "thread {} returned another thread's value", i);
    }
    Ok(())
}
uktest::test_case!(join_returns_each_threads_value);

/// The calling thread's CPU as [`uksched::Thread::cpu`] sees it, and as
/// the CPU itself says, read without being moved in between.
fn where_am_i() -> (usize, usize) {
    let _still = uksched::preempt::Guard::new();
    (uksched::current().cpu(), ukplat::cpu::this_cpu())
}

fn a_thousand_threads_run_and_are_joined() -> TestResult {
    // Under KVM (kvm_pvm emulates every instruction: ~7 ms per thread) a
    // quarter, to keep the run short; TCG runs all 1,000.
    let n = scaled(1000, 250) as usize;
    let (created0, exited0) = uksched::threads();
    // Each thread notes the CPU of its first run, then stays runnable
    // (yielding) until all exist: runnable threads are the load the
    // scheduler balances, so every CPU's queue, the spawning CPU's
    // included, gets some, and no CPU is idle to steal them. (After the
    // gate opens, which CPU finishes which thread depends on the host: a
    // vCPU the host deschedules for a few ms has its queue stolen.)
    // The gate opens once every CPU ran one of them (or after 5 s): a vCPU
    // or linuxu thread that the host did not run while the threads were
    // created gets its share from the others' queues meanwhile.
    let gate = Arc::new(AtomicBool::new(false));
    let started: Arc<[AtomicU64; ukplat::cpu::MAX_CPUS]> =
        Arc::new([const { AtomicU64::new(0) }; ukplat::cpu::MAX_CPUS]);
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let gate = gate.clone();
        let started = started.clone();
        let h = uksched::Builder::new()
            .stack_size(16 * 1024)
            .spawn(move || {
                let first = where_am_i();
                started[first.1].fetch_add(1, Ordering::Relaxed);
                while !gate.load(Ordering::Acquire) {
                    uksched::yield_now();
                }
                (first, where_am_i())
            })
            .map_err(|e| uktest::Stop::failure(format_args!("spawning thread {}: {e}", handles.len())))?;
        handles.push(h);
    }
    // Under coop the threads queued on this CPU first run now.
    uksched::yield_now();
    let deadline = uktime::now() + Duration::from_secs(5);
    while started[..cpus()].iter().any(|c| c.load(Ordering::Relaxed) == 0) && uktime::now() < deadline {
        uksched::yield_now();
    }
    gate.store(true, Ordering::Release);
    let (created1, _) = uksched::threads();
    let mut per_cpu = [0u64; ukplat::cpu::MAX_CPUS];
    let mut mismatched = 0;
    for h in handles {
        let ((seen, really), (seen_after, really_after)) = h.join();
        if seen != really || seen_after != really_after {
            mismatched += 1;
        }
        if let Some(count) = per_cpu.get_mut(seen) {
            *count += 1;
        }
    }
    let (_, exited1) = uksched::threads();
    let per_cpu = &per_cpu[..cpus()];
    ut_assert_eq!(mismatched, 0, "Thread::cpu() disagreed with this_cpu() inside the thread");
    ut_assert_eq!(per_cpu.iter().sum::<u64>(), n as u64);
    if cpus() > 1 {
        ut_assert!(per_cpu.iter().all(|&count| count > 0), "threads per CPU (first run): {:?}", per_cpu);
    }
    ut_assert_eq!(created1 - created0, n as u64, "threads() created count");
    ut_assert!(
        exited1 - exited0 >= n as u64,
        "threads() counted {} exits for {} threads",
        exited1 - exited0,
        n
    );
    ukconsole::println!("sched: {n} threads per CPU (first run): {per_cpu:?}");
    Ok(())
}
uktest::test_case!(a_thousand_threads_run_and_are_joined);

/// Counts drops of thread-local values.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// A thread-local value that counts its drop.
struct Counted(Cell<u64>);

impl Drop for Counted {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

uksched::thread_local! {
    static MINE: Cell<u64> = Cell::new(0);
    static COUNTED: Counted = Counted(Cell::new(u64::MAX));
}

fn thread_local_values_are_per_thread_and_dropped_at_exit() -> TestResult {
    const THREADS: u64 = 8;
    let yields = scaled(200, 50);
    MINE.with(|v| v.set(0xdead));
    let dropped0 = DROPPED.load(Ordering::SeqCst);
    let handles = (0..THREADS)
        .map(|i| {
            spawn_on("tls", None, move || {
                let value = 1000 + i;
                let fresh = MINE.with(|v| v.get()) == 0 && COUNTED.with(|c| c.0.get()) == u64::MAX;
                MINE.with(|v| v.set(value));
                COUNTED.with(|c| c.0.set(value));
                let mut wrong = 0u64;
                for _ in 0..yields {
                    uksched::yield_now();
                    if MINE.with(|v| v.get()) != value || COUNTED.with(|c| c.0.get()) != value {
                        wrong += 1;
                    }
                }
                if i == 0 {
                    // Ending through `exit` drops thread-local values too.
                    uksched::exit((fresh, wrong));
                }
                (fresh, wrong)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, h) in handles.into_iter().enumerate() {
        let (fresh, wrong) = h.join();
        ut_assert!(fresh, "thread {} did not start with the initial values", i);
        ut_assert_eq!(wrong, 0, "thread {} saw another thread's value", i);
    }
    ut_assert_eq!(MINE.with(|v| v.get()), 0xdead, "main's value changed");
    ut_assert_eq!(DROPPED.load(Ordering::SeqCst) - dropped0, THREADS, "thread-local destructors run at exit");
    Ok(())
}
uktest::test_case!(thread_local_values_are_per_thread_and_dropped_at_exit);
