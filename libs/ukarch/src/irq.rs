//! Interrupt enable/disable, save/restore.

use x86_64::instructions::interrupts;

/// Enables interrupts (`sti`).
#[inline(always)]
pub fn enable() {
    interrupts::enable();
}

/// Disables interrupts (`cli`).
#[inline(always)]
pub fn disable() {
    interrupts::disable();
}

/// Whether interrupts are enabled (RFLAGS.IF).
#[inline(always)]
pub fn enabled() -> bool {
    interrupts::are_enabled()
}

/// Enables interrupts and halts until the next one, atomically: `sti` takes
/// effect after the following instruction, so an interrupt that became
/// pending after the caller's last check (made with interrupts disabled)
/// still ends the `hlt` instead of being taken before it. The idiom of every
/// idle loop: `disable(); if nothing_to_do() { enable_and_halt() }`.
#[inline(always)]
pub fn enable_and_halt() {
    // SAFETY: `sti; hlt` only changes the interrupt flag (as `enable`
    // does) and waits; no memory is touched.
    unsafe { core::arch::asm!("sti", "hlt", options(nomem, nostack)) };
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
/// ```no_run
/// let _guard = ukarch::irq::IrqGuard::new();
/// // ... no interrupt on this CPU here ...
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
