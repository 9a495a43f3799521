//! The local APIC: register access in both modes, and per-CPU enable.
//!
//! Registers are named by their xAPIC MMIO offset. In x2APIC mode the same
//! register is MSR `0x800 + offset / 16`; the ICR is one 64-bit MSR there
//! (two 32-bit registers in xAPIC mode), the ID register holds the full
//! 32-bit id (bits 31:24 in xAPIC mode), and DFR does not exist.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use ukarch::regs::{MSR_APIC_BASE, rdmsr, wrmsr};
use volatile::VolatilePtr;

/// How the local APIC is accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// x2APIC: MSRs (0x800..0x8ff), 32-bit ids, one MSR write per IPI.
    X2Apic,
    /// xAPIC: memory-mapped registers at [`XAPIC_DEFAULT_BASE`], 8-bit ids.
    XApic,
}

impl Mode {
    /// A short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::X2Apic => "x2APIC",
            Self::XApic => "xAPIC",
        }
    }
}

/// Register offsets (xAPIC MMIO offsets).
pub mod reg {
    /// Local APIC id.
    pub const ID: u32 = 0x20;
    /// Version and max LVT entry.
    pub const VERSION: u32 = 0x30;
    /// Task priority.
    pub const TPR: u32 = 0x80;
    /// End of interrupt.
    pub const EOI: u32 = 0xb0;
    /// Logical destination format (xAPIC only).
    pub const DFR: u32 = 0xe0;
    /// Spurious interrupt vector, software enable (bit 8).
    pub const SVR: u32 = 0xf0;
    /// In-service register, 8 x 32 bits at 0x100..0x170.
    pub const ISR0: u32 = 0x100;
    /// Error status.
    pub const ESR: u32 = 0x280;
    /// Interrupt command, low half (x2APIC: the whole 64-bit ICR).
    pub const ICR_LOW: u32 = 0x300;
    /// Interrupt command, high half (xAPIC only: the destination).
    pub const ICR_HIGH: u32 = 0x310;
    /// LVT: timer.
    pub const LVT_TIMER: u32 = 0x320;
    /// LVT: thermal sensor.
    pub const LVT_THERMAL: u32 = 0x330;
    /// LVT: performance counters.
    pub const LVT_PERF: u32 = 0x340;
    /// LVT: LINT0 pin.
    pub const LVT_LINT0: u32 = 0x350;
    /// LVT: LINT1 pin.
    pub const LVT_LINT1: u32 = 0x360;
    /// LVT: error.
    pub const LVT_ERROR: u32 = 0x370;
    /// Timer initial count.
    pub const TIMER_INITIAL: u32 = 0x380;
    /// Timer current count.
    pub const TIMER_CURRENT: u32 = 0x390;
    /// Timer divide configuration.
    pub const TIMER_DIVIDE: u32 = 0x3e0;
    /// Self IPI (x2APIC only).
    pub const SELF_IPI: u32 = 0x3f0;
}

/// LVT entry: masked.
pub const LVT_MASKED: u32 = 1 << 16;
/// SVR: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// IA32_APIC_BASE: x2APIC mode enable.
const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE: global enable.
const APIC_BASE_EN: u64 = 1 << 11;
/// IA32_APIC_BASE: this is the bootstrap processor.
const APIC_BASE_BSP: u64 = 1 << 8;
/// Where the xAPIC registers are after reset (and where QEMU keeps them).
pub const XAPIC_DEFAULT_BASE: u64 = 0xfee0_0000;

/// Mode chosen at boot: 0 = not yet, 1 = x2APIC, 2 = xAPIC.
static MODE: AtomicU8 = AtomicU8::new(0);
/// xAPIC register base (identity-mapped, uncached by the boot map).
static XAPIC_BASE: AtomicU64 = AtomicU64::new(XAPIC_DEFAULT_BASE);

/// The mode chosen by [`crate::init_boot_cpu`].
///
/// With `apic.mode` forced to `x2apic` or `xapic` this is a constant, so
/// the other mode's register accessors are never referenced and not linked
/// (`cargo xtask test` checks the image's symbols); with `auto` both are
/// linked and the boot-time choice picks one.
///
/// # Panics
/// With `auto`, before the boot CPU's APIC was initialised.
#[inline(always)]
pub fn mode() -> Mode {
    match ukconfig::apic::MODE {
        ukconfig::apic::Mode::X2apic => Mode::X2Apic,
        ukconfig::apic::Mode::Xapic => Mode::XApic,
        ukconfig::apic::Mode::Auto => match MODE.load(Ordering::Relaxed) {
            1 => Mode::X2Apic,
            2 => Mode::XApic,
            _ => panic!("apic: used before apic::init_boot_cpu"),
        },
    }
}

/// Whether the mode has been chosen.
pub fn initialised() -> bool {
    MODE.load(Ordering::Relaxed) != 0
}

pub(crate) fn set_mode(mode: Mode, xapic_base: u64) {
    XAPIC_BASE.store(xapic_base, Ordering::Relaxed);
    MODE.store(if mode == Mode::X2Apic { 1 } else { 2 }, Ordering::Release);
}

/// The MSR of register `offset` in x2APIC mode.
const fn msr_of(offset: u32) -> u32 {
    0x800 + (offset >> 4)
}

fn mmio(offset: u32) -> VolatilePtr<'static, u32> {
    let addr = XAPIC_BASE.load(Ordering::Relaxed) + u64::from(offset);
    // SAFETY: the xAPIC register page is identity-mapped and uncached by
    // the platform's boot map; `offset` is one of the 16-byte-aligned
    // register offsets of `reg`, so the pointer is aligned and in the page.
    unsafe { VolatilePtr::new(NonNull::new_unchecked(addr as *mut u32)) }
}

/// Reads a 32-bit register.
#[inline]
pub fn read(offset: u32) -> u32 {
    match mode() {
        Mode::X2Apic => x2apic_read(offset),
        Mode::XApic => xapic_read(offset),
    }
}

/// Writes a 32-bit register.
#[inline]
pub fn write(offset: u32, value: u32) {
    match mode() {
        Mode::X2Apic => x2apic_write(offset, value),
        Mode::XApic => xapic_write(offset, value),
    }
}

// One function per mode and direction, never inlined, so the image's
// symbol table shows which modes are linked (see `mode`). Under a
// hypervisor every access is a VM exit anyway; the call costs nothing
// next to it.

#[inline(never)]
fn x2apic_read(offset: u32) -> u32 {
    // SAFETY: x2APIC mode is enabled before the mode is published (and a
    // forced x2apic mode was checked against CPUID at boot); reads of the
    // registers of `reg` have no side effects.
    unsafe { rdmsr(msr_of(offset)) as u32 }
}

#[inline(never)]
fn x2apic_write(offset: u32, value: u32) {
    // SAFETY: as in `x2apic_read`; the callers own the register they write.
    unsafe { wrmsr(msr_of(offset), u64::from(value)) }
}

#[inline(never)]
fn xapic_read(offset: u32) -> u32 {
    mmio(offset).read()
}

#[inline(never)]
fn xapic_write(offset: u32, value: u32) {
    mmio(offset).write(value)
}

/// Writes the interrupt command register: `destination` is an APIC id
/// (ignored with a shorthand), `low` the command (vector, delivery mode,
/// level, shorthand). In xAPIC mode waits until the previous command was
/// delivered, and the caller must have interrupts disabled (the two halves
/// are separate writes).
pub(crate) fn write_icr(destination: u32, low: u32) {
    match mode() {
        // SAFETY: x2APIC mode is enabled; one 64-bit write sends the IPI.
        Mode::X2Apic => unsafe {
            wrmsr(msr_of(reg::ICR_LOW), (u64::from(destination) << 32) | u64::from(low))
        },
        Mode::XApic => {
            const DELIVERY_PENDING: u32 = 1 << 12;
            while xapic_read(reg::ICR_LOW) & DELIVERY_PENDING != 0 {
                core::hint::spin_loop();
            }
            xapic_write(reg::ICR_HIGH, destination << 24);
            xapic_write(reg::ICR_LOW, low);
        }
    }
}

/// This CPU's local APIC id.
#[inline]
pub fn id() -> u32 {
    match mode() {
        Mode::X2Apic => read(reg::ID),
        Mode::XApic => read(reg::ID) >> 24,
    }
}

/// Signals the end of the interrupt being serviced on this CPU.
#[inline]
pub fn eoi() {
    write(reg::EOI, 0);
}

/// Switches this CPU's local APIC into `mode` (IA32_APIC_BASE) and enables
/// it: spurious vector, all LVT entries masked but the error one, task
/// priority 0, error status cleared.
///
/// # Safety
/// Call once per CPU with interrupts disabled, on the CPU concerned, after
/// [`set_mode`] (so register accessors know the mode).
pub(crate) unsafe fn enable_this_cpu(mode: Mode, spurious_vector: u8, error_vector: u8) {
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC; setting EN
    // (and EXTD for x2APIC, which must follow EN) is the architected way to
    // enable the chosen mode; the base address bits are kept.
    unsafe {
        let base = rdmsr(MSR_APIC_BASE);
        let enabled = base | APIC_BASE_EN;
        if enabled != base {
            wrmsr(MSR_APIC_BASE, enabled);
        }
        if mode == Mode::X2Apic && base & APIC_BASE_EXTD == 0 {
            wrmsr(MSR_APIC_BASE, enabled | APIC_BASE_EXTD);
        }
    }
    if mode == Mode::XApic {
        // Flat model: the only logical mode xAPIC needs (unused: physical
        // destinations only, but the register must hold a valid value).
        write(reg::DFR, 0xffff_ffff);
    }
    write(reg::TPR, 0);
    for lvt in [reg::LVT_TIMER, reg::LVT_THERMAL, reg::LVT_PERF, reg::LVT_LINT0, reg::LVT_LINT1] {
        write(lvt, LVT_MASKED);
    }
    write(reg::LVT_ERROR, u32::from(error_vector));
    // Writing ESR latches the errors seen so far; write twice to clear.
    write(reg::ESR, 0);
    write(reg::ESR, 0);
    write(reg::SVR, SVR_ENABLE | u32::from(spurious_vector));
}

/// Whether IA32_APIC_BASE marks this CPU as the bootstrap processor.
pub fn is_bsp() -> bool {
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC; reading it
    // has no side effects.
    unsafe { rdmsr(MSR_APIC_BASE) & APIC_BASE_BSP != 0 }
}

/// The xAPIC register base from IA32_APIC_BASE.
pub(crate) fn base_from_msr() -> u64 {
    // SAFETY: as in `is_bsp`.
    unsafe { rdmsr(MSR_APIC_BASE) & 0x000f_ffff_ffff_f000 }
}

/// The error status register (latched first by a write, as the SDM asks).
pub fn error_status() -> u32 {
    write(reg::ESR, 0);
    read(reg::ESR)
}

/// Whether vector `vector` is in service on this CPU (ISR bit).
pub fn in_service(vector: u8) -> bool {
    let word = read(reg::ISR0 + u32::from(vector / 32) * 0x10);
    word & (1 << (vector % 32)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x2apic_msrs() {
        assert_eq!(msr_of(reg::ID), 0x802);
        assert_eq!(msr_of(reg::EOI), 0x80b);
        assert_eq!(msr_of(reg::SVR), 0x80f);
        assert_eq!(msr_of(reg::ICR_LOW), 0x830);
        assert_eq!(msr_of(reg::LVT_TIMER), 0x832);
        assert_eq!(msr_of(reg::TIMER_DIVIDE), 0x83e);
        assert_eq!(msr_of(reg::SELF_IPI), 0x83f);
    }
}
