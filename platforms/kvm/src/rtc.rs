//! The time of day for `ukplat::clock::wall_time` on kvm: the CMOS
//! real-time clock of the PC (the MC146818 at ports 0x70/0x71, which QEMU
//! sets from the host's clock in UTC), read to the second. A machine
//! without one (a missing chip reads all ones) has no time of day.

use core::time::Duration;

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

impl CmosTime {
    /// Time since the Unix epoch (zero for a date before it).
    pub const fn since_epoch(self) -> Duration {
        let secs =
            ukplat::clock::unix_seconds(self.year, self.month, self.day, self.hour, self.minute, self.second);
        Duration::from_secs(if secs > 0 { secs as u64 } else { 0 })
    }
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

/// Reads the CMOS RTC (until two readings agree outside an update cycle):
/// the time of day and the TSC value right after the reading.
pub fn read() -> Option<ukplat::clock::WallTime> {
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
    let counter = ukarch::tsc::read_ordered();
    let time = decode_cmos(last, read(0x0b)).filter(|_| agreed)?;
    Some(ukplat::clock::WallTime { since_epoch: time.since_epoch(), counter, source: "CMOS RTC" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmos_bcd_and_binary() {
        // 2026-12-06 16:05:09 in BCD, 24-hour mode, century 20.
        let t = decode_cmos([0x09, 0x05, 0x16, 0x06, 0x12, 0x26, 0x20], 0x02).unwrap();
        assert_eq!(t, CmosTime { year: 2026, month: 12, day: 6, hour: 16, minute: 5, second: 9 });
        assert_eq!(t.since_epoch(), Duration::from_secs(1_796_572_800 + 5 * 60 + 9));
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
}
