//! The realtime clock (`CLOCK_REALTIME`): the time of day, as time since the
//! Unix epoch (1970-01-01 00:00:00 UTC).
//!
//! At boot the platform's real-time clock is read once
//! (`ukplat::clock::wall_time`: on kvm the CMOS RTC, which QEMU sets from
//! the host's clock in UTC, to the second), with the counter value it held
//! at; from then on the realtime clock is that reading plus the monotonic
//! clock's progress, so the two never drift apart and reading it costs what
//! [`crate::now`] costs. A machine without an RTC starts its realtime clock
//! at the epoch, as Linux does, and [`rtc_present`] says so. Nothing sets
//! the clock afterwards: there is no `settimeofday`, so an absolute
//! realtime deadline converts exactly to a monotonic one
//! ([`deadline_of_realtime`]).
//!
//! ```
//! // 2024-02-29 12:34:56 UTC.
//! let t = uktime::realtime::unix_seconds(2024, 2, 29, 12, 34, 56);
//! assert_eq!(t, 1_709_210_096);
//! ```

use crate::Instant;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
pub use ukplat::clock::unix_seconds;

/// Realtime at monotonic time zero, in nanoseconds since the epoch.
static OFFSET_NS: AtomicU64 = AtomicU64::new(0);
static RTC_PRESENT: AtomicBool = AtomicBool::new(false);

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

/// Reads the platform's real-time clock and sets the realtime clock from
/// it (at the epoch when there is none).
#[cfg(target_os = "none")]
pub(crate) fn init() {
    match ukplat::clock::wall_time() {
        Some(wall) => {
            set_realtime_at(wall.since_epoch, crate::instant_of_counter(wall.counter));
            RTC_PRESENT.store(true, Ordering::Release);
        }
        None => {
            let _ = core::fmt::Write::write_str(
                &mut ukplat::console::Writer,
                "uktime: the platform has no real-time clock; the realtime clock starts at the epoch\n",
            );
            set_realtime_at(Duration::ZERO, crate::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_deadlines_convert_to_monotonic() {
        set_realtime_at(Duration::from_secs(1_000), Instant::from_nanos(500));
        assert_eq!(deadline_of_realtime(Duration::from_secs(1_000)), Instant::from_nanos(500));
        assert_eq!(deadline_of_realtime(Duration::from_secs(1_001)), Instant::from_nanos(1_000_000_500));
        assert_eq!(deadline_of_realtime(Duration::from_secs(1)), Instant::ZERO);
    }
}
