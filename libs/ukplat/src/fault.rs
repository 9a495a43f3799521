//! Fatal CPU exceptions: the report every platform prints
//! ([`report_fatal`], in [`report`]), and the fault explainers, library
//! hooks that add lines of diagnosis to it.
//!
//! The report shows what the CPU saw (vector, error code, registers, CR2);
//! only a library knows what an address *means*. A library that owns part
//! of the address space registers an [`Explainer`] with
//! [`register_explainer`]; the report calls [`explain`] after the register
//! dump of every fatal exception (and `ukboot`'s panic handler after its
//! panic line), and each explainer that recognises the fault writes its
//! lines. `ukvmem` recognises accesses to the guard page
//! below a thread stack (`stack overflow: ...`); the scheduler names the
//! thread that was running (and, on a stack overflow, the stack's owner).
//!
//! Explainers run in the fatal-exception path: interrupts are disabled, the
//! machine is about to exit, and on a double fault the CPU is on its small
//! IST stack. They must not take locks that the faulting code may hold, must
//! not allocate, and should use little stack. A fault inside an explainer is
//! caught by the report's nested-fault guard (one line, then exit).
//!
//! The registry holds [`MAX_EXPLAINERS`] functions in lock-free
//! [`FnSlot`]s (like [`crate::cpu::set_resched_hook`]): registration is one compare-and-swap
//! and may happen at any time, from any CPU; [`explain`] only loads.
//!
//! ```
//! use core::fmt::Write;
//! use ukplat::fault::{self, FaultInfo};
//!
//! fn explain_low_addresses(info: &FaultInfo, out: &mut dyn Write) -> bool {
//!     if info.vector != fault::PAGE_FAULT || info.cr2 >= 0x1000 {
//!         return false;
//!     }
//!     let _ = writeln!(out, "null pointer: {:#x} is in page 0", info.cr2);
//!     true
//! }
//!
//! fault::register_explainer(explain_low_addresses).unwrap();
//! let info = FaultInfo { vector: fault::PAGE_FAULT, error_code: 0, rip: 0, rsp: 0, cr2: 8, cpu: Some(0) };
//! let mut report = String::new();
//! assert_eq!(fault::explain(&info, &mut report), 1);
//! assert_eq!(report, "null pointer: 0x8 is in page 0\n");
//! ```

pub mod report;

pub use report::{FatalPlatform, report_fatal};

use crate::slot::FnSlot;
use core::fmt::{self, Write};

/// Vector of the double fault (#DF).
pub const DOUBLE_FAULT: u8 = 8;
/// Vector of the invalid-TSS fault (#TS).
pub const INVALID_TSS: u8 = 10;
/// Vector of the segment-not-present fault (#NP).
pub const SEGMENT_NOT_PRESENT: u8 = 11;
/// Vector of the stack-segment fault (#SS).
pub const STACK_SEGMENT: u8 = 12;
/// Vector of the general-protection fault (#GP).
pub const GENERAL_PROTECTION: u8 = 13;
/// Vector of the page fault (#PF).
pub const PAGE_FAULT: u8 = 14;
/// Not a CPU vector: the [`FaultInfo::vector`] of a Rust panic, whose report
/// the panic handler also hands to the explainers (with the other fields
/// 0, except `cpu`), so that they can name the running thread.
pub const PANIC: u8 = u8::MAX;

/// What the platform knows about a fatal exception, as handed to explainers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultInfo {
    /// The exception vector (for example [`PAGE_FAULT`] or
    /// [`DOUBLE_FAULT`]).
    pub vector: u8,
    /// The error code the CPU pushed (0 for a #DF; for a #PF bit 0 = the
    /// page was present, bit 1 = write, bit 4 = instruction fetch).
    pub error_code: u64,
    /// The instruction pointer saved in the exception frame: for #PF the
    /// faulting instruction; for #DF the instruction whose fault could not
    /// be delivered.
    pub rip: u64,
    /// The stack pointer saved in the exception frame (the interrupted
    /// code's, not the exception handler's IST stack).
    pub rsp: u64,
    /// CR2, the linear address of the last page fault. For #PF the address
    /// that faulted. For #DF the address of the page fault whose delivery
    /// failed, when that is why the #DF happened — as on a stack overflow:
    /// the CPU cannot push the #PF frame onto an unmapped guard page, so it
    /// raises #DF on its IST stack with CR2 pointing into the guard page.
    /// 0 for the other vectors ([`report::uses_cr2`]).
    pub cr2: u64,
    /// The faulting CPU's index, or `None` when the fault came before its
    /// per-CPU header existed.
    pub cpu: Option<usize>,
}

/// An explainer: returns whether it recognised the fault (and then wrote
/// one or more complete lines, each ending in `\n`, to the writer).
pub type Explainer = fn(&FaultInfo, &mut dyn Write) -> bool;

/// How many explainers can be registered.
pub const MAX_EXPLAINERS: usize = 4;

/// [`register_explainer`] found every slot taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all {MAX_EXPLAINERS} fault-explainer slots are taken")
    }
}

/// A fixed set of explainer slots. The platform uses one global set
/// ([`register_explainer`], [`explain`]); a separate set is useful in tests.
pub struct Explainers {
    slots: [FnSlot<Explainer>; MAX_EXPLAINERS],
}

impl Explainers {
    /// An empty set.
    pub const fn new() -> Self {
        Self { slots: [const { FnSlot::new() }; MAX_EXPLAINERS] }
    }

    /// Adds `explainer` to the first free slot. Registering the same
    /// function again succeeds without taking a second slot.
    ///
    /// # Errors
    /// [`Full`] when all [`MAX_EXPLAINERS`] slots hold other functions.
    pub fn register(&self, explainer: Explainer) -> Result<(), Full> {
        for slot in &self.slots {
            match slot.store_if_empty(explainer) {
                Ok(()) => return Ok(()),
                Err(current) if core::ptr::fn_addr_eq(current, explainer) => return Ok(()),
                Err(_) => {}
            }
        }
        Err(Full)
    }

    /// How many explainers are registered.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_set()).count()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls every registered explainer, in registration order, with `info`
    /// and `out`; returns how many recognised the fault.
    pub fn explain(&self, info: &FaultInfo, out: &mut dyn Write) -> usize {
        let mut recognised = 0;
        for f in self.slots.iter().filter_map(FnSlot::load) {
            if f(info, out) {
                recognised += 1;
            }
        }
        recognised
    }
}

impl Default for Explainers {
    fn default() -> Self {
        Self::new()
    }
}

/// The platform's explainers.
static EXPLAINERS: Explainers = Explainers::new();

/// Registers `explainer` for every later fatal-exception and panic report
/// (first free of [`MAX_EXPLAINERS`] slots; the same function twice takes
/// one).
///
/// # Errors
/// [`Full`] when every slot holds another function.
pub fn register_explainer(explainer: Explainer) -> Result<(), Full> {
    EXPLAINERS.register(explainer)
}

/// Calls every registered explainer (called by [`report_fatal`] and by the
/// panic handler); returns how many recognised the fault.
pub fn explain(info: &FaultInfo, out: &mut dyn Write) -> usize {
    EXPLAINERS.explain(info, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_fault(cr2: u64) -> FaultInfo {
        FaultInfo { vector: PAGE_FAULT, cr2, cpu: Some(0), ..FaultInfo::default() }
    }

    fn low(info: &FaultInfo, out: &mut dyn Write) -> bool {
        info.cr2 < 0x1000 && writeln!(out, "low {:#x}", info.cr2).is_ok()
    }
    fn high(info: &FaultInfo, out: &mut dyn Write) -> bool {
        info.cr2 >= 0x1000 && writeln!(out, "high {:#x}", info.cr2).is_ok()
    }
    fn even(info: &FaultInfo, out: &mut dyn Write) -> bool {
        info.cr2.is_multiple_of(2) && writeln!(out, "even").is_ok()
    }
    fn never(_: &FaultInfo, _: &mut dyn Write) -> bool {
        false
    }
    fn double_fault_only(info: &FaultInfo, out: &mut dyn Write) -> bool {
        info.vector == DOUBLE_FAULT && writeln!(out, "#DF on {:?}", info.cpu).is_ok()
    }

    #[test]
    fn every_explainer_is_asked_in_order() {
        let set = Explainers::new();
        assert!(set.is_empty());
        let mut out = String::new();
        assert_eq!(set.explain(&page_fault(8), &mut out), 0);
        assert_eq!(out, "");

        set.register(low).unwrap();
        set.register(even).unwrap();
        set.register(high).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.explain(&page_fault(8), &mut out), 2);
        assert_eq!(out, "low 0x8\neven\n");
        out.clear();
        assert_eq!(set.explain(&page_fault(0x2001), &mut out), 1);
        assert_eq!(out, "high 0x2001\n");
    }

    #[test]
    fn the_registry_is_bounded_and_idempotent() {
        let set = Explainers::new();
        set.register(low).unwrap();
        set.register(low).unwrap();
        assert_eq!(set.len(), 1);
        set.register(high).unwrap();
        set.register(even).unwrap();
        set.register(never).unwrap();
        assert_eq!(set.len(), MAX_EXPLAINERS);
        assert_eq!(set.register(double_fault_only), Err(Full));
        // Already there: still fine when full.
        assert_eq!(set.register(even), Ok(()));
        assert_eq!(Full.to_string(), "all 4 fault-explainer slots are taken");
    }

    #[test]
    fn explainers_see_the_whole_fault() {
        let set = Explainers::new();
        set.register(double_fault_only).unwrap();
        let mut out = String::new();
        assert_eq!(set.explain(&page_fault(0), &mut out), 0);
        let info = FaultInfo { vector: DOUBLE_FAULT, cpu: None, ..FaultInfo::default() };
        assert_eq!(set.explain(&info, &mut out), 1);
        assert_eq!(out, "#DF on None\n");
    }

    #[test]
    fn concurrent_registration_takes_distinct_slots() {
        let set = std::sync::Arc::new(Explainers::new());
        let fns: [Explainer; 4] = [low, high, even, never];
        let threads: Vec<_> = fns
            .into_iter()
            .map(|f| {
                let set = set.clone();
                std::thread::spawn(move || set.register(f))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn the_global_registry() {
        fn marker(info: &FaultInfo, out: &mut dyn Write) -> bool {
            info.cr2 == 0xdead_0000 && writeln!(out, "marker").is_ok()
        }
        register_explainer(marker).unwrap();
        let mut out = String::new();
        assert!(explain(&page_fault(0xdead_0000), &mut out) >= 1);
        assert!(out.contains("marker\n"));
    }
}
