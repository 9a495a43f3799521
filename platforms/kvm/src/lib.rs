//! # ukplat-kvm — the kvm platform
//!
//! Boots an image under QEMU with KVM or TCG on the `microvm` (default) and
//! `q35` machines through the PVH entry point, and implements the `ukplat`
//! interfaces:
//!
//! | piece | file |
//! |---|---|
//! | PVH note, 32-bit entry, boot page tables, long mode | `boot.S` |
//! | memory layout (load at 1 MiB, PT_NOTE for the entry) | `link.ld` |
//! | `hvm_start_info` → [`ukplat::BootInfo`] | [`pvh`] |
//! | GDT, TSS with IST stacks for #DF/NMI/#MC | `gdt` |
//! | IDT, exception entry stubs, exception reports | `trap` |
//! | console: 16550 UART at 0x3f8 | [`serial`] |
//! | shutdown with a status: `isa-debug-exit` at port 0xf4 | [`shutdown`] |
//!
//! Boot order in [`kvm_main`]: console, exit, CPU tables (GDT/TSS/IDT), boot
//! information, unmap page 0 (null-pointer accesses fault), then
//! [`ukplat::enter_main`].
//!
//! QEMU flags the platform needs (`cargo xtask run` passes them):
//! `-kernel IMAGE -device isa-debug-exit,iobase=0xf4,iosize=0x04 -serial stdio`,
//! `-cpu host,-arch-capabilities` under KVM, `-cpu max` under TCG.
//!
//! **Needs:** `ukplat`, `ukarch`, `ukconfig`, `x86_64`, `spin`.
//! **Config options** (`[platform]` in an app's config): `machine`, `cpus`,
//! `memory`, `accel`, `cmdline` — see `Kconfig.toml`.
#![cfg_attr(not(test), no_std)]

mod gdt;
pub mod pvh;
pub mod serial;
pub mod shutdown;
mod trap;

#[cfg(target_os = "none")]
mod entry {
    use crate::{pvh, serial, shutdown};
    use core::fmt::Write;
    use ukplat::PhysRange;

    core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));

    unsafe extern "C" {
        static kvm_boot_tsc: u64;
        static kvm_boot_pt0: u64;
        static __image_start: u8;
        static __image_end: u8;
    }

    static STORAGE: spin::Once<pvh::Storage> = spin::Once::new();

    /// Rust entry, called by `boot.S` in long mode on the boot stack.
    #[unsafe(no_mangle)]
    extern "C" fn kvm_main(start_info_paddr: u32) -> ! {
        serial::COM1_CONSOLE.init();
        ukplat::console::register(&serial::COM1_CONSOLE);
        ukplat::exit::register(shutdown::exit);
        crate::trap::init();

        let image = PhysRange {
            start: core::ptr::addr_of!(__image_start) as u64,
            end: core::ptr::addr_of!(__image_end) as u64,
        };
        // SAFETY: the PVH loader passes the physical address of a valid
        // `hvm_start_info` in %ebx; low memory is identity-mapped by boot.S.
        let start = unsafe { core::ptr::read(start_info_paddr as usize as *const pvh::HvmStartInfo) };
        let memmap: &[pvh::HvmMemmapEntry] = if start.version >= 1 && start.memmap_paddr != 0 {
            // SAFETY: version 1 start info points to `memmap_entries` entries
            // in identity-mapped low memory, which nothing has reused yet.
            unsafe {
                core::slice::from_raw_parts(
                    start.memmap_paddr as usize as *const pvh::HvmMemmapEntry,
                    start.memmap_entries as usize,
                )
            }
        } else {
            &[]
        };
        let cmdline: &[u8] = if start.cmdline_paddr != 0 {
            // SAFETY: the command line is a NUL-terminated string in
            // identity-mapped memory provided by the loader.
            unsafe { core::ffi::CStr::from_ptr(start.cmdline_paddr as usize as *const core::ffi::c_char) }
                .to_bytes()
        } else {
            &[]
        };
        let storage = match pvh::Storage::new(&start, memmap, cmdline, image) {
            Ok(storage) => STORAGE.call_once(|| storage),
            Err(error) => {
                let _ = writeln!(ukplat::console::Writer, "kvm: boot failed: {error}");
                shutdown::exit(ukplat::exit::FAILURE)
            }
        };
        let rsdp = match start.rsdp_paddr {
            // SAFETY: the BIOS area below 1 MiB is identity-mapped by boot.S.
            0 => unsafe { pvh::scan_rsdp() },
            paddr => Some(paddr),
        };
        // SAFETY: written once by boot.S before any Rust code ran.
        let boot_tsc = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(kvm_boot_tsc)) };
        let info = storage.boot_info(rsdp, boot_tsc, image);

        // Everything needed from low memory is copied: make page 0 fault.
        // SAFETY: PT0 maps the first 2 MiB; entry 0 is page 0, which no Rust
        // object lives in; `invlpg` drops the stale translation.
        unsafe {
            core::ptr::write_volatile(core::ptr::addr_of!(kvm_boot_pt0).cast_mut(), 0);
            core::arch::asm!("invlpg [{}]", in(reg) 0usize, options(nostack, preserves_flags));
        }
        ukplat::enter_main(info)
    }
}
