//! # uktime — the clock and timer events
//!
//! What it offers, on any platform (it uses only `ukplat`'s
//! [`clock`](ukplat::clock) and [`timer`](ukplat::timer) interfaces):
//!
//! * a **monotonic clock** in nanoseconds since the image's first
//!   instruction: [`now`] reads the platform's counter and scales it (one
//!   64×64 multiply, a shift — no lock; on kvm the counter is the TSC, one
//!   `rdtsc`, no exit under a hypervisor). The counter is the same on every
//!   CPU, so readings on different CPUs are comparable; the `smp` app tests
//!   that the clock never goes backwards across CPUs;
//! * the counter's **rate**, found once by the platform when this library's
//!   init asks (`ukplat::clock::init`: on kvm the TSC is calibrated against
//!   CPUID, kvmclock, the ACPI PM timer or the PIT, `platform.clock_source`);
//!   [`source`] says which was used, [`tsc_hz`] the result;
//! * **busy-waits**: [`busy_wait`], [`busy_wait_until`];
//! * the **realtime clock** ([`realtime`]): the time of day since the Unix
//!   epoch, from the platform's real-time clock read once at boot (the CMOS
//!   RTC on kvm) plus the monotonic clock;
//! * **timer events** ([`timer`]): a per-CPU one-shot event at a deadline
//!   (or a periodic tick) on the platform's timer, delivered to one handler
//!   the scheduler registers (on kvm the local APIC timer, in TSC-deadline
//!   or one-shot mode, `platform.event_timer`).
//!
//! Who does what: the platform owns the hardware — the counter, how its
//! rate is found, the real-time clock, the timer's modes and rate (kvm:
//! `platforms/kvm/src/{clock,rtc,timer}.rs`); this library owns the
//! nanosecond clock, the per-CPU deadline, the handler, and re-arming a
//! timer that fired early.
//!
//! Durations are [`core::time::Duration`]; points in time are [`Instant`].
//!
//! **Needs:** `ukplat` (the clock and timer interfaces, vectors, per-CPU
//! data), `ukboot` (init at `PLATFORM` priority).
//!
//! **Config options:** none of its own. The hardware's are the platform's
//! (kvm: `platform.clock_source`, `platform.calibration_ms`,
//! `platform.event_timer`); a source or timer mode the machine lacks stops
//! the boot with a message naming the option.
//!
//! ```
//! use core::time::Duration;
//! // On the host nothing is calibrated; the arithmetic is the same.
//! let t = uktime::Instant::from_nanos(1_500);
//! assert_eq!((t + Duration::from_nanos(500)).as_nanos(), 2_000);
//! assert_eq!(t.duration_since(uktime::Instant::from_nanos(500)), Duration::from_micros(1));
//! ```
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "uktest")]
mod guest_tests;
pub mod realtime;
pub mod timer;

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

pub use ukplat::clock::{ClockError, ClockInfo};

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

/// Where the clock's rate came from: the platform's name for its source
/// (`"kvmclock"`, `"PIT"`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source(&'static str);

impl Source {
    /// A short name for reports.
    pub const fn name(self) -> &'static str {
        self.0
    }
}

/// The counter's rate in Hz (0 before calibration).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per counter tick, as a 32.32 fixed-point number.
static NS_PER_CYCLE: AtomicU64 = AtomicU64::new(0);
/// The counter at the image's first instruction (the clock's zero).
static BASE_TSC: AtomicU64 = AtomicU64::new(0);
/// The source's name, set with the first calibration.
static SOURCE: ukplat::once::Once<&'static str> = ukplat::once::Once::new();

/// Sets the clock's parameters (what the init does with the platform's
/// [`ClockInfo`]; host tests use it directly). The source's name is the
/// first call's.
pub fn set_calibration(info: ClockInfo) {
    let ns_per_cycle = ((1_000_000_000u128 << 32) / u128::from(info.hz.max(1))) as u64;
    BASE_TSC.store(info.base, Ordering::Relaxed);
    NS_PER_CYCLE.store(ns_per_cycle, Ordering::Relaxed);
    TSC_HZ.store(info.hz, Ordering::Relaxed);
    SOURCE.call_once(|| info.source);
}

/// Whether the clock has been calibrated.
pub fn is_calibrated() -> bool {
    SOURCE.is_completed()
}

/// The rate of the clock's counter in Hz — the TSC's on kvm (0 before
/// calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Where the counter's rate came from (`None` before calibration).
pub fn source() -> Option<Source> {
    SOURCE.get().map(|&name| Source(name))
}

/// Nanoseconds in `cycles` counter ticks.
#[inline]
pub fn cycles_to_ns(cycles: u64) -> u64 {
    ((u128::from(cycles) * u128::from(NS_PER_CYCLE.load(Ordering::Relaxed))) >> 32) as u64
}

/// Counter ticks in `ns` nanoseconds (rounded up).
#[inline]
pub fn ns_to_cycles(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(tsc_hz())).div_ceil(1_000_000_000) as u64
}

/// The clock reading for counter value `counter`.
#[inline]
pub fn instant_of_counter(counter: u64) -> Instant {
    Instant(cycles_to_ns(counter.saturating_sub(BASE_TSC.load(Ordering::Relaxed))))
}

/// The counter value at which the clock reads `instant`.
#[inline]
pub fn counter_of_instant(instant: Instant) -> u64 {
    BASE_TSC.load(Ordering::Relaxed).saturating_add(ns_to_cycles(instant.0))
}

/// The monotonic clock.
///
/// # Panics
/// Never; before calibration it reads 0.
#[inline]
pub fn now() -> Instant {
    instant_of_counter(ukplat::clock::read_ordered())
}

/// Spins until [`now`] reaches `deadline`.
pub fn busy_wait_until(deadline: Instant) {
    let target = counter_of_instant(deadline);
    while ukplat::clock::read() < target {
        core::hint::spin_loop();
    }
}

/// Spins for `d`.
pub fn busy_wait(d: Duration) {
    busy_wait_until(now() + d);
}

/// Asks the platform for the clock's rate (`ukplat::clock::init`, which
/// calibrates on kvm), sets the clock, chooses the timer, and reads the
/// time of day.
#[cfg(target_os = "none")]
fn init() {
    match ukplat::clock::init() {
        Ok(info) => set_calibration(info),
        Err(e) => panic!("uktime: cannot find the clock's rate: {e}"),
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
        set_calibration(ClockInfo { hz: 2_500_000_000, base: 1_000, source: "PIT" });
        assert_eq!(source().map(Source::name), Some("PIT"));
        assert_eq!(tsc_hz(), 2_500_000_000);
        assert_eq!(cycles_to_ns(2_500_000_000), 999_999_999); // fixed point rounds down
        assert_eq!(ns_to_cycles(1_000), 2_500);
        assert_eq!(instant_of_counter(1_000 + 2_500), Instant::from_nanos(999));
        assert_eq!(counter_of_instant(Instant::from_nanos(1_000)), 3_500);
        assert_eq!(instant_of_counter(0), Instant::ZERO, "before the base reads zero");
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_nanos(u64::MAX - 1);
        assert_eq!(t + Duration::from_secs(1), Instant::FAR_FUTURE);
        assert_eq!(t.checked_add(Duration::from_secs(1)), None);
        assert_eq!(Instant::ZERO.duration_since(t), Duration::ZERO);
    }
}
