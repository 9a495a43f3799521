//! Registers, MSRs, port I/O and `hlt`.
//!
//! Everything that touches privileged state is `unsafe` where the `x86_64`
//! crate says so; callers state why their use is sound.

pub use x86_64::instructions::port::Port;
pub use x86_64::registers::control::{Cr0, Cr2, Cr3, Cr4};
pub use x86_64::registers::model_specific::Msr;
pub use x86_64::registers::rflags;

/// The faulting linear address of the last page fault (CR2).
#[inline(always)]
pub fn cr2() -> u64 {
    // CR2 holds a raw address; a non-canonical value is still worth reporting.
    let value: u64;
    // SAFETY: reading CR2 has no side effects at CPL 0.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// CR3: the physical address of the active PML4 (and PCID bits).
#[inline(always)]
pub fn cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effects at CPL 0.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// CR0.
#[inline(always)]
pub fn cr0() -> u64 {
    Cr0::read_raw()
}

/// CR4.
#[inline(always)]
pub fn cr4() -> u64 {
    Cr4::read_raw()
}

/// Halts until the next interrupt.
#[inline(always)]
pub fn halt() {
    x86_64::instructions::hlt();
}

/// Writes one byte to an I/O port.
///
/// # Safety
/// Port I/O talks to devices directly; the caller must own `port`.
#[inline(always)]
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller owns the port (function contract).
    unsafe { Port::<u8>::new(port).write(value) };
}

/// Reads one byte from an I/O port.
///
/// # Safety
/// As for [`outb`].
#[inline(always)]
pub unsafe fn inb(port: u16) -> u8 {
    // SAFETY: the caller owns the port (function contract).
    unsafe { Port::<u8>::new(port).read() }
}

/// Writes a 32-bit value to an I/O port.
///
/// # Safety
/// As for [`outb`].
#[inline(always)]
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller owns the port (function contract).
    unsafe { Port::<u32>::new(port).write(value) };
}
