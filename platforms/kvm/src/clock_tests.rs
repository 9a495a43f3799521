//! In-guest tests of the clock's calibration: the source `auto` picks on
//! this machine, and the calibrated TSC rate against the PIT, a clock
//! independent of the TSC. They need the clock calibrated, which the time
//! library's init asks for: in an image without `uktime` they skip.

use crate::clock::{self, Source, hw};
use core::time::Duration;
use uktest::{OrFail, TestResult, ut_assert, ut_assert_eq, ut_fail, ut_skip};

/// The calibrated TSC rate, or a skip when nothing asked for it.
fn calibrated_hz() -> Result<u64, uktest::Stop> {
    match clock::tsc_hz() {
        0 => ut_skip!("the clock was not calibrated: this image has no time library (uktime)"),
        hz => Ok(hz),
    }
}

fn source_matches_the_machine() -> TestResult {
    let hz = calibrated_hz()?;
    let source = clock::source();
    ut_assert!(source.is_some(), "calibrated at {} Hz without a source", hz);
    ut_assert!(clock::plausible(source.unwrap(), hz).is_ok(), "TSC rate {} Hz", hz);
    // With `auto`, what the machine offers decides: KVM has kvmclock, TCG
    // has none (its hypervisor leaf is not KVM's).
    if ukconfig::platform::CLOCK_SOURCE == ukconfig::platform::ClockSource::Auto && hw::cpuid().is_err() {
        let expected = match ukarch::cpu::hypervisor() {
            ukarch::cpu::Hypervisor::Kvm => Source::Kvmclock,
            _ if ukplat::boot_info().pm_timer.is_some() => Source::PmTimer,
            _ => Source::Pit,
        };
        ut_assert_eq!(source, Some(expected));
    }
    Ok(())
}
uktest::test_case!(source_matches_the_machine);

/// The PIT, counted directly, must agree with the calibrated rate. When
/// the clock was calibrated from the PIT itself this checks that the
/// calibration is repeatable; otherwise it is an independent check of
/// kvmclock's or the PM timer's answer.
fn clock_agrees_with_the_pit() -> TestResult {
    let ours = calibrated_hz()?;
    // The closest of three 20 ms counts: a vCPU the host deschedules
    // between reading the TSC and latching the PIT skews one count (a
    // millisecond is 5 % of 20 ms), not three.
    let mut counts = [0u64; 3];
    for count in &mut counts {
        let reference = hw::pit(20);
        let Ok(pit_hz) = reference else {
            return Err(uktest::Stop::failure(format_args!("no PIT to compare with: {reference:?}")));
        };
        *count = pit_hz;
    }
    let diff = counts.iter().map(|&pit_hz| pit_hz.abs_diff(ours)).min().unwrap_or(u64::MAX);
    // 1 %: far above the error of a 20 ms count (a few I/O exits), far
    // below any real miscalibration.
    ut_assert!(diff * 100 <= ours, "calibrated {} Hz, the PIT says {:?} Hz", ours, counts);
    Ok(())
}
uktest::test_case!(clock_agrees_with_the_pit);

/// A spin for `d` by the calibrated TSC ([`clock::spin_ns`], the same
/// arithmetic as the time library's busy-wait) lasts at least `d` by the
/// PIT (less 1 % for the calibration, which `clock_agrees_with_the_pit`
/// bounds, and 2 ticks for latching the counter), and not absurdly longer:
/// at most 2·d + 5 ms in the best of three tries (the host may deschedule
/// the vCPU during one).
fn spins_last_as_long_as_asked_by_the_pit() -> TestResult {
    let hz = calibrated_hz()?;
    let tick_ns = |ticks: u64| ticks * 1_000_000_000 / hw::PIT_HZ;
    for us in [50, 2_000, 20_000] {
        let d = Duration::from_micros(us);
        let want = hw::PIT_HZ * us / 1_000_000;
        let at_least = (want - want / 100).saturating_sub(2);
        let at_most = 2 * want + hw::PIT_HZ * 5 / 1000;
        let mut seen = [0u64; 3];
        let mut plausible = false;
        for ticks in &mut seen {
            *ticks = hw::pit_ticks_during(hz, || clock::spin_ns(d.as_nanos() as u64)).or_fail()?;
            if *ticks < at_least {
                ut_fail!(
                    "a spin of {:?} lasted {} PIT ticks ({} ns), under {}",
                    d,
                    *ticks,
                    tick_ns(*ticks),
                    at_least
                );
            }
            if *ticks <= at_most {
                plausible = true;
                break;
            }
        }
        if !plausible {
            ut_fail!("a spin of {:?} lasted {:?} PIT ticks, over {} each time", d, seen, at_most);
        }
    }
    Ok(())
}
uktest::test_case!(spins_last_as_long_as_asked_by_the_pit);
