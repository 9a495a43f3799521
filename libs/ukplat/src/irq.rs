//! Interrupt vectors: who handles which, and the interrupt controller
//! interface.
//!
//! The platform owns the IDT and the entry stubs; for every trap it calls
//! the handler registered here for the vector ([`handler`]), and reports the
//! trap as fatal when there is none. Libraries register handlers with
//! [`register`] (fixed vectors from [`vector`]) or [`allocate`] (a free
//! vector from the dynamic range).
//!
//! Handlers of vectors 32–255 run with interrupts disabled on the
//! interrupted stack, between `cpu::irq_enter` and `cpu::irq_exit`. A
//! handler of an interrupt delivered by the local APIC (every vector from
//! 32 on except [`vector::SPURIOUS`]) must signal the end of the interrupt
//! with [`eoi`] before returning.
//!
//! The interrupt controller (the `apic` library on x86) registers itself
//! with [`register_controller`]; through it, libraries that own a device
//! route the device's ISA interrupt without depending on the controller's
//! library ([`route_isa_irq`]).
//!
//! ```
//! use ukplat::irq::{self, TrapFrame};
//!
//! fn on_test_interrupt(_frame: &mut TrapFrame) {
//!     irq::eoi();
//! }
//! let vector = irq::allocate(on_test_interrupt).unwrap();
//! assert!(irq::handler(vector).is_some());
//! irq::unregister(vector);
//! ```

mod flag;

pub use flag::{IrqGuard, disable, enable, enable_and_halt, enabled, restore, save};

use crate::slot::FnSlot;
use core::fmt;

pub use ukarch::trap::TrapFrame;

/// A trap handler: runs with interrupts disabled and may modify the frame.
pub type Handler = fn(&mut TrapFrame);

/// The vector map. Priority classes are `vector >> 4`: the local APIC
/// delivers higher classes first, so the system vectors sit at the top.
pub mod vector {
    /// First vector that is not a CPU exception.
    pub const FIRST_EXTERNAL: u8 = 32;
    /// ISA IRQ `n` routed through the I/O APIC arrives at `ISA_BASE + n`
    /// (n < 16).
    pub const ISA_BASE: u8 = 0x20;
    /// First vector [`allocate`](super::allocate) hands out.
    pub const DYNAMIC_FIRST: u8 = 0x30;
    /// Last vector [`allocate`](super::allocate) hands out.
    pub const DYNAMIC_LAST: u8 = 0xdf;
    /// The local APIC timer (one-shot, periodic or TSC-deadline).
    pub const TIMER: u8 = 0xec;
    /// Cross-CPU function calls (`uksmp`).
    pub const CALL: u8 = 0xf1;
    /// Wake a halted CPU; the handler only signals end of interrupt.
    pub const WAKEUP: u8 = 0xf2;
    /// Local APIC error interrupt.
    pub const ERROR: u8 = 0xfe;
    /// Local APIC spurious interrupt (no end-of-interrupt).
    pub const SPURIOUS: u8 = 0xff;
}

/// Why a vector could not be registered or routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqError {
    /// The vector already has a handler.
    Occupied(u8),
    /// No free vector in the dynamic range.
    NoFreeVector,
    /// No interrupt controller is registered.
    NoController,
    /// The controller cannot route this ISA IRQ (no I/O APIC pin for it).
    NoRoute(u8),
}

impl fmt::Display for IrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Occupied(v) => write!(f, "vector {v:#x} already has a handler"),
            Self::NoFreeVector => {
                write!(f, "no free vector in {:#x}..={:#x}", vector::DYNAMIC_FIRST, vector::DYNAMIC_LAST)
            }
            Self::NoController => f.write_str("no interrupt controller is registered"),
            Self::NoRoute(irq) => write!(f, "no I/O APIC input serves ISA IRQ {irq}"),
        }
    }
}

/// Registered handlers, one slot per vector.
static HANDLERS: [FnSlot<Handler>; 256] = [const { FnSlot::new() }; 256];

/// Installs `handler` for `vector`.
///
/// Exception vectors (0–31) may be registered too: the handler then decides
/// instead of the platform's fatal report (demand paging, a debugger).
///
/// # Errors
/// [`IrqError::Occupied`] when the vector has a handler already.
pub fn register(vector: u8, handler: Handler) -> Result<(), IrqError> {
    HANDLERS[usize::from(vector)].store_if_empty(handler).map_err(|_| IrqError::Occupied(vector))
}

/// Installs `handler` on the first free vector of the dynamic range and
/// returns the vector.
///
/// # Errors
/// [`IrqError::NoFreeVector`] when every dynamic vector is taken.
pub fn allocate(handler: Handler) -> Result<u8, IrqError> {
    (vector::DYNAMIC_FIRST..=vector::DYNAMIC_LAST)
        .find(|&v| register(v, handler).is_ok())
        .ok_or(IrqError::NoFreeVector)
}

/// Removes the handler of `vector` (a trap on it becomes fatal again).
pub fn unregister(vector: u8) {
    HANDLERS[usize::from(vector)].clear();
}

/// The handler registered for `vector` (the platform's dispatcher calls it).
#[inline]
pub fn handler(vector: u8) -> Option<Handler> {
    HANDLERS[usize::from(vector)].load()
}

/// Takes an interrupt (vector 32–255) for the platform: runs its handler
/// between [`cpu::irq_enter`](crate::cpu::irq_enter) and
/// [`cpu::irq_exit`](crate::cpu::irq_exit), then passes the preemption
/// point, where a preemptive scheduler may switch threads when the handler
/// asked for it and the interrupted code had interrupts enabled. Returns
/// `false`, having done nothing, when no handler is registered: the
/// platform reports that as fatal. Every platform's interrupt path ends
/// here, with interrupts disabled.
pub fn take_interrupt(frame: &mut TrapFrame) -> bool {
    let Some(handler) = handler(frame.vector()) else { return false };
    crate::cpu::irq_enter();
    handler(frame);
    crate::cpu::irq_exit();
    crate::cpu::preempt_on_irq_return(frame.interrupts_were_enabled());
    true
}

// ---------------------------------------------------------------------------
// Interrupt controller

/// What the interrupt controller offers the other libraries.
pub trait InterruptController: Sync {
    /// A short name for reports ("x2APIC", "xAPIC").
    fn name(&self) -> &'static str;
    /// Signals the end of the interrupt being handled on this CPU.
    fn eoi(&self);
    /// Delivers ISA IRQ `irq` (0–15) as `vector` to CPU `cpu`, unmasked.
    ///
    /// # Errors
    /// [`IrqError::NoRoute`] when no I/O APIC input serves the IRQ.
    fn route_isa_irq(&self, irq: u8, vector: u8, cpu: crate::cpu::CpuIndex) -> Result<(), IrqError>;
    /// Masks ISA IRQ `irq` again.
    fn mask_isa_irq(&self, irq: u8);
}

static CONTROLLER: crate::once::Once<&'static dyn InterruptController> = crate::once::Once::new();

/// Registers the interrupt controller (the first registration wins; returns
/// whether this one did).
pub fn register_controller(controller: &'static dyn InterruptController) -> bool {
    crate::register_once(&CONTROLLER, controller)
}

/// The registered interrupt controller.
pub fn controller() -> Option<&'static dyn InterruptController> {
    CONTROLLER.get().copied()
}

/// Signals the end of the interrupt being handled on this CPU (a no-op
/// without a controller, e.g. in host tests).
#[inline]
pub fn eoi() {
    if let Some(c) = controller() {
        c.eoi();
    }
}

/// Routes ISA IRQ `irq` to `vector` on CPU `cpu` through the controller.
///
/// # Errors
/// [`IrqError::NoController`] without a controller, or the controller's
/// error.
pub fn route_isa_irq(irq: u8, vector: u8, cpu: crate::cpu::CpuIndex) -> Result<(), IrqError> {
    controller().ok_or(IrqError::NoController)?.route_isa_irq(irq, vector, cpu)
}

/// An I/O APIC, as the firmware (ACPI MADT) describes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoApicDesc {
    /// Its I/O APIC id.
    pub id: u8,
    /// Physical address of its registers.
    pub address: u64,
    /// The global system interrupt of its first input.
    pub gsi_base: u32,
}

/// An ISA IRQ that does not arrive on the I/O APIC input of the same
/// number, or not with ISA's edge-triggered, active-high signalling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IsaOverride {
    /// The ISA IRQ (0–15).
    pub isa_irq: u8,
    /// The global system interrupt it arrives on.
    pub gsi: u32,
    /// Active-low polarity.
    pub active_low: bool,
    /// Level-triggered.
    pub level_triggered: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nop(_: &mut TrapFrame) {}
    fn other(frame: &mut TrapFrame) {
        frame.rax = 1;
    }

    #[test]
    fn register_refuses_an_occupied_vector() {
        register(0x40, nop).unwrap();
        assert_eq!(register(0x40, other), Err(IrqError::Occupied(0x40)));
        let mut frame = TrapFrame::default();
        handler(0x40).unwrap()(&mut frame);
        assert_eq!(frame.rax, 0, "the first handler stays");
        unregister(0x40);
        assert!(handler(0x40).is_none());
    }

    #[test]
    fn allocate_hands_out_distinct_dynamic_vectors() {
        let a = allocate(nop).unwrap();
        let b = allocate(nop).unwrap();
        assert_ne!(a, b);
        for v in [a, b] {
            assert!((vector::DYNAMIC_FIRST..=vector::DYNAMIC_LAST).contains(&v));
            unregister(v);
        }
    }

    #[test]
    fn routing_without_a_controller_fails_cleanly() {
        assert_eq!(route_isa_irq(4, 0x24, 0), Err(IrqError::NoController));
        eoi();
        assert_eq!(IrqError::NoRoute(4).to_string(), "no I/O APIC input serves ISA IRQ 4");
    }
}
