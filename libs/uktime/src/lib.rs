//! # uktime — the clock and timer events
//!
//! What it offers:
//!
//! * a **monotonic clock** in nanoseconds since the image's first
//!   instruction: [`now`] reads the TSC and scales it (`rdtsc`, one 64×64
//!   multiply, a shift — no lock, no exit under a hypervisor). The TSC is
//!   the same counter on every CPU (KVM and TCG keep the vCPUs' TSCs in
//!   step), so readings on different CPUs are comparable; the `smp` app
//!   tests that the clock never goes backwards across CPUs;
//! * **calibration** of the TSC at boot ([`calibrate`]): CPUID's exact
//!   leaves, kvmclock's parameters, or counting cycles against the ACPI PM
//!   timer or the PIT ([`source`] says which was used, [`tsc_hz`] the
//!   result), and of the local APIC timer against the TSC
//!   ([`apic_timer_hz`]);
//! * **busy-waits**: [`busy_wait`], [`busy_wait_until`];
//! * the **realtime clock** ([`realtime`]): the time of day since the Unix
//!   epoch, from the CMOS RTC read once at boot plus the monotonic clock;
//! * **timer events** ([`timer`]): a per-CPU one-shot event at a deadline
//!   (or a periodic tick) on the local APIC timer, delivered to one handler
//!   the scheduler registers — in TSC-deadline mode when the CPU offers it,
//!   else as a one-shot countdown.
//!
//! Durations are [`core::time::Duration`]; points in time are [`Instant`].
//!
//! **Needs:** `ukarch` (TSC, CPUID, port I/O), `ukplat` (the boot TSC and
//! PM timer from the boot information, vectors, per-CPU data), `ukboot`
//! (init at `PLATFORM` priority), `apic` (the timer).
//!
//! **Config options:** `source` (`auto` | `cpuid` | `kvmclock` | `pmtimer` |
//! `pit`), `calibration_ms`, `event_timer` (`auto` | `tsc-deadline` |
//! `oneshot`). A named source or event mode the machine lacks stops the boot
//! with a message naming the option.
//!
//! ```
//! use core::time::Duration;
//! // On the host nothing is calibrated; the arithmetic is the same.
//! let t = uktime::Instant::from_nanos(1_500);
//! assert_eq!((t + Duration::from_nanos(500)).as_nanos(), 2_000);
//! assert_eq!(t.duration_since(uktime::Instant::from_nanos(500)), Duration::from_micros(1));
//! ```
#![cfg_attr(not(test), no_std)]

pub mod calibrate;
#[cfg(feature = "uktest")]
mod guest_tests;
pub mod realtime;
pub mod timer;

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use core::time::Duration;

pub use calibrate::Source;

/// A point on the monotonic clock: nanoseconds since the image's first
/// instruction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The image's first instruction.
    pub const ZERO: Instant = Instant(0);
    /// Later than every reachable instant (584 years of uptime).
    pub const FAR_FUTURE: Instant = Instant(u64::MAX);

    /// The instant `ns` nanoseconds after the first instruction.
    pub const fn from_nanos(ns: u64) -> Self {
        Self(ns)
    }

    /// Nanoseconds since the first instruction.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub const fn duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Time since `self`.
    pub fn elapsed(self) -> Duration {
        now().duration_since(self)
    }

    /// `self + d`, or `None` past [`Instant::FAR_FUTURE`].
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        u64::try_from(d.as_nanos()).ok().and_then(|ns| self.0.checked_add(ns)).map(Instant)
    }
}

/// Saturates at [`Instant::FAR_FUTURE`].
impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.checked_add(d).unwrap_or(Instant::FAR_FUTURE)
    }
}

/// TSC frequency in Hz (0 before calibration).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC cycle, as a 32.32 fixed-point number.
static NS_PER_CYCLE: AtomicU64 = AtomicU64::new(0);
/// TSC of the image's first instruction (the clock's zero).
static BASE_TSC: AtomicU64 = AtomicU64::new(0);
/// Local APIC timer ticks per second at divide-by-1.
static APIC_TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// [`Source`] as a number (0: not calibrated).
static SOURCE: AtomicU8 = AtomicU8::new(0);

/// Sets the clock's parameters (what [`calibrate`] does with its result;
/// host tests use it directly).
pub fn set_calibration(tsc_hz: u64, base_tsc: u64, source: Source) {
    let ns_per_cycle = ((1_000_000_000u128 << 32) / u128::from(tsc_hz.max(1))) as u64;
    BASE_TSC.store(base_tsc, Ordering::Relaxed);
    NS_PER_CYCLE.store(ns_per_cycle, Ordering::Relaxed);
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    SOURCE.store(source as u8 + 1, Ordering::Release);
}

/// Whether the clock has been calibrated.
pub fn is_calibrated() -> bool {
    SOURCE.load(Ordering::Acquire) != 0
}

/// The TSC frequency in Hz (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Where the TSC frequency came from (`None` before calibration).
pub fn source() -> Option<Source> {
    match SOURCE.load(Ordering::Acquire) {
        1 => Some(Source::Cpuid),
        2 => Some(Source::Kvmclock),
        3 => Some(Source::PmTimer),
        4 => Some(Source::Pit),
        _ => None,
    }
}

/// The local APIC timer's rate at divide-by-1, in Hz (0 before
/// calibration).
pub fn apic_timer_hz() -> u64 {
    APIC_TIMER_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds in `cycles` TSC cycles.
#[inline]
pub fn cycles_to_ns(cycles: u64) -> u64 {
    ((u128::from(cycles) * u128::from(NS_PER_CYCLE.load(Ordering::Relaxed))) >> 32) as u64
}

/// TSC cycles in `ns` nanoseconds (rounded up).
#[inline]
pub fn ns_to_cycles(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(tsc_hz())).div_ceil(1_000_000_000) as u64
}

/// The clock reading for TSC value `tsc`.
#[inline]
pub fn instant_of_tsc(tsc: u64) -> Instant {
    Instant(cycles_to_ns(tsc.saturating_sub(BASE_TSC.load(Ordering::Relaxed))))
}

/// The TSC value at which the clock reads `instant`.
#[inline]
pub fn tsc_of_instant(instant: Instant) -> u64 {
    BASE_TSC.load(Ordering::Relaxed).saturating_add(ns_to_cycles(instant.0))
}

/// The monotonic clock.
///
/// # Panics
/// Never; before calibration it reads 0.
#[inline]
pub fn now() -> Instant {
    instant_of_tsc(ukarch::tsc::read_ordered())
}

/// Spins until [`now`] reaches `deadline`.
pub fn busy_wait_until(deadline: Instant) {
    let target = tsc_of_instant(deadline);
    while ukarch::tsc::read() < target {
        ukarch::barrier::spin_hint();
    }
}

/// Spins for `d`.
pub fn busy_wait(d: Duration) {
    busy_wait_until(now() + d);
}

/// Why calibration failed: the configured source is missing or wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CalibrationFailed(pub calibrate::CalibrationError);

/// Calibrates the TSC from the configured source (`source = auto`: the
/// first of CPUID, kvmclock, PM timer, PIT that works), sets the clock, and
/// measures the APIC timer against it.
///
/// # Errors
/// The configured source's error; with `auto`, the PIT's (the last tried).
#[cfg(target_os = "none")]
pub fn calibrate() -> Result<Source, CalibrationFailed> {
    use calibrate::hw;
    use ukconfig::uktime::Source as Configured;
    let ms = ukconfig::uktime::CALIBRATION_MS as u64;
    let pm_timer = ukplat::boot_info().pm_timer;
    let try_source = |s: Source| match s {
        Source::Cpuid => hw::cpuid(),
        Source::Kvmclock => hw::kvmclock(),
        Source::PmTimer => hw::pm_timer(pm_timer, ms),
        Source::Pit => hw::pit(ms),
    };
    let order: &[Source] = match ukconfig::uktime::SOURCE {
        Configured::Auto => &[Source::Cpuid, Source::Kvmclock, Source::PmTimer, Source::Pit],
        Configured::Cpuid => &[Source::Cpuid],
        Configured::Kvmclock => &[Source::Kvmclock],
        Configured::Pmtimer => &[Source::PmTimer],
        Configured::Pit => &[Source::Pit],
    };
    let mut last = None;
    for &source in order {
        match try_source(source) {
            Ok(hz) => {
                set_calibration(hz, ukplat::boot_info().boot_tsc, source);
                let window = Duration::from_millis((ms / 2).max(1));
                let ticks = apic::timer::measure_ticks(apic::timer::Divide::By1, || busy_wait(window));
                APIC_TIMER_HZ
                    .store(u64::from(ticks) * 1_000_000_000 / window.as_nanos() as u64, Ordering::Relaxed);
                return Ok(source);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(CalibrationFailed(last.unwrap_or(calibrate::CalibrationError::Unavailable(Source::Pit))))
}

#[cfg(target_os = "none")]
fn init() {
    if let Err(CalibrationFailed(e)) = calibrate() {
        panic!(
            "uktime: cannot calibrate the TSC: {e} (uktime.source = \"{}\")",
            ukconfig::uktime::SOURCE.as_str()
        );
    }
    timer::init();
    realtime::init();
}

#[cfg(target_os = "none")]
ukboot::init!(ukboot::priority::PLATFORM, init);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        set_calibration(2_500_000_000, 1_000, Source::Pit);
        assert_eq!(source(), Some(Source::Pit));
        assert_eq!(tsc_hz(), 2_500_000_000);
        assert_eq!(cycles_to_ns(2_500_000_000), 999_999_999); // fixed point rounds down
        assert_eq!(ns_to_cycles(1_000), 2_500);
        assert_eq!(instant_of_tsc(1_000 + 2_500), Instant::from_nanos(999));
        assert_eq!(tsc_of_instant(Instant::from_nanos(1_000)), 3_500);
        assert_eq!(instant_of_tsc(0), Instant::ZERO, "before the base reads zero");
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_nanos(u64::MAX - 1);
        assert_eq!(t + Duration::from_secs(1), Instant::FAR_FUTURE);
        assert_eq!(t.checked_add(Duration::from_secs(1)), None);
        assert_eq!(Instant::ZERO.duration_since(t), Duration::ZERO);
    }
}
