//! CPU exceptions and interrupts: the IDT, the entry stubs and the dispatcher.
//!
//! # Path of a trap
//!
//! 1. The CPU looks up the vector's gate in the [`IDT`] (one table shared by
//!    all CPUs; 256 interrupt gates, DPL 0, code selector [`gdt::KERNEL_CS`]).
//!    #DF, NMI and #MC switch to their own IST stack (see `gdt.rs`), every
//!    other vector runs on the interrupted stack.
//! 2. The vector's 16-byte stub in `trap_entry.S` pushes a dummy error code
//!    when the CPU pushes none, then the vector number, and jumps to the
//!    common path, which saves the 15 general-purpose registers: the stack
//!    now holds a [`TrapFrame`]. It calls [`trap_dispatch`] with a pointer to
//!    it, restores the (possibly modified) registers and returns with `iretq`.
//! 3. [`trap_dispatch`] calls the handler registered for the vector in
//!    `ukplat::irq` (libraries register there: the APIC's, the timer's, the
//!    cross-CPU calls'), between `ukplat::cpu::irq_enter`/`irq_exit` for
//!    vectors 32–255; without a handler the trap is fatal: [`fatal`] reads
//!    CR2 and hands the frame to `ukplat::fault::report_fatal`, which
//!    writes the report to the console and exits with
//!    [`ukplat::exit::CPU_EXCEPTION`].
//!
//! All 256 gates are present from [`init`] on, so an interrupt nobody
//! registered is reported by its own vector number (`UNHANDLED INTERRUPT`)
//! rather than as a #NP on its gate.
//!
//! # Reports
//!
//! The report of a fatal trap is the same on every platform and lives in
//! `ukplat::fault::report`, whose documentation shows and explains it: its
//! text, the vector names and error-code decoding, the fault explainers'
//! lines, the frame-pointer backtrace, and the guard against faults while
//! reporting (one line, then silence, then a halted CPU; the first CPU to
//! trap wins). kvm supplies only what it alone knows ([`KvmFatal`]): CR2,
//! read first thing for #PF and #DF; the `CR0: ...  CR3: ...  CR4: ...`
//! line after the registers; which stack words the backtrace may read (a
//! walk of the live page tables, [`mapped`], so that thread stacks above the
//! identity map get a backtrace too); and how to stop a CPU (`cli; hlt`).

use crate::gdt;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

core::arch::global_asm!(include_str!("trap_entry.S"), options(att_syntax));

/// Number of IDT vectors.
pub const VECTORS: usize = 256;
/// Vectors below this one are CPU exceptions.
pub const FIRST_INTERRUPT_VECTOR: u8 = 32;
/// Size of each entry stub in `trap_entry.S`.
const STUB_SIZE: u64 = 16;

/// Vector numbers of the exceptions the code refers to.
pub mod vector {
    /// Non-maskable interrupt.
    pub const NMI: u8 = 2;
    /// Double fault.
    pub const DOUBLE_FAULT: u8 = 8;
    /// Machine check.
    pub const MACHINE_CHECK: u8 = 18;
}

pub use ukarch::trap::TrapFrame;

// ---------------------------------------------------------------------------
// The IDT

/// The interrupt descriptor table: 256 16-byte gates, shared by all CPUs.
/// Atomics give interior mutability for [`register`] while CPUs use it; the
/// all-zero initial value puts it in `.bss`.
#[repr(C, align(16))]
pub struct Idt {
    gates: [[AtomicU64; 2]; VECTORS],
}

/// The IDT every CPU loads.
pub static IDT: Idt = Idt { gates: [const { [AtomicU64::new(0), AtomicU64::new(0)] }; VECTORS] };

/// Gate type "64-bit interrupt gate" (IF is cleared on entry).
const GATE_INTERRUPT: u64 = 0xe;
/// Gate present bit (in the type/attribute byte).
const GATE_PRESENT: u64 = 0x80;

/// Encodes a 64-bit interrupt gate (DPL 0).
const fn encode_gate(handler: u64, selector: u16, ist: u8, present: bool) -> [u64; 2] {
    let attributes = GATE_INTERRUPT | if present { GATE_PRESENT } else { 0 };
    let low = (handler & 0xffff)
        | ((selector as u64) << 16)
        | (((ist & 0x7) as u64) << 32)
        | (attributes << 40)
        | (((handler >> 16) & 0xffff) << 48);
    [low, handler >> 32]
}

/// The IST index a vector's gate uses (0: none).
const fn ist_for(vector: u8) -> u8 {
    match vector {
        vector::DOUBLE_FAULT => gdt::IST_DOUBLE_FAULT,
        vector::NMI => gdt::IST_NMI,
        vector::MACHINE_CHECK => gdt::IST_MACHINE_CHECK,
        _ => 0,
    }
}

unsafe extern "C" {
    /// First entry stub (`trap_entry.S`); vector v's is `STUB_SIZE * v` further.
    static trap_stubs: u8;
    /// One past the last stub.
    static trap_stubs_end: u8;
}

/// Address of the entry stub of `vector`.
fn stub_address(vector: u8) -> u64 {
    core::ptr::addr_of!(trap_stubs) as u64 + STUB_SIZE * u64::from(vector)
}

impl Idt {
    /// Writes all 256 gates, present, pointing at the stubs in
    /// `trap_entry.S`. Relaxed stores: called before any CPU loads the
    /// table.
    fn fill(&self) {
        self.fill_with_stubs_at(stub_address(0));
    }

    /// Writes all 256 gates, present, gate v's handler at `first + 16 * v`,
    /// at a few instructions per gate: while the handlers do not straddle a
    /// 64 KiB boundary (their bits 16..63 are all `first`'s), gate v's low
    /// half is gate 0's plus `16 * v` and its high half is gate 0's; then
    /// the IST gates get their stack index. Handlers that do straddle one
    /// take the general path, gate by gate.
    fn fill_with_stubs_at(&self, first: u64) {
        let last = first + STUB_SIZE * (VECTORS as u64 - 1);
        if first >> 16 != last >> 16 {
            for (vector, gate) in (0..=u8::MAX).zip(&self.gates) {
                let handler = first + STUB_SIZE * u64::from(vector);
                let [low, high] = encode_gate(handler, gdt::KERNEL_CS, ist_for(vector), true);
                gate[1].store(high, Ordering::Relaxed);
                gate[0].store(low, Ordering::Relaxed);
            }
            return;
        }
        let [mut low, high] = encode_gate(first, gdt::KERNEL_CS, 0, true);
        for gate in &self.gates {
            gate[1].store(high, Ordering::Relaxed);
            gate[0].store(low, Ordering::Relaxed);
            low += STUB_SIZE;
        }
        for vector in [vector::NMI, vector::DOUBLE_FAULT, vector::MACHINE_CHECK] {
            let handler = first + STUB_SIZE * u64::from(vector);
            let [low, _] = encode_gate(handler, gdt::KERNEL_CS, ist_for(vector), true);
            self.gates[usize::from(vector)][0].store(low, Ordering::Relaxed);
        }
    }

    /// Loads this IDT on the calling CPU (`lidt`).
    fn load(&'static self) {
        let pointer = x86_64::structures::DescriptorTablePointer {
            limit: (size_of::<Self>() - 1) as u16,
            base: x86_64::VirtAddr::new(core::ptr::addr_of!(self.gates) as u64),
        };
        // SAFETY: the table is 'static, 16-byte aligned and holds 256 valid
        // gates (`init` filled them in before loading); every present gate
        // points at a stub in `trap_entry.S` with the kernel code selector.
        unsafe { x86_64::instructions::tables::lidt(&pointer) };
    }
}

/// Sets up the boot CPU: its GDT and TSS (`gdt.rs`), then the IDT with all
/// 256 gates present. Call once, early, with interrupts disabled and before
/// the GS base is set; from then on traps produce reports.
#[cfg_attr(
    not(target_os = "none"),
    allow(dead_code, reason = "only the guest-only kvm_main calls it; host builds run the unit tests")
)]
pub fn init() {
    ukarch::irq::disable();
    let stubs = core::ptr::addr_of!(trap_stubs) as u64;
    let stubs_end = core::ptr::addr_of!(trap_stubs_end) as u64;
    assert_eq!(stubs_end - stubs, STUB_SIZE * VECTORS as u64, "trap_entry.S: stub size");
    // SAFETY: we run on the boot CPU, once (the tables are taken once),
    // with interrupts disabled (just above), before FS/GS bases are set.
    unsafe { gdt::init_boot_cpu() };
    IDT.fill();
    IDT.load();
}

/// Loads a secondary CPU's own GDT and TSS and the shared IDT.
///
/// # Safety
/// As for [`gdt::CpuTables::load`]: once per CPU, on that CPU, interrupts
/// disabled, before its GS base is set, after [`init`] ran on the boot CPU.
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only bring-up path"))]
pub unsafe fn init_secondary(tables: &'static mut gdt::CpuTables) {
    // SAFETY: forwarded caller contract.
    unsafe { tables.load() };
    IDT.load();
}

// ---------------------------------------------------------------------------
// Dispatch

/// Called by `trap_entry.S` for every trap, with the saved frame.
#[unsafe(no_mangle)]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector();
    if vector >= FIRST_INTERRUPT_VECTOR {
        // The handler between irq_enter/irq_exit, then the preemption
        // point (shared by every platform).
        if !ukplat::irq::take_interrupt(frame) {
            fatal(frame);
        }
        return;
    }
    match ukplat::irq::handler(vector) {
        Some(handler) => handler(frame),
        None => fatal(frame),
    }
}

/// Reports an unhandled trap (`ukplat::fault::report_fatal`) and exits;
/// never returns.
fn fatal(frame: &TrapFrame) -> ! {
    // CR2 first, before anything else can fault and overwrite it. A #DF
    // keeps it too: when a #PF could not be delivered (its frame landed on
    // an unmapped page, as on a stack overflow into a guard page) CR2 holds
    // the address of that second page fault.
    let cr2 = if ukplat::fault::report::uses_cr2(frame.vector()) { ukarch::regs::cr2() } else { 0 };
    ukplat::fault::report_fatal(frame, cr2, &KvmFatal)
}

/// The kvm platform's part of the fatal-trap report.
struct KvmFatal;

impl ukplat::fault::FatalPlatform for KvmFatal {
    /// The control registers CR0, CR3 and CR4.
    fn write_platform_lines(&self, out: &mut dyn Write) -> fmt::Result {
        write_control_regs(out, ukarch::regs::cr0(), ukarch::regs::cr3(), ukarch::regs::cr4())
    }

    /// Whether the live page tables map `addr`.
    fn readable(&self, addr: u64) -> bool {
        // SAFETY: `mapped` reads only 8-byte aligned entry addresses between
        // page 0 (which kvm_main unmaps) and `IDENTITY_MAP_END`, memory the
        // boot map keeps identity-mapped and readable for good.
        mapped(addr, ukarch::regs::cr3(), |entry| unsafe { core::ptr::read_volatile(entry as *const u64) })
    }

    fn halt_forever(&self) -> ! {
        ukarch::irq::disable();
        loop {
            ukarch::regs::halt();
        }
    }
}

/// Writes kvm's line of the fatal report: the control registers.
fn write_control_regs(out: &mut dyn Write, cr0: u64, cr3: u64, cr4: u64) -> fmt::Result {
    writeln!(out, "CR0: {cr0:#018x}  CR3: {cr3:#018x}  CR4: {cr4:#018x}")
}

/// The end of the boot identity map (`boot.S`). Every page table lies below
/// it, where physical = virtual: the boot tables are in the image, and
/// `ukvmem` takes its tables from the identity-mapped heap.
const IDENTITY_MAP_END: u64 = 4 << 30;

/// Whether `addr` is mapped in the 4-level page tables rooted at `cr3`
/// (the backtrace's question: thread stacks live far above the identity
/// map). `read_entry` reads a page-table entry by its physical (= virtual)
/// address; it is only called on 8-byte aligned addresses from 0x1000 up to
/// [`IDENTITY_MAP_END`]. A non-canonical address, or a table in page 0 or
/// outside the identity map (a corrupt entry), answers `false`.
fn mapped(addr: u64, cr3: u64, read_entry: impl Fn(u64) -> u64) -> bool {
    const PRESENT: u64 = 1;
    const HUGE: u64 = 1 << 7;
    const FRAME: u64 = 0x000f_ffff_ffff_f000;
    let upper = addr >> 47;
    if upper != 0 && upper != 0x1_ffff {
        return false;
    }
    let mut table = cr3 & FRAME;
    // Level 3: the PML4, ..., level 0: a page table.
    for level in (0..4u32).rev() {
        if !(0x1000..IDENTITY_MAP_END).contains(&table) {
            return false;
        }
        let entry = read_entry(table + ((addr >> (12 + 9 * level)) & 0x1ff) * 8);
        if entry & PRESENT == 0 {
            return false;
        }
        // A 4 KiB page, or a 2 MiB (PD) or 1 GiB (PDPT) one.
        if level == 0 || (level < 3 && entry & HUGE != 0) {
            return true;
        }
        table = entry & FRAME;
    }
    false
}

/// Whether the CPU pushes an error code for `vector` (must match
/// `trap_entry.S`; the test below checks).
#[cfg(test)]
const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_matches_trap_entry() {
        // trap_entry.S pushes r15 last (lowest address), the stub's two
        // words sit below the CPU's five.
        assert_eq!(core::mem::offset_of!(TrapFrame, r15), 0);
        assert_eq!(core::mem::offset_of!(TrapFrame, error_code), 16 * 8);
        // 16-byte aligned after the pushes when the CPU aligned the frame.
        assert_eq!(size_of::<TrapFrame>() % 16, 0);
    }

    /// What an entry stub does, decoded from its machine code: the
    /// immediates it pushes, in order, and where its `jmp` goes. Only the
    /// instructions `trap_entry.S` uses are accepted (`push imm8`,
    /// `push imm32`, `jmp rel8`, `jmp rel32`); anything else fails.
    fn decode_stub(code: &[u8], address: u64) -> (Vec<u64>, u64) {
        let mut pushes = Vec::new();
        let mut i = 0;
        loop {
            let rel8 = |at: usize| i64::from(code[at] as i8);
            let imm32 = |at: usize| i64::from(i32::from_le_bytes(code[at..at + 4].try_into().unwrap()));
            match code[i] {
                0x6a => {
                    pushes.push(rel8(i + 1) as u64);
                    i += 2;
                }
                0x68 => {
                    pushes.push(imm32(i + 1) as u64);
                    i += 5;
                }
                0xeb => return (pushes, address.wrapping_add((i as i64 + 2 + rel8(i + 1)) as u64)),
                0xe9 => return (pushes, address.wrapping_add((i as i64 + 5 + imm32(i + 1)) as u64)),
                other => panic!("byte {i} of the stub at {address:#x}: unexpected opcode {other:#04x}"),
            }
        }
    }

    /// The stubs assembled from `trap_entry.S` (into this test binary too)
    /// build the frame `TrapFrame` describes: each pushes a dummy error
    /// code exactly for the vectors where the CPU pushes none (the SDM's
    /// list: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX push one),
    /// then its own vector, and jumps to the one common path after the
    /// stubs.
    #[test]
    fn every_stub_pushes_a_dummy_error_code_exactly_when_the_cpu_does_not() {
        let with: Vec<u8> = (0..=255).filter(|&v| has_error_code(v)).collect();
        assert_eq!(with, [8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
        let start = core::ptr::addr_of!(trap_stubs) as u64;
        let end = core::ptr::addr_of!(trap_stubs_end) as u64;
        assert_eq!(end - start, STUB_SIZE * VECTORS as u64);
        // SAFETY: the stubs are code in this binary's text section, which
        // is mapped readable; `trap_stubs`..`trap_stubs_end` delimit them.
        let stubs =
            unsafe { core::slice::from_raw_parts(core::ptr::addr_of!(trap_stubs), (end - start) as usize) };
        let mut common = None;
        for vector in 0..=u8::MAX {
            let at = (STUB_SIZE * u64::from(vector)) as usize;
            let (pushes, target) = decode_stub(&stubs[at..at + STUB_SIZE as usize], stub_address(vector));
            let expected: &[u64] =
                if has_error_code(vector) { &[u64::from(vector)] } else { &[0, u64::from(vector)] };
            assert_eq!(pushes, expected, "vector {vector}");
            assert!(target >= end, "vector {vector} jumps to {target:#x}, inside the stubs");
            assert_eq!(*common.get_or_insert(target), target, "vector {vector}: another common path");
        }
    }

    #[test]
    fn gate_encoding() {
        let [low, high] = encode_gate(0x1234_5678_9abc_def0, 0x08, 1, true);
        assert_eq!(low, 0x9abc_8e01_0008_def0);
        assert_eq!(high, 0x1234_5678);
        let [low, _] = encode_gate(0x10_2000, 0x08, 0, false);
        assert_eq!(low, 0x0010_0e00_0008_2000);
        assert_eq!(ist_for(8), 1);
        assert_eq!(ist_for(2), 2);
        assert_eq!(ist_for(18), 3);
        assert_eq!(ist_for(14), 0);
        assert_eq!(size_of::<Idt>(), 4096);
    }

    #[test]
    fn fill_encodes_every_gate() {
        // Within one 64 KiB block (the fast path), at its very end, and
        // straddling a boundary (the general path); above 4 GiB too.
        for first in [0x10_0170, 0x10_f000, 0x10_f010, 0x1_2345_fff0] {
            let idt = Box::new(Idt { gates: [const { [AtomicU64::new(0), AtomicU64::new(0)] }; VECTORS] });
            idt.fill_with_stubs_at(first);
            for (vector, gate) in (0..=u8::MAX).zip(&idt.gates) {
                let handler = first + STUB_SIZE * u64::from(vector);
                let expected = encode_gate(handler, gdt::KERNEL_CS, ist_for(vector), true);
                let got = [gate[0].load(Ordering::Relaxed), gate[1].load(Ordering::Relaxed)];
                assert_eq!(got, expected, "vector {vector}, stubs at {first:#x}");
            }
        }
    }

    #[test]
    fn control_register_line() {
        let mut out = String::new();
        write_control_regs(&mut out, 0x8001_0033, 0x10_9000, 0x20).unwrap();
        assert_eq!(out, "CR0: 0x0000000080010033  CR3: 0x0000000000109000  CR4: 0x0000000000000020\n");
    }

    #[test]
    fn page_table_walk() {
        use std::collections::HashMap;
        // PML4 at 0x1000: entry 0 -> PDPT 0x2000, entry 2 -> PDPT 0x5000
        // (1 TiB up); PDPT 0x2000: entry 0 -> PD 0x3000, entry 1 a 1 GiB
        // page; PD 0x3000: entry 0 -> PT 0x4000, entry 1 a 2 MiB page; PT
        // 0x4000: page 1 only. PDPT 0x5000, entry 0 -> PD 0x1_0000_0000,
        // outside the identity map.
        let tables: HashMap<u64, u64> = [
            (0x1000, 0x2003),
            (0x1000 + 2 * 8, 0x5003),
            (0x2000, 0x3003),
            (0x2000 + 8, 0x4000_0083),
            (0x3000, 0x4003),
            (0x3000 + 8, 0x20_0083),
            (0x4000 + 8, 0x8000_0000_0000_1003), // NX set: still readable
            (0x5000, 0x1_0000_0003),
        ]
        .into();
        let read = |addr: u64| {
            assert!(
                (0x1000..IDENTITY_MAP_END).contains(&addr) && addr.is_multiple_of(8),
                "read of {addr:#x}"
            );
            tables.get(&addr).copied().unwrap_or(0)
        };
        let cr3 = 0x1000 | 0x18; // PWT/PCD bits are not part of the address
        assert!(!mapped(0x0, cr3, read), "page 0");
        assert!(mapped(0x1000, cr3, read));
        assert!(mapped(0x1ff8, cr3, read));
        assert!(!mapped(0x2000, cr3, read));
        assert!(mapped(0x20_0000, cr3, read), "2 MiB page");
        assert!(mapped(0x3f_fff8, cr3, read));
        assert!(!mapped(0x40_0000, cr3, read));
        assert!(mapped(0x4000_0000, cr3, read), "1 GiB page");
        assert!(mapped(0x7fff_fff8, cr3, read));
        assert!(!mapped(0x8000_0000, cr3, read));
        assert!(!mapped(0x100_0000_0000, cr3, read), "its PD lies above the identity map");
        assert!(!mapped(0x8000_0000_0000, cr3, read), "non-canonical");
        assert!(!mapped(0xffff_8000_0000_0000, cr3, read), "canonical, not mapped");
        assert!(!mapped(0x1000, 0x1_0000_0000, read), "PML4 above the identity map");
        assert!(!mapped(0x1000, 0, read), "PML4 in page 0");
    }
}
