//! The realtime clock (`CLOCK_REALTIME`): the time of day, as time since the
//! Unix epoch (1970-01-01 00:00:00 UTC).
//!
//! At boot the CMOS real-time clock of the PC (the MC146818 at ports
//! 0x70/0x71, which QEMU sets from the host's clock in UTC) is read once,
//! to the second; from then on the realtime clock is that reading plus the
//! monotonic clock's progress, so the two never drift apart and reading it
//! costs what [`crate::now`] costs. A machine without an RTC (a missing
//! chip reads all ones) starts its realtime clock at the epoch, as Linux
//! does, and [`rtc_present`] says so. Nothing sets the clock afterwards:
//! there is no `settimeofday`, so an absolute realtime deadline converts
//! exactly to a monotonic one ([`deadline_of_realtime`]).
//!
//! ```
//! // 2024-02-29 12:34:56 UTC.
//! let t = uktime::realtime::unix_seconds(2024, 2, 29, 12, 34, 56);
//! assert_eq!(t, 1_709_210_096);
//! ```

use crate::Instant;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

/// Realtime at monotonic time zero, in nanoseconds since the epoch.
static OFFSET_NS: AtomicU64 = AtomicU64::new(0);
static RTC_PRESENT: AtomicBool = AtomicBool::new(false);

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

/// Seconds since the epoch of a UTC date and time.
pub const fn unix_seconds(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> i64 {
    days_from_civil(year, month, day) * 86_400 + hour as i64 * 3600 + minute as i64 * 60 + second as i64
}

/// Sets the realtime clock: `since_epoch` is the time of day at monotonic
/// instant `at`.
pub fn set_realtime_at(since_epoch: Duration, at: Instant) {
    let ns = (since_epoch.as_nanos() as u64).saturating_sub(at.as_nanos());
    OFFSET_NS.store(ns, Ordering::Release);
}

/// The time since the epoch now.
pub fn realtime() -> Duration {
    Duration::from_nanos(OFFSET_NS.load(Ordering::Acquire).saturating_add(crate::now().as_nanos()))
}

/// The monotonic instant at which the realtime clock reads `since_epoch`
/// (`Instant::ZERO` for a time before boot).
pub fn deadline_of_realtime(since_epoch: Duration) -> Instant {
    let ns = since_epoch.as_nanos().min(u128::from(u64::MAX)) as u64;
    Instant::from_nanos(ns.saturating_sub(OFFSET_NS.load(Ordering::Acquire)))
}

/// Whether an RTC was read at boot (false: the realtime clock started at
/// the epoch).
pub fn rtc_present() -> bool {
    RTC_PRESENT.load(Ordering::Acquire)
}

/// A reading of the CMOS clock's registers, already in binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmosTime {
    /// Full year (the century register when it is plausible, else 20xx).
    pub year: i64,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 0..=23.
    pub hour: u32,
    /// 0..=59.
    pub minute: u32,
    /// 0..=59.
    pub second: u32,
}

/// Decodes raw CMOS registers (seconds, minutes, hours, day, month, year,
/// century, status B) into a time, or None when they are not a valid date
/// (a missing RTC reads all ones).
pub fn decode_cmos(raw: [u8; 7], status_b: u8) -> Option<CmosTime> {
    let binary = status_b & 0x04 != 0;
    let hour12 = status_b & 0x02 == 0;
    let bcd = |v: u8| -> Option<u32> {
        if binary {
            return Some(u32::from(v));
        }
        let (hi, lo) = (v >> 4, v & 0x0f);
        (hi <= 9 && lo <= 9).then_some(u32::from(hi) * 10 + u32::from(lo))
    };
    let [sec, min, hour, day, month, year, century] = raw;
    let pm = hour12 && hour & 0x80 != 0;
    let mut hour = bcd(hour & 0x7f)?;
    if hour12 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let year = bcd(year)?;
    let century = bcd(century).filter(|c| (19..=21).contains(c)).unwrap_or(20);
    let t = CmosTime {
        year: i64::from(century * 100 + year),
        month: bcd(month)?,
        day: bcd(day)?,
        hour,
        minute: bcd(min)?,
        second: bcd(sec)?,
    };
    let valid = (1..=12).contains(&t.month)
        && (1..=31).contains(&t.day)
        && t.hour < 24
        && t.minute < 60
        && t.second < 60;
    valid.then_some(t)
}

/// Reads the CMOS RTC (twice, until two readings agree outside an update
/// cycle) and sets the realtime clock from it.
#[cfg(target_os = "none")]
pub(crate) fn init() {
    use ukarch::regs::{inb, outb};
    let read = |reg: u8| -> u8 {
        // SAFETY: ports 0x70/0x71 are the CMOS index and data ports; bit 7
        // of the index (NMI disable) is left clear as the firmware had it;
        // nothing else uses the CMOS after boot.
        unsafe {
            outb(0x70, reg);
            inb(0x71)
        }
    };
    let snapshot = || {
        // Wait out an update in progress (status A bit 7), at most ~2 ms.
        for _ in 0..10_000 {
            if read(0x0a) & 0x80 == 0 {
                break;
            }
        }
        [read(0x00), read(0x02), read(0x04), read(0x07), read(0x08), read(0x09), read(0x32)]
    };
    let mut last = snapshot();
    let mut agreed = false;
    for _ in 0..5 {
        let next = snapshot();
        if next == last {
            agreed = true;
            break;
        }
        last = next;
    }
    let at = crate::now();
    match decode_cmos(last, read(0x0b)).filter(|_| agreed) {
        Some(t) => {
            let secs = unix_seconds(t.year, t.month, t.day, t.hour, t.minute, t.second);
            set_realtime_at(Duration::from_secs(secs.max(0) as u64), at);
            RTC_PRESENT.store(true, Ordering::Release);
        }
        None => {
            let _ = core::fmt::Write::write_str(
                &mut ukplat::console::Writer,
                "uktime: no CMOS RTC answers; the realtime clock starts at the epoch\n",
            );
            set_realtime_at(Duration::ZERO, at);
        }
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
    fn cmos_bcd_and_binary() {
        // 2026-12-06 16:05:09 in BCD, 24-hour mode, century 20.
        let t = decode_cmos([0x09, 0x05, 0x16, 0x06, 0x12, 0x26, 0x20], 0x02).unwrap();
        assert_eq!(t, CmosTime { year: 2026, month: 12, day: 6, hour: 16, minute: 5, second: 9 });
        // The same in binary, 12-hour mode (4 PM).
        let t = decode_cmos([9, 5, 0x80 | 4, 6, 12, 26, 20], 0x04).unwrap();
        assert_eq!(t.hour, 16);
        // 12 AM is hour 0.
        assert_eq!(decode_cmos([0, 0, 12, 1, 1, 0, 20], 0x04).unwrap().hour, 0);
        // A missing RTC reads all ones.
        assert_eq!(decode_cmos([0xff; 7], 0xff), None);
        // No century register: 20xx.
        assert_eq!(decode_cmos([0, 0, 0, 1, 1, 0x30, 0x00], 0x02).unwrap().year, 2030);
    }

    #[test]
    fn realtime_deadlines_convert_to_monotonic() {
        set_realtime_at(Duration::from_secs(1_000), Instant::from_nanos(500));
        assert_eq!(deadline_of_realtime(Duration::from_secs(1_000)), Instant::from_nanos(500));
        assert_eq!(deadline_of_realtime(Duration::from_secs(1_001)), Instant::from_nanos(1_000_000_500));
        assert_eq!(deadline_of_realtime(Duration::from_secs(1)), Instant::ZERO);
    }
}
