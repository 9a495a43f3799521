//! This CPU's interrupt flag: enable, disable, save, restore, and halting
//! until an interrupt. The platform implements the flag (`cli`/`sti` on
//! kvm); these wrappers are what libraries call.

/// Enables interrupts on this CPU.
#[inline(always)]
pub fn enable() {
    imp::enable();
}

/// Disables interrupts on this CPU.
#[inline(always)]
pub fn disable() {
    imp::disable();
}

/// Whether interrupts are enabled on this CPU.
#[inline(always)]
pub fn enabled() -> bool {
    imp::enabled()
}

/// Enables interrupts and halts until the next one, atomically: an
/// interrupt that became pending after the caller's last check (made with
/// interrupts disabled) still ends the halt instead of being taken before
/// it. The idiom of every idle loop:
/// `disable(); if nothing_to_do() { enable_and_halt() }`. Returns with
/// interrupts enabled.
#[inline(always)]
pub fn enable_and_halt() {
    imp::enable_and_halt();
}

/// Disables interrupts and returns whether they were enabled before.
#[inline(always)]
pub fn save() -> bool {
    let was = enabled();
    disable();
    was
}

/// Restores the state returned by [`save`].
#[inline(always)]
pub fn restore(was_enabled: bool) {
    if was_enabled {
        enable();
    }
}

/// Interrupts stay disabled while the guard lives; dropping it restores the
/// previous state. Guards nest.
///
/// ```
/// use ukplat::irq::{self, IrqGuard};
/// irq::enable();
/// {
///     let _guard = IrqGuard::new();
///     assert!(!irq::enabled());
///     let _inner = IrqGuard::new();
/// }
/// assert!(irq::enabled());
/// ```
#[must_use = "interrupts are re-enabled when the guard is dropped"]
pub struct IrqGuard {
    was_enabled: bool,
}

impl IrqGuard {
    /// Disables interrupts until the guard is dropped.
    #[inline(always)]
    pub fn new() -> Self {
        Self { was_enabled: save() }
    }
}

impl Default for IrqGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IrqGuard {
    #[inline(always)]
    fn drop(&mut self) {
        restore(self.was_enabled);
    }
}

#[cfg(target_os = "none")]
mod imp {
    pub(super) use crate::platform::imports::{
        irq_disable as disable, irq_enable as enable, irq_enable_and_halt as enable_and_halt,
        irq_enabled as enabled,
    };
}

/// Host builds (unit tests, loom models): no platform, so the flag is a
/// per-thread variable; halting has nothing to wait for and panics.
#[cfg(not(target_os = "none"))]
mod imp {
    use core::cell::Cell;

    extern crate std;

    std::thread_local! {
        static ENABLED: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn enable() {
        ENABLED.with(|e| e.set(true));
    }

    pub(super) fn disable() {
        ENABLED.with(|e| e.set(false));
    }

    pub(super) fn enabled() -> bool {
        ENABLED.with(Cell::get)
    }

    pub(super) fn enable_and_halt() {
        panic!("ukplat::irq::enable_and_halt: host builds have no platform and no interrupt to wait for");
    }
}
