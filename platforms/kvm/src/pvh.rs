//! The PVH boot protocol: `struct hvm_start_info` (Xen's `arch-x86/hvm/start_info.h`)
//! turned into [`ukplat::BootInfo`].
//!
//! QEMU 7.2 fills version 1 (with a memory map) on microvm and q35. Its entries
//! are not sorted and microvm appends an all-zero entry; the struct, the map
//! and the command line live in low memory that later boot stages reuse, so
//! everything is copied into static storage here: [`Storage::init_static`]
//! builds it in place, in a static, since moving its 8 KiB around costs an
//! instruction per 8 bytes each time.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use ukplat::{BootInfo, MemoryKind, MemoryRegion, PhysRange};

/// `hvm_start_info.magic`.
pub const MAGIC: u32 = 0x336e_c578;
/// Most memory-map entries kept; more is a boot error.
pub const MAX_REGIONS: usize = 64;
/// Longest command line kept; longer is a boot error.
pub const MAX_CMDLINE: usize = 4096;
/// Memory below this address is left to the platform (real-mode trampolines,
/// BIOS data, the PVH structures themselves).
pub const LOW_MEMORY_END: u64 = 0x10_0000;
/// The boot map covers this much of the physical address space.
pub const MAPPED_END: u64 = 1 << 32;

/// `struct hvm_start_info`, version 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HvmStartInfo {
    /// [`MAGIC`].
    pub magic: u32,
    /// 0 or 1 (1 adds the memory map).
    pub version: u32,
    /// Flags (unused).
    pub flags: u32,
    /// Number of modules (unused).
    pub nr_modules: u32,
    /// Module list (unused).
    pub modlist_paddr: u64,
    /// NUL-terminated command line, 0 if none.
    pub cmdline_paddr: u64,
    /// ACPI RSDP, 0 if not provided.
    pub rsdp_paddr: u64,
    /// Memory map (version 1).
    pub memmap_paddr: u64,
    /// Entries in the memory map (version 1).
    pub memmap_entries: u32,
    /// Reserved.
    pub reserved: u32,
}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HvmMemmapEntry {
    /// Base address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// E820 type.
    pub kind: u32,
    /// Reserved.
    pub reserved: u32,
}

/// Why the boot information could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvhError {
    /// Wrong magic: not started through PVH.
    BadMagic(u32),
    /// Version 0 carries no memory map.
    NoMemoryMap(u32),
    /// More memory-map entries than [`MAX_REGIONS`].
    TooManyRegions(u32),
    /// Command line longer than [`MAX_CMDLINE`].
    CmdlineTooLong,
    /// Command line is not UTF-8.
    CmdlineNotUtf8,
}

impl core::fmt::Display for PvhError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::BadMagic(m) => {
                write!(f, "hvm_start_info magic is {m:#x}, expected {MAGIC:#x} (not a PVH boot?)")
            }
            Self::NoMemoryMap(v) => {
                write!(f, "hvm_start_info version {v} has no memory map (need version 1)")
            }
            Self::TooManyRegions(n) => {
                write!(f, "memory map has {n} entries, at most {MAX_REGIONS} are supported")
            }
            Self::CmdlineTooLong => write!(f, "command line longer than {MAX_CMDLINE} bytes"),
            Self::CmdlineNotUtf8 => write!(f, "command line is not valid UTF-8"),
        }
    }
}

/// Copies of everything `BootInfo` points to.
pub struct Storage {
    map: [MemoryRegion; MAX_REGIONS],
    map_len: usize,
    free: [PhysRange; 2 * MAX_REGIONS],
    free_len: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
}

impl Storage {
    /// Nothing stored yet. (The unused entries hold empty RAM ranges, not
    /// reserved ones: all-zero bytes, so a static `Storage` lands in `.bss`
    /// rather than adding 8 KiB of zeroes to the image.)
    pub const fn empty() -> Self {
        let empty = MemoryRegion { range: PhysRange { start: 0, end: 0 }, kind: MemoryKind::Ram };
        Self {
            map: [empty; MAX_REGIONS],
            map_len: 0,
            free: [PhysRange { start: 0, end: 0 }; 2 * MAX_REGIONS],
            free_len: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
        }
    }

    /// Builds the storage from the raw PVH data; `image` is the physical range
    /// of the loaded image, which is excluded from the free memory.
    pub fn new(
        start: &HvmStartInfo,
        memmap: &[HvmMemmapEntry],
        cmdline: &[u8],
        image: PhysRange,
    ) -> Result<Self, PvhError> {
        let mut storage = Self::empty();
        storage.fill(start, memmap, cmdline, image)?;
        Ok(storage)
    }

    /// As [`Storage::new`], but in the boot's one static storage, without
    /// moving it: the platform's entry calls this once.
    ///
    /// # Panics
    /// When called twice.
    pub fn init_static(
        start: &HvmStartInfo,
        memmap: &[HvmMemmapEntry],
        cmdline: &[u8],
        image: PhysRange,
    ) -> Result<&'static mut Self, PvhError> {
        static STORAGE: BootCell<Storage> = BootCell::new(Storage::empty());
        let storage = STORAGE.take().expect("pvh::Storage::init_static called twice");
        storage.fill(start, memmap, cmdline, image)?;
        Ok(storage)
    }

    /// Fills an [`empty`](Self::empty) storage; on an error nothing is
    /// stored.
    fn fill(
        &mut self,
        start: &HvmStartInfo,
        memmap: &[HvmMemmapEntry],
        cmdline: &[u8],
        image: PhysRange,
    ) -> Result<(), PvhError> {
        if start.magic != MAGIC {
            return Err(PvhError::BadMagic(start.magic));
        }
        if start.version < 1 {
            return Err(PvhError::NoMemoryMap(start.version));
        }
        if memmap.len() > MAX_REGIONS {
            return Err(PvhError::TooManyRegions(memmap.len() as u32));
        }
        if cmdline.len() > MAX_CMDLINE {
            return Err(PvhError::CmdlineTooLong);
        }
        core::str::from_utf8(cmdline).map_err(|_| PvhError::CmdlineNotUtf8)?;

        self.cmdline_len = cmdline.len();
        self.cmdline[..cmdline.len()].copy_from_slice(cmdline);

        for entry in memmap.iter().filter(|e| e.size != 0) {
            self.map[self.map_len] = MemoryRegion {
                range: PhysRange { start: entry.addr, end: entry.addr.saturating_add(entry.size) },
                kind: MemoryKind::from_e820(entry.kind),
            };
            self.map_len += 1;
        }
        self.map[..self.map_len].sort_unstable_by_key(|r| r.range.start);

        // Free memory: RAM within the boot map, above low memory, minus the image.
        for region in self.map[..self.map_len].iter().filter(|r| r.kind == MemoryKind::Ram) {
            let start = region.range.start.max(LOW_MEMORY_END);
            let end = region.range.end.min(MAPPED_END);
            for piece in subtract(PhysRange { start, end }, image) {
                if !piece.is_empty() {
                    self.free[self.free_len] = piece;
                    self.free_len += 1;
                }
            }
        }
        Ok(())
    }

    /// Takes `size` bytes aligned to `align` (a power of two) from the top
    /// of the highest free range that has room, and removes them from the
    /// free memory handed to the libraries. For what the platform needs
    /// before the heap exists (secondary CPUs' tables and stacks).
    pub fn reserve(&mut self, size: u64, align: u64) -> Option<u64> {
        debug_assert!(align.is_power_of_two());
        let free = &mut self.free[..self.free_len];
        let range = free.iter_mut().rev().find(|r| {
            r.end.checked_sub(size).map(|s| s & !(align - 1)).is_some_and(|start| start >= r.start)
        })?;
        let start = (range.end - size) & !(align - 1);
        range.end = start;
        Some(start)
    }

    /// The boot information over this storage; the caller fills in the
    /// topology and the PM timer.
    pub fn boot_info(&'static self, rsdp: Option<u64>, boot_tsc: u64, image: PhysRange) -> BootInfo {
        BootInfo {
            topology: ukplat::cpu::Topology::default(),
            pm_timer: None,
            machine: ukconfig::platform::MACHINE.as_str(),
            // Ring 0: the platform set up CR0/CR4 on every CPU.
            privileged: true,
            memory_map: &self.map[..self.map_len],
            free_memory: &self.free[..self.free_len],
            // Checked to be UTF-8 in `new`.
            cmdline: core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or(""),
            rsdp,
            boot_tsc,
            image,
        }
    }
}

/// A value in a `static`, handed out once as `&'static mut`: boot data that
/// the platform's entry builds in place (see [`Storage::init_static`],
/// `acpi::read`) rather than building it on the stack and moving it.
pub(crate) struct BootCell<T> {
    value: UnsafeCell<T>,
    taken: AtomicBool,
}

// SAFETY: the value is only reachable through `take`, which hands out the
// one `&'static mut` at most once (to one thread: so `T: Send`).
unsafe impl<T: Send> Sync for BootCell<T> {}

impl<T> BootCell<T> {
    /// A cell holding `value`, not yet taken.
    pub(crate) const fn new(value: T) -> Self {
        Self { value: UnsafeCell::new(value), taken: AtomicBool::new(false) }
    }

    /// The value, on the first call only.
    #[allow(clippy::mut_from_ref, reason = "hands out the one `&mut`, guarded by `taken`")]
    pub(crate) fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the flag above lets exactly one caller through, so this is
        // the only reference ever created to the value.
        Some(unsafe { &mut *self.value.get() })
    }
}

/// `range` minus `hole`: up to two pieces (either may be empty).
pub fn subtract(range: PhysRange, hole: PhysRange) -> [PhysRange; 2] {
    let empty = PhysRange::default();
    if hole.is_empty() || hole.end <= range.start || hole.start >= range.end {
        return [range, empty];
    }
    let below = PhysRange { start: range.start, end: hole.start.max(range.start) };
    let above = PhysRange { start: hole.end.min(range.end), end: range.end };
    [below, above]
}

/// Finds "RSD PTR " on a 16-byte boundary in the BIOS area, for VMMs that
/// leave `rsdp_paddr` zero.
///
/// # Safety
/// `0xE0000..0x100000` must be mapped and readable.
#[cfg(target_os = "none")]
pub unsafe fn scan_rsdp() -> Option<u64> {
    (0xE0000u64..0x100000).step_by(16).find(|&addr| {
        // SAFETY: the caller guarantees the BIOS area is mapped; 8 bytes at a
        // 16-byte aligned address below 1 MiB stay inside it.
        let sig = unsafe { core::ptr::read_volatile(addr as *const [u8; 8]) };
        &sig == b"RSD PTR "
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> HvmStartInfo {
        HvmStartInfo { magic: MAGIC, version: 1, ..Default::default() }
    }

    fn entry(addr: u64, size: u64, kind: u32) -> HvmMemmapEntry {
        HvmMemmapEntry { addr, size, kind, reserved: 0 }
    }

    const IMAGE: PhysRange = PhysRange { start: 0x10_0000, end: 0x12_0000 };

    #[test]
    fn unsorted_map_with_trailing_zero_entry() {
        // As QEMU's microvm reports it: reserved block first, RAM later, zero entry last.
        let map = [
            entry(0xfeff_c000, 0x4000, 2),
            entry(0, 0x9fc00, 1),
            entry(0x10_0000, 0x3f0_0000, 1),
            entry(0, 0, 0),
        ];
        let storage = Box::leak(Box::new(Storage::new(&start(), &map, b"a b", IMAGE).unwrap()));
        let info = storage.boot_info(None, 0, IMAGE);
        assert_eq!(info.memory_map.len(), 3);
        assert!(info.memory_map.windows(2).all(|w| w[0].range.start <= w[1].range.start));
        assert_eq!(info.free_memory, &[PhysRange { start: 0x12_0000, end: 0x400_0000 }]);
        assert_eq!(info.cmdline, "a b");
        assert_eq!(info.ram_bytes(), 0x9fc00 + 0x3f0_0000);
    }

    #[test]
    fn memory_above_the_boot_map_is_not_free() {
        let map = [entry(0x10_0000, 0x1_0000_0000, 1)];
        let storage = Box::leak(Box::new(Storage::new(&start(), &map, b"", IMAGE).unwrap()));
        let info = storage.boot_info(None, 0, IMAGE);
        assert_eq!(info.free_memory.last().unwrap().end, MAPPED_END);
    }

    #[test]
    fn reserve_takes_aligned_memory_from_the_top() {
        let map = [entry(0x10_0000, 0x3f0_0000, 1)];
        let mut storage = Box::new(Storage::new(&start(), &map, b"", IMAGE).unwrap());
        let a = storage.reserve(0x1_0000, 4096).unwrap();
        assert_eq!(a, 0x400_0000 - 0x1_0000);
        let b = storage.reserve(100, 4096).unwrap();
        assert_eq!(b, (a - 100) & !0xfff);
        assert!(storage.reserve(1 << 40, 4096).is_none());
        let storage: &'static Storage = Box::leak(storage);
        let info = storage.boot_info(None, 0, IMAGE);
        assert_eq!(info.free_memory, &[PhysRange { start: 0x12_0000, end: b }]);
    }

    #[test]
    fn errors_are_reported() {
        let bad = HvmStartInfo { magic: 1, ..start() };
        assert_eq!(Storage::new(&bad, &[], b"", IMAGE).err(), Some(PvhError::BadMagic(1)));
        let v0 = HvmStartInfo { version: 0, ..start() };
        assert_eq!(Storage::new(&v0, &[], b"", IMAGE).err(), Some(PvhError::NoMemoryMap(0)));
        let many = [entry(0, 1, 1); MAX_REGIONS + 1];
        assert!(matches!(Storage::new(&start(), &many, b"", IMAGE), Err(PvhError::TooManyRegions(_))));
        assert_eq!(Storage::new(&start(), &[], &[0xff], IMAGE).err(), Some(PvhError::CmdlineNotUtf8));
    }

    #[test]
    fn static_storage_is_built_in_place_once() {
        let map = [entry(0x10_0000, 0x3f0_0000, 1)];
        let storage = Storage::init_static(&start(), &map, b"x=1", IMAGE).unwrap();
        let info = storage.boot_info(None, 0, IMAGE);
        assert_eq!(info.cmdline, "x=1");
        assert_eq!(info.free_memory, &[PhysRange { start: 0x12_0000, end: 0x400_0000 }]);
        let again = std::panic::catch_unwind(|| Storage::init_static(&start(), &map, b"", IMAGE).is_ok());
        assert!(again.is_err(), "a second call panics");
    }

    #[test]
    fn boot_cell_hands_out_its_value_once() {
        static CELL: BootCell<u32> = BootCell::new(7);
        assert_eq!(CELL.take().copied(), Some(7));
        assert!(CELL.take().is_none());
    }

    #[test]
    fn subtract_cases() {
        let r = PhysRange { start: 10, end: 20 };
        assert_eq!(subtract(r, PhysRange { start: 0, end: 5 })[0], r);
        assert_eq!(
            subtract(r, PhysRange { start: 12, end: 15 }),
            [PhysRange { start: 10, end: 12 }, PhysRange { start: 15, end: 20 }]
        );
        let all = subtract(r, PhysRange { start: 0, end: 30 });
        assert!(all.iter().all(PhysRange::is_empty));
    }
}
