//! Inter-processor interrupts: raise a vector on one CPU, on every other
//! CPU, or on this one. The receiving CPU runs the handler registered for
//! the vector with [`irq::register`](crate::irq::register), as for any
//! interrupt. The platform delivers them (the local APIC's ICR on kvm).
//!
//! ```no_run
//! use ukplat::{ipi, irq};
//! fn on_ping(_frame: &mut irq::TrapFrame) {
//!     irq::eoi();
//! }
//! let vector = irq::allocate(on_ping).unwrap();
//! ipi::send(1, vector);
//! ipi::send_all_others(vector);
//! ipi::send_self(vector);
//! ```

use crate::cpu::CpuIndex;
pub use crate::platform::IpiTarget;

/// Raises `vector` on CPU `cpu` (which may be this one).
#[inline(always)]
pub fn send(cpu: CpuIndex, vector: u8) {
    imp::send(IpiTarget::Cpu(cpu), vector);
}

/// Raises `vector` on every started CPU but this one.
#[inline(always)]
pub fn send_all_others(vector: u8) {
    imp::send(IpiTarget::AllOthers, vector);
}

/// Raises `vector` on this CPU.
#[inline(always)]
pub fn send_self(vector: u8) {
    imp::send(IpiTarget::ToSelf, vector);
}

#[cfg(target_os = "none")]
mod imp {
    pub(super) use crate::platform::imports::ipi_send as send;
}

/// Host builds have no other CPUs to interrupt.
#[cfg(not(target_os = "none"))]
mod imp {
    pub(super) fn send(target: super::IpiTarget, vector: u8) {
        panic!("ukplat::ipi: cannot send vector {vector:#x} to {target:?}: host builds have no platform");
    }
}
