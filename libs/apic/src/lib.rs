//! # apic — local APIC, IPIs, APIC timer, I/O APIC
//!
//! What it offers:
//!
//! * the **local APIC** of every CPU in **x2APIC** mode (MSRs) or **xAPIC**
//!   mode (MMIO through the `volatile` crate), chosen once at boot from the
//!   option `mode` and CPUID ([`init_boot_cpu`]); [`id`], [`eoi`];
//! * **IPIs** ([`ipi`]): a fixed vector to one CPU, to all but the sender or
//!   to the sender; NMI; INIT and start-up (SIPI) for bringing CPUs up;
//! * the **APIC timer** ([`timer`]) in one-shot, periodic and TSC-deadline
//!   modes;
//! * the **I/O APICs** ([`ioapic`]) described by the firmware, all inputs
//!   masked at boot, and ISA IRQ routing for the other libraries through
//!   `ukplat::irq::route_isa_irq` (this crate registers itself as the
//!   platform's interrupt controller);
//! * handlers for the spurious and error interrupts (errors are counted and
//!   reported: [`error_count`]) and for the wake-up vector (end of interrupt
//!   only, for halted CPUs).
//!
//! Who calls what: the platform calls [`init_boot_cpu`] on the boot CPU
//! before anything else needs interrupts and [`init_this_cpu`] on every other
//! CPU during bring-up (it also uses [`ipi`] for INIT/SIPI); the I/O APICs are
//! set up by an init function at `ukboot::priority::PLATFORM`, once the
//! platform has published the topology.
//!
//! Modes: QEMU 7.2's TCG offers no x2APIC (CPUID.1:ECX[21] = 0) and ignores
//! writes to the x2APIC MSRs, so `auto` decides from CPUID and never assumes;
//! `mode = "x2apic"` on such a CPU makes [`init_boot_cpu`] fail with
//! [`ApicError::X2ApicUnsupported`], which the platform reports before
//! exiting.
//!
//! Cost: under a hypervisor every register access in xAPIC mode and every
//! IPI or EOI in either mode is a VM exit; x2APIC needs fewer (one write per
//! IPI, and `SELF_IPI`).
//!
//! Locks: each I/O APIC's register pair (IOREGSEL/IOWIN) is guarded by a
//! `ukspin::SpinLockIrq` (interrupts disabled while held), so `ukspin.kind`
//! applies to it and, with one CPU, it reduces to interrupt and preemption
//! control. It is first taken at `ukboot::priority::PLATFORM`, long after
//! the platform set up the boot CPU's per-CPU header (GS), which `ukspin`
//! needs. The table of I/O
//! APICs is a one-time cell (`ukplat::once::Once`), not a lock. The local
//! APIC needs no lock: its registers are per CPU.
//!
//! **Needs:** `ukarch` (MSRs, CPUID, interrupt guard), `ukplat` (vectors,
//! handler registration, topology, controller interface, one-time cell),
//! `ukboot` (init registration), `ukspin` (the I/O APIC lock; selected by
//! this library), `ukconfig`, `volatile` (MMIO).
//!
//! **Config options:** `mode` (`auto` | `x2apic` | `xapic`),
//! `error_vector_report` (print a line per APIC error interrupt).
//!
//! **Why `volatile`:** MMIO registers must be read and written exactly as
//! written in the source; `VolatilePtr` says so in the type instead of
//! scattering `read_volatile` calls, and it is the crate the Rust OSdev
//! world (and the `x86_64` crate's authors) maintain for that.
//!
//! ```no_run
//! // In the platform, on the boot CPU, interrupts disabled:
//! // SAFETY: boot CPU, once, interrupts disabled, IDT and GS set up.
//! let mode = unsafe { apic::init_boot_cpu() }.expect("no usable local APIC");
//! // Anywhere later:
//! apic::ipi::send_vector(apic::ipi::Destination::ToSelf, ukplat::irq::vector::WAKEUP);
//! # let _ = mode;
//! ```
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "uktest")]
mod guest_tests;
pub mod ioapic;
pub mod ipi;
pub mod local;
pub mod timer;

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

pub use local::{Mode, eoi, id, mode};
use ukplat::irq::{self, IoApicDesc, TrapFrame, vector};

/// Why the local APIC could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicError {
    /// CPUID reports no local APIC at all.
    NoApic,
    /// `apic.mode = "x2apic"` but CPUID.1:ECX[21] is clear.
    X2ApicUnsupported,
    /// `apic.mode = "xapic"` but the firmware left the APIC in x2APIC mode
    /// (leaving x2APIC mode needs a full APIC disable, which this library
    /// does not do at boot).
    AlreadyX2Apic,
}

impl fmt::Display for ApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoApic => f.write_str("CPUID reports no local APIC"),
            Self::X2ApicUnsupported => f.write_str(
                "apic.mode = \"x2apic\" but this CPU does not offer x2APIC (CPUID.1:ECX[21] = 0; \
                 QEMU's TCG never does); use mode = \"auto\" or \"xapic\"",
            ),
            Self::AlreadyX2Apic => f.write_str(
                "apic.mode = \"xapic\" but the APIC is already in x2APIC mode; use mode = \"auto\" or \"x2apic\"",
            ),
        }
    }
}

/// The mode the configuration asks for on a CPU with these features.
///
/// # Errors
/// See [`ApicError`].
pub fn choose_mode(
    requested: ukconfig::apic::Mode,
    features: &ukarch::cpu::Features,
    already_x2apic: bool,
) -> Result<Mode, ApicError> {
    use ukconfig::apic::Mode as Requested;
    if !features.apic {
        return Err(ApicError::NoApic);
    }
    match requested {
        Requested::Auto if features.x2apic => Ok(Mode::X2Apic),
        Requested::Auto => Ok(Mode::XApic),
        Requested::X2apic if features.x2apic => Ok(Mode::X2Apic),
        Requested::X2apic => Err(ApicError::X2ApicUnsupported),
        Requested::Xapic if already_x2apic => Err(ApicError::AlreadyX2Apic),
        Requested::Xapic => Ok(Mode::XApic),
    }
}

/// Sets up the boot CPU's local APIC: decides the mode (option `mode` and
/// CPUID), enables the APIC with the spurious and error vectors, and
/// installs the spurious, error and wake-up handlers.
///
/// The legacy 8259 PICs need no masking (no port I/O): their output reaches
/// a CPU only through its LINT0 pin (virtual-wire mode) or an I/O APIC
/// input, and every CPU's LINT0 is masked here (as is each CPU's in
/// [`init_this_cpu`]), and an I/O APIC input stays masked until a driver
/// routes an IRQ to it (inputs reset masked; [`init_io_apics`] masks them
/// all again).
///
/// # Errors
/// See [`ApicError`]; nothing is changed then.
///
/// # Safety
/// Call once, on the boot CPU, with interrupts disabled, after the platform
/// set up its IDT and per-CPU header.
pub unsafe fn init_boot_cpu() -> Result<Mode, ApicError> {
    let features = ukarch::cpu::features();
    let already_x2apic =
        // SAFETY: IA32_APIC_BASE exists when CPUID reports an APIC (checked
        // by `choose_mode` before the value matters); reading it is harmless.
        features.apic && unsafe { ukarch::regs::rdmsr(ukarch::regs::MSR_APIC_BASE) } & (1 << 10) != 0;
    let mode = choose_mode(ukconfig::apic::MODE, &features, already_x2apic)?;
    local::set_mode(mode, local::base_from_msr());
    // SAFETY: boot CPU, interrupts disabled, mode just set (caller contract).
    unsafe { local::enable_this_cpu(mode, vector::SPURIOUS, vector::ERROR) };
    for (v, handler) in [
        (vector::SPURIOUS, on_spurious as irq::Handler),
        (vector::ERROR, on_error),
        (vector::WAKEUP, on_wakeup),
    ] {
        // A second boot-CPU init is a caller bug; the first handlers stay.
        let _ = irq::register(v, handler);
    }
    Ok(mode)
}

/// Sets up the calling (secondary) CPU's local APIC in the mode the boot CPU
/// chose.
///
/// # Safety
/// Call once per CPU, on that CPU, with interrupts disabled, after
/// [`init_boot_cpu`] succeeded on the boot CPU.
pub unsafe fn init_this_cpu() {
    // SAFETY: forwarded caller contract; the mode is set by init_boot_cpu.
    unsafe { local::enable_this_cpu(local::mode(), vector::SPURIOUS, vector::ERROR) };
}

ukplat::per_cpu! {
    static SPURIOUS_COUNT: AtomicU64 = AtomicU64::new(0);
    static ERROR_COUNT: AtomicU64 = AtomicU64::new(0);
}

fn on_spurious(_frame: &mut TrapFrame) {
    // No EOI for a spurious interrupt (SDM 11.9).
    SPURIOUS_COUNT.get().fetch_add(1, Ordering::Relaxed);
}

fn on_error(_frame: &mut TrapFrame) {
    let status = local::error_status();
    ERROR_COUNT.get().fetch_add(1, Ordering::Relaxed);
    if ukconfig::apic::ERROR_VECTOR_REPORT {
        let _ = writeln!(
            ukplat::console::Writer,
            "apic: error interrupt on CPU {}: ESR {status:#x} ({})",
            ukplat::cpu::this_cpu(),
            EsrBits(status)
        );
    }
    local::eoi();
}

fn on_wakeup(_frame: &mut TrapFrame) {
    local::eoi();
}

/// APIC error interrupts seen on all CPUs since boot.
pub fn error_count() -> u64 {
    ERROR_COUNT.iter().map(|n| n.load(Ordering::Relaxed)).sum()
}

/// Spurious interrupts seen on all CPUs since boot.
pub fn spurious_count() -> u64 {
    SPURIOUS_COUNT.iter().map(|n| n.load(Ordering::Relaxed)).sum()
}

/// The error status register's bits, in words.
struct EsrBits(u32);

impl fmt::Display for EsrBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = [
            "send checksum",
            "receive checksum",
            "send accept",
            "receive accept",
            "redirectable IPI",
            "send illegal vector",
            "receive illegal vector",
            "illegal register address",
        ];
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                f.write_str(if first { "" } else { ", " })?;
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("no error bits")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// I/O APICs and the controller interface

/// The I/O APICs (the first `.1` slots are set), filled once at boot.
static IO_APICS: ukplat::once::Once<([ioapic::IoApic; ioapic::MAX_IO_APICS], usize)> =
    ukplat::once::Once::new();

/// The I/O APICs set up at boot (empty before the `PLATFORM` init level).
pub fn io_apics() -> &'static [ioapic::IoApic] {
    IO_APICS.get().map_or(&[], |(apics, n)| &apics[..*n])
}

struct Controller;

impl irq::InterruptController for Controller {
    fn name(&self) -> &'static str {
        local::mode().name()
    }

    fn eoi(&self) {
        local::eoi();
    }

    fn route_isa_irq(&self, irq: u8, vector: u8, cpu: ukplat::cpu::CpuIndex) -> Result<(), irq::IrqError> {
        let topology = ukplat::cpu::topology();
        let apic_id = topology.cpus.get(cpu).ok_or(irq::IrqError::NoRoute(irq))?.apic_id;
        ioapic::route_isa(io_apics(), topology.isa_overrides, irq, vector, apic_id)
    }

    fn mask_isa_irq(&self, irq: u8) {
        ioapic::mask_isa(io_apics(), ukplat::cpu::topology().isa_overrides, irq);
    }
}

static CONTROLLER: Controller = Controller;

/// Masks every input of every I/O APIC and registers the controller.
fn init_io_apics() {
    let topology = ukplat::cpu::topology();
    IO_APICS.call_once(|| {
        let mut apics = [const { ioapic::IoApic::new(IoApicDesc { id: 0, address: 0, gsi_base: 0 }) };
            ioapic::MAX_IO_APICS];
        let n = topology.io_apics.len().min(ioapic::MAX_IO_APICS);
        for (slot, desc) in apics.iter_mut().zip(&topology.io_apics[..n]) {
            *slot = ioapic::IoApic::new(*desc);
            slot.mask_all();
        }
        (apics, n)
    });
    irq::register_controller(&CONTROLLER);
}

ukboot::init!(ukboot::priority::PLATFORM, init_io_apics);
