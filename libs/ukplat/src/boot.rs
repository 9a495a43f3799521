//! Boot information handed from the platform to the libraries.

use core::fmt;

/// What a region of physical memory is, as the firmware/VMM reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM.
    Ram,
    /// Reserved by firmware or devices.
    Reserved,
    /// ACPI tables, reclaimable after they are parsed.
    AcpiReclaimable,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Defective memory.
    Unusable,
    /// A type this interface does not know (the raw E820 type).
    Other(u32),
}

impl MemoryKind {
    /// Maps an E820 / `hvm_memmap_table_entry` type to a kind.
    pub const fn from_e820(kind: u32) -> Self {
        match kind {
            1 => Self::Ram,
            2 => Self::Reserved,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Unusable,
            other => Self::Other(other),
        }
    }
}

/// A half-open range of physical addresses `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl PhysRange {
    /// Size in bytes (0 for an empty or inverted range).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True when the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

/// One entry of the firmware memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// The addresses it covers.
    pub range: PhysRange,
    /// What it is.
    pub kind: MemoryKind,
}

/// The ACPI power-management timer: a free-running counter in I/O space at
/// [`PmTimer::HZ`], 24 or 32 bits wide (q35 has one; microvm's
/// hardware-reduced ACPI does not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimer {
    /// Its I/O port.
    pub port: u16,
    /// Counter width: 24 or 32.
    pub bits: u8,
}

impl PmTimer {
    /// Its rate.
    pub const HZ: u64 = 3_579_545;
}

/// Everything the platform learned while booting.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// The firmware memory map, sorted by address, empty entries dropped.
    pub memory_map: &'static [MemoryRegion],
    /// RAM the platform does not use itself (the image, boot page tables,
    /// low memory are excluded), sorted by address: the heap's raw material.
    pub free_memory: &'static [PhysRange],
    /// The kernel command line (`-append`), empty when none was given.
    pub cmdline: &'static str,
    /// Physical address of the ACPI RSDP, when the platform found one.
    pub rsdp: Option<u64>,
    /// Time-stamp counter read by the very first instruction of the image.
    pub boot_tsc: u64,
    /// Physical range occupied by the loaded image (text, data, bss).
    pub image: PhysRange,
    /// The CPUs, I/O APICs and ISA interrupt overrides.
    pub topology: crate::cpu::Topology,
    /// The ACPI PM timer, when the firmware describes one.
    pub pm_timer: Option<PmTimer>,
    /// What the platform runs the image on, for the boot banner (kvm: the
    /// QEMU machine type; linuxu: `linux process`).
    pub machine: &'static str,
    /// Whether the image runs with the CPU's full privilege (kvm: ring 0),
    /// owning the control registers, MSRs and I/O ports that the platform
    /// set up; `false` where it runs as a user process (linuxu: Linux owns
    /// CR0/CR4, and privileged instructions fault). Tests of what the
    /// platform programmed into such registers skip without it.
    pub privileged: bool,
}

impl BootInfo {
    /// Total RAM in the memory map, in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.memory_map.iter().filter(|r| r.kind == MemoryKind::Ram).map(|r| r.range.len()).sum()
    }

    /// Total free RAM handed to the libraries, in bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free_memory.iter().map(PhysRange::len).sum()
    }
}

static BOOT_INFO: crate::once::Once<BootInfo> = crate::once::Once::new();

/// Stores the boot information; the first call wins.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) fn publish(info: BootInfo) -> &'static BootInfo {
    BOOT_INFO.call_once(|| info)
}

/// The boot information, once the platform has handed over to the libraries.
///
/// # Panics
/// When called before the platform published it (i.e. from platform code
/// running before [`crate::enter_main`]).
pub fn boot_info() -> &'static BootInfo {
    BOOT_INFO.get().expect("ukplat::boot_info() called before the platform published it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_types_map_to_kinds() {
        assert_eq!(MemoryKind::from_e820(1), MemoryKind::Ram);
        assert_eq!(MemoryKind::from_e820(4), MemoryKind::AcpiNvs);
        assert_eq!(MemoryKind::from_e820(17), MemoryKind::Other(17));
    }

    #[test]
    fn ram_and_free_totals() {
        static MAP: [MemoryRegion; 3] = [
            MemoryRegion { range: PhysRange { start: 0, end: 0x9fc00 }, kind: MemoryKind::Ram },
            MemoryRegion { range: PhysRange { start: 0xf0000, end: 0x100000 }, kind: MemoryKind::Reserved },
            MemoryRegion { range: PhysRange { start: 0x100000, end: 0x800000 }, kind: MemoryKind::Ram },
        ];
        static FREE: [PhysRange; 1] = [PhysRange { start: 0x200000, end: 0x800000 }];
        let info = BootInfo {
            memory_map: &MAP,
            free_memory: &FREE,
            cmdline: "",
            rsdp: None,
            boot_tsc: 0,
            image: PhysRange { start: 0x100000, end: 0x200000 },
            topology: crate::cpu::Topology::default(),
            pm_timer: None,
            machine: "test",
            privileged: false,
        };
        assert_eq!(info.ram_bytes(), 0x9fc00 + 0x700000);
        assert_eq!(info.free_bytes(), 0x600000);
        assert!(PhysRange { start: 5, end: 3 }.is_empty());
    }
}
