//! # ukarch — x86_64 CPU support
//!
//! The lowest layer: everything here is a thin, documented wrapper around one
//! CPU feature, usable from any context (no allocation, no locks).
//!
//! | module | offers |
//! |---|---|
//! | [`cpu`] | CPUID: vendor, brand string, family/model, [`cpu::Features`] (x2APIC, TSC-deadline, kvmclock, ...), hypervisor leaf, APIC id |
//! | [`tsc`] | the time-stamp counter (`rdtsc`, ordered `rdtscp`) and its frequency when CPUID tells it |
//! | [`irq`] | interrupt enable/disable, save/restore ([`irq::IrqGuard`]), `sti; hlt` |
//! | [`barrier`] | memory barriers and the spin-wait hint |
//! | [`regs`] | control registers, RFLAGS, MSRs, GS base, port I/O, `hlt` |
//! | [`trap`] | [`trap::TrapFrame`], the register state saved on a trap |
//! | [`cache`] | [`cache::CacheAligned`], against false sharing |
//!
//! Why these crates: `raw-cpuid` decodes CPUID leaves (vendor, brand string,
//! feature bits) far more completely than hand-written code would; `x86_64`
//! (on stable with `default-features = false, features = ["instructions"]`)
//! provides typed control registers, MSRs and port I/O.
//!
//! **Needs:** nothing above the CPU. **Config options:** none.
//!
//! ```
//! let before = ukarch::tsc::read();
//! ukarch::barrier::spin_hint();
//! assert!(ukarch::tsc::read() >= before);
//! ```
#![cfg_attr(not(test), no_std)]

pub mod barrier;
pub mod cache;
pub mod cpu;
pub mod irq;
pub mod regs;
pub mod trap;
pub mod tsc;
