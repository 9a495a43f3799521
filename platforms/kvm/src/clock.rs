//! The clock of `ukplat::clock` on kvm: the TSC, and measuring its
//! frequency against a clock of known rate (`platform.clock_source`).
//!
//! | source | how | wait | where |
//! |---|---|---|---|
//! | [`Source::Cpuid`] | CPUID leaf 0x15 (crystal ratio) or the hypervisor timing leaf 0x40000010 | none | rarely under QEMU |
//! | [`Source::Kvmclock`] | the pvclock page's `tsc_to_system_mul`/`tsc_shift`: the host's own conversion | none | KVM |
//! | [`Source::PmTimer`] | count TSC cycles over `calibration_ms` of the 3.579545 MHz ACPI PM timer | `calibration_ms` | q35 |
//! | [`Source::Pit`] | the same against the 1.193182 MHz PIT channel 0 | `calibration_ms` | microvm, q35 |
//!
//! `auto` tries them in that order; naming one makes its absence an error
//! that the time library reports at boot. The TSC is the same counter on
//! every CPU (KVM and TCG keep the vCPUs' TSCs in step).
//!
//! The counting sources read the reference counter between two TSC reads
//! and use the midpoint, so one I/O exit of latency (tens of microseconds
//! under a hypervisor) costs well under 1 % at the default 10 ms.
//!
//! Calibration runs only when [`init`] is called (`ukplat::clock::init`,
//! from the time library's init): an image without `uktime` never waits
//! for it.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Where the TSC frequency came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// CPUID leaf 0x15 or 0x40000010.
    Cpuid,
    /// KVM's paravirtual clock parameters.
    Kvmclock,
    /// The ACPI power-management timer.
    PmTimer,
    /// The 8254 programmable interval timer, channel 0.
    Pit,
}

impl Source {
    /// A short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cpuid => "CPUID",
            Self::Kvmclock => "kvmclock",
            Self::PmTimer => "ACPI PM timer",
            Self::Pit => "PIT",
        }
    }
}

/// Why a source could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibrationError {
    /// The machine does not offer the source.
    Unavailable(Source),
    /// The source gave an implausible answer (a rate outside 100 MHz..20 GHz,
    /// or a counter that did not advance).
    Implausible(Source, u64),
}

impl CalibrationError {
    /// As `ukplat`'s error, naming `setting`.
    pub const fn to_clock_error(self, setting: &'static str) -> ukplat::clock::ClockError {
        match self {
            Self::Unavailable(s) => ukplat::clock::ClockError::Unavailable { source: s.name(), setting },
            Self::Implausible(s, hz) => {
                ukplat::clock::ClockError::Implausible { source: s.name(), hz, setting }
            }
        }
    }
}

impl fmt::Display for CalibrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_clock_error(""), f)
    }
}

/// Accepts rates a TSC can plausibly have.
pub fn plausible(source: Source, hz: u64) -> Result<u64, CalibrationError> {
    if (100_000_000..=20_000_000_000).contains(&hz) {
        Ok(hz)
    } else {
        Err(CalibrationError::Implausible(source, hz))
    }
}

/// The TSC rate a pvclock's multiplier and shift describe:
/// `ns = ((tsc << shift) * mul) >> 32` (a right shift for negative shifts),
/// so `hz = 10^9 * 2^32 / (mul * 2^shift)`.
pub const fn pvclock_hz(mul: u32, shift: i8) -> u64 {
    let scaled = 1_000_000_000u128 << 32;
    if mul == 0 {
        return 0;
    }
    let hz = if shift >= 0 {
        scaled / ((mul as u128) << shift as u32)
    } else {
        (scaled << (-(shift as i32)) as u32) / mul as u128
    };
    hz as u64
}

/// Elapsed ticks of a down-counter of period `period` between two
/// readings (at most one wrap in between).
pub const fn down_counter_elapsed(before: u32, after: u32, period: u32) -> u32 {
    if after <= before { before - after } else { before + (period - after) }
}

/// Elapsed ticks of an up-counter `bits` wide between two readings (at
/// most one wrap in between).
pub const fn up_counter_elapsed(before: u32, after: u32, bits: u8) -> u32 {
    let mask = if bits >= 32 { u32::MAX } else { (1u32 << bits) - 1 };
    after.wrapping_sub(before) & mask
}

/// Elapsed ticks of a down-counter of period `period` whose readings
/// `before` and `after` may be several periods apart: `approx` (ticks
/// measured by another clock, good to within half a period) tells how
/// many whole periods to add to the elapsed ticks within one period.
pub const fn unwrap_down_counter(before: u32, after: u32, period: u32, approx: u64) -> u64 {
    let within = down_counter_elapsed(before, after, period) as u64;
    let period = period as u64;
    let wraps = (approx.saturating_sub(within) + period / 2) / period;
    within + wraps * period
}

/// `cycles * reference_hz / ticks`, the TSC rate from a counted interval.
pub const fn rate(cycles: u64, ticks: u64, reference_hz: u64) -> u64 {
    if ticks == 0 { 0 } else { (cycles as u128 * reference_hz as u128 / ticks as u128) as u64 }
}

/// The calibrated TSC rate (0 before [`init`]).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// The source [`init`] used, as its index in [`SOURCES`] plus one (0
/// before it ran).
static SOURCE: AtomicU8 = AtomicU8::new(0);

/// Every source, in the order `auto` tries them.
pub const SOURCES: [Source; 4] = [Source::Cpuid, Source::Kvmclock, Source::PmTimer, Source::Pit];

/// The TSC rate [`init`] found, in Hz (0 before it ran).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// The source [`init`] used (`None` before it ran).
pub fn source() -> Option<Source> {
    SOURCES.get(usize::from(SOURCE.load(Ordering::Relaxed)).checked_sub(1)?).copied()
}

/// Spins for `ns` nanoseconds of the calibrated TSC (not at all before
/// [`init`]).
pub fn spin_ns(ns: u64) {
    let cycles = (u128::from(ns) * u128::from(tsc_hz())).div_ceil(1_000_000_000) as u64;
    let end = ukarch::tsc::read_ordered().saturating_add(cycles);
    while ukarch::tsc::read() < end {
        core::hint::spin_loop();
    }
}

/// `platform.clock_source` as it reads in the configuration.
const SETTING: &str = {
    use ukconfig::platform::ClockSource as C;
    match ukconfig::platform::CLOCK_SOURCE {
        C::Auto => "platform.clock_source = \"auto\"",
        C::Cpuid => "platform.clock_source = \"cpuid\"",
        C::Kvmclock => "platform.clock_source = \"kvmclock\"",
        C::Pmtimer => "platform.clock_source = \"pmtimer\"",
        C::Pit => "platform.clock_source = \"pit\"",
    }
};

/// Calibrates the TSC from the configured source (`auto`: the first of
/// CPUID, kvmclock, PM timer, PIT that works): `ukplat::clock::init`.
///
/// # Errors
/// The configured source's error; with `auto`, the PIT's (the last tried).
pub fn init() -> Result<ukplat::clock::ClockInfo, ukplat::clock::ClockError> {
    use ukconfig::platform::ClockSource as C;
    let ms = ukconfig::platform::CALIBRATION_MS as u64;
    let pm_timer = ukplat::boot_info().pm_timer;
    let try_source = |s: Source| match s {
        Source::Cpuid => hw::cpuid(),
        Source::Kvmclock => hw::kvmclock(),
        Source::PmTimer => hw::pm_timer(pm_timer, ms),
        Source::Pit => hw::pit(ms),
    };
    let order: &[Source] = match ukconfig::platform::CLOCK_SOURCE {
        C::Auto => &SOURCES,
        C::Cpuid => &[Source::Cpuid],
        C::Kvmclock => &[Source::Kvmclock],
        C::Pmtimer => &[Source::PmTimer],
        C::Pit => &[Source::Pit],
    };
    let mut last = CalibrationError::Unavailable(Source::Pit);
    for &source in order {
        match try_source(source) {
            Ok(hz) => {
                TSC_HZ.store(hz, Ordering::Relaxed);
                let index = SOURCES.iter().position(|&s| s == source).unwrap_or(0);
                SOURCE.store(index as u8 + 1, Ordering::Relaxed);
                return Ok(ukplat::clock::ClockInfo {
                    hz,
                    base: ukplat::boot_info().boot_tsc,
                    source: source.name(),
                });
            }
            Err(e) => last = e,
        }
    }
    Err(last.to_clock_error(SETTING))
}

/// The hardware: CPUID, the kvmclock MSR, the PM timer's and the PIT's
/// ports.
pub mod hw {
    use super::*;
    use ukarch::regs::{inb, inl, outb, rdmsr, wrmsr};

    /// CPUID's exact TSC rate (leaf 0x15 with the crystal frequency, or
    /// the hypervisor's leaf 0x40000010).
    pub fn cpuid() -> Result<u64, CalibrationError> {
        ukarch::tsc::frequency_hz()
            .ok_or(CalibrationError::Unavailable(Source::Cpuid))
            .and_then(|hz| plausible(Source::Cpuid, hz))
    }

    /// KVM's pvclock parameters for this CPU.
    #[repr(C, align(64))]
    struct PvclockPage {
        version: u32,
        pad0: u32,
        tsc_timestamp: u64,
        system_time: u64,
        tsc_to_system_mul: u32,
        tsc_shift: i8,
        flags: u8,
        pad: [u8; 2],
    }

    const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;

    /// The TSC rate from kvmclock: registers a pvclock page, reads the
    /// host's multiplier and shift, and unregisters it again (the clock
    /// itself is the TSC; kvmclock only tells its rate).
    pub fn kvmclock() -> Result<u64, CalibrationError> {
        if ukarch::cpu::features().kvm_features & ukarch::cpu::KVM_FEATURE_CLOCKSOURCE2 == 0 {
            return Err(CalibrationError::Unavailable(Source::Kvmclock));
        }
        static mut PAGE: PvclockPage = PvclockPage {
            version: 0,
            pad0: 0,
            tsc_timestamp: 0,
            system_time: 0,
            tsc_to_system_mul: 0,
            tsc_shift: 0,
            flags: 0,
            pad: [0; 2],
        };
        let page = core::ptr::addr_of_mut!(PAGE);
        // SAFETY: KVM_FEATURE_CLOCKSOURCE2 says the MSR exists; the page is
        // a 'static, 64-byte aligned, identity-mapped (physical = virtual)
        // buffer that only the hypervisor writes while registered; it is
        // unregistered before returning. Reads are volatile: the
        // hypervisor writes behind the compiler's back.
        let (mul, shift) = unsafe {
            wrmsr(MSR_KVM_SYSTEM_TIME_NEW, page as u64 | 1);
            let (mut mul, mut shift);
            loop {
                let v1 = core::ptr::addr_of!((*page).version).read_volatile();
                mul = core::ptr::addr_of!((*page).tsc_to_system_mul).read_volatile();
                shift = core::ptr::addr_of!((*page).tsc_shift).read_volatile();
                let v2 = core::ptr::addr_of!((*page).version).read_volatile();
                if v1 == v2 && v1.is_multiple_of(2) && mul != 0 {
                    break;
                }
                core::hint::spin_loop();
            }
            wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
            let _ = rdmsr(MSR_KVM_SYSTEM_TIME_NEW);
            (mul, shift)
        };
        plausible(Source::Kvmclock, pvclock_hz(mul, shift))
    }

    /// Counts TSC cycles while `elapsed` (fed successive counter readings)
    /// adds up to `target` reference ticks; returns (cycles, ticks).
    ///
    /// Each reading is bracketed by two TSC reads and stamped with their
    /// midpoint, which is exact to half the bracket. A host that
    /// deschedules the vCPU inside a bracket (TCG, an overcommitted host)
    /// widens it by the time it was away, and a millisecond lost at either
    /// end skews a 10 ms count by 10 %. So each end of the interval is the
    /// narrowest of [`END_READINGS`] consecutive readings; what happens in
    /// the middle does not matter, as long as the counter does not wrap
    /// unseen.
    fn count(mut read: impl FnMut() -> u32, elapsed: impl Fn(u32, u32) -> u32, target: u64) -> (u64, u64) {
        // (midpoint, bracket width, reference ticks since the first reading)
        let mut last = 0;
        let mut ticks = 0u64;
        let mut stamp = |first: bool| {
            let before = ukarch::tsc::read_ordered();
            let value = read();
            let after = ukarch::tsc::read_ordered();
            if !first {
                ticks += u64::from(elapsed(last, value));
            }
            last = value;
            (before / 2 + after / 2, after - before, ticks)
        };
        let narrowest = |a: (u64, u64, u64), b: (u64, u64, u64)| if b.1 < a.1 { b } else { a };
        let mut start = stamp(true);
        for _ in 1..END_READINGS {
            start = narrowest(start, stamp(false));
        }
        let mut now = start;
        while now.2 - start.2 < target {
            now = stamp(false);
        }
        let mut end = now;
        for _ in 1..END_READINGS {
            end = narrowest(end, stamp(false));
        }
        (end.0 - start.0, end.2 - start.2)
    }

    /// Readings at each end of a count, of which the narrowest bracket is
    /// kept.
    const END_READINGS: usize = 8;

    /// The TSC rate counted against the ACPI PM timer for `ms`.
    pub fn pm_timer(timer: Option<ukplat::PmTimer>, ms: u64) -> Result<u64, CalibrationError> {
        let timer = timer.ok_or(CalibrationError::Unavailable(Source::PmTimer))?;
        // SAFETY: the firmware's FADT names this port as the PM timer,
        // a read-only counter.
        let read = || unsafe { inl(timer.port) };
        let target = ukplat::PmTimer::HZ * ms / 1000;
        let (cycles, ticks) = count(read, |a, b| up_counter_elapsed(a, b, timer.bits), target);
        plausible(Source::PmTimer, rate(cycles, ticks, ukplat::PmTimer::HZ))
    }

    /// The PIT's input clock.
    pub const PIT_HZ: u64 = 1_193_182;
    /// Ticks of channel 0's free-running period.
    const PIT_PERIOD: u32 = 65536;
    const PIT_CHANNEL0: u16 = 0x40;
    const PIT_COMMAND: u16 = 0x43;

    /// Starts channel 0 as a free-running rate generator (mode 2, period
    /// 65536); false when no PIT answers.
    fn pit_start() -> bool {
        // SAFETY: ports 0x40 and 0x43 are the PIT's; nothing else uses it
        // (its IRQ 0 is masked at the PICs and the I/O APIC).
        unsafe {
            outb(PIT_COMMAND, 0x34); // channel 0, lo/hi byte, mode 2, binary
            outb(PIT_CHANNEL0, 0);
            outb(PIT_CHANNEL0, 0); // period 65536
        }
        // A missing PIT reads back all-ones; a running one counts down from
        // 65536, so its first reading is often 0xffff too (65535): it is
        // there when any of a few readings (each a microsecond or more of
        // port I/O) differs.
        (0..PRESENCE_READS).any(|_| pit_read() != 0xffff)
    }

    /// Readings [`pit_start`] takes before it concludes there is no PIT.
    const PRESENCE_READS: u32 = 64;

    /// Channel 0's count, latched.
    fn pit_read() -> u32 {
        // SAFETY: as in `pit_start`; latch then read low and high byte.
        unsafe {
            outb(PIT_COMMAND, 0x00);
            let lo = inb(PIT_CHANNEL0);
            let hi = inb(PIT_CHANNEL0);
            u32::from(u16::from_le_bytes([lo, hi]))
        }
    }

    /// Leaves channel 0 stopped (mode 0 without a count), so it raises no
    /// further IRQ 0.
    fn pit_stop() {
        // SAFETY: as in `pit_start`.
        unsafe { outb(PIT_COMMAND, 0x30) };
    }

    /// The TSC rate counted against PIT channel 0 for `ms`: channel 0 runs
    /// as a free-running rate generator and is read back with latch
    /// commands; afterwards it is left stopped.
    pub fn pit(ms: u64) -> Result<u64, CalibrationError> {
        if !pit_start() {
            return Err(CalibrationError::Unavailable(Source::Pit));
        }
        let target = PIT_HZ * ms / 1000;
        let (cycles, ticks) = count(pit_read, |a, b| down_counter_elapsed(a, b, PIT_PERIOD), target);
        pit_stop();
        plausible(Source::Pit, rate(cycles, ticks, PIT_HZ))
    }

    /// PIT ticks (at [`PIT_HZ`], a clock independent of the TSC) that pass
    /// while `f` runs: the first reading is latched before `f` starts and
    /// the last after it returns. The counter wraps every 65536 ticks
    /// (55 ms); the TSC, read around the same instants and converted with
    /// `tsc_hz`, only decides how many times it wrapped, so it takes a TSC
    /// rate off by more than half a PIT period to change the result.
    #[cfg(feature = "uktest")]
    pub fn pit_ticks_during(tsc_hz: u64, f: impl FnOnce()) -> Result<u64, CalibrationError> {
        if !pit_start() || tsc_hz == 0 {
            return Err(CalibrationError::Unavailable(Source::Pit));
        }
        let tsc0 = ukarch::tsc::read_ordered();
        let before = pit_read();
        f();
        let after = pit_read();
        let cycles = ukarch::tsc::read_ordered() - tsc0;
        pit_stop();
        let approx = (u128::from(cycles) * u128::from(PIT_HZ) / u128::from(tsc_hz)) as u64;
        Ok(unwrap_down_counter(before, after, PIT_PERIOD, approx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvclock_rates() {
        // 2.5 GHz: 0.4 ns per cycle = 0.4 * 2^32 = 1717986918.4 with shift 0.
        assert_eq!(pvclock_hz(1_717_986_918, 0) / 1000, 2_500_000);
        // The same rate expressed with shift 1 and half the multiplier.
        assert_eq!(pvclock_hz(858_993_459, 1) / 1000, 2_500_000);
        // A 1 GHz TSC with a negative shift: ns = (tsc >> 1) * 2^33 >> 32.
        assert_eq!(pvclock_hz(u32::MAX, -1) / 1_000_000, 2_000);
        assert_eq!(pvclock_hz(0, 0), 0);
    }

    #[test]
    fn counters_wrap() {
        assert_eq!(down_counter_elapsed(1000, 400, 65536), 600);
        assert_eq!(down_counter_elapsed(100, 65000, 65536), 636);
        assert_eq!(up_counter_elapsed(10, 30, 24), 20);
        assert_eq!(up_counter_elapsed(0xff_fff0, 0x10, 24), 0x20);
        assert_eq!(up_counter_elapsed(0xffff_fff0, 0x10, 32), 0x20);
    }

    #[test]
    fn a_down_counter_unwraps_by_the_approximate_count() {
        // Within one period: the approximation does not matter while it is
        // within half a period.
        assert_eq!(unwrap_down_counter(1000, 400, 65536, 600), 600);
        assert_eq!(unwrap_down_counter(1000, 400, 65536, 30_000), 600);
        assert_eq!(unwrap_down_counter(100, 65000, 65536, 0), 636);
        // Two whole periods and a bit, with the other clock 10 % off.
        assert_eq!(unwrap_down_counter(1000, 400, 65536, 2 * 65536 + 600 + 13_000), 2 * 65536 + 600);
        assert_eq!(unwrap_down_counter(1000, 400, 65536, 2 * 65536 + 600 - 13_000), 2 * 65536 + 600);
    }

    #[test]
    fn rates_and_plausibility() {
        assert_eq!(rate(2_600_000, 1193, 1_193_182), 2_600_396_647);
        assert_eq!(rate(5, 0, 1), 0);
        assert!(plausible(Source::Pit, 2_600_000_000).is_ok());
        assert_eq!(plausible(Source::Pit, 5), Err(CalibrationError::Implausible(Source::Pit, 5)));
        assert_eq!(
            CalibrationError::Unavailable(Source::PmTimer).to_string(),
            "the ACPI PM timer is not available on this machine"
        );
        assert_eq!(
            CalibrationError::Implausible(Source::Pit, 5)
                .to_clock_error("platform.clock_source = \"pit\"")
                .to_string(),
            "the PIT gave an implausible counter rate of 5 Hz (platform.clock_source = \"pit\")"
        );
    }
}
