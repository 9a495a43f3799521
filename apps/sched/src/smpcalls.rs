//! Cross-CPU calls (`uksmp`) made by threads that are preempted and moved
//! to other CPUs while they make them.
//!
//! A call reads "this CPU" to decide what runs locally and what is queued
//! for the other CPUs; a thread moved between that read and the local part
//! would run the local part on the wrong CPU and leave its new CPU without
//! a call. Here many threads call while another thread keeps changing
//! their affinity (a change of a running thread interrupts its CPU and
//! moves it at that interrupt's return, anywhere in preemptible code), and
//! every result names the CPU that really ran it.

use crate::{cpus, spawn_on};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use ukconsole::println;
use ukplat::cpu::{MAX_CPUS, this_cpu};
use uksched::CpuSet;
use uktest::{TestResult, ut_assert, ut_assert_eq};

/// Calling threads per CPU, and at least this many in all.
const CALLERS_PER_CPU: usize = 2;
const MIN_CALLERS: usize = 8;

/// How long the callers call and the mover moves them.
const DURATION: Duration = Duration::from_millis(300);

/// The mover's pause between two affinity changes.
const PACE: Duration = Duration::from_micros(50);

/// What one calling thread did.
#[derive(Default)]
struct Tally {
    /// `run_on_all` calls, and how many gave a wrong result.
    all: u64,
    all_wrong: u64,
    /// `run_on` calls, and how many ran on another CPU than the named one.
    one: u64,
    one_wrong: u64,
    /// `run_on_all_nowait` and `run_on_nowait` calls.
    nowait: u64,
    /// Calls after which `this_cpu()` differed from before: the thread was
    /// moved while it made them.
    moved_during: u64,
    /// The longest call, in ns.
    longest_ns: u64,
    /// The first wrong result.
    first_wrong: Option<String>,
}

/// The non-waiting calls' closures report here.
#[derive(Default)]
struct NowaitCounts {
    /// Closures queued (one per CPU for `run_on_all_nowait`).
    issued: AtomicU64,
    /// Closures that ran.
    ran: AtomicU64,
    /// Closures that ran on another CPU than the one they were issued for.
    elsewhere: AtomicU64,
}

impl NowaitCounts {
    fn record(&self, issued_for: usize) {
        if this_cpu() != issued_for {
            self.elsewhere.fetch_add(1, Ordering::Relaxed);
        }
        self.ran.fetch_add(1, Ordering::Release);
    }
}

/// Checks one `run_on_all` result, `(issued for, ran on)` per entry: every
/// CPU ran exactly one call, and entry `i` was issued for CPU `i` and ran
/// there.
fn check_all(results: &[(usize, usize)], n: usize) -> Option<String> {
    if results.len() != n {
        return Some(format!("run_on_all gave {} results for {n} CPUs", results.len()));
    }
    let mut seen = [0u32; MAX_CPUS];
    for &(_, ran) in results {
        seen[ran] += 1;
    }
    if seen[..n].iter().any(|&s| s != 1) {
        let ran: Vec<usize> = results.iter().map(|r| r.1).collect();
        return Some(format!("run_on_all ran on CPUs {ran:?}, not on every CPU once"));
    }
    let (i, &(asked, ran)) = results.iter().enumerate().find(|&(i, &(asked, ran))| asked != i || ran != i)?;
    Some(format!("run_on_all: entry {i} was issued for CPU {asked} and ran on CPU {ran}"))
}

/// One calling thread: waiting calls to every CPU and to random CPUs, and
/// non-waiting ones, until `stop`.
fn caller(seed: u64, stop: &AtomicBool, nowait: &Arc<NowaitCounts>) -> Tally {
    let n = cpus();
    let mut rng = uktest::Rng::new(seed);
    let mut t = Tally::default();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let before = this_cpu();
        let start = uktime::now();
        let wrong = match round % 8 {
            0..=4 => {
                t.all += 1;
                let wrong = check_all(&uksmp::run_on_all(|cpu| (cpu, this_cpu())), n);
                t.all_wrong += u64::from(wrong.is_some());
                wrong
            }
            5 | 6 => {
                t.one += 1;
                let target = rng.below(n as u64) as usize;
                let ran = uksmp::run_on(target, this_cpu);
                t.one_wrong += u64::from(ran != target);
                (ran != target).then(|| format!("run_on({target}) ran on CPU {ran}"))
            }
            _ => {
                t.nowait += 1;
                let c = nowait.clone();
                if round % 16 == 7 {
                    nowait.issued.fetch_add(n as u64, Ordering::Relaxed);
                    uksmp::run_on_all_nowait(move |cpu| c.record(cpu));
                } else {
                    let target = rng.below(n as u64) as usize;
                    nowait.issued.fetch_add(1, Ordering::Relaxed);
                    uksmp::run_on_nowait(target, move || c.record(target));
                }
                None
            }
        };
        t.longest_ns = t.longest_ns.max(start.elapsed().as_nanos() as u64);
        if this_cpu() != before {
            t.moved_during += 1;
        }
        if t.first_wrong.is_none() {
            t.first_wrong = wrong;
        }
        round += 1;
    }
    t
}

fn calls_run_where_asked_while_threads_migrate() -> TestResult {
    if !uksched::PREEMPTIVE {
        uktest::ut_skip!(
            "needs threads preempted and moved in the middle of a call; uksched.policy = \"{}\" never preempts",
            uksched::POLICY
        );
    }
    uktest::require_cpus(2, "another CPU to call and to move the calling threads to")?;
    let n = cpus();
    let callers = (CALLERS_PER_CPU * n).max(MIN_CALLERS);
    let stop = Arc::new(AtomicBool::new(false));
    let nowait = Arc::new(NowaitCounts::default());
    let seed = ukarch::tsc::read();
    let handles = (0..callers)
        .map(|i| {
            let (stop, nowait) = (stop.clone(), nowait.clone());
            let seed = seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            spawn_on("caller", None, move || caller(seed, &stop, &nowait))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A thread of its own moves the callers until the time is up, in pairs:
    // the caller running on another CPU (asked with a call there, which
    // interrupts it, most likely in the middle of a call of its own) to the
    // mover's CPU, and a caller queued on the mover's CPU (switched out,
    // most likely in the middle of a call) to that other CPU. (Not main:
    // the boot thread runs with interrupts disabled, so its CPU would take
    // no call IPI while it loops.)
    let threads: Vec<uksched::Thread> = handles.iter().map(|h| h.thread().clone()).collect();
    let mover = spawn_on("mover", None, move || {
        let mut rng = uktest::Rng::new(seed.rotate_left(17));
        let mut moves = 0u64;
        let deadline = uktime::now() + DURATION;
        while uktime::now() < deadline {
            let here = this_cpu();
            let there = (here + 1 + rng.below(n as u64 - 1) as usize) % n;
            let running = uksmp::run_on(there, uksched::current_id);
            let first = rng.below(callers as u64) as usize;
            let queued_here = (0..callers).map(|i| &threads[(first + i) % callers]).find(|t| t.cpu() == here);
            let pair = [(threads.iter().find(|t| t.id() == running), here), (queued_here, there)];
            for (thread, to) in pair {
                if let Some(thread) = thread {
                    if thread.set_affinity(CpuSet::single(to)).is_err() {
                        return Err(to);
                    }
                    moves += 1;
                }
            }
            uktime::busy_wait(PACE);
        }
        Ok(moves)
    })?;
    let moves = mover.join();
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = handles.into_iter().map(|h| h.join()).collect();
    let moves = match moves {
        Ok(moves) => moves,
        Err(to) => uktest::ut_fail!("set_affinity to CPU {} failed", to),
    };
    // A waiting call to every CPU runs after every call queued there before.
    uksmp::run_on_all(|_| ());
    let issued = nowait.issued.load(Ordering::Relaxed);
    let ran = nowait.ran.load(Ordering::Acquire);
    let elsewhere = nowait.elsewhere.load(Ordering::Relaxed);
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let (all, all_wrong, one, one_wrong) =
        (sum(|t| t.all), sum(|t| t.all_wrong), sum(|t| t.one), sum(|t| t.one_wrong));
    let (nw, moved_during) = (sum(|t| t.nowait), sum(|t| t.moved_during));
    let longest = Duration::from_nanos(tallies.iter().map(|t| t.longest_ns).max().unwrap_or(0));
    println!(
        "sched::smpcalls: {callers} threads on {n} CPUs for {DURATION:?}, {moves} affinity changes: \
         {all} run_on_all ({all_wrong} wrong), {one} run_on ({one_wrong} wrong), {nw} nowait \
         ({issued} closures, {elsewhere} ran elsewhere); {moved_during} calls during which the caller \
         moved; longest call {longest:?}"
    );
    if let Some(first) = tallies.iter().find_map(|t| t.first_wrong.as_ref()) {
        uktest::ut_fail!("{} ({} run_on_all and {} run_on wrong)", first, all_wrong, one_wrong);
    }
    ut_assert_eq!(elsewhere, 0, "non-waiting calls ran on another CPU than the one they were issued for");
    ut_assert_eq!(ran, issued, "non-waiting calls issued and run");
    ut_assert!(all > 0 && one > 0 && nw > 0, "not every kind of call was made");
    ut_assert!(
        moved_during > 0,
        "no caller was moved while it made a call ({} affinity changes): the test proved nothing",
        moves
    );
    Ok(())
}
uktest::test_case!(calls_run_where_asked_while_threads_migrate);
