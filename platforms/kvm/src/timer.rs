//! The timer of `ukplat::timer` on kvm: each CPU's local APIC timer,
//! raising `ukplat::irq::vector::TIMER`.
//!
//! The mode (`platform.event_timer`) is chosen once, by [`init`]:
//!
//! * **TSC-deadline** (`auto` when CPUID offers it): arming is one write of
//!   the deadline's TSC value to `IA32_TSC_DEADLINE`, and the interrupt
//!   never comes early;
//! * **one-shot**: a countdown of the APIC timer, computed from the TSC
//!   cycles left and the APIC timer's rate, which [`init`] measures against
//!   the calibrated TSC. A deadline further away than the 32-bit counter
//!   reaches (or a rounding error) fires early; the time library arms
//!   again until it is due.
//!
//! A periodic tick always uses the APIC timer's periodic mode. Which mode
//! each CPU's LVT timer entry is in is kept per CPU, so that arming in
//! TSC-deadline mode writes the LVT only when the mode changes.

use apic::timer::{self as hw, Divide};
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use ukplat::irq::vector;
use ukplat::timer::{Period, TimerError, TimerInfo};

/// The mode chosen by [`init`].
const MODE_UNSET: u8 = 0;
const MODE_DEADLINE: u8 = 1;
const MODE_ONESHOT: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(MODE_UNSET);
/// APIC timer ticks per second at divide-by-1 (0 before [`init`]).
static TICK_HZ: AtomicU64 = AtomicU64::new(0);

/// What this CPU's LVT timer entry is programmed for.
const LVT_UNSET: u8 = 0;
const LVT_DEADLINE: u8 = 1;
const LVT_ONESHOT: u8 = 2;
const LVT_PERIODIC: u8 = 3;

ukplat::per_cpu! {
    /// Mode of this CPU's LVT timer entry.
    static LVT: AtomicU8 = AtomicU8::new(LVT_UNSET);
}

/// The names [`TimerInfo::name`] reports.
const DEADLINE_NAME: &str = "local APIC timer, TSC-deadline mode";
const ONESHOT_NAME: &str = "local APIC timer, one-shot mode";

/// APIC timer ticks in `cycles` TSC cycles (rounded up).
const fn ticks_of_cycles(cycles: u64, tick_hz: u64, tsc_hz: u64) -> u64 {
    if tsc_hz == 0 {
        return 0;
    }
    (cycles as u128 * tick_hz as u128).div_ceil(tsc_hz as u128) as u64
}

/// The periodic count for `hz`, when the 32-bit counter can hold it.
fn period_ticks(hz: u32, tick_hz: u64) -> Option<u32> {
    let ticks = if hz == 0 { 0 } else { tick_hz / u64::from(hz) };
    u32::try_from(ticks).ok().filter(|&t| t > 0)
}

/// Chooses the mode from `platform.event_timer` and CPUID, and measures
/// the APIC timer's rate against the TSC (on the calling CPU, the boot
/// CPU: every CPU's timer runs from the same bus clock).
///
/// # Errors
/// `event_timer = "tsc-deadline"` on a CPU without it; the TSC not
/// calibrated yet.
pub fn init() -> Result<TimerInfo, TimerError> {
    use ukconfig::platform::EventTimer;
    if crate::clock::tsc_hz() == 0 {
        return Err(TimerError::NotInitialised);
    }
    let deadline = hw::has_tsc_deadline();
    let mode = match ukconfig::platform::EVENT_TIMER {
        EventTimer::Auto if deadline => MODE_DEADLINE,
        EventTimer::Auto | EventTimer::Oneshot => MODE_ONESHOT,
        EventTimer::TscDeadline if deadline => MODE_DEADLINE,
        EventTimer::TscDeadline => {
            return Err(TimerError::Unavailable {
                timer: "TSC-deadline timer",
                why: "platform.event_timer = \"tsc-deadline\" but CPUID.1:ECX[24] = 0; \
                      use \"auto\" or \"oneshot\"",
            });
        }
    };
    let window_ns = (ukconfig::platform::CALIBRATION_MS as u64 / 2).max(1) * 1_000_000;
    let ticks = hw::measure_ticks(Divide::By1, || crate::clock::spin_ns(window_ns));
    let tick_hz = u64::from(ticks) * 1_000_000_000 / window_ns;
    TICK_HZ.store(tick_hz, Ordering::Relaxed);
    MODE.store(mode, Ordering::Relaxed);
    let name = if mode == MODE_DEADLINE { DEADLINE_NAME } else { ONESHOT_NAME };
    Ok(TimerInfo { name, tick_hz })
}

/// Arms this CPU's timer for TSC value `deadline` (interrupts disabled).
///
/// # Panics
/// Before [`init`].
pub fn arm(deadline: u64) {
    let lvt = LVT.get();
    match MODE.load(Ordering::Relaxed) {
        MODE_DEADLINE => {
            if lvt.load(Ordering::Relaxed) != LVT_DEADLINE {
                hw::enter_tsc_deadline_mode(vector::TIMER);
                lvt.store(LVT_DEADLINE, Ordering::Relaxed);
            }
            // 0 would disarm: a deadline of 0 is long past anyway.
            hw::set_tsc_deadline(deadline.max(1));
        }
        MODE_ONESHOT => {
            let left = deadline.saturating_sub(ukarch::tsc::read_ordered());
            let ticks = ticks_of_cycles(left, TICK_HZ.load(Ordering::Relaxed), crate::clock::tsc_hz());
            let ticks = u32::try_from(ticks).unwrap_or(u32::MAX).max(1);
            hw::oneshot(vector::TIMER, ticks, Divide::By1);
            lvt.store(LVT_ONESHOT, Ordering::Relaxed);
        }
        _ => panic!("kvm: ukplat::timer::arm before ukplat::timer::init"),
    }
}

/// Starts this CPU's periodic tick at `hz` (interrupts disabled) and
/// returns the period read back from the timer's initial-count register.
///
/// # Errors
/// [`TimerError::NotInitialised`] before [`init`];
/// [`TimerError::BadRate`] for 0 or a period under one APIC tick or over
/// what the 32-bit counter holds.
pub fn periodic(hz: u32) -> Result<Period, TimerError> {
    let tick_hz = TICK_HZ.load(Ordering::Relaxed);
    if tick_hz == 0 {
        return Err(TimerError::NotInitialised);
    }
    let ticks = period_ticks(hz, tick_hz).ok_or(TimerError::BadRate { hz, tick_hz })?;
    LVT.get().store(LVT_PERIODIC, Ordering::Relaxed);
    hw::periodic(vector::TIMER, ticks, Divide::By1);
    // What the hardware holds, not what was computed: the caller checks it.
    Ok(Period { ticks: u64::from(hw::initial_count()), tick_hz })
}

/// Stops this CPU's timer (interrupts disabled).
pub fn stop() {
    hw::stop();
    LVT.get().store(LVT_UNSET, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_round_up() {
        // A 1 GHz APIC timer and a 2.5 GHz TSC: 5 cycles are 2 ticks.
        assert_eq!(ticks_of_cycles(5, 1_000_000_000, 2_500_000_000), 2);
        assert_eq!(ticks_of_cycles(0, 1_000_000_000, 2_500_000_000), 0);
        assert_eq!(ticks_of_cycles(5, 1, 0), 0);
    }

    #[test]
    fn periodic_counts() {
        assert_eq!(period_ticks(100, 1_000_000_000), Some(10_000_000));
        assert_eq!(period_ticks(0, 1_000_000_000), None);
        assert_eq!(period_ticks(1_000, 100), None, "under one tick");
        assert_eq!(period_ticks(1, 5_000_000_000), None, "over the 32-bit counter");
    }
}
