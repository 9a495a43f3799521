//! Per-CPU timer events on the platform's timer (`ukplat::timer`; the
//! local APIC timer on kvm).
//!
//! Each CPU has at most one pending event: a one-shot deadline
//! ([`arm_at`], [`arm_after`]) or a periodic tick ([`start_periodic`]).
//! When it fires, the handler registered with [`set_handler`] runs on that
//! CPU, in interrupt context (interrupts disabled, no blocking), with the
//! current time in nanoseconds ([`Handler`]). One handler serves every CPU:
//! the scheduler's.
//!
//! Hardware: the platform arms its timer for the deadline's counter value
//! and may fire early (on kvm: never in TSC-deadline mode; in one-shot
//! mode, when a deadline is further away than the APIC timer's 32-bit
//! counter reaches, or by a rounding error; `platform.event_timer` chooses).
//! The interrupt handler here compares the counter with the deadline and
//! arms again until it is due, so the handler never sees an event before
//! its deadline. [`name`] says which timer runs, [`tick_hz`] its rate.
//!
//! ```no_run
//! use core::time::Duration;
//! fn on_event(now_ns: u64) {
//!     // interrupt context: e.g. wake a thread, or preempt
//!     let now = uktime::Instant::from_nanos(now_ns);
//!     let _ = now;
//! }
//! uktime::timer::set_handler(on_event);
//! uktime::timer::arm_after(Duration::from_millis(10));
//! ```

use crate::Instant;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use ukplat::irq::{self, TrapFrame, vector};
use ukplat::once::Once;
use ukplat::slot::FnSlot;
pub use ukplat::timer::{Period, TimerError, TimerInfo};

/// What a fired event calls: interrupt context, on the CPU that armed it,
/// with the current time as nanoseconds since boot ([`Instant::as_nanos`];
/// [`Instant::from_nanos`] turns it back).
///
/// (A `u64` rather than an [`Instant`]: the handler lives in a
/// [`ukplat::slot::FnSlot`], which holds the function-pointer shapes
/// `ukplat` can name, and `fn(u64)` is one of them.)
pub type Handler = fn(now_ns: u64);

/// No deadline armed.
const NONE: u64 = u64::MAX;

ukplat::per_cpu! {
    /// This CPU's pending deadline (ns), or NONE.
    static DEADLINE: AtomicU64 = AtomicU64::new(NONE);
    /// Whether this CPU runs a periodic tick.
    static PERIODIC: AtomicBool = AtomicBool::new(false);
    /// Events delivered on this CPU (handler calls).
    static FIRED: AtomicU64 = AtomicU64::new(0);
}

static HANDLER: FnSlot<Handler> = FnSlot::new();
/// The platform's timer, once the init chose it.
static INFO: Once<TimerInfo> = Once::new();

/// Registers the handler every CPU's events call (the last registration
/// wins).
pub fn set_handler(handler: Handler) {
    HANDLER.store(handler);
}

#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "installed by the guest-only init"))]
fn handler() -> Option<Handler> {
    HANDLER.load()
}

fn info() -> &'static TimerInfo {
    INFO.get().expect("uktime::timer used before uktime's init")
}

/// The platform's timer, for reports (on kvm `"local APIC timer,
/// TSC-deadline mode"` or `"local APIC timer, one-shot mode"`).
///
/// # Panics
/// Before the library's init ran.
pub fn name() -> &'static str {
    info().name
}

/// The rate the platform's timer counts periods in, Hz (on kvm the APIC
/// timer's at divide-by-1, measured against the TSC).
///
/// # Panics
/// Before the library's init ran.
pub fn tick_hz() -> u64 {
    info().tick_hz
}

/// Has the platform choose its timer, and installs the interrupt handler.
///
/// # Panics
/// When the configured timer is missing (kvm: `platform.event_timer =
/// "tsc-deadline"` on a CPU without it).
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "installed by the guest-only init"))]
pub(crate) fn init() {
    match ukplat::timer::init() {
        Ok(info) => {
            INFO.call_once(|| info);
        }
        Err(e) => panic!("uktime: cannot use the timer: {e}"),
    }
    if let Err(e) = irq::register(vector::TIMER, on_interrupt) {
        panic!("uktime: cannot install the timer interrupt: {e}");
    }
}

/// Arms this CPU's timer for `deadline` ns (interrupts disabled).
fn program(deadline: u64) {
    ukplat::timer::arm(crate::counter_of_instant(Instant::from_nanos(deadline)));
}

/// Arms this CPU's event for `deadline`, replacing any pending one (and
/// stopping a periodic tick). A deadline in the past fires at once.
pub fn arm_at(deadline: Instant) {
    let _irq = ukplat::irq::IrqGuard::new();
    let ns = deadline.as_nanos().min(NONE - 1);
    DEADLINE.get().store(ns, Ordering::Relaxed);
    PERIODIC.get().store(false, Ordering::Relaxed);
    program(ns);
}

/// Arms this CPU's event `d` from now.
pub fn arm_after(d: Duration) {
    arm_at(crate::now() + d);
}

/// Cancels this CPU's pending event or periodic tick.
pub fn disarm() {
    let _irq = ukplat::irq::IrqGuard::new();
    DEADLINE.get().store(NONE, Ordering::Relaxed);
    PERIODIC.get().store(false, Ordering::Relaxed);
    ukplat::timer::stop();
}

/// This CPU's pending deadline, if any.
pub fn pending() -> Option<Instant> {
    let ns = DEADLINE.get().load(Ordering::Relaxed);
    (ns != NONE).then_some(Instant::from_nanos(ns))
}

/// Starts a periodic tick at `hz` on this CPU (replaces any one-shot
/// event). Every tick calls the handler. Returns the period the hardware
/// was programmed with, as the platform reads it back: a test can check it
/// against `1 / hz` ([`Period::is_within_a_tick_of`]).
///
/// # Errors
/// [`TimerError::BadRate`] for 0 or a period the timer cannot count (on
/// kvm: under one APIC tick or over its 32-bit counter).
pub fn start_periodic(hz: u32) -> Result<Period, TimerError> {
    let _irq = ukplat::irq::IrqGuard::new();
    let period = ukplat::timer::periodic(hz)?;
    DEADLINE.get().store(NONE, Ordering::Relaxed);
    PERIODIC.get().store(true, Ordering::Relaxed);
    Ok(period)
}

/// Whether `ticks` periodic interrupts are a plausible delivery of
/// `periods` elapsed periods on a vCPU that the host may deschedule: never
/// more than the periods (5 % and one tick of phase), and at least 60 % of
/// them. The local APIC holds one pending interrupt per vector, so ticks
/// that fall due while the vCPU is off its host CPU merge: a loaded host
/// loses ticks (the build machines have lost up to a quarter for seconds),
/// it never adds any. Checks of the rate itself compare the programmed
/// period ([`start_periodic`]'s result) with `1 / hz`.
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
    // Compare in counter ticks: the deadline's counter value is what the
    // timer was armed with, and a round trip through nanoseconds could fall
    // a nanosecond short of it.
    let counter = ukplat::clock::read_ordered();
    let now = crate::instant_of_counter(counter);
    let fired_at = if PERIODIC.get().load(Ordering::Relaxed) {
        Some(now)
    } else {
        let deadline = DEADLINE.get();
        match deadline.load(Ordering::Relaxed) {
            // Disarmed after the interrupt was raised.
            NONE => None,
            due if counter >= crate::counter_of_instant(Instant::from_nanos(due)) => {
                deadline.store(NONE, Ordering::Relaxed);
                Some(now.max(Instant::from_nanos(due)))
            }
            // Early (kvm: a one-shot countdown capped at u32::MAX ticks,
            // or one that ended a rounding error early): go on.
            not_yet => {
                program(not_yet);
                None
            }
        }
    };
    if let Some(now) = fired_at {
        FIRED.get().fetch_add(1, Ordering::Relaxed);
        if let Some(handler) = handler() {
            handler(now.as_nanos());
        }
    }
}
