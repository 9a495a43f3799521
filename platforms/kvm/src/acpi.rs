//! Reading the firmware's ACPI tables: the MADT (CPUs, I/O APICs, ISA
//! interrupt overrides, local APIC address) and the FADT (PM timer).
//!
//! Why the `acpi` crate: it validates the RSDP, walks the RSDT/XSDT, checks
//! table checksums and decodes every MADT entry type, which is a lot of
//! careful byte-twiddling to own. Version 5.2 with `default-features =
//! false` needs neither nightly nor an allocator (6.x needs nightly). It
//! only needs a way to map physical memory: the boot map is an identity map
//! of the first 4 GiB, so mapping is the identity ([`IdentityMapped`]).
//!
//! The decoding into ukrs's own types is a pure function over
//! [`FirmwareEntry`] values ([`Madt::add`], [`Madt::collect`]), host-tested
//! without any table. `read` builds its result in place, in a static: the
//! [`Firmware`] is 4 KiB (room for 256 CPUs), and every move of it would
//! cost an instruction per 8 bytes.

use ukplat::PmTimer;
use ukplat::cpu::CpuDesc;
use ukplat::irq::{IoApicDesc, IsaOverride};

/// Most CPUs the firmware may list (more are ignored and counted).
pub const MAX_FIRMWARE_CPUS: usize = 256;
/// Most I/O APICs recorded.
pub const MAX_IO_APICS: usize = 8;
/// Most ISA overrides recorded (there are 16 ISA IRQs).
pub const MAX_OVERRIDES: usize = 16;

/// The MADT entries ukrs uses, decoded from the `acpi` crate's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareEntry {
    /// A processor's local APIC (entry types 0 and 9).
    Cpu {
        /// Local APIC id.
        apic_id: u32,
        /// ACPI processor UID.
        acpi_uid: u32,
        /// Flag bit 0: usable now.
        enabled: bool,
    },
    /// An I/O APIC (type 1).
    IoApic(IoApicDesc),
    /// An interrupt source override of an ISA IRQ (type 2, bus 0).
    Override(IsaOverride),
    /// A 64-bit local APIC address (type 5).
    LocalApicAddress(u64),
}

/// Decodes MPS INTI flags: (active low, level triggered). "Conforms to the
/// bus" (0) means ISA's active high, edge triggered.
pub const fn decode_inti_flags(flags: u16) -> (bool, bool) {
    let active_low = flags & 0b11 == 0b11;
    let level = (flags >> 2) & 0b11 == 0b11;
    (active_low, level)
}

/// What the MADT says, in ukrs's types.
#[derive(Clone, Copy, Debug)]
pub struct Madt {
    /// Usable CPUs in firmware order.
    pub cpus: [CpuDesc; MAX_FIRMWARE_CPUS],
    /// How many of `cpus` are set.
    pub cpu_count: usize,
    /// Usable CPUs beyond [`MAX_FIRMWARE_CPUS`], not recorded.
    pub cpus_dropped: usize,
    /// I/O APICs.
    pub io_apics: [IoApicDesc; MAX_IO_APICS],
    /// How many of `io_apics` are set.
    pub io_apic_count: usize,
    /// ISA interrupt overrides.
    pub overrides: [IsaOverride; MAX_OVERRIDES],
    /// How many of `overrides` are set.
    pub override_count: usize,
    /// Local APIC register address (the 64-bit override when present).
    pub local_apic_address: u64,
    /// PCAT_COMPAT: the machine also has 8259 PICs.
    pub has_8259: bool,
}

impl Madt {
    /// No entries yet; the table's 32-bit local APIC address and flags.
    pub const fn new(local_apic_address: u32, flags: u32) -> Self {
        const NO_CPU: CpuDesc = CpuDesc { apic_id: 0, acpi_uid: 0, online_tsc: 0 };
        const NO_IO_APIC: IoApicDesc = IoApicDesc { id: 0, address: 0, gsi_base: 0 };
        const NO_OVERRIDE: IsaOverride =
            IsaOverride { isa_irq: 0, gsi: 0, active_low: false, level_triggered: false };
        let mut madt = Self {
            cpus: [NO_CPU; MAX_FIRMWARE_CPUS],
            cpu_count: 0,
            cpus_dropped: 0,
            io_apics: [NO_IO_APIC; MAX_IO_APICS],
            io_apic_count: 0,
            overrides: [NO_OVERRIDE; MAX_OVERRIDES],
            override_count: 0,
            local_apic_address: 0,
            has_8259: false,
        };
        madt.set_header(local_apic_address, flags);
        madt
    }

    /// Sets what the table's header says: the 32-bit local APIC address
    /// (a later type-5 entry overrides it) and the flags.
    pub const fn set_header(&mut self, local_apic_address: u32, flags: u32) {
        self.local_apic_address = local_apic_address as u64;
        self.has_8259 = flags & 1 != 0;
    }

    /// Records one entry.
    pub fn add(&mut self, entry: FirmwareEntry) {
        match entry {
            FirmwareEntry::Cpu { enabled: false, .. } => {}
            FirmwareEntry::Cpu { apic_id, acpi_uid, enabled: true } => {
                if self.cpus[..self.cpu_count].iter().any(|c| c.apic_id == apic_id) {
                    // Both a type-0 and a type-9 entry for one CPU.
                    return;
                }
                if self.cpu_count < MAX_FIRMWARE_CPUS {
                    self.cpus[self.cpu_count] = CpuDesc { apic_id, acpi_uid, online_tsc: 0 };
                    self.cpu_count += 1;
                } else {
                    self.cpus_dropped += 1;
                }
            }
            FirmwareEntry::IoApic(desc) if self.io_apic_count < MAX_IO_APICS => {
                self.io_apics[self.io_apic_count] = desc;
                self.io_apic_count += 1;
            }
            FirmwareEntry::Override(o) if self.override_count < MAX_OVERRIDES => {
                self.overrides[self.override_count] = o;
                self.override_count += 1;
            }
            FirmwareEntry::LocalApicAddress(address) => self.local_apic_address = address,
            FirmwareEntry::IoApic(_) | FirmwareEntry::Override(_) => {}
        }
    }

    /// Collects `entries` (with the table's 32-bit local APIC address and
    /// flags) into a [`Madt`].
    pub fn collect(
        local_apic_address: u32,
        flags: u32,
        entries: impl Iterator<Item = FirmwareEntry>,
    ) -> Self {
        let mut madt = Self::new(local_apic_address, flags);
        entries.for_each(|entry| madt.add(entry));
        madt
    }

    /// The recorded CPUs.
    pub fn cpus(&self) -> &[CpuDesc] {
        &self.cpus[..self.cpu_count]
    }
}

/// What the platform needs from ACPI.
#[derive(Clone, Copy, Debug)]
pub struct Firmware {
    /// The MADT.
    pub madt: Madt,
    /// The PM timer, when the FADT has one in I/O space.
    pub pm_timer: Option<PmTimer>,
}

/// Why the ACPI tables could not be used.
#[derive(Clone, Copy, Debug)]
pub enum AcpiError {
    /// No RSDP was found.
    NoRsdp,
    /// The `acpi` crate refused the tables (bad RSDP, checksum, ...).
    Tables(&'static str),
    /// There is no MADT (the machine has no APIC description).
    NoMadt,
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoRsdp => f.write_str("no ACPI RSDP (neither in hvm_start_info nor in 0xE0000-0xFFFFF)"),
            Self::Tables(why) => write!(f, "ACPI tables unusable: {why}"),
            Self::NoMadt => f.write_str("the ACPI tables have no MADT (APIC description)"),
        }
    }
}

#[cfg(target_os = "none")]
mod tables {
    use super::*;
    use crate::pvh::BootCell;
    use acpi::madt::MadtEntry;
    use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
    use core::ptr::NonNull;

    /// Physical memory is identity-mapped (boot map: the first 4 GiB), so a
    /// "mapping" is the address itself.
    #[derive(Clone, Copy, Debug)]
    pub struct IdentityMapped;

    impl AcpiHandler for IdentityMapped {
        unsafe fn map_physical_region<T>(
            &self,
            physical_address: usize,
            size: usize,
        ) -> PhysicalMapping<Self, T> {
            // SAFETY: ACPI tables lie below 4 GiB on QEMU's machines, which
            // the boot map identity-maps; the crate only reads through the
            // pointer. A null address would be a firmware bug; the crate
            // never asks for it after validating the RSDP.
            unsafe {
                PhysicalMapping::new(
                    physical_address,
                    NonNull::new_unchecked(physical_address as *mut T),
                    size,
                    size,
                    *self,
                )
            }
        }

        fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
    }

    fn describe(e: acpi::AcpiError) -> &'static str {
        match e {
            acpi::AcpiError::NoValidRsdp => "no valid RSDP",
            acpi::AcpiError::RsdpIncorrectSignature => "bad RSDP signature",
            acpi::AcpiError::RsdpInvalidOemId => "bad RSDP OEM id",
            acpi::AcpiError::RsdpInvalidChecksum => "bad RSDP checksum",
            acpi::AcpiError::SdtInvalidSignature(_) => "bad table signature",
            acpi::AcpiError::SdtInvalidOemId(_) => "bad table OEM id",
            acpi::AcpiError::SdtInvalidTableId(_) => "bad table id",
            acpi::AcpiError::SdtInvalidChecksum(_) => "bad table checksum",
            acpi::AcpiError::TableMissing(_) => "table missing",
            _ => "invalid tables",
        }
    }

    /// Reads the MADT and the FADT through the RSDP at `rsdp`, into static
    /// memory (built in place: see the module documentation).
    ///
    /// # Panics
    /// When called twice.
    ///
    /// # Safety
    /// `rsdp` must be the physical address of the firmware's RSDP, and the
    /// tables must still be intact (nothing reused their memory).
    pub unsafe fn read(rsdp: u64) -> Result<&'static Firmware, AcpiError> {
        static FIRMWARE: BootCell<Firmware> =
            BootCell::new(Firmware { madt: Madt::new(0, 0), pm_timer: None });
        // SAFETY: forwarded caller contract; IdentityMapped maps truthfully.
        let tables = unsafe { AcpiTables::from_rsdp(IdentityMapped, rsdp as usize) }
            .map_err(|e| AcpiError::Tables(describe(e)))?;
        let madt = tables.find_table::<acpi::madt::Madt>().map_err(|_| AcpiError::NoMadt)?;
        let table = madt.get();
        let entries = table.entries().filter_map(|entry| match entry {
            MadtEntry::LocalApic(e) => Some(FirmwareEntry::Cpu {
                apic_id: u32::from(e.apic_id),
                acpi_uid: u32::from(e.processor_id),
                enabled: { e.flags } & 1 != 0,
            }),
            MadtEntry::LocalX2Apic(e) => Some(FirmwareEntry::Cpu {
                apic_id: e.x2apic_id,
                acpi_uid: e.processor_uid,
                enabled: { e.flags } & 1 != 0,
            }),
            MadtEntry::IoApic(e) => Some(FirmwareEntry::IoApic(IoApicDesc {
                id: e.io_apic_id,
                address: u64::from(e.io_apic_address),
                gsi_base: e.global_system_interrupt_base,
            })),
            MadtEntry::InterruptSourceOverride(e) if e.bus == 0 && e.irq < 16 => {
                let (active_low, level_triggered) = decode_inti_flags(e.flags);
                Some(FirmwareEntry::Override(IsaOverride {
                    isa_irq: e.irq,
                    gsi: e.global_system_interrupt,
                    active_low,
                    level_triggered,
                }))
            }
            MadtEntry::LocalApicAddressOverride(e) => {
                Some(FirmwareEntry::LocalApicAddress(e.local_apic_address))
            }
            _ => None,
        });
        let firmware = FIRMWARE.take().expect("acpi::read called twice");
        firmware.madt.set_header(table.local_apic_address, table.flags);
        entries.for_each(|entry| firmware.madt.add(entry));
        firmware.pm_timer = tables.find_table::<acpi::fadt::Fadt>().ok().and_then(|fadt| {
            let block = fadt.pm_timer_block().ok().flatten()?;
            let port = u16::try_from(block.address).ok()?;
            let io_space = matches!(block.address_space, acpi::address::AddressSpace::SystemIo);
            let bits = if { fadt.flags }.pm_timer_is_32_bit() { 32 } else { 24 };
            (io_space && port != 0).then_some(PmTimer { port, bits })
        });
        Ok(firmware)
    }
}

#[cfg(target_os = "none")]
pub use tables::read;

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(apic_id: u32, enabled: bool) -> FirmwareEntry {
        FirmwareEntry::Cpu { apic_id, acpi_uid: apic_id, enabled }
    }

    #[test]
    fn collects_usable_cpus_io_apics_and_overrides() {
        let entries = [
            cpu(0, true),
            cpu(1, true),
            cpu(2, false),
            cpu(1, true), // type 9 duplicate of a type 0 entry
            FirmwareEntry::IoApic(IoApicDesc { id: 0, address: 0xfec0_0000, gsi_base: 0 }),
            FirmwareEntry::Override(IsaOverride {
                isa_irq: 0,
                gsi: 2,
                active_low: false,
                level_triggered: false,
            }),
        ];
        let madt = Madt::collect(0xfee0_0000, 1, entries.into_iter());
        assert_eq!(madt.cpus().iter().map(|c| c.apic_id).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(madt.io_apic_count, 1);
        assert_eq!(madt.io_apics[0].address, 0xfec0_0000);
        assert_eq!(madt.overrides[..madt.override_count][0].gsi, 2);
        assert_eq!(madt.local_apic_address, 0xfee0_0000);
        assert!(madt.has_8259);
    }

    #[test]
    fn address_override_and_overflow() {
        let many = (0..MAX_FIRMWARE_CPUS as u32 + 3).map(|i| cpu(i, true));
        let madt =
            Madt::collect(0xfee0_0000, 0, many.chain([FirmwareEntry::LocalApicAddress(0x1_0000_0000)]));
        assert_eq!(madt.cpu_count, MAX_FIRMWARE_CPUS);
        assert_eq!(madt.cpus_dropped, 3);
        assert_eq!(madt.local_apic_address, 0x1_0000_0000);
        assert!(!madt.has_8259);
    }

    #[test]
    fn inti_flags() {
        assert_eq!(decode_inti_flags(0), (false, false));
        assert_eq!(decode_inti_flags(0b0001), (false, false));
        assert_eq!(decode_inti_flags(0b1111), (true, true));
        assert_eq!(decode_inti_flags(0b1101), (false, true));
        assert_eq!(decode_inti_flags(0b0011), (true, false));
    }
}
