//! # ukbench — benchmark support for the bench apps
//!
//! What the bench apps (`apps/rcubench`, `futexbench`, `schedbench`,
//! `smpbench`) share, so that every one measures and reports the same way:
//!
//! * **medians**: [`median`], the lower middle of a set of samples;
//! * **command-line options**: [`option`], a numeric `key=value` word of
//!   the kernel command line (`platform.cmdline`) with a default;
//! * **a start barrier**: [`arrive`], for threads or CPUs that must start a
//!   measurement together;
//! * **timed loops**: [`timed`], `n` calls of an operation between two
//!   ordered TSC reads, one monomorphic `#[inline(never)]` loop per
//!   operation — under TCG with `platform.icount` (`cargo xtask bench
//!   icount`) its TSC delta is the loop's instruction count;
//! * **the machine-readable `bench:` lines** that `cargo xtask bench`
//!   (`xtask/src/bench.rs`) parses, one console line per measurement:
//!   [`median_line`] (`bench: metric=M kind=K samples=N cycles=C`),
//!   [`throughput_line`] (`bench: metric=M kind=K cpus=C ops=N window=W
//!   min=A max=B`) and the instruction counts [`icount_line`] and
//!   [`icount_line_counted`] (`bench: metric=icount kind=K samples=11
//!   ops=N cycles=C min=A max=B [odd=K]`).
//!
//! Each app keeps its own machine line and the lines with fields of their
//! own; a change to the format of a line here changes every app's, so the
//! host's parser must change with it.
//!
//! Threads are the apps' business: this crate does not depend on
//! `uksched` (smpbench runs without it). A thread pinned to a CPU is
//! `uksched::spawn_pinned`.
//!
//! **Needs:** `ukplat` and `ukboot` (the command line), `ukarch` (the TSC),
//! `ukconsole` (the lines); a heap (`ukalloc`) for the instruction counts'
//! samples.
//!
//! **Config options:** none.
//!
//! ```
//! let mut samples = [30, 10, 20];
//! assert_eq!(ukbench::median(&mut samples), 20);
//! // `bench: metric=wakeup kind=spin-flag samples=3 cycles=20` on the
//! // console (on the host, where no console is registered, nowhere).
//! ukbench::median_line("wakeup", "spin-flag", &mut samples);
//! ```
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicUsize, Ordering};
use ukarch::tsc;
use ukconsole::println;

/// Samples of each instruction count ([`icount_line`],
/// [`icount_line_counted`]), after one warm-up.
pub const ICOUNT_SAMPLES: usize = 11;

/// The median of `samples` (sorted in place; the lower middle for even
/// counts; 0 for none).
///
/// ```
/// assert_eq!(ukbench::median(&mut [5, 1, 3]), 3);
/// assert_eq!(ukbench::median(&mut [4, 1, 3, 2]), 2);
/// assert_eq!(ukbench::median(&mut []), 0);
/// ```
pub fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples.get(samples.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

/// A numeric `key=value` option from the kernel command line
/// (`platform.cmdline`; the last one wins), or `default` when it is absent
/// or not a number.
///
/// ```no_run
/// // `cargo xtask run --app rcubench --set platform.cmdline=read_ms=50`
/// let read_ms = ukbench::option("read_ms", 20).max(1);
/// let icount = ukbench::option("icount", 0) == 1;
/// ```
pub fn option(key: &str, default: u64) -> u64 {
    ukboot::cmdline_value(ukplat::boot_info().cmdline, key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A start barrier: counts the caller in `arrived` and waits until `n`
/// parties arrived, calling `wait` between two looks
/// (`core::hint::spin_loop` where each party has a CPU of its own,
/// `uksched::yield_now` where they may share one).
///
/// ```
/// use core::sync::atomic::AtomicUsize;
/// let arrived = AtomicUsize::new(0);
/// std::thread::scope(|s| {
///     s.spawn(|| ukbench::arrive(&arrived, 2, core::hint::spin_loop));
///     ukbench::arrive(&arrived, 2, std::thread::yield_now);
/// });
/// ```
pub fn arrive(arrived: &AtomicUsize, n: usize, mut wait: impl FnMut()) {
    arrived.fetch_add(1, Ordering::AcqRel);
    while arrived.load(Ordering::Acquire) < n {
        wait();
    }
}

/// `n` calls of `op` in a row between two TSC reads (`read_ordered`): one
/// monomorphic loop per operation, each result kept with `black_box`;
/// returns the cycles (under `platform.icount`, the instructions).
///
/// ```
/// // On the host too: the TSC is readable in user mode.
/// let cycles = ukbench::timed(1000, || core::hint::black_box(6) * 7);
/// assert!(cycles > 0);
/// ```
#[inline(never)]
pub fn timed<T>(n: u64, mut op: impl FnMut() -> T) -> u64 {
    let t0 = tsc::read_ordered();
    for _ in 0..n {
        black_box(op());
    }
    tsc::read_ordered() - t0
}

/// One `metric=MEASURED kind=KIND samples=N cycles=C` line: the number of
/// `samples` and their median (they are sorted in place).
///
/// ```
/// let mut rtt = vec![900, 700, 800];
/// // bench: metric=call_rtt kind=idle samples=3 cycles=800
/// ukbench::median_line("call_rtt", "idle", &mut rtt);
/// ```
pub fn median_line(metric: &str, kind: &str, samples: &mut [u64]) {
    println!("bench: metric={metric} kind={kind} samples={} cycles={}", samples.len(), median(samples));
}

/// One throughput line, `metric=M kind=K cpus=C ops=N window=W min=A
/// max=B`: `ops` holds what each of `cpus` participants did in the same
/// `window` cycles; the line has their sum, the fewest and the most (the
/// fairness figure).
///
/// ```
/// // bench: metric=lock kind=ticket cpus=2 ops=300 window=1000 min=100 max=200
/// ukbench::throughput_line("lock", "ticket", 2, 1000, &[100, 200]);
/// ```
pub fn throughput_line(metric: &str, kind: &str, cpus: usize, window: u64, ops: &[u64]) {
    println!(
        "bench: metric={metric} kind={kind} cpus={cpus} ops={} window={window} min={} max={}",
        ops.iter().sum::<u64>(),
        ops.iter().copied().min().unwrap_or(0),
        ops.iter().copied().max().unwrap_or(0)
    );
}

/// One `metric=icount` line of `ops` calls of `op` in a [`timed`] loop: a
/// warm-up, then the median, fewest and most cycles of [`ICOUNT_SAMPLES`]
/// samples,
/// `bench: metric=icount kind=KIND samples=11 ops=N cycles=C min=A max=B`.
///
/// ```
/// // The harness's own cost per iteration.
/// ukbench::icount_line("empty", 1000, || ());
/// ```
pub fn icount_line<T>(kind: &str, ops: u64, mut op: impl FnMut() -> T) {
    timed(ops, &mut op);
    let mut cycles: Vec<u64> = (0..ICOUNT_SAMPLES).map(|_| timed(ops, &mut op)).collect();
    let (min, max) = (cycles.iter().copied().min().unwrap_or(0), cycles.iter().copied().max().unwrap_or(0));
    println!(
        "bench: metric=icount kind={kind} samples={ICOUNT_SAMPLES} ops={ops} cycles={} min={min} max={max}",
        median(&mut cycles)
    );
}

/// [`icount_line`] for a measurement that makes its own loop: `sample`
/// returns its cycles and the operations it made, which may be off `ops`
/// (a context switch count off by a preemption); the line ends with
/// `odd=K`, the samples that did not make exactly `ops`.
///
/// ```
/// // bench: metric=icount kind=yield-alone samples=11 ops=1000 cycles=C min=A max=B odd=0
/// ukbench::icount_line_counted("yield-alone", 1000, || (ukbench::timed(1000, || ()), 1000));
/// ```
pub fn icount_line_counted(kind: &str, ops: u64, mut sample: impl FnMut() -> (u64, u64)) {
    sample();
    let mut cycles = Vec::with_capacity(ICOUNT_SAMPLES);
    let mut odd = 0;
    for _ in 0..ICOUNT_SAMPLES {
        let (c, made) = sample();
        cycles.push(c);
        odd += usize::from(made != ops);
    }
    let (min, max) = (cycles.iter().copied().min().unwrap_or(0), cycles.iter().copied().max().unwrap_or(0));
    println!(
        "bench: metric=icount kind={kind} samples={ICOUNT_SAMPLES} ops={ops} cycles={} min={min} max={max} odd={odd}",
        median(&mut cycles)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::sync::Mutex;

    /// Everything written to the console.
    static OUT: Mutex<String> = Mutex::new(String::new());

    struct Capture;

    impl ukplat::console::ConsoleDevice for Capture {
        fn name(&self) -> &'static str {
            "capture"
        }

        fn write(&self, bytes: &[u8]) {
            OUT.lock().unwrap().push_str(core::str::from_utf8(bytes).unwrap());
        }
    }

    /// The lines, byte for byte as `xtask/src/bench.rs` parses them (one
    /// test: the console is one for the process).
    #[test]
    fn lines_keep_their_format() {
        static CAPTURE: Capture = Capture;
        ukplat::console::register(&CAPTURE);
        median_line("wakeup", "waitqueue", &mut [30, 10, 20, 40]);
        throughput_line("read_tput", "rcu", 2, 5000, &[7, 3]);
        let mut n = 0;
        icount_line("empty", 4, || ());
        icount_line_counted("switch", 8, || {
            n += 1;
            (100 + n, if n == 5 { 7 } else { 8 })
        });
        let out = OUT.lock().unwrap().clone();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert_eq!(lines[0], "bench: metric=wakeup kind=waitqueue samples=4 cycles=20");
        assert_eq!(lines[1], "bench: metric=read_tput kind=rcu cpus=2 ops=10 window=5000 min=3 max=7");
        assert!(lines[2].starts_with("bench: metric=icount kind=empty samples=11 ops=4 cycles="), "{out}");
        assert!(
            lines[2].contains(" min=") && lines[2].contains(" max=") && !lines[2].contains("odd="),
            "{out}"
        );
        // Warm-up n = 1, samples n = 2..=12: median 107, one odd (n = 5).
        assert_eq!(
            lines[3],
            "bench: metric=icount kind=switch samples=11 ops=8 cycles=107 min=102 max=112 odd=1"
        );
    }

    #[test]
    fn median_is_the_lower_middle() {
        assert_eq!(median(&mut [3, 1, 2]), 2);
        assert_eq!(median(&mut [4, 3, 2, 1]), 2);
        assert_eq!(median(&mut [9]), 9);
        assert_eq!(median(&mut []), 0);
    }
}
