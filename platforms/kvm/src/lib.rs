//! # ukplat-kvm — the kvm platform
//!
//! Boots an image under QEMU with KVM or TCG on the `microvm` (default) and
//! `q35` machines through the PVH entry point, and implements the `ukplat`
//! interfaces:
//!
//! | piece | file |
//! |---|---|
//! | PVH note, 32-bit entry, boot page tables, long mode | `boot.S`, `long_mode.S` (shared with the trampoline) |
//! | memory layout (load at 1 MiB, PT_NOTE for the entry) | `link.ld` |
//! | `hvm_start_info` → [`ukplat::BootInfo`] | [`pvh`] |
//! | ACPI: MADT (CPUs, I/O APICs, overrides), FADT (PM timer) | [`acpi`] |
//! | GDT, TSS with IST stacks for #DF/NMI/#MC, per CPU | `gdt` |
//! | IDT, trap entry stubs, dispatch to `ukplat::irq`, exception reports | `trap` |
//! | secondary CPUs: real-mode trampoline, INIT–SIPI–SIPI, parking | [`smp`], `ap_trampoline.S` |
//! | console: 16550 UART at 0x3f8 | [`serial`] |
//! | shutdown with a status: `isa-debug-exit` at port 0xf4 | [`shutdown`] |
//! | the `ukplat::platform` operations: interrupt flag, IPIs, per-CPU base, clock, timer | [`plat`] |
//! | clock: the TSC, its rate from CPUID, kvmclock, the ACPI PM timer or the PIT (`clock_source`, `calibration_ms`), when `ukplat::clock::init` asks | [`clock`] |
//! | time of day at boot: the CMOS RTC | [`rtc`] |
//! | per-CPU timer: the local APIC timer in TSC-deadline or one-shot mode (`event_timer`), its rate measured against the TSC | [`timer`] |
//!
//! Boot order in `kvm_main` (boot CPU, interrupts disabled throughout):
//! console and exit; GDT/TSS/IDT; the per-CPU header (GS) of CPU 0; the
//! boot information (memory map, command line); ACPI (MADT, FADT); the local
//! APIC (`apic::init_boot_cpu`, which may refuse the configured mode); the
//! secondary CPUs (started in parallel, parked); page 0 unmapped
//! (null-pointer accesses fault); then [`ukplat::enter_main`] with the
//! topology. A failure at any step is one line `kvm: ...` and exit status 1.
//! The TSC is not calibrated and the APIC timer not measured at boot: the
//! time library's init asks for them (`ukplat::clock::init`,
//! `ukplat::timer::init`), so images without `uktime` never wait for it.
//!
//! QEMU flags the platform needs (`cargo xtask run` passes them):
//! `-kernel IMAGE -device isa-debug-exit,iobase=0xf4,iosize=0x04 -serial stdio`,
//! `-cpu host,-arch-capabilities` under KVM, `-cpu max` under TCG.
//!
//! Locks: none. The boot data (PVH storage, ACPI tables, CPU list) are
//! written once by the boot CPU into `ukplat::once::Once` cells before any
//! other CPU runs; the platform's code before `ukplat::cpu::init_this_cpu`
//! (and every AP's before its own) could not take a `ukspin` lock anyway,
//! since those need the per-CPU header.
//!
//! **Needs:** `ukplat`, `ukarch`, `ukconfig`, `apic` (the local APIC for
//! INIT/SIPI, each CPU's enable, IPIs and the timer; selected by this
//! platform), `acpi`, `x86_64`; `uktest` for its in-guest tests of the
//! clock (feature `uktest`).
//! **Config options** (`[platform]` in an app's config): `machine`, `cpus`,
//! `max_cpus`, `memory`, `accel`, `cmdline`, `icount`, `clock_source`,
//! `calibration_ms`, `event_timer` — see `Kconfig.toml`.
#![cfg_attr(not(test), no_std)]

pub mod acpi;
pub mod clock;
#[cfg(feature = "uktest")]
mod clock_tests;
mod gdt;
pub mod plat;
pub mod pvh;
pub mod rtc;
pub mod serial;
pub mod shutdown;
pub mod smp;
pub mod timer;
mod trap;

core::arch::global_asm!(
    concat!(include_str!("long_mode.S"), include_str!("ap_trampoline.S")),
    options(att_syntax)
);

#[cfg(target_os = "none")]
mod entry {
    use crate::{pvh, serial, shutdown, smp};
    use core::fmt::Write;
    use ukplat::PhysRange;
    use ukplat::cpu::{CpuDesc, MAX_CPUS, Topology};
    use ukplat::once::Once;

    core::arch::global_asm!(
        concat!(include_str!("long_mode.S"), include_str!("boot.S")),
        options(att_syntax)
    );

    unsafe extern "C" {
        static kvm_boot_tsc: u64;
        static kvm_boot_pt0: u64;
        static __image_start: u8;
        static __image_end: u8;
    }

    static CPUS: Once<[CpuDesc; MAX_CPUS]> = Once::new();

    /// Reports a boot failure in one line and exits with status 1.
    fn fail(what: core::fmt::Arguments<'_>) -> ! {
        let _ = writeln!(ukplat::console::Writer, "kvm: boot failed: {what}");
        shutdown::exit(ukplat::exit::FAILURE)
    }

    /// Rust entry, called by `boot.S` in long mode on the boot stack.
    #[unsafe(no_mangle)]
    extern "C" fn kvm_main(start_info_paddr: u32) -> ! {
        serial::COM1_CONSOLE.init();
        ukplat::console::register(&serial::COM1_CONSOLE);
        ukplat::exit::register(shutdown::exit);
        crate::trap::init();
        // Before any library init: x87/SSE (and AVX where offered) usable,
        // in the initial state; after the IDT so a fault here is reported.
        ukarch::fpu::init_this_cpu();
        let boot_apic_id = ukarch::cpu::apic_id();
        // SAFETY: the boot CPU is CPU 0; interrupts are disabled; the GDT
        // load (which nulls GS) is done.
        unsafe { ukplat::cpu::init_this_cpu(0, boot_apic_id) };
        // SAFETY: written once by boot.S before any Rust code ran.
        let boot_tsc = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(kvm_boot_tsc)) };

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
        let storage = match pvh::Storage::init_static(&start, memmap, cmdline, image) {
            Ok(storage) => storage,
            Err(error) => fail(format_args!("{error}")),
        };
        let rsdp = match start.rsdp_paddr {
            // SAFETY: the BIOS area below 1 MiB is identity-mapped by boot.S.
            0 => unsafe { pvh::scan_rsdp() },
            paddr => Some(paddr),
        };
        // SAFETY: the RSDP is the firmware's, and nothing has reused the
        // memory of the tables yet (the trampoline is copied later).
        let firmware = match rsdp.map(|rsdp| unsafe { crate::acpi::read(rsdp) }) {
            Some(Ok(firmware)) => firmware,
            Some(Err(error)) => fail(format_args!("{error}")),
            None => fail(format_args!("{}", crate::acpi::AcpiError::NoRsdp)),
        };

        // SAFETY: boot CPU, interrupts disabled, IDT and GS set up.
        if let Err(error) = unsafe { apic::init_boot_cpu() } {
            fail(format_args!("apic: {error}"));
        }

        let plan = match smp::plan(firmware.madt.cpus(), boot_apic_id, ukconfig::platform::CPUS) {
            Ok(plan) => plan,
            Err(error) => fail(format_args!("{error}")),
        };
        smp::record(&plan, boot_tsc);
        let mut bringup_start_tsc = 0;
        if plan.count > 1 {
            let needed = (plan.count - 1) as u64 * size_of::<smp::ApMemory>() as u64;
            let Some(memory) = storage.reserve(needed, 4096) else {
                fail(format_args!("{}", smp::SmpError::OutOfMemory { needed }))
            };
            // SAFETY: boot CPU, interrupts disabled, after apic init;
            // `memory` was just reserved (removed from the free memory the
            // heap gets); the trampoline page 0x8000 is low memory that
            // nothing uses once the start info and ACPI tables were read.
            match unsafe { smp::start_secondaries(plan.count, memory) } {
                Ok(began) => bringup_start_tsc = began,
                Err(error) => fail(format_args!("{error}")),
            }
        }
        let cpus = CPUS.call_once(|| {
            let mut cpus = [CpuDesc::default(); MAX_CPUS];
            smp::descriptions(&mut cpus);
            cpus
        });

        let storage: &'static pvh::Storage = storage;
        let madt = &firmware.madt;
        let info = ukplat::BootInfo {
            topology: Topology {
                cpus: &cpus[..plan.count],
                cpus_in_firmware: madt.cpu_count + madt.cpus_dropped,
                bringup_start_tsc,
                local_apic_address: madt.local_apic_address,
                io_apics: &madt.io_apics[..madt.io_apic_count],
                isa_overrides: &madt.overrides[..madt.override_count],
                has_8259: madt.has_8259,
            },
            pm_timer: firmware.pm_timer,
            ..storage.boot_info(rsdp, boot_tsc, image)
        };

        // Everything needed from low memory is copied: make page 0 fault.
        // SAFETY: PT0 maps the first 2 MiB; entry 0 is page 0, which no Rust
        // object lives in; `invlpg` drops the stale translation. The other
        // CPUs never touched page 0 (their trampoline is at 0x8000).
        unsafe {
            core::ptr::write_volatile(core::ptr::addr_of!(kvm_boot_pt0).cast_mut(), 0);
            core::arch::asm!("invlpg [{}]", in(reg) 0usize, options(nostack, preserves_flags));
        }
        ukplat::enter_main(info)
    }
}
