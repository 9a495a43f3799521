//! The per-CPU timer: one event per CPU at a deadline on the clock counter
//! ([`crate::clock`]), or a periodic tick, raised as interrupt
//! [`vector::TIMER`](crate::irq::vector::TIMER) on the CPU that armed it.
//!
//! The platform owns the hardware and its modes; the time library
//! (`uktime`) owns the per-CPU deadline in nanoseconds, the handler and the
//! interrupt on `vector::TIMER` (which ends with
//! [`irq::eoi`](crate::irq::eoi)). On kvm the timer is the local APIC
//! timer, in TSC-deadline mode (one MSR write per arming, never early) or
//! as a one-shot countdown (`platform.event_timer`); a hosted platform can
//! use a POSIX timer per CPU thread, delivering a signal.
//!
//! An event may come **early** (a countdown too short for the deadline, a
//! rounding error): the interrupt handler compares the counter with the
//! deadline and arms again until it is due. It never comes much later than
//! the deadline. [`arm`], [`periodic`] and [`stop`] act on the calling
//! CPU's timer and are called with interrupts disabled.
//!
//! ```no_run
//! let info = ukplat::timer::init().unwrap();
//! let _irq = ukplat::irq::IrqGuard::new();
//! ukplat::timer::arm(ukplat::clock::read() + 1_000_000);
//! let period = ukplat::timer::periodic(100).unwrap();
//! assert_eq!(period.tick_hz, info.tick_hz);
//! ukplat::timer::stop();
//! ```

use core::fmt;

/// What the platform's timer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerInfo {
    /// The hardware and mode, for reports (`"TSC-deadline"`, ...).
    pub name: &'static str,
    /// The rate the timer counts periods (and one-shot countdowns) in, Hz.
    pub tick_hz: u64,
}

/// A periodic tick's period, as the hardware was programmed: `ticks`
/// ticks of `tick_hz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    /// Timer ticks in one period.
    pub ticks: u64,
    /// Timer ticks per second.
    pub tick_hz: u64,
}

impl Period {
    /// The period in nanoseconds (rounded down).
    pub const fn as_nanos(self) -> u64 {
        if self.tick_hz == 0 {
            return 0;
        }
        (self.ticks as u128 * 1_000_000_000 / self.tick_hz as u128) as u64
    }

    /// Whether the period is `1 / hz` to within one timer tick.
    ///
    /// ```
    /// use ukplat::timer::Period;
    /// assert!(Period { ticks: 10_000_000, tick_hz: 1_000_000_000 }.is_within_a_tick_of(100));
    /// assert!(Period { ticks: 33_333, tick_hz: 100_000 }.is_within_a_tick_of(3));
    /// assert!(!Period { ticks: 10_000_002, tick_hz: 1_000_000_000 }.is_within_a_tick_of(100));
    /// ```
    pub const fn is_within_a_tick_of(self, hz: u32) -> bool {
        // |ticks / tick_hz - 1 / hz| <= 1 / tick_hz, in integers.
        let hz = hz as u128;
        hz != 0 && (self.ticks as u128 * hz).abs_diff(self.tick_hz as u128) <= hz
    }
}

/// Why the timer cannot do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerError {
    /// The configured timer is not on this machine.
    Unavailable {
        /// The timer (`"TSC-deadline timer"`, ...).
        timer: &'static str,
        /// Why, and what to configure instead.
        why: &'static str,
    },
    /// [`init`] ran before [`crate::clock::init`], or an operation before
    /// [`init`].
    NotInitialised,
    /// A periodic rate of 0, or one whose period the timer cannot count
    /// (under one tick or over its counter).
    BadRate {
        /// The rate asked for.
        hz: u32,
        /// The timer's own rate.
        tick_hz: u64,
    },
}

impl fmt::Display for TimerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable { timer, why } => write!(f, "no {timer} on this machine: {why}"),
            Self::NotInitialised => f.write_str("the timer was used before its initialisation"),
            Self::BadRate { hz, tick_hz } => {
                write!(f, "a {hz} Hz tick is outside what the {tick_hz} Hz timer can count")
            }
        }
    }
}

/// Chooses the timer and measures its rate. Call it once, after
/// [`crate::clock::init`].
///
/// # Errors
/// The configured timer is missing, or the clock is not initialised.
#[inline(always)]
pub fn init() -> Result<TimerInfo, TimerError> {
    imp::init()
}

/// Arms this CPU's timer for counter value `deadline` (see the module
/// documentation: it may fire early), replacing any pending event or
/// periodic tick. A deadline already past fires at once. Interrupts
/// disabled.
#[inline(always)]
pub fn arm(deadline: u64) {
    imp::arm(deadline);
}

/// Starts this CPU's periodic tick at `hz`, replacing any pending event,
/// and returns the period the hardware was programmed with. Interrupts
/// disabled.
///
/// # Errors
/// [`TimerError::BadRate`] for 0 or a rate the timer cannot count.
#[inline(always)]
pub fn periodic(hz: u32) -> Result<Period, TimerError> {
    imp::periodic(hz)
}

/// Stops this CPU's timer. Interrupts disabled.
#[inline(always)]
pub fn stop() {
    imp::stop();
}

#[cfg(target_os = "none")]
mod imp {
    pub(super) use crate::platform::imports::{
        timer_arm as arm, timer_init as init, timer_periodic as periodic, timer_stop as stop,
    };
}

/// Host builds have no timer interrupts.
#[cfg(not(target_os = "none"))]
mod imp {
    use super::{Period, TimerError, TimerInfo};

    fn none(what: &str) -> ! {
        panic!("ukplat::timer::{what}: host builds have no platform and no timer interrupts");
    }

    pub(super) fn init() -> Result<TimerInfo, TimerError> {
        none("init")
    }

    pub(super) fn arm(_deadline: u64) {
        none("arm")
    }

    pub(super) fn periodic(_hz: u32) -> Result<Period, TimerError> {
        none("periodic")
    }

    pub(super) fn stop() {
        none("stop")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        let p = Period { ticks: 10_000_000, tick_hz: 1_000_000_000 };
        assert_eq!(p.as_nanos(), 10_000_000);
        assert!(p.is_within_a_tick_of(100));
        assert!(!p.is_within_a_tick_of(0));
        assert!(Period { ticks: 9_999_999, tick_hz: 1_000_000_000 }.is_within_a_tick_of(100));
        assert!(!Period { ticks: 9_999_998, tick_hz: 1_000_000_000 }.is_within_a_tick_of(100));
        assert_eq!(Period { ticks: 1, tick_hz: 0 }.as_nanos(), 0);
        assert_eq!(
            TimerError::BadRate { hz: 0, tick_hz: 5 }.to_string(),
            "a 0 Hz tick is outside what the 5 Hz timer can count"
        );
    }
}
