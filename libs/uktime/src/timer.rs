//! Per-CPU timer events on the local APIC timer.
//!
//! Each CPU has at most one pending event: a one-shot deadline
//! ([`arm_at`], [`arm_after`]) or a periodic tick ([`start_periodic`]).
//! When it fires, the handler registered with [`set_handler`] runs on that
//! CPU, in interrupt context (interrupts disabled, no blocking), with the
//! current time. One handler serves every CPU: the scheduler's.
//!
//! Hardware: in TSC-deadline mode (option `event_timer`, `auto` when CPUID
//! offers it) arming is one MSR write of the deadline's TSC value and the
//! interrupt never comes early; in one-shot mode the countdown is computed
//! from the calibrated APIC timer rate, and a deadline further away than
//! the 32-bit counter reaches is re-armed on each interrupt until it is
//! due. Either way the handler never sees an event before its deadline.
//!
//! ```no_run
//! use core::time::Duration;
//! fn on_event(now: uktime::Instant) {
//!     // interrupt context: e.g. wake a thread, or preempt
//!     let _ = now;
//! }
//! uktime::timer::set_handler(on_event);
//! uktime::timer::arm_after(Duration::from_millis(10));
//! ```

use crate::Instant;
use apic::timer::{self as hw, Divide};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering};
use core::time::Duration;
use ukplat::irq::{self, TrapFrame, vector};

/// What a fired event calls: interrupt context, on the CPU that armed it.
pub type Handler = fn(now: Instant);

/// The hardware mode behind events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventMode {
    /// IA32_TSC_DEADLINE.
    TscDeadline,
    /// One-shot countdown of the APIC timer.
    OneShot,
}

/// No deadline armed.
const NONE: u64 = u64::MAX;
/// What this CPU's LVT timer is programmed for.
const LVT_UNSET: u8 = 0;
const LVT_DEADLINE: u8 = 1;
const LVT_ONESHOT: u8 = 2;
const LVT_PERIODIC: u8 = 3;

ukplat::per_cpu! {
    /// This CPU's pending deadline (ns), or NONE.
    static DEADLINE: AtomicU64 = AtomicU64::new(NONE);
    /// Mode of this CPU's LVT timer entry.
    static LVT: AtomicU8 = AtomicU8::new(LVT_UNSET);
    /// Events delivered on this CPU (handler calls).
    static FIRED: AtomicU64 = AtomicU64::new(0);
}

static HANDLER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
/// 1: TSC-deadline, 2: one-shot (0 before init).
static MODE: AtomicU8 = AtomicU8::new(0);

/// Registers the handler every CPU's events call (the last registration
/// wins).
pub fn set_handler(handler: Handler) {
    HANDLER.store(handler as *mut (), Ordering::Release);
}

#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "installed by the guest-only init"))]
fn handler() -> Option<Handler> {
    let raw = HANDLER.load(Ordering::Acquire);
    // SAFETY: only `set_handler` stores here, always a `Handler`; fn and
    // data pointers have the same size on x86_64.
    (!raw.is_null()).then(|| unsafe { core::mem::transmute::<*mut (), Handler>(raw) })
}

/// The hardware mode in use.
///
/// # Panics
/// Before the library's init ran.
pub fn mode() -> EventMode {
    match MODE.load(Ordering::Relaxed) {
        1 => EventMode::TscDeadline,
        2 => EventMode::OneShot,
        _ => panic!("uktime::timer used before uktime's init"),
    }
}

/// Decides the mode from the option and CPUID, and installs the interrupt
/// handler.
///
/// # Panics
/// When `event_timer = "tsc-deadline"` but the CPU lacks it.
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "installed by the guest-only init"))]
pub(crate) fn init() {
    use ukconfig::uktime::EventTimer;
    let deadline = hw::has_tsc_deadline();
    let mode = match ukconfig::uktime::EVENT_TIMER {
        EventTimer::Auto if deadline => EventMode::TscDeadline,
        EventTimer::Auto | EventTimer::Oneshot => EventMode::OneShot,
        EventTimer::TscDeadline if deadline => EventMode::TscDeadline,
        EventTimer::TscDeadline => panic!(
            "uktime: event_timer = \"tsc-deadline\" but this CPU has no TSC-deadline timer \
             (CPUID.1:ECX[24] = 0); use \"auto\" or \"oneshot\""
        ),
    };
    MODE.store(if mode == EventMode::TscDeadline { 1 } else { 2 }, Ordering::Relaxed);
    if let Err(e) = irq::register(vector::TIMER, on_interrupt) {
        panic!("uktime: cannot install the timer interrupt: {e}");
    }
}

/// Programs this CPU's hardware for `deadline` (interrupts disabled).
fn program(deadline: u64) {
    let lvt = LVT.get();
    match mode() {
        EventMode::TscDeadline => {
            if lvt.load(Ordering::Relaxed) != LVT_DEADLINE {
                hw::enter_tsc_deadline_mode(vector::TIMER);
                lvt.store(LVT_DEADLINE, Ordering::Relaxed);
            }
            hw::set_tsc_deadline(crate::tsc_of_instant(Instant::from_nanos(deadline)).max(1));
        }
        EventMode::OneShot => {
            let left = deadline.saturating_sub(crate::now().as_nanos());
            let ticks = (u128::from(left) * u128::from(crate::apic_timer_hz())).div_ceil(1_000_000_000);
            let ticks = u32::try_from(ticks).unwrap_or(u32::MAX).max(1);
            hw::oneshot(vector::TIMER, ticks, Divide::By1);
            lvt.store(LVT_ONESHOT, Ordering::Relaxed);
        }
    }
}

/// Arms this CPU's event for `deadline`, replacing any pending one (and
/// stopping a periodic tick). A deadline in the past fires at once.
pub fn arm_at(deadline: Instant) {
    let _irq = ukarch::irq::IrqGuard::new();
    let ns = deadline.as_nanos().min(NONE - 1);
    DEADLINE.get().store(ns, Ordering::Relaxed);
    program(ns);
}

/// Arms this CPU's event `d` from now.
pub fn arm_after(d: Duration) {
    arm_at(crate::now() + d);
}

/// Cancels this CPU's pending event or periodic tick.
pub fn disarm() {
    let _irq = ukarch::irq::IrqGuard::new();
    DEADLINE.get().store(NONE, Ordering::Relaxed);
    hw::stop();
    LVT.get().store(LVT_UNSET, Ordering::Relaxed);
}

/// This CPU's pending deadline, if any.
pub fn pending() -> Option<Instant> {
    let ns = DEADLINE.get().load(Ordering::Relaxed);
    (ns != NONE).then_some(Instant::from_nanos(ns))
}

/// Why a periodic tick cannot be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodicError {
    /// The rate is 0 or so high that the period is under one APIC tick.
    BadRate(u32),
}

impl core::fmt::Display for PeriodicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadRate(hz) => write!(
                f,
                "a {hz} Hz tick is outside what the {} Hz APIC timer can count",
                crate::apic_timer_hz()
            ),
        }
    }
}

/// Starts a periodic tick at `hz` on this CPU (the APIC timer's periodic
/// mode; replaces any one-shot event). Every tick calls the handler.
///
/// # Errors
/// [`PeriodicError::BadRate`] for 0 or a period below one APIC tick or
/// above what the 32-bit counter holds.
pub fn start_periodic(hz: u32) -> Result<(), PeriodicError> {
    let apic_hz = crate::apic_timer_hz();
    let period = if hz == 0 { 0 } else { apic_hz / u64::from(hz) };
    let period = u32::try_from(period).ok().filter(|&p| p > 0).ok_or(PeriodicError::BadRate(hz))?;
    let _irq = ukarch::irq::IrqGuard::new();
    DEADLINE.get().store(NONE, Ordering::Relaxed);
    LVT.get().store(LVT_PERIODIC, Ordering::Relaxed);
    hw::periodic(vector::TIMER, period, Divide::By1);
    Ok(())
}

/// Whether `ticks` periodic interrupts are a plausible delivery of
/// `periods` elapsed periods on a vCPU that the host may deschedule: never
/// more than the periods (5 % and one tick of phase), and at least 60 % of
/// them. The local APIC holds one pending interrupt per vector, so ticks
/// that fall due while the vCPU is off its host CPU merge: a loaded host
/// loses ticks (the build machines have lost up to a quarter for seconds),
/// it never adds any. Checks of the rate itself compare the programmed
/// period (`apic::timer::initial_count`) with `apic_timer_hz / hz`.
///
/// ```
/// use uktime::timer::plausible_periodic_delivery as ok;
/// assert!(ok(30, 30) && ok(23, 30) && ok(31, 30));
/// assert!(!ok(17, 30) && !ok(34, 30));
/// ```
pub fn plausible_periodic_delivery(ticks: u64, periods: u64) -> bool {
    ticks * 20 <= periods * 21 + 20 && ticks * 10 >= periods * 6
}

/// Handler calls on CPU `cpu` since boot.
pub fn fired_on(cpu: ukplat::cpu::CpuIndex) -> u64 {
    FIRED.get_for(cpu).load(Ordering::Relaxed)
}

#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "installed by the guest-only init"))]
fn on_interrupt(_frame: &mut TrapFrame) {
    irq::eoi();
    // Compare in TSC cycles: the deadline's TSC value is what the hardware
    // was armed with, and a round trip through nanoseconds could fall a
    // nanosecond short of it.
    let tsc = ukarch::tsc::read_ordered();
    let now = crate::instant_of_tsc(tsc);
    let fired_at = if LVT.get().load(Ordering::Relaxed) == LVT_PERIODIC {
        Some(now)
    } else {
        let deadline = DEADLINE.get();
        match deadline.load(Ordering::Relaxed) {
            // Disarmed after the interrupt was raised.
            NONE => None,
            due if tsc >= crate::tsc_of_instant(Instant::from_nanos(due)) => {
                deadline.store(NONE, Ordering::Relaxed);
                Some(now.max(Instant::from_nanos(due)))
            }
            // A one-shot countdown capped at u32::MAX ticks, or one that
            // ended a rounding error early: go on.
            not_yet => {
                program(not_yet);
                None
            }
        }
    };
    if let Some(now) = fired_at {
        FIRED.get().fetch_add(1, Ordering::Relaxed);
        if let Some(handler) = handler() {
            handler(now);
        }
    }
}
