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

/// `IA32_APIC_BASE`: local APIC base address and enable bits.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// `IA32_TSC_DEADLINE`: the local APIC timer's deadline in TSC-deadline mode.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// `IA32_GS_BASE`: the GS segment base (per-CPU data, see `ukplat::cpu`).
pub const MSR_GS_BASE: u32 = 0xc000_0101;

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (else #GP), and reading it must have no side
/// effect the caller does not intend.
#[inline(always)]
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: forwarded caller contract.
    unsafe { Msr::new(msr).read() }
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist and accept `value`; the write changes CPU state the
/// caller must own.
#[inline(always)]
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded caller contract.
    unsafe { Msr::new(msr).write(value) };
}

/// The GS base of this CPU.
#[inline(always)]
pub fn gs_base() -> u64 {
    // SAFETY: IA32_GS_BASE exists on every x86_64 CPU; reading it has no
    // side effects.
    unsafe { rdmsr(MSR_GS_BASE) }
}

/// Sets the GS base of this CPU.
///
/// # Safety
/// Code that reads per-CPU data through GS (`ukplat::cpu`) must find what it
/// expects at the new base.
#[inline(always)]
pub unsafe fn set_gs_base(base: u64) {
    // SAFETY: IA32_GS_BASE exists on every x86_64 CPU; the caller vouches
    // for the contents.
    unsafe { wrmsr(MSR_GS_BASE, base) };
}

/// Reads a 32-bit value from an I/O port.
///
/// # Safety
/// As for [`outb`].
#[inline(always)]
pub unsafe fn inl(port: u16) -> u32 {
    // SAFETY: the caller owns the port (function contract).
    unsafe { Port::<u32>::new(port).read() }
}
