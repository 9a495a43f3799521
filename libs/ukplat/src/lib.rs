//! # ukplat — the platform interface
//!
//! Libraries never talk to a platform directly. This crate defines what every
//! platform (`platforms/kvm` under QEMU, `platforms/linuxu` as a Linux
//! process) must provide, and the platform implements it — the direction
//! Unikraft's `include/uk/plat/` takes: libraries define the interface, the
//! platform implements it.
//!
//! | interface | registered by the platform with | used by libraries through |
//! |---|---|---|
//! | interrupt flag and halting until an interrupt | [`platform!`] (the [`platform::Platform`] trait) | [`irq::enable`], [`irq::disable`], [`irq::save`], [`irq::restore`], [`irq::IrqGuard`], [`irq::enable_and_halt`] |
//! | inter-processor interrupts: to one CPU, all others, self | [`platform!`] | [`ipi::send`], [`ipi::send_all_others`], [`ipi::send_self`] |
//! | per-CPU base register (GS) | [`platform!`] | [`cpu::init_this_cpu`], [`cpu::this_base`] |
//! | clock: the counter (TSC on kvm), finding its rate (kvm calibrates it: `platform.clock_source`), the time of day at boot (CMOS RTC on kvm) | [`platform!`] | [`clock::init`] (by `uktime`'s init only), [`clock::read`], [`clock::read_ordered`], [`clock::wall_time`] |
//! | per-CPU timer event at a counter deadline, periodic tick (local APIC timer on kvm: `platform.event_timer`) | [`platform!`] | [`timer::init`], [`timer::arm`], [`timer::periodic`], [`timer::stop`] (all by `uktime`) |
//! | the FPU trap lazy FPU switching needs (CR0.TS and #NM on kvm; none on linuxu) | [`platform!`] | [`fpu::can_trap`], [`fpu::set_trap`] (by `uksched`) |
//! | virtual memory: the image's own page tables (kvm) or host mappings (linuxu) | [`platform!`] | [`vmem::page_tables`], [`vmem::map`], [`vmem::readable`] (by `ukvmem`) |
//! | boot information (memory map, free memory, command line, RSDP, boot TSC, CPU topology, ring 0 or not) | [`enter_main`] | [`boot_info`], [`cpu::topology`] |
//! | console output device | [`console::register`] | [`console::write`] |
//! | shutdown with a status | [`exit::register`] | [`exit::exit`] |
//! | per-CPU header at GS (index, preemption counter, interrupt depth) | [`cpu::init_this_cpu`] on each CPU | [`cpu::this_cpu`], [`per_cpu!`], [`cpu::PreemptGuard`] |
//! | parked secondary CPUs | (starts them at boot, parks them in [`cpu::park_secondary`]) | [`cpu::release_secondaries`] |
//! | trap dispatch | (calls [`irq::take_interrupt`] for every interrupt, [`irq::handler`] for exceptions) | [`irq::register`], [`irq::allocate`] |
//! | interrupt controller | — (the `apic` library: [`irq::register_controller`]) | [`irq::eoi`], [`irq::route_isa_irq`] |
//! | fatal CPU-exception reports (shared text, decoding, backtrace, nesting guard) and the explanations in them | [`fault::report_fatal`] with a [`fault::FatalPlatform`] (CR2, its own lines, readable memory, halting) | [`fault::register_explainer`] |
//!
//! The operations in the first rows are resolved when the image links, not
//! registered at run time: the platform implements [`platform::Platform`]
//! and invokes [`platform!`] once, and release images (fat LTO) inline each
//! call down to the platform's instructions — `cargo xtask test` checks
//! that no call to them is left. See [`mod@platform`].
//!
//! After platform initialisation the platform calls [`enter_main`], which hands
//! control to the boot library's entry point (`__ukplat_main`, defined by
//! `ukboot::image_main!` in the image's root crate).
//!
//! [`once::Once`], the one-time initialisation cell behind the registrations
//! above, is also what the platform and `apic` keep their boot-time tables
//! in. [`slot::FnSlot`], a typed lock-free slot for one function pointer,
//! holds the registered functions (interrupt handlers, the reschedule hook,
//! the secondary CPUs' entry, fault explainers) here and in the libraries
//! above (the scheduler's hooks, the timer handler, the console tap).
//!
//! **Locks: none, and none needed.** The registered interfaces are
//! [`once::Once`] cells (set once at boot, then read with one load), the
//! interrupt handler table and the fault explainers are arrays of
//! [`slot::FnSlot`]s (atomic pointers: registering is one store or
//! compare-and-swap, calling one load), the reschedule hook and the
//! secondary CPUs' entry are single slots, and a per-CPU header's counters
//! are changed only by their own CPU (the reschedule flag that other CPUs
//! set is atomic). This crate
//! could not use `ukspin` anyway: `ukspin` sits above it (its locks are
//! built on the preemption counter and per-CPU data defined here), and
//! these cells must work where a `ukspin` lock cannot — before a CPU's
//! per-CPU header (GS) is set up, and in panic and exception reports. So
//! `ukspin.kind` has nothing to apply to here.
//!
//! **Needs:** `ukarch` (the trap frame, GS base, `pause`), `ukconfig` (the
//! platform options `cpus` and `max_cpus`, which every platform must
//! declare).
//! **Config options:** none of its own.
//!
//! ```
//! # fn main() {
//! use ukplat::console;
//!
//! struct Sink;
//! impl console::ConsoleDevice for Sink {
//!     fn name(&self) -> &'static str { "sink" }
//!     fn write(&self, _bytes: &[u8]) {}
//! }
//! static SINK: Sink = Sink;
//! console::register(&SINK);
//! console::write(b"hello\n");
//! assert_eq!(console::device_name(), Some("sink"));
//! # }
//! ```
#![cfg_attr(not(test), no_std)]

pub mod boot;
pub mod clock;
pub mod console;
pub mod cpu;
pub mod exit;
pub mod fault;
pub mod fpu;
pub mod ipi;
pub mod irq;
pub mod once;
pub mod platform;
pub mod slot;
pub mod timer;
pub mod vmem;

pub use boot::{BootInfo, MemoryKind, MemoryRegion, PhysRange, PmTimer, boot_info};

/// Stores `value` in `cell` unless something is there already (the first
/// registration wins); returns whether this call stored it.
fn register_once<T>(cell: &once::Once<T>, value: T) -> bool {
    let mut first = false;
    cell.call_once(|| {
        first = true;
        value
    });
    first
}

#[cfg(target_os = "none")]
unsafe extern "Rust" {
    /// Defined exactly once per image by `ukboot::image_main!` in the image's
    /// root crate (generated by `cargo xtask build`).
    fn __ukplat_main(info: &'static BootInfo) -> !;
}

/// Called once by the platform after its own initialisation: publishes the
/// boot information and runs the boot library's entry point, which never
/// returns.
#[cfg(target_os = "none")]
pub fn enter_main(info: BootInfo) -> ! {
    let info = boot::publish(info);
    // SAFETY: `__ukplat_main` is generated by `ukboot::image_main!` with
    // exactly this signature; the image fails to link if it is missing.
    unsafe { __ukplat_main(info) }
}
