//! Inter-processor interrupts.
//!
//! Every IPI is one write of the interrupt command register: in x2APIC mode
//! one MSR write, in xAPIC mode two MMIO writes (destination, then command)
//! after waiting for the previous command to be delivered. Interrupts are
//! disabled around the write so an interrupt handler sending an IPI of its
//! own cannot slip in between the two xAPIC halves.
//!
//! Under a hypervisor each IPI is a VM exit; keep them off hot paths.

use crate::local::{self, Mode};

/// Where an IPI goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The CPU with this local APIC id (physical destination mode).
    Apic(u32),
    /// The sending CPU (the "self" shorthand).
    ToSelf,
    /// Every CPU but the sender ("all excluding self").
    AllButSelf,
    /// Every CPU, the sender included ("all including self").
    All,
}

/// What an IPI does on arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// An interrupt at `vector` (32–255).
    Fixed(u8),
    /// A non-maskable interrupt (vector 2, through the NMI gate).
    Nmi,
    /// INIT: the target resets into wait-for-SIPI.
    Init,
    /// Start-up: a CPU in wait-for-SIPI starts in real mode at
    /// `page * 4096` (CS = `page << 8`, IP = 0).
    Startup(u8),
}

const MODE_FIXED: u32 = 0b000 << 8;
const MODE_NMI: u32 = 0b100 << 8;
const MODE_INIT: u32 = 0b101 << 8;
const MODE_STARTUP: u32 = 0b110 << 8;
const LEVEL_ASSERT: u32 = 1 << 14;
const SHORTHAND_SELF: u32 = 0b01 << 18;
const SHORTHAND_ALL: u32 = 0b10 << 18;
const SHORTHAND_ALL_BUT_SELF: u32 = 0b11 << 18;

/// The interrupt command (low 32 bits of the ICR) and destination for an IPI.
pub const fn command(destination: Destination, delivery: Delivery) -> (u32, u32) {
    let (mode, vector) = match delivery {
        Delivery::Fixed(v) => (MODE_FIXED, v as u32),
        Delivery::Nmi => (MODE_NMI, 0),
        Delivery::Init => (MODE_INIT, 0),
        Delivery::Startup(page) => (MODE_STARTUP, page as u32),
    };
    let (shorthand, target) = match destination {
        Destination::Apic(id) => (0, id),
        Destination::ToSelf => (SHORTHAND_SELF, 0),
        Destination::AllButSelf => (SHORTHAND_ALL_BUT_SELF, 0),
        Destination::All => (SHORTHAND_ALL, 0),
    };
    (target, mode | LEVEL_ASSERT | shorthand | vector)
}

/// Sends an IPI.
///
/// In x2APIC mode a fixed IPI to the sending CPU uses the dedicated
/// SELF IPI register (cheaper than the ICR under a hypervisor).
pub fn send(destination: Destination, delivery: Delivery) {
    let _irq = ukplat::irq::IrqGuard::new();
    if let (Mode::X2Apic, Destination::ToSelf, Delivery::Fixed(vector)) =
        (local::mode(), destination, delivery)
    {
        local::write(local::reg::SELF_IPI, u32::from(vector));
        return;
    }
    let (target, low) = command(destination, delivery);
    local::write_icr(target, low);
}

/// Sends interrupt `vector` to `destination`.
///
/// ```no_run
/// apic::ipi::send_vector(apic::ipi::Destination::AllButSelf, ukplat::irq::vector::WAKEUP);
/// ```
pub fn send_vector(destination: Destination, vector: u8) {
    send(destination, Delivery::Fixed(vector));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_mode_shorthand_and_vector() {
        assert_eq!(command(Destination::Apic(3), Delivery::Fixed(0xf1)), (3, 0x40f1));
        assert_eq!(command(Destination::AllButSelf, Delivery::Fixed(0xf2)), (0, 0xc_40f2));
        assert_eq!(command(Destination::ToSelf, Delivery::Fixed(0x30)), (0, 0x4_4030));
        assert_eq!(command(Destination::All, Delivery::Nmi), (0, 0x8_4400));
        assert_eq!(command(Destination::Apic(1), Delivery::Init), (1, 0x4500));
        assert_eq!(command(Destination::Apic(1), Delivery::Startup(8)), (1, 0x4608));
    }
}
