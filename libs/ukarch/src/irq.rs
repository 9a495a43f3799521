//! The x86 interrupt-flag instructions: `cli`, `sti`, `sti; hlt`,
//! `pushf`. They are privileged, so only a platform that runs the image in
//! ring 0 (`platforms/kvm`) may execute them; libraries call
//! `ukplat::irq`, which the platform implements (with these on kvm).

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
