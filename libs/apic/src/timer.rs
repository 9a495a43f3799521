//! The local APIC timer of the calling CPU.
//!
//! Three modes, chosen per arming:
//!
//! * **one-shot**: counts `initial` ticks of the APIC timer clock (the bus
//!   clock divided by [`Divide`]) down to zero, interrupts once;
//! * **periodic**: the same, reloading `initial` every time;
//! * **TSC-deadline**: interrupts when the TSC reaches a value written to
//!   `IA32_TSC_DEADLINE` (CPUID.1:ECX[24]; [`has_tsc_deadline`]). No
//!   calibration of the APIC clock is needed, and re-arming is one MSR
//!   write.
//!
//! The APIC clock rate is not architecturally known: the kvm platform
//! measures it against the calibrated TSC (`platforms/kvm/src/timer.rs`,
//! behind `ukplat::timer::init`; [`measure_ticks`] helps).
//!
//! Every function acts on the calling CPU's timer; callers keep interrupts
//! or preemption disabled so the CPU does not change under them.

use crate::local::{self, LVT_MASKED, reg};
use ukarch::regs::{MSR_TSC_DEADLINE, wrmsr};

/// Timer clock divider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Divide {
    /// Bus clock / 1.
    By1,
    /// Bus clock / 2.
    By2,
    /// Bus clock / 16.
    By16,
    /// Bus clock / 128.
    By128,
}

impl Divide {
    /// The divide configuration register value.
    pub const fn register(self) -> u32 {
        match self {
            Self::By1 => 0b1011,
            Self::By2 => 0b0000,
            Self::By16 => 0b0011,
            Self::By128 => 0b1010,
        }
    }

    /// The divisor.
    pub const fn divisor(self) -> u32 {
        match self {
            Self::By1 => 1,
            Self::By2 => 2,
            Self::By16 => 16,
            Self::By128 => 128,
        }
    }
}

const MODE_ONESHOT: u32 = 0b00 << 17;
const MODE_PERIODIC: u32 = 0b01 << 17;
const MODE_TSC_DEADLINE: u32 = 0b10 << 17;

/// Whether the CPU offers TSC-deadline mode.
pub fn has_tsc_deadline() -> bool {
    ukarch::cpu::features().tsc_deadline
}

/// Arms a one-shot countdown of `initial` ticks (of the bus clock divided by
/// `divide`) that raises `vector` once. `initial` 0 stops the timer.
pub fn oneshot(vector: u8, initial: u32, divide: Divide) {
    local::write(reg::LVT_TIMER, MODE_ONESHOT | u32::from(vector));
    local::write(reg::TIMER_DIVIDE, divide.register());
    local::write(reg::TIMER_INITIAL, initial);
}

/// Arms a periodic timer raising `vector` every `initial` ticks.
pub fn periodic(vector: u8, initial: u32, divide: Divide) {
    local::write(reg::LVT_TIMER, MODE_PERIODIC | u32::from(vector));
    local::write(reg::TIMER_DIVIDE, divide.register());
    local::write(reg::TIMER_INITIAL, initial);
}

/// Switches the timer into TSC-deadline mode with `vector`; nothing fires
/// until [`set_tsc_deadline`].
///
/// # Panics
/// When the CPU lacks TSC-deadline mode (check [`has_tsc_deadline`]).
pub fn enter_tsc_deadline_mode(vector: u8) {
    assert!(has_tsc_deadline(), "apic: TSC-deadline timer mode is not offered by this CPU");
    local::write(reg::LVT_TIMER, MODE_TSC_DEADLINE | u32::from(vector));
    // The SDM asks for a serialising step between the LVT write and the
    // first deadline write so the new mode is in effect.
    ukarch::barrier::full();
}

/// Sets the TSC value at which the timer fires (0 disarms). The timer must
/// be in TSC-deadline mode ([`enter_tsc_deadline_mode`]).
pub fn set_tsc_deadline(tsc: u64) {
    // SAFETY: IA32_TSC_DEADLINE exists when TSC-deadline mode is offered,
    // which `enter_tsc_deadline_mode` checked; it only arms the timer.
    unsafe { wrmsr(MSR_TSC_DEADLINE, tsc) };
}

/// Stops the timer (masks it and clears the count and any deadline).
pub fn stop() {
    local::write(reg::LVT_TIMER, LVT_MASKED);
    local::write(reg::TIMER_INITIAL, 0);
}

/// The initial count of a one-shot or periodic countdown: the period, in
/// timer ticks at the divide setting, of a periodic one.
pub fn initial_count() -> u32 {
    local::read(reg::TIMER_INITIAL)
}

/// The current count of a one-shot or periodic countdown.
pub fn current_count() -> u32 {
    local::read(reg::TIMER_CURRENT)
}

/// Counts APIC timer ticks (at `divide`) during `wait`, which should busy-
/// wait a known time: starts a masked one-shot countdown from `u32::MAX`,
/// runs `wait`, reads how far it got, and stops the timer. Returns the ticks
/// elapsed (saturating at `u32::MAX`).
pub fn measure_ticks(divide: Divide, wait: impl FnOnce()) -> u32 {
    local::write(reg::LVT_TIMER, LVT_MASKED | MODE_ONESHOT);
    local::write(reg::TIMER_DIVIDE, divide.register());
    local::write(reg::TIMER_INITIAL, u32::MAX);
    wait();
    let left = current_count();
    stop();
    u32::MAX - left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divide_register_values_match_the_sdm() {
        // SDM vol. 3, figure 11-10: bits 0, 1, 3.
        assert_eq!(Divide::By1.register(), 0xb);
        assert_eq!(Divide::By2.register(), 0x0);
        assert_eq!(Divide::By16.register(), 0x3);
        assert_eq!(Divide::By128.register(), 0xa);
        assert_eq!(Divide::By16.divisor(), 16);
    }
}
