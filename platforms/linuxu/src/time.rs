//! The clock and the per-CPU timers.
//!
//! **Clock:** the counter is the TSC (`rdtsc` runs in user mode), its rate
//! measured at [`clock_init`] against the host's `CLOCK_MONOTONIC` over
//! [`CALIBRATION_NS`]; the pair of readings taken then maps any later
//! counter value to `CLOCK_MONOTONIC`, which the timers need. This assumes
//! an invariant TSC (`constant_tsc` and `nonstop_tsc` in `/proc/cpuinfo`,
//! true of every x86_64 CPU of the last fifteen years), as Linux itself
//! does when it uses the TSC as its clock source.
//!
//! **Timers:** each CPU has a POSIX timer on `CLOCK_MONOTONIC`
//! (`timer_create` with `SIGEV_THREAD_ID`: its signal, [`vcpu::SIG_TIMER`],
//! goes to that CPU's thread), created for every started CPU by
//! [`timer_init`]. An event is an absolute expiry (`TIMER_ABSTIME`), a
//! periodic tick an interval. Their unit is the nanosecond.

use crate::sys::{self, abi};
use crate::vcpu;
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use ukplat::clock::{ClockError, ClockInfo, WallTime};
use ukplat::cpu::MAX_CPUS;
use ukplat::timer::{Period, TimerError, TimerInfo};

/// How long [`clock_init`] counts TSC cycles against `CLOCK_MONOTONIC`.
pub const CALIBRATION_NS: u64 = 20_000_000;

/// The calibration: TSC rate, and one (TSC, CLOCK_MONOTONIC ns) pair.
static HZ: AtomicU64 = AtomicU64::new(0);
static TSC0: AtomicU64 = AtomicU64::new(0);
static MONO0: AtomicU64 = AtomicU64::new(0);
/// Each CPU's POSIX timer id (-1: none).
static TIMERS: [AtomicI32; MAX_CPUS] = [const { AtomicI32::new(-1) }; MAX_CPUS];

/// A TSC value and `CLOCK_MONOTONIC` read as close together as this thread
/// can: the TSC is read on both sides of the clock, and the closest
/// bracket of a few tries kept.
fn paired_reading() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..5 {
        let before = ukarch::tsc::read_ordered();
        let mono = sys::clock_gettime_ns(abi::CLOCK_MONOTONIC);
        let after = ukarch::tsc::read_ordered();
        if after - before < best.0 {
            best = (after - before, before + (after - before) / 2, mono);
        }
    }
    (best.1, best.2)
}

/// The counter's rate (see the module documentation).
pub fn clock_init() -> Result<ClockInfo, ClockError> {
    let (tsc0, mono0) = paired_reading();
    let until = mono0 + CALIBRATION_NS;
    while sys::clock_gettime_ns(abi::CLOCK_MONOTONIC) < until {
        core::hint::spin_loop();
    }
    let (tsc1, mono1) = paired_reading();
    let hz = ((u128::from(tsc1 - tsc0) * 1_000_000_000) / u128::from((mono1 - mono0).max(1))) as u64;
    if !(100_000_000..=20_000_000_000).contains(&hz) {
        return Err(ClockError::Implausible { source: "TSC against CLOCK_MONOTONIC", hz, setting: "" });
    }
    HZ.store(hz, Ordering::Relaxed);
    TSC0.store(tsc1, Ordering::Relaxed);
    MONO0.store(mono1, Ordering::Release);
    Ok(ClockInfo { hz, base: ukplat::boot_info().boot_tsc, source: "TSC against CLOCK_MONOTONIC" })
}

/// The host's time of day, with the counter value it held at.
pub fn clock_wall_time() -> Option<WallTime> {
    let counter = ukarch::tsc::read_ordered();
    let ns = sys::clock_gettime_ns(abi::CLOCK_REALTIME);
    Some(WallTime { since_epoch: core::time::Duration::from_nanos(ns), counter, source: "CLOCK_REALTIME" })
}

/// `CLOCK_MONOTONIC` nanoseconds at counter value `tsc`.
fn monotonic_of(tsc: u64) -> u64 {
    let hz = u128::from(HZ.load(Ordering::Relaxed).max(1));
    let tsc0 = TSC0.load(Ordering::Relaxed);
    let mono0 = MONO0.load(Ordering::Acquire);
    if tsc >= tsc0 {
        mono0.saturating_add((u128::from(tsc - tsc0) * 1_000_000_000 / hz) as u64)
    } else {
        mono0.saturating_sub((u128::from(tsc0 - tsc) * 1_000_000_000 / hz) as u64)
    }
}

/// Creates every started CPU's timer.
pub fn timer_init() -> Result<TimerInfo, TimerError> {
    if HZ.load(Ordering::Acquire) == 0 {
        return Err(TimerError::NotInitialised);
    }
    for (cpu, timer) in TIMERS.iter().enumerate().take(crate::cpus::started()) {
        // SAFETY: `sigevent` is plain data (integers and a union of
        // integers and pointers); all zero is a valid value.
        let mut sev: abi::sigevent = unsafe { core::mem::zeroed() };
        sev.sigev_signo = vcpu::SIG_TIMER as i32;
        sev.sigev_notify = abi::SIGEV_THREAD_ID as i32;
        sev._sigev_un._tid = vcpu::vcpu(cpu).tid.load(Ordering::Acquire);
        let mut id = -1;
        let ret = sys::timer_create(abi::CLOCK_MONOTONIC, &mut sev, &mut id);
        if ret < 0 {
            crate::fail(format_args!("timer_create for CPU {cpu}: errno {}", -ret));
        }
        timer.store(id, Ordering::Release);
    }
    Ok(TimerInfo { name: "POSIX timer (CLOCK_MONOTONIC)", tick_hz: 1_000_000_000 })
}

fn timespec(ns: u64) -> abi::__kernel_timespec {
    abi::__kernel_timespec { tv_sec: (ns / 1_000_000_000) as i64, tv_nsec: (ns % 1_000_000_000) as i64 }
}

/// Programs this CPU's timer.
fn settime(flags: u32, value_ns: u64, interval_ns: u64) {
    let cpu = ukplat::cpu::this_cpu();
    let id = TIMERS[cpu].load(Ordering::Acquire);
    if id < 0 {
        crate::fail(format_args!("CPU {cpu} armed its timer before ukplat::timer::init"));
    }
    let spec = abi::__kernel_itimerspec { it_interval: timespec(interval_ns), it_value: timespec(value_ns) };
    let ret = sys::timer_settime(id, flags, &spec);
    if ret < 0 {
        crate::fail(format_args!("timer_settime on CPU {cpu}: errno {}", -ret));
    }
}

/// Arms this CPU's timer for counter value `deadline`.
pub fn timer_arm(deadline: u64) {
    // An expiry of 0 would disarm: a past deadline is "now".
    settime(abi::TIMER_ABSTIME, monotonic_of(deadline).max(1), 0);
}

/// Starts this CPU's periodic tick.
pub fn timer_periodic(hz: u32) -> Result<Period, TimerError> {
    if hz == 0 || hz > 1_000_000 {
        return Err(TimerError::BadRate { hz, tick_hz: 1_000_000_000 });
    }
    let period = 1_000_000_000 / u64::from(hz);
    settime(0, period, period);
    Ok(Period { ticks: period, tick_hz: 1_000_000_000 })
}

/// Stops this CPU's timer.
pub fn timer_stop() {
    settime(0, 0, 0);
}
