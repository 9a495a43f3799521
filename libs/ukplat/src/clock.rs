//! The platform's clock: a free-running counter that every CPU reads alike,
//! its rate, and the time of day at one of its values.
//!
//! The platform owns the hardware and how its rate is found; the time
//! library (`uktime`) owns everything built on top: nanoseconds, busy-waits,
//! the realtime clock. On kvm the counter is the TSC, calibrated by the
//! platform (`platform.clock_source`: CPUID, kvmclock, the ACPI PM timer or
//! the PIT), and the time of day comes from the CMOS RTC; a hosted platform
//! can count `rdtsc` calibrated against `clock_gettime`, or
//! `clock_gettime` itself at 1 GHz.
//!
//! [`init`] calibrates: it is called once, by the time library's init, so
//! an image without one never waits for a calibration.
//!
//! ```
//! // Host builds count the host's monotonic nanoseconds.
//! let info = ukplat::clock::init().unwrap();
//! assert_eq!(info.hz, 1_000_000_000);
//! let a = ukplat::clock::read_ordered();
//! assert!(ukplat::clock::read() >= a);
//! assert_eq!(ukplat::clock::unix_seconds(2024, 2, 29, 12, 34, 56), 1_709_210_096);
//! ```

use core::fmt;
use core::time::Duration;

/// What the platform's clock is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockInfo {
    /// Counter ticks per second.
    pub hz: u64,
    /// The counter at the image's first instruction: the monotonic
    /// clock's zero.
    pub base: u64,
    /// Where the rate came from, for reports (`"kvmclock"`, `"PIT"`, ...).
    pub source: &'static str,
}

/// Why the platform could not find its counter's rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockError {
    /// The source is not on this machine.
    Unavailable {
        /// The source (`"ACPI PM timer"`, ...).
        source: &'static str,
        /// The configuration that chose it (`platform.clock_source = "pit"`),
        /// or empty.
        setting: &'static str,
    },
    /// The source gave an implausible rate.
    Implausible {
        /// The source.
        source: &'static str,
        /// The rate it gave.
        hz: u64,
        /// The configuration that chose it, or empty.
        setting: &'static str,
    },
}

impl fmt::Display for ClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let setting = match self {
            Self::Unavailable { source, setting } => {
                write!(f, "the {source} is not available on this machine")?;
                setting
            }
            Self::Implausible { source, hz, setting } => {
                write!(f, "the {source} gave an implausible counter rate of {hz} Hz")?;
                setting
            }
        };
        if setting.is_empty() { Ok(()) } else { write!(f, " ({setting})") }
    }
}

/// The time of day at one value of the counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallTime {
    /// Time since the Unix epoch (1970-01-01 00:00:00 UTC).
    pub since_epoch: Duration,
    /// The counter's value when it held.
    pub counter: u64,
    /// Where it came from, for reports (`"CMOS RTC"`, ...).
    pub source: &'static str,
}

/// Finds the counter's rate (see the module documentation). Call it once.
///
/// # Errors
/// The platform's: the configured source is missing or gave a wrong rate.
#[inline(always)]
pub fn init() -> Result<ClockInfo, ClockError> {
    imp::init()
}

/// The counter, not ordered against surrounding instructions (the cheapest
/// read, for polling).
#[inline(always)]
pub fn read() -> u64 {
    imp::read()
}

/// The counter, read after every earlier instruction completed (for the
/// end of a measured interval, and for timestamps).
#[inline(always)]
pub fn read_ordered() -> u64 {
    imp::read_ordered()
}

/// The time of day from the machine's real-time clock, with the counter
/// value it held at; `None` when there is none.
#[inline(always)]
pub fn wall_time() -> Option<WallTime> {
    imp::wall_time()
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Shift the year to start in March, so that the leap day is last.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of a UTC date and time (for platforms whose
/// real-time clock counts in calendar fields).
pub const fn unix_seconds(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> i64 {
    days_from_civil(year, month, day) * 86_400 + hour as i64 * 3600 + minute as i64 * 60 + second as i64
}

#[cfg(target_os = "none")]
mod imp {
    pub(super) use crate::platform::imports::{
        clock_init as init, clock_read as read, clock_read_ordered as read_ordered,
        clock_wall_time as wall_time,
    };
}

/// Host builds (unit tests, loom models): the counter is the host's
/// monotonic clock in nanoseconds since its first reading, the time of day
/// the host's.
#[cfg(not(target_os = "none"))]
mod imp {
    use super::{ClockError, ClockInfo, WallTime};

    extern crate std;

    fn start() -> &'static std::time::Instant {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now)
    }

    pub(super) fn init() -> Result<ClockInfo, ClockError> {
        start();
        Ok(ClockInfo { hz: 1_000_000_000, base: 0, source: "host monotonic clock" })
    }

    pub(super) fn read() -> u64 {
        start().elapsed().as_nanos() as u64
    }

    pub(super) fn read_ordered() -> u64 {
        read()
    }

    pub(super) fn wall_time() -> Option<WallTime> {
        let counter = read();
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(WallTime { since_epoch, counter, source: "host clock" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(unix_seconds(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(unix_seconds(2000, 3, 1, 0, 0, 0), 951_868_800);
        assert_eq!(unix_seconds(2026, 12, 6, 16, 0, 0), 1_796_572_800);
        assert_eq!(unix_seconds(1969, 12, 31, 23, 59, 59), -1);
    }

    #[test]
    fn errors_name_the_setting() {
        let e = ClockError::Unavailable { source: "PIT", setting: "platform.clock_source = \"pit\"" };
        assert_eq!(
            e.to_string(),
            "the PIT is not available on this machine (platform.clock_source = \"pit\")"
        );
        let e = ClockError::Implausible { source: "PIT", hz: 5, setting: "" };
        assert_eq!(e.to_string(), "the PIT gave an implausible counter rate of 5 Hz");
    }

    #[test]
    fn the_host_counter_advances() {
        let a = read_ordered();
        std::thread::sleep(Duration::from_millis(1));
        assert!(read() >= a + 1_000_000);
        assert!(wall_time().unwrap().since_epoch.as_secs() > 1_700_000_000);
    }
}
