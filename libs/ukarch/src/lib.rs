//! # ukarch — x86_64 CPU support
//!
//! The lowest layer: everything here is a thin, documented wrapper around one
//! CPU feature, usable from any context (no locks; no allocation except
//! `fpu::FpuState`, see below).
//!
//! | module | offers |
//! |---|---|
//! | [`cpu`] | CPUID: vendor, brand string, family/model, [`cpu::Features`] (x2APIC, TSC-deadline, kvmclock, ...), hypervisor leaf, APIC id |
//! | [`tsc`] | the time-stamp counter (`rdtsc`, ordered `rdtscp`) and its frequency when CPUID tells it |
//! | [`irq`] | the interrupt-flag instructions (`cli`, `sti`, `sti; hlt`, `pushf`) for ring-0 platforms; libraries use `ukplat::irq` (save, restore, guards) |
//! | [`barrier`] | memory barriers and the spin-wait hint |
//! | [`regs`] | control registers, RFLAGS, MSRs, GS base, port I/O, `hlt` |
//! | [`trap`] | [`trap::TrapFrame`], the register state saved on a trap |
//! | [`cache`] | [`cache::CacheAligned`], against false sharing |
//! | [`fpu`] | x87/SSE/AVX(/AVX-512) enabling per CPU ([`fpu::init_this_cpu`], XCR0), the save instruction and area size, CR0.TS for lazy switching, `FpuState` save areas (`alloc` feature) |
//!
//! Why these crates: `raw-cpuid` decodes CPUID leaves (vendor, brand string,
//! feature bits) far more completely than hand-written code would; `x86_64`
//! (on stable with `default-features = false, features = ["instructions"]`)
//! provides typed control registers, MSRs and port I/O.
//!
//! **Needs:** nothing above the CPU. **Config options:** none.
//!
//! **Cargo feature `alloc`** (off by default): `fpu::FpuState`, a save area
//! on the heap (`extern crate alloc`). An image that links `alloc` at all
//! needs a `#[global_allocator]`, which `ukalloc` provides and not every
//! image selects (the `exit` app has none), so crates that need save areas
//! (the scheduler) ask for it: `ukarch = { workspace = true, features =
//! ["alloc"] }`. Host unit tests always have it.
//!
//! ```
//! let before = ukarch::tsc::read();
//! ukarch::barrier::spin_hint();
//! assert!(ukarch::tsc::read() >= before);
//! ```
//!
//! The FPU pieces a lazy context switch uses (see [`fpu`]):
//!
//! ```
//! use ukarch::fpu;
//!
//! fpu::init_this_cpu(); // the platform does it on every CPU at bring-up
//! let cfg = fpu::config();
//! assert_eq!(cfg.components & fpu::component::SSE, fpu::component::SSE);
//! assert!(fpu::area_size() >= 512);
//! # #[cfg(feature = "alloc")]
//! # {
//! let mut area = fpu::FpuState::new(); // a new thread's initial state
//! assert_eq!((area.fcw(), area.mxcsr()), (0x37f, 0x1f80));
//! // switching away from a thread whose slice used the FPU (TS clear):
//! // SAFETY: init ran on this CPU, TS is clear, the state is this thread's.
//! unsafe { area.save() };
//! fpu::set_task_switched();
//! // the #NM handler, on the thread's next FPU instruction:
//! fpu::clear_task_switched();
//! // SAFETY: as above; `area` holds a saved state.
//! unsafe { area.restore() };
//! # }
//! ```
#![cfg_attr(not(test), no_std)]

#[cfg(any(feature = "alloc", test))]
extern crate alloc;

pub mod barrier;
pub mod cache;
pub mod cpu;
pub mod fpu;
pub mod irq;
pub mod regs;
pub mod trap;
pub mod tsc;
