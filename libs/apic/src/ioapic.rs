//! The I/O APIC: routes device interrupt lines (global system interrupts,
//! GSIs) to vectors on chosen CPUs.
//!
//! Registers are reached indirectly: write the register number to IOREGSEL
//! (offset 0x00), then read or write IOWIN (offset 0x10). A spinlock with
//! interrupts disabled (`ukspin::SpinLockIrq`, of the configured
//! `ukspin.kind`) keeps the pair together. Redirection entry `n` is
//! registers `0x10 + 2n` (low: vector, polarity, trigger, mask) and
//! `0x11 + 2n` (high: destination APIC id in bits 31:24).
//!
//! ISA IRQs reach GSI n unless the firmware's MADT has an interrupt source
//! override for them (QEMU overrides IRQ 0 to GSI 2, and the PCI-style
//! level/active-low IRQs 5, 9, 10, 11 on q35).

use core::ptr::NonNull;
use ukplat::irq::{IoApicDesc, IrqError, IsaOverride};
use volatile::VolatilePtr;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;

const RTE_ACTIVE_LOW: u32 = 1 << 13;
const RTE_LEVEL: u32 = 1 << 15;
const RTE_MASKED: u32 = 1 << 16;

/// Most I/O APICs supported.
pub const MAX_IO_APICS: usize = 8;

/// One I/O APIC.
pub struct IoApic {
    desc: IoApicDesc,
    lock: ukspin::SpinLockIrq<()>,
}

/// A redirection entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirection {
    /// The vector delivered.
    pub vector: u8,
    /// Destination local APIC id (physical mode).
    pub destination: u8,
    /// Active-low input.
    pub active_low: bool,
    /// Level-triggered input.
    pub level_triggered: bool,
    /// Masked.
    pub masked: bool,
}

impl Redirection {
    /// The (low, high) register words.
    pub const fn encode(&self) -> (u32, u32) {
        let mut low = self.vector as u32;
        if self.active_low {
            low |= RTE_ACTIVE_LOW;
        }
        if self.level_triggered {
            low |= RTE_LEVEL;
        }
        if self.masked {
            low |= RTE_MASKED;
        }
        (low, (self.destination as u32) << 24)
    }

    /// Decodes the (low, high) register words (fixed delivery, physical
    /// destination, as [`IoApic::set`] writes them).
    pub const fn decode(low: u32, high: u32) -> Self {
        Self {
            vector: low as u8,
            destination: (high >> 24) as u8,
            active_low: low & RTE_ACTIVE_LOW != 0,
            level_triggered: low & RTE_LEVEL != 0,
            masked: low & RTE_MASKED != 0,
        }
    }
}

impl IoApic {
    /// The I/O APIC described by `desc`.
    pub const fn new(desc: IoApicDesc) -> Self {
        Self { desc, lock: ukspin::SpinLockIrq::new(()) }
    }

    /// Its firmware description.
    pub fn desc(&self) -> &IoApicDesc {
        &self.desc
    }

    fn reg(&self, offset: u64) -> VolatilePtr<'static, u32> {
        // SAFETY: the firmware reports the register block's physical address;
        // it lies in 0xFEC00000.. which the platform's boot map identity-maps
        // uncached; offsets 0x00 and 0x10 are the aligned IOREGSEL/IOWIN.
        unsafe { VolatilePtr::new(NonNull::new_unchecked((self.desc.address + offset) as *mut u32)) }
    }

    fn read(&self, register: u32) -> u32 {
        let _lock = self.lock.lock();
        self.reg(IOREGSEL).write(register);
        self.reg(IOWIN).read()
    }

    fn write(&self, register: u32, value: u32) {
        let _lock = self.lock.lock();
        self.reg(IOREGSEL).write(register);
        self.reg(IOWIN).write(value);
    }

    /// Its id register (bits 27:24).
    pub fn id(&self) -> u8 {
        ((self.read(REG_ID) >> 24) & 0xf) as u8
    }

    /// Number of inputs (redirection entries).
    pub fn pins(&self) -> u32 {
        ((self.read(REG_VERSION) >> 16) & 0xff) + 1
    }

    /// Whether GSI `gsi` is one of its inputs.
    pub fn serves(&self, gsi: u32) -> bool {
        gsi >= self.desc.gsi_base && gsi < self.desc.gsi_base + self.pins()
    }

    /// Reads the redirection entry of input `pin`.
    pub fn get(&self, pin: u32) -> Redirection {
        let low = self.read(REG_REDIRECTION + 2 * pin);
        let high = self.read(REG_REDIRECTION + 2 * pin + 1);
        Redirection::decode(low, high)
    }

    /// Writes the redirection entry of input `pin`: masked first, the
    /// destination, then the final low word, so the input is never live
    /// with half an entry.
    pub fn set(&self, pin: u32, entry: Redirection) {
        let (low, high) = entry.encode();
        self.write(REG_REDIRECTION + 2 * pin, RTE_MASKED);
        self.write(REG_REDIRECTION + 2 * pin + 1, high);
        self.write(REG_REDIRECTION + 2 * pin, low);
    }

    /// Masks every input.
    pub fn mask_all(&self) {
        for pin in 0..self.pins() {
            self.write(REG_REDIRECTION + 2 * pin, RTE_MASKED);
        }
    }
}

/// Where ISA IRQ `irq` arrives: its GSI and signalling, from the overrides
/// (ISA default: GSI = IRQ, edge-triggered, active high).
pub fn isa_route(irq: u8, overrides: &[IsaOverride]) -> IsaOverride {
    overrides.iter().find(|o| o.isa_irq == irq).copied().unwrap_or(IsaOverride {
        isa_irq: irq,
        gsi: u32::from(irq),
        active_low: false,
        level_triggered: false,
    })
}

/// Routes ISA IRQ `irq` to `vector` on the CPU with APIC id `apic_id`
/// through whichever of `io_apics` serves its GSI.
///
/// # Errors
/// [`IrqError::NoRoute`] when no I/O APIC serves the GSI, or the
/// destination id does not fit the 8-bit physical destination field.
pub fn route_isa(
    io_apics: &[IoApic],
    overrides: &[IsaOverride],
    irq: u8,
    vector: u8,
    apic_id: u32,
) -> Result<(), IrqError> {
    let route = isa_route(irq, overrides);
    let destination = u8::try_from(apic_id).map_err(|_| IrqError::NoRoute(irq))?;
    let io_apic = io_apics.iter().find(|a| a.serves(route.gsi)).ok_or(IrqError::NoRoute(irq))?;
    io_apic.set(
        route.gsi - io_apic.desc.gsi_base,
        Redirection {
            vector,
            destination,
            active_low: route.active_low,
            level_triggered: route.level_triggered,
            masked: false,
        },
    );
    Ok(())
}

/// Masks ISA IRQ `irq` again.
pub fn mask_isa(io_apics: &[IoApic], overrides: &[IsaOverride], irq: u8) {
    let route = isa_route(irq, overrides);
    if let Some(io_apic) = io_apics.iter().find(|a| a.serves(route.gsi)) {
        let pin = route.gsi - io_apic.desc.gsi_base;
        let entry = Redirection { masked: true, ..io_apic.get(pin) };
        io_apic.set(pin, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirection_entries_round_trip() {
        let entry = Redirection {
            vector: 0x24,
            destination: 3,
            active_low: true,
            level_triggered: true,
            masked: false,
        };
        let (low, high) = entry.encode();
        assert_eq!(low, 0xa024);
        assert_eq!(high, 0x0300_0000);
        assert_eq!(Redirection::decode(low, high), entry);
        let masked = Redirection { masked: true, ..entry };
        assert_eq!(masked.encode().0 & RTE_MASKED, RTE_MASKED);
    }

    #[test]
    fn isa_routes_follow_overrides() {
        let overrides = [
            IsaOverride { isa_irq: 0, gsi: 2, active_low: false, level_triggered: false },
            IsaOverride { isa_irq: 9, gsi: 9, active_low: true, level_triggered: true },
        ];
        assert_eq!(isa_route(0, &overrides).gsi, 2);
        assert!(isa_route(9, &overrides).level_triggered);
        let serial = isa_route(4, &overrides);
        assert_eq!((serial.gsi, serial.active_low, serial.level_triggered), (4, false, false));
    }
}
