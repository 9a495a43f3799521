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
//!    vectors 32–255; without a handler the trap is fatal: a report goes to
//!    the console and the machine exits with [`ukplat::exit::CPU_EXCEPTION`].
//!
//! All 256 gates are present from [`init`] on, so an interrupt nobody
//! registered is reported by its own vector number (`UNHANDLED INTERRUPT`)
//! rather than as a #NP on its gate.
//!
//! # Reports
//!
//! ```text
//! *** CPU EXCEPTION #UD (vector 6, invalid opcode) on CPU 0 (APIC id 0)
//! error code: 0x0
//! RIP: 0x0000000000102345  CS: 0x8  RFLAGS: 0x0000000000010002
//! RSP: 0x0000000000123f50  SS: 0x10
//! CR2: 0x0000001000000000 (page fault address; not present, read, supervisor)
//! RAX: 0x...  RBX: 0x...  RCX: 0x...
//! RDX: 0x...  RSI: 0x...  RDI: 0x...
//! RBP: 0x...  R8:  0x...  R9:  0x...
//! R10: 0x...  R11: 0x...  R12: 0x...
//! R13: 0x...  R14: 0x...  R15: 0x...
//! CR0: 0x...  CR3: 0x...  CR4: 0x...
//! backtrace (frame pointers): 0x... 0x...
//! ```
//!
//! The CR2 line appears for #PF, with the error code decoded, and for #DF
//! (the last page-fault address: a #PF whose own delivery faulted, as on a
//! stack overflow into an unmapped guard page, becomes a #DF on the IST
//! stack and leaves its address there); for #TS, #NP, #SS and #GP a non-zero
//! error code is decoded as a selector on the `error code` line; an access
//! to page 0 adds a `hint:` line. Vectors 32–255 without a handler report as
//! `*** UNHANDLED INTERRUPT`.
//!
//! For #PF and #DF the register dump is followed by the lines of the fault
//! explainers libraries registered with `ukplat::fault::register_explainer`
//! (e.g. `ukvmem`'s `stack overflow: 0x... is in the guard page below the
//! stack 0x...-0x...`), then the backtrace.
//!
//! A fault while reporting must not loop: a nesting counter makes the second
//! level print one line through the plainest path (no `core::fmt`) and exit,
//! the third (the console faulted) exit silently, and a fourth (the exit path
//! itself faulted) halt the CPU. The counter is global, not per-CPU: with
//! SMP the first fatal trap wins, and a fatal trap on another CPU while the
//! first report is being written halts that CPU quietly (two reports would
//! interleave on the console, and the first one decides the exit status).

use crate::gdt;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

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
    /// Invalid TSS.
    pub const INVALID_TSS: u8 = 10;
    /// Segment not present.
    pub const SEGMENT_NOT_PRESENT: u8 = 11;
    /// Stack-segment fault.
    pub const STACK_SEGMENT: u8 = 12;
    /// General protection.
    pub const GENERAL_PROTECTION: u8 = 13;
    /// Page fault.
    pub const PAGE_FAULT: u8 = 14;
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
    /// Writes the gate of `vector`, present or not. The high half is written
    /// first, so a CPU never sees a present gate with a stale upper offset.
    fn set_gate(&self, vector: u8, present: bool) {
        let [low, high] = encode_gate(stub_address(vector), gdt::KERNEL_CS, ist_for(vector), present);
        let gate = &self.gates[usize::from(vector)];
        gate[1].store(high, Ordering::Release);
        gate[0].store(low, Ordering::Release);
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
    for vector in 0..=u8::MAX {
        IDT.set_gate(vector, true);
    }
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
    match ukplat::irq::handler(vector) {
        Some(handler) if vector >= FIRST_INTERRUPT_VECTOR => {
            ukplat::cpu::irq_enter();
            handler(frame);
            ukplat::cpu::irq_exit();
            // A preemptive scheduler switches threads here, when the
            // handler asked for it and the interrupted code allows it.
            ukplat::cpu::preempt_on_irq_return(frame.interrupts_were_enabled());
        }
        Some(handler) => handler(frame),
        None => fatal(frame),
    }
}

/// Fatal-trap nesting depth (see the module documentation).
static FATAL_DEPTH: AtomicU32 = AtomicU32::new(0);

/// The CPU writing the first fatal report.
static REPORTING_CPU: ReportingCpu = ReportingCpu(AtomicUsize::new(0));

/// A CPU index + 1 (0: nobody yet).
struct ReportingCpu(AtomicUsize);

impl ReportingCpu {
    fn claim(&self) {
        self.0.store(Self::me(), Ordering::Release);
    }

    fn is_this_cpu(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::me()
    }

    /// This CPU as stored: its index + 1, or `usize::MAX` before its
    /// per-CPU header exists.
    fn me() -> usize {
        ukplat::cpu::try_this_cpu().map_or(usize::MAX, |cpu| cpu + 1)
    }
}

/// Reports an unhandled trap and exits; never returns.
fn fatal(frame: &TrapFrame) -> ! {
    let vector = frame.vector();
    // CR2 first, before anything else can fault and overwrite it. A #DF
    // keeps it too: when a #PF could not be delivered (its frame landed on
    // an unmapped page, as on a stack overflow into a guard page) CR2 holds
    // the address of that second page fault.
    let cr2 = if reads_cr2(vector) { ukarch::regs::cr2() } else { 0 };
    let depth = FATAL_DEPTH.fetch_add(1, Ordering::AcqRel);
    if depth == 0 {
        REPORTING_CPU.claim();
    }
    match depth {
        0 => {
            let regs = ControlRegs {
                cr0: ukarch::regs::cr0(),
                cr2,
                cr3: ukarch::regs::cr3(),
                cr4: ukarch::regs::cr4(),
            };
            // The per-CPU header may not be set up yet (a fault in the
            // first instructions of a CPU): then say what CPUID says.
            let (cpu, apic_id) = match ukplat::cpu::try_this_cpu() {
                Some(cpu) => (cpu, ukplat::cpu::local(cpu).apic_id()),
                None => (usize::MAX, ukarch::cpu::apic_id()),
            };
            let _ = write_report(&mut ukplat::console::Writer, frame, cpu, apic_id, &regs);
            // Libraries add what only they know: which thread was running,
            // whether an address is a guard page.
            let info = fault_info(frame, cr2, ukplat::cpu::try_this_cpu());
            ukplat::fault::explain(&info, &mut ukplat::console::Writer);
            let mut frames = [0u64; MAX_BACKTRACE];
            // SAFETY: `read_stack_word` is only called on addresses that
            // `walk_frame_pointers` checked to be aligned and inside the
            // identity-mapped first 4 GiB (page 0 excluded).
            let depth = walk_frame_pointers(frame.rbp, &mut frames, |addr| unsafe { read_stack_word(addr) });
            let _ = write_backtrace(&mut ukplat::console::Writer, &frames[..depth]);
        }
        // Another CPU is already reporting: stop here, quietly.
        _ if !REPORTING_CPU.is_this_cpu() => halt_forever(),
        1 => {
            let mut line = [0u8; 128];
            let len = nested_message(vector, &mut line);
            ukplat::console::write(&line[..len]);
        }
        // The console itself faulted: exit without a word.
        2 => {}
        // The exit path faulted too.
        _ => halt_forever(),
    }
    ukplat::exit::exit(ukplat::exit::CPU_EXCEPTION)
}

/// Reads a word of memory for the backtrace.
///
/// # Safety
/// `addr` must be 8-byte aligned and mapped.
unsafe fn read_stack_word(addr: u64) -> u64 {
    // SAFETY: the caller guarantees alignment and mapping.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// Stops this CPU for good (the exit path itself trapped).
fn halt_forever() -> ! {
    ukarch::irq::disable();
    loop {
        ukarch::regs::halt();
    }
}

// ---------------------------------------------------------------------------
// Reports (pure functions: host-tested)

/// Mnemonic and description of a vector.
pub const fn vector_name(vector: u8) -> (&'static str, &'static str) {
    match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        9 => ("reserved", "coprocessor segment overrun (legacy)"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point exception"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        28 => ("#HV", "hypervisor injection"),
        29 => ("#VC", "VMM communication"),
        30 => ("#SX", "security exception"),
        15 | 22..=27 | 31 => ("reserved", "reserved"),
        _ => ("INT", "external interrupt"),
    }
}

/// Whether the CPU pushes an error code for `vector` (must match
/// `trap_entry.S`; the test below checks).
#[cfg(test)]
const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// Whether the fatal path reads CR2 for `vector` (and shows it, and asks
/// the fault explainers): #PF, and #DF, which a #PF whose delivery faulted
/// again turns into.
const fn reads_cr2(vector: u8) -> bool {
    matches!(vector, vector::PAGE_FAULT | vector::DOUBLE_FAULT)
}

/// What the fault explainers get for a fatal trap.
fn fault_info(frame: &TrapFrame, cr2: u64, cpu: Option<usize>) -> ukplat::fault::FaultInfo {
    ukplat::fault::FaultInfo {
        vector: frame.vector(),
        error_code: frame.error_code,
        rip: frame.rip,
        rsp: frame.rsp,
        cr2,
        cpu,
    }
}

/// Whether `vector`'s error code is a selector error code.
const fn has_selector_error(vector: u8) -> bool {
    matches!(
        vector,
        vector::INVALID_TSS
            | vector::SEGMENT_NOT_PRESENT
            | vector::STACK_SEGMENT
            | vector::GENERAL_PROTECTION
    )
}

/// A decoded page-fault error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFaultError(pub u64);

impl PageFaultError {
    /// P: the page was present (a protection violation), else not present.
    pub const fn present(self) -> bool {
        self.0 & 1 != 0
    }
    /// W/R: the access was a write.
    pub const fn write(self) -> bool {
        self.0 & (1 << 1) != 0
    }
    /// U/S: the access came from user mode (CPL 3).
    pub const fn user(self) -> bool {
        self.0 & (1 << 2) != 0
    }
    /// RSVD: a reserved bit was set in a paging-structure entry.
    pub const fn reserved_bit(self) -> bool {
        self.0 & (1 << 3) != 0
    }
    /// I/D: the access was an instruction fetch.
    pub const fn instruction_fetch(self) -> bool {
        self.0 & (1 << 4) != 0
    }
    /// PK: protection-key violation.
    pub const fn protection_key(self) -> bool {
        self.0 & (1 << 5) != 0
    }
    /// SS: shadow-stack access.
    pub const fn shadow_stack(self) -> bool {
        self.0 & (1 << 6) != 0
    }
    /// SGX: SGX access-control violation.
    pub const fn sgx(self) -> bool {
        self.0 & (1 << 15) != 0
    }
}

impl fmt::Display for PageFaultError {
    /// `not present, read, supervisor` followed by the rarer bits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.present() { "protection violation" } else { "not present" })?;
        f.write_str(if self.instruction_fetch() {
            ", instruction fetch"
        } else if self.write() {
            ", write"
        } else {
            ", read"
        })?;
        f.write_str(if self.user() { ", user" } else { ", supervisor" })?;
        if self.reserved_bit() {
            f.write_str(", reserved bit set in a page-table entry")?;
        }
        if self.protection_key() {
            f.write_str(", protection key")?;
        }
        if self.shadow_stack() {
            f.write_str(", shadow stack")?;
        }
        if self.sgx() {
            f.write_str(", SGX")?;
        }
        Ok(())
    }
}

/// A decoded selector error code (#TS, #NP, #SS, #GP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectorError(pub u64);

/// The table a selector error code refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorTable {
    /// Global descriptor table.
    Gdt,
    /// Interrupt descriptor table (the index is a vector).
    Idt,
    /// Local descriptor table.
    Ldt,
}

impl SelectorError {
    /// EXT: the fault happened while delivering an external event.
    pub const fn external(self) -> bool {
        self.0 & 1 != 0
    }
    /// The table the index refers to (IDT bit, then TI bit).
    pub const fn table(self) -> DescriptorTable {
        if self.0 & (1 << 1) != 0 {
            DescriptorTable::Idt
        } else if self.0 & (1 << 2) != 0 {
            DescriptorTable::Ldt
        } else {
            DescriptorTable::Gdt
        }
    }
    /// The descriptor index (a vector for the IDT).
    pub const fn index(self) -> u16 {
        ((self.0 >> 3) & 0x1fff) as u16
    }
}

impl fmt::Display for SelectorError {
    /// `GDT index 3`, `IDT vector 32`, `LDT index 1`, + `, external event`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.table() {
            DescriptorTable::Gdt => write!(f, "GDT index {}", self.index())?,
            DescriptorTable::Idt => write!(f, "IDT vector {}", self.index())?,
            DescriptorTable::Ldt => write!(f, "LDT index {}", self.index())?,
        }
        if self.external() {
            f.write_str(", external event")?;
        }
        Ok(())
    }
}

/// Control registers as read in the fatal path.
#[derive(Clone, Copy, Debug, Default)]
pub struct ControlRegs {
    /// CR0.
    pub cr0: u64,
    /// CR2 (read for #PF and #DF only, else 0).
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
}

/// Writes the report (everything but the backtrace) for an unhandled trap.
/// `cpu` is the CPU index (`usize::MAX`: not known yet, before the CPU's
/// per-CPU header exists).
pub fn write_report(
    w: &mut impl Write,
    frame: &TrapFrame,
    cpu: usize,
    apic_id: u32,
    regs: &ControlRegs,
) -> fmt::Result {
    let vector = frame.vector();
    let (name, description) = vector_name(vector);
    if vector < FIRST_INTERRUPT_VECTOR {
        write!(w, "*** CPU EXCEPTION {name} (vector {vector}, {description})")?;
    } else {
        write!(w, "*** UNHANDLED INTERRUPT (vector {vector}, {description})")?;
    }
    if cpu == usize::MAX {
        writeln!(w, " on a CPU not set up yet (APIC id {apic_id})")?;
    } else {
        writeln!(w, " on CPU {cpu} (APIC id {apic_id})")?;
    }
    write!(w, "error code: {:#x}", frame.error_code)?;
    if has_selector_error(vector) && frame.error_code != 0 {
        write!(w, " (selector error: {})", SelectorError(frame.error_code))?;
    }
    writeln!(w)?;
    writeln!(w, "RIP: {:#018x}  CS: {:#x}  RFLAGS: {:#018x}", frame.rip, frame.cs, frame.rflags)?;
    writeln!(w, "RSP: {:#018x}  SS: {:#x}", frame.rsp, frame.ss)?;
    if vector == vector::PAGE_FAULT {
        writeln!(w, "CR2: {:#018x} (page fault address; {})", regs.cr2, PageFaultError(frame.error_code))?;
        if regs.cr2 < 0x1000 {
            writeln!(w, "hint: the address is in page 0: a null-pointer dereference")?;
        }
    } else if vector == vector::DOUBLE_FAULT {
        writeln!(
            w,
            "CR2: {:#018x} (last page-fault address: where a #PF that could not be delivered faulted, e.g. a stack overflow)",
            regs.cr2
        )?;
    }
    let gprs: [(&str, u64); 15] = [
        ("RAX", frame.rax),
        ("RBX", frame.rbx),
        ("RCX", frame.rcx),
        ("RDX", frame.rdx),
        ("RSI", frame.rsi),
        ("RDI", frame.rdi),
        ("RBP", frame.rbp),
        ("R8", frame.r8),
        ("R9", frame.r9),
        ("R10", frame.r10),
        ("R11", frame.r11),
        ("R12", frame.r12),
        ("R13", frame.r13),
        ("R14", frame.r14),
        ("R15", frame.r15),
    ];
    for line in gprs.chunks(3) {
        for (i, (name, value)) in line.iter().enumerate() {
            let separator = if i == 0 { "" } else { "  " };
            let pad = if name.len() == 2 { " " } else { "" };
            write!(w, "{separator}{name}:{pad} {value:#018x}")?;
        }
        writeln!(w)?;
    }
    writeln!(w, "CR0: {:#018x}  CR3: {:#018x}  CR4: {:#018x}", regs.cr0, regs.cr3, regs.cr4)
}

/// Most frames the backtrace shows.
const MAX_BACKTRACE: usize = 16;

/// Walks the frame-pointer chain from `rbp` (guest code is built with
/// `force-frame-pointers`: `[rbp]` is the caller's rbp, `[rbp + 8]` the
/// return address), storing return addresses in `out`; returns how many.
/// Stops at anything implausible: a null, misaligned or non-increasing frame
/// pointer, one outside the identity-mapped first 4 GiB or in page 0, or a
/// null return address. `read` is only called on addresses passing those
/// checks.
fn walk_frame_pointers(mut rbp: u64, out: &mut [u64], read: impl Fn(u64) -> u64) -> usize {
    const LIMIT: u64 = 4 << 30;
    let mut count = 0;
    while count < out.len() {
        if rbp < 0x1000 || !rbp.is_multiple_of(8) || rbp >= LIMIT - 16 {
            break;
        }
        let return_address = read(rbp + 8);
        if return_address == 0 {
            break;
        }
        out[count] = return_address;
        count += 1;
        let next = read(rbp);
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    count
}

/// Writes the backtrace line (nothing when it is empty).
fn write_backtrace(w: &mut impl Write, frames: &[u64]) -> fmt::Result {
    if frames.is_empty() {
        return Ok(());
    }
    write!(w, "backtrace (frame pointers):")?;
    for address in frames {
        write!(w, " {address:#x}")?;
    }
    writeln!(w)
}

/// Builds the one-line message of a nested fatal trap in `buf` without
/// `core::fmt`; returns its length.
fn nested_message(vector: u8, buf: &mut [u8; 128]) -> usize {
    let (name, _) = vector_name(vector);
    let mut digits = [0u8; 3];
    let mut n = vector;
    let mut first = digits.len();
    loop {
        first -= 1;
        digits[first] = b'0' + n % 10;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let parts: [&[u8]; 5] = [
        b"*** nested CPU exception ",
        name.as_bytes(),
        b" (vector ",
        &digits[first..],
        b") while reporting an exception; exiting\n",
    ];
    let mut len = 0;
    for part in parts {
        buf[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    len
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

    #[test]
    fn vector_names() {
        assert_eq!(vector_name(0), ("#DE", "divide error"));
        assert_eq!(vector_name(3), ("#BP", "breakpoint"));
        assert_eq!(vector_name(6), ("#UD", "invalid opcode"));
        assert_eq!(vector_name(8).0, "#DF");
        assert_eq!(vector_name(13).0, "#GP");
        assert_eq!(vector_name(14), ("#PF", "page fault"));
        assert_eq!(vector_name(18).0, "#MC");
        assert_eq!(vector_name(19).0, "#XM");
        assert_eq!(vector_name(21).0, "#CP");
        assert_eq!(vector_name(28).0, "#HV");
        assert_eq!(vector_name(29).0, "#VC");
        assert_eq!(vector_name(30).0, "#SX");
        for v in [9, 15, 22, 23, 24, 25, 26, 27, 31] {
            assert_eq!(vector_name(v).0, "reserved", "vector {v}");
        }
        assert_eq!(vector_name(32).0, "INT");
        assert_eq!(vector_name(255).0, "INT");
        let expected = [
            "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "reserved", "#TS", "#NP", "#SS",
            "#GP", "#PF", "reserved", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
        ];
        for (v, name) in expected.iter().enumerate() {
            assert_eq!(vector_name(v as u8).0, *name);
        }
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
    fn page_fault_error_decoding() {
        assert_eq!(PageFaultError(0).to_string(), "not present, read, supervisor");
        assert_eq!(PageFaultError(0b11).to_string(), "protection violation, write, supervisor");
        assert_eq!(PageFaultError(0b110).to_string(), "not present, write, user");
        assert_eq!(
            PageFaultError(0b1001).to_string(),
            "protection violation, read, supervisor, reserved bit set in a page-table entry"
        );
        assert_eq!(
            PageFaultError(0b10001).to_string(),
            "protection violation, instruction fetch, supervisor"
        );
        assert_eq!(
            PageFaultError(0x8060).to_string(),
            "not present, read, supervisor, protection key, shadow stack, SGX"
        );
        let e = PageFaultError(0x1f);
        assert!(e.present() && e.write() && e.user() && e.reserved_bit() && e.instruction_fetch());
    }

    #[test]
    fn selector_error_decoding() {
        assert_eq!(SelectorError(0x18).to_string(), "GDT index 3");
        assert_eq!(SelectorError(0x19).to_string(), "GDT index 3, external event");
        assert_eq!(SelectorError(13 << 3 | 0b10).to_string(), "IDT vector 13");
        assert_eq!(SelectorError(0x0c).to_string(), "LDT index 1");
        // The IDT bit wins over TI.
        assert_eq!(SelectorError(0b110).table(), DescriptorTable::Idt);
        assert_eq!(SelectorError(0xfff8).index(), 0x1fff);
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

    fn sample_frame(vector: u64, error_code: u64) -> TrapFrame {
        TrapFrame {
            rax: 0xa,
            rbx: 0xb,
            r15: 0xf15,
            vector,
            error_code,
            rip: 0x10_2345,
            cs: 0x8,
            rflags: 0x1_0002,
            rsp: 0x12_3f50,
            ss: 0x10,
            ..TrapFrame::default()
        }
    }

    #[test]
    fn report_for_invalid_opcode() {
        let mut out = String::new();
        let regs = ControlRegs { cr0: 0x8001_0033, cr2: 0, cr3: 0x10_9000, cr4: 0x20 };
        write_report(&mut out, &sample_frame(6, 0), 0, 0, &regs).unwrap();
        let expected = "\
*** CPU EXCEPTION #UD (vector 6, invalid opcode) on CPU 0 (APIC id 0)
error code: 0x0
RIP: 0x0000000000102345  CS: 0x8  RFLAGS: 0x0000000000010002
RSP: 0x0000000000123f50  SS: 0x10
RAX: 0x000000000000000a  RBX: 0x000000000000000b  RCX: 0x0000000000000000
RDX: 0x0000000000000000  RSI: 0x0000000000000000  RDI: 0x0000000000000000
RBP: 0x0000000000000000  R8:  0x0000000000000000  R9:  0x0000000000000000
R10: 0x0000000000000000  R11: 0x0000000000000000  R12: 0x0000000000000000
R13: 0x0000000000000000  R14: 0x0000000000000000  R15: 0x0000000000000f15
CR0: 0x0000000080010033  CR3: 0x0000000000109000  CR4: 0x0000000000000020
";
        assert_eq!(out, expected);
    }

    #[test]
    fn report_for_page_fault_and_gp() {
        let mut out = String::new();
        let regs = ControlRegs { cr2: 0x10_0000_0000, ..ControlRegs::default() };
        write_report(&mut out, &sample_frame(14, 0), 1, 2, &regs).unwrap();
        assert!(out.starts_with("*** CPU EXCEPTION #PF (vector 14, page fault) on CPU 1 (APIC id 2)\n"));
        assert!(
            out.contains("\nCR2: 0x0000001000000000 (page fault address; not present, read, supervisor)\n")
        );
        assert!(!out.contains("hint:"));

        let mut out = String::new();
        let regs = ControlRegs { cr2: 0x8, ..ControlRegs::default() };
        write_report(&mut out, &sample_frame(14, 2), 0, 0, &regs).unwrap();
        assert!(out.contains("(page fault address; not present, write, supervisor)\nhint: "));

        let mut out = String::new();
        write_report(&mut out, &sample_frame(13, 0x18), 0, 0, &ControlRegs::default()).unwrap();
        assert!(
            out.starts_with("*** CPU EXCEPTION #GP (vector 13, general protection) on CPU 0 (APIC id 0)\n")
        );
        assert!(out.contains("\nerror code: 0x18 (selector error: GDT index 3)\n"));
        assert!(!out.contains("CR2"));

        let mut out = String::new();
        write_report(&mut out, &sample_frame(13, 0), 0, 0, &ControlRegs::default()).unwrap();
        assert!(out.contains("\nerror code: 0x0\n"));

        let mut out = String::new();
        write_report(&mut out, &sample_frame(6, 0), usize::MAX, 3, &ControlRegs::default()).unwrap();
        assert!(out.starts_with(
            "*** CPU EXCEPTION #UD (vector 6, invalid opcode) on a CPU not set up yet (APIC id 3)\n"
        ));

        let mut out = String::new();
        write_report(&mut out, &sample_frame(40, 0), 3, 7, &ControlRegs::default()).unwrap();
        assert!(
            out.starts_with("*** UNHANDLED INTERRUPT (vector 40, external interrupt) on CPU 3 (APIC id 7)\n")
        );
    }

    #[test]
    fn report_for_double_fault_shows_cr2() {
        let mut out = String::new();
        let regs = ControlRegs { cr2: 0x100_0000_0ff8, ..ControlRegs::default() };
        write_report(&mut out, &sample_frame(8, 0), 0, 0, &regs).unwrap();
        assert!(out.starts_with("*** CPU EXCEPTION #DF (vector 8, double fault) on CPU 0 (APIC id 0)\n"));
        assert!(out.contains("\nCR2: 0x0000010000000ff8 (last page-fault address: "));
        assert!(!out.contains("hint:"));
    }

    #[test]
    fn explainers_get_the_frame_and_cr2() {
        assert!(reads_cr2(vector::PAGE_FAULT) && reads_cr2(vector::DOUBLE_FAULT));
        assert!(!reads_cr2(vector::GENERAL_PROTECTION) && !reads_cr2(6) && !reads_cr2(32));
        let info = fault_info(&sample_frame(8, 0), 0x1234, Some(2));
        assert_eq!(
            info,
            ukplat::fault::FaultInfo {
                vector: 8,
                error_code: 0,
                rip: 0x10_2345,
                rsp: 0x12_3f50,
                cr2: 0x1234,
                cpu: Some(2)
            }
        );
        assert_eq!(fault_info(&sample_frame(14, 2), 0, None).error_code, 2);
    }

    #[test]
    fn frame_pointer_walk() {
        use std::collections::HashMap;
        let memory: HashMap<u64, u64> = [
            (0x20_0000, 0x20_0040),
            (0x20_0008, 0x10_1111),
            (0x20_0040, 0x20_0100),
            (0x20_0048, 0x10_2222),
            (0x20_0100, 0), // outermost frame: rbp 0
            (0x20_0108, 0x10_3333),
        ]
        .into();
        let read = |addr: u64| *memory.get(&addr).unwrap_or_else(|| panic!("read of {addr:#x}"));
        let mut out = [0; MAX_BACKTRACE];
        let n = walk_frame_pointers(0x20_0000, &mut out, read);
        assert_eq!(out[..n], [0x10_1111, 0x10_2222, 0x10_3333]);
        let walked = out;
        // Implausible frame pointers are never read.
        assert_eq!(walk_frame_pointers(0, &mut out, read), 0);
        assert_eq!(walk_frame_pointers(0x20_0004, &mut out, read), 0);
        assert_eq!(walk_frame_pointers(0x8, &mut out, read), 0);
        assert_eq!(walk_frame_pointers(u64::MAX - 7, &mut out, read), 0);
        // A loop stops.
        let looping = |addr: u64| {
            if addr.is_multiple_of(16) { addr } else { 0x10_0000 }
        };
        assert_eq!(walk_frame_pointers(0x20_0000, &mut out, looping), 1);
        // The output bounds the walk.
        let mut two = [0; 2];
        assert_eq!(walk_frame_pointers(0x20_0000, &mut two, read), 2);

        let mut text = String::new();
        write_backtrace(&mut text, &walked[..n]).unwrap();
        assert_eq!(text, "backtrace (frame pointers): 0x101111 0x102222 0x103333\n");
        text.clear();
        write_backtrace(&mut text, &[]).unwrap();
        assert_eq!(text, "");
    }

    #[test]
    fn nested_message_is_one_line() {
        let mut buf = [0u8; 128];
        let n = nested_message(14, &mut buf);
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            "*** nested CPU exception #PF (vector 14) while reporting an exception; exiting\n"
        );
        let n = nested_message(255, &mut buf);
        assert!(core::str::from_utf8(&buf[..n]).unwrap().contains("INT (vector 255)"));
        let n = nested_message(0, &mut buf);
        assert!(core::str::from_utf8(&buf[..n]).unwrap().contains("#DE (vector 0)"));
    }
}
