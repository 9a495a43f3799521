//! The fatal-trap report: what every platform prints when a CPU exception
//! or an interrupt has no handler, then the exit with
//! [`exit::CPU_EXCEPTION`](crate::exit::CPU_EXCEPTION).
//!
//! The platform catches the trap its own way (kvm: the IDT and its entry
//! stubs; linuxu: a signal and its `ucontext`), fills a [`TrapFrame`],
//! reads the fault address (CR2, or the signal's) and calls
//! [`report_fatal`] with a [`FatalPlatform`]: the three things only it
//! knows — its own lines after the registers, which addresses the backtrace
//! may read, how to stop a CPU. Everything else is here, so that every
//! platform prints the same report.
//!
//! # The report
//!
//! ```text
//! *** CPU EXCEPTION #PF (vector 14, page fault) on CPU 0 (APIC id 0)
//! error code: 0x2
//! RIP: 0x0000000000102345  CS: 0x8  RFLAGS: 0x0000000000010002
//! RSP: 0x0000000000123f50  SS: 0x10
//! CR2: 0x0000000000000008 (page fault address; not present, write, supervisor)
//! hint: the address is in page 0: a null-pointer dereference
//! RAX: 0x...  RBX: 0x...  RCX: 0x...
//! RDX: 0x...  RSI: 0x...  RDI: 0x...
//! RBP: 0x...  R8:  0x...  R9:  0x...
//! R10: 0x...  R11: 0x...  R12: 0x...
//! R13: 0x...  R14: 0x...  R15: 0x...
//! CR0: 0x...  CR3: 0x...  CR4: 0x...           (the platform's lines: kvm's)
//! in thread `main` (id 1)                     (the fault explainers' lines)
//! backtrace (frame pointers): 0x... 0x...
//! ```
//!
//! The first line names the vector and the CPU (its index and APIC id, or
//! `a CPU not set up yet` with the APIC id CPUID gives, for a trap before
//! the CPU's per-CPU header exists). The CR2 line appears for #PF, with the
//! error code decoded ([`PageFaultError`]), and for #DF (the last
//! page-fault address: a #PF whose own delivery faulted, as on a stack
//! overflow into an unmapped guard page, becomes a #DF on the IST stack and
//! leaves its address there); for #TS, #NP, #SS and #GP a non-zero error
//! code is decoded as a selector ([`SelectorError`]) on the `error code`
//! line; a page fault in page 0 adds a `hint:` line. Vectors 32–255 report
//! as `*** UNHANDLED INTERRUPT (vector N, external interrupt)`.
//!
//! After the register dump come the platform's lines
//! ([`FatalPlatform::write_platform_lines`]), then the lines of the fault
//! explainers libraries registered with
//! [`register_explainer`](super::register_explainer) (the scheduler names
//! the running thread, `ukvmem` recognises a guard page: `stack overflow:
//! 0x... is in the guard page below the stack 0x...-0x...`), then the
//! return addresses found by walking the frame-pointer chain from RBP (at
//! most 16; the walk stops at a null, misaligned or non-increasing frame
//! pointer, one in page 0, or one the platform does not call
//! [readable](FatalPlatform::readable)).
//!
//! # Faults while reporting
//!
//! A fault while reporting must not loop: a nesting counter makes the
//! second level print one line through the plainest path (no `core::fmt`:
//! `*** nested CPU exception #PF (vector 14) while reporting an exception;
//! exiting`) and exit, the third (the console faulted) exit silently, and a
//! fourth (the exit path itself faulted) stop the CPU
//! ([`FatalPlatform::halt_forever`]). The counter is global, not per-CPU:
//! with SMP the first fatal trap wins, and a fatal trap on another CPU while
//! the first report is being written stops that CPU quietly (two reports
//! would interleave on the console, and the first one decides the exit
//! status).

use super::{DOUBLE_FAULT, Explainers, FaultInfo, GENERAL_PROTECTION, INVALID_TSS, PAGE_FAULT};
use super::{SEGMENT_NOT_PRESENT, STACK_SEGMENT};
use crate::cpu::CpuIndex;
use crate::irq::vector::FIRST_EXTERNAL;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use ukarch::trap::TrapFrame;

/// What the fatal-trap report needs from the platform.
pub trait FatalPlatform {
    /// Writes the platform's own lines, after the general-purpose registers
    /// (complete lines, each ending in `\n`; none is fine). kvm writes the
    /// CR0/CR3/CR4 line.
    ///
    /// # Errors
    /// What the writer returns.
    fn write_platform_lines(&self, out: &mut dyn Write) -> fmt::Result;

    /// Whether the 8 bytes at `addr` (8-byte aligned, not in page 0) can be
    /// read without faulting: the backtrace reads only such words. kvm
    /// walks its page tables; a platform that cannot tell should answer
    /// `false` (no backtrace) rather than guess.
    fn readable(&self, addr: u64) -> bool;

    /// Stops the calling CPU for good, quietly: a second CPU's fatal trap
    /// while the first is being reported, or a fault in the exit path.
    fn halt_forever(&self) -> !;
}

/// Reports a trap nobody handles on the console and exits with
/// [`exit::CPU_EXCEPTION`](crate::exit::CPU_EXCEPTION); never returns.
/// Called by the platform with interrupts disabled, with the saved
/// registers and the fault address (CR2, or the signal's; any value for a
/// vector that [`uses_cr2`] says has none: it is then shown and passed on as
/// 0). See the module documentation for the report and for faults while
/// reporting.
pub fn report_fatal(frame: &TrapFrame, cr2: u64, platform: &dyn FatalPlatform) -> ! {
    let vector = frame.vector();
    let depth = FATAL_DEPTH.fetch_add(1, Ordering::AcqRel);
    if depth == 0 {
        REPORTING_CPU.claim();
    }
    match nesting(depth, REPORTING_CPU.is_this_cpu()) {
        Nesting::Report => {
            let trap = FatalTrap::on_this_cpu(frame, cr2);
            write_fatal_report(&mut crate::console::Writer, &trap, platform, &super::EXPLAINERS);
        }
        Nesting::OneLine => {
            let mut line = [0u8; 128];
            let len = nested_message(vector, &mut line);
            crate::console::write(&line[..len]);
        }
        Nesting::Silent => {}
        Nesting::Halt => platform.halt_forever(),
    }
    crate::exit::exit(crate::exit::CPU_EXCEPTION)
}

/// Whether the report shows the fault address (CR2) for `vector` and hands
/// it to the explainers: #PF, and #DF, which a #PF whose delivery faulted
/// again turns into. A platform that has to read a register for it (kvm:
/// CR2) need read it only then — first thing, before anything else can
/// fault and overwrite it.
pub const fn uses_cr2(vector: u8) -> bool {
    matches!(vector, PAGE_FAULT | DOUBLE_FAULT)
}

/// A fatal trap as the report describes it.
#[derive(Clone, Copy, Debug)]
pub struct FatalTrap<'a> {
    /// The registers saved when the trap came.
    pub frame: &'a TrapFrame,
    /// The fault address: CR2 for #PF and #DF ([`uses_cr2`]), else 0.
    pub cr2: u64,
    /// The CPU's index, `None` before its per-CPU header exists.
    pub cpu: Option<CpuIndex>,
    /// The CPU's local APIC id.
    pub apic_id: u32,
}

impl<'a> FatalTrap<'a> {
    /// The trap `frame` on the calling CPU (its index and APIC id from its
    /// per-CPU header; without one, the APIC id CPUID gives). `cr2` is
    /// dropped (0) for vectors that do not use it.
    pub fn on_this_cpu(frame: &'a TrapFrame, cr2: u64) -> Self {
        let cpu = crate::cpu::try_this_cpu();
        let apic_id = match cpu {
            Some(cpu) => crate::cpu::local(cpu).apic_id(),
            None => ukarch::cpu::apic_id(),
        };
        Self::new(frame, cr2, cpu, apic_id)
    }

    /// The trap `frame` on CPU `cpu` (`None`: not set up yet) with APIC id
    /// `apic_id`; `cr2` is dropped (0) for vectors that do not use it.
    pub const fn new(frame: &'a TrapFrame, cr2: u64, cpu: Option<CpuIndex>, apic_id: u32) -> Self {
        let cr2 = if uses_cr2(frame.vector()) { cr2 } else { 0 };
        Self { frame, cr2, cpu, apic_id }
    }

    /// What the fault explainers get.
    pub const fn info(&self) -> FaultInfo {
        FaultInfo {
            vector: self.frame.vector(),
            error_code: self.frame.error_code,
            rip: self.frame.rip,
            rsp: self.frame.rsp,
            cr2: self.cr2,
            cpu: self.cpu,
        }
    }

    /// Writes the report's first part: the vector and CPU, the error code,
    /// the registers, CR2 where it matters, then `platform_lines`. The
    /// explainers' lines and the backtrace follow (see
    /// [`write_fatal_report`]).
    ///
    /// # Errors
    /// What the writer returns.
    pub fn write_registers(
        &self,
        w: &mut dyn Write,
        platform_lines: &dyn Fn(&mut dyn Write) -> fmt::Result,
    ) -> fmt::Result {
        let frame = self.frame;
        let vector = frame.vector();
        let (name, description) = vector_name(vector);
        if vector < FIRST_EXTERNAL {
            write!(w, "*** CPU EXCEPTION {name} (vector {vector}, {description})")?;
        } else {
            write!(w, "*** UNHANDLED INTERRUPT (vector {vector}, {description})")?;
        }
        match self.cpu {
            Some(cpu) => writeln!(w, " on CPU {cpu} (APIC id {})", self.apic_id)?,
            None => writeln!(w, " on a CPU not set up yet (APIC id {})", self.apic_id)?,
        }
        write!(w, "error code: {:#x}", frame.error_code)?;
        if has_selector_error(vector) && frame.error_code != 0 {
            write!(w, " (selector error: {})", SelectorError(frame.error_code))?;
        }
        writeln!(w)?;
        writeln!(w, "RIP: {:#018x}  CS: {:#x}  RFLAGS: {:#018x}", frame.rip, frame.cs, frame.rflags)?;
        writeln!(w, "RSP: {:#018x}  SS: {:#x}", frame.rsp, frame.ss)?;
        if vector == PAGE_FAULT {
            writeln!(
                w,
                "CR2: {:#018x} (page fault address; {})",
                self.cr2,
                PageFaultError(frame.error_code)
            )?;
            if self.cr2 < 0x1000 {
                writeln!(w, "hint: the address is in page 0: a null-pointer dereference")?;
            }
        } else if vector == DOUBLE_FAULT {
            writeln!(
                w,
                "CR2: {:#018x} (last page-fault address: where a #PF that could not be delivered faulted, e.g. a stack overflow)",
                self.cr2
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
        platform_lines(w)
    }
}

/// Writes the whole report of `trap` to `out`: the registers and the
/// platform's lines ([`FatalTrap::write_registers`]), the lines of
/// `explainers`, then the backtrace, reading only the stack words that
/// `platform` calls readable. Each part is written even when an earlier one
/// failed to: a console that drops output is no reason to skip the rest.
pub fn write_fatal_report(
    out: &mut dyn Write,
    trap: &FatalTrap<'_>,
    platform: &dyn FatalPlatform,
    explainers: &Explainers,
) {
    let _ = trap.write_registers(out, &|w| platform.write_platform_lines(w));
    // Libraries add what only they know: which thread was running, whether
    // an address is a guard page.
    explainers.explain(&trap.info(), out);
    let mut frames = [0u64; MAX_BACKTRACE];
    let readable = |addr| platform.readable(addr);
    // SAFETY: `walk_frame_pointers` reads only 8-byte aligned addresses
    // that the platform called readable (`FatalPlatform::readable`).
    let depth = walk_frame_pointers(trap.frame.rbp, &mut frames, &readable, |addr| unsafe {
        core::ptr::read_volatile(addr as *const u64)
    });
    let _ = write_backtrace(out, &frames[..depth]);
}

// ---------------------------------------------------------------------------
// Nesting

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
        crate::cpu::try_this_cpu().map_or(usize::MAX, |cpu| cpu + 1)
    }
}

/// What a fatal trap at nesting `depth` (0: the first) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nesting {
    /// The whole report.
    Report,
    /// One line without `core::fmt`, then exit.
    OneLine,
    /// Exit without a word (the console faulted).
    Silent,
    /// Stop the CPU (another CPU is reporting, or the exit path faulted).
    Halt,
}

/// The nesting rule: `reporting` is whether this CPU writes the first
/// report.
const fn nesting(depth: u32, reporting: bool) -> Nesting {
    match depth {
        0 => Nesting::Report,
        _ if !reporting => Nesting::Halt,
        1 => Nesting::OneLine,
        2 => Nesting::Silent,
        _ => Nesting::Halt,
    }
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

// ---------------------------------------------------------------------------
// Decoding

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

/// Whether `vector`'s error code is a selector error code.
const fn has_selector_error(vector: u8) -> bool {
    matches!(vector, INVALID_TSS | SEGMENT_NOT_PRESENT | STACK_SEGMENT | GENERAL_PROTECTION)
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

// ---------------------------------------------------------------------------
// Backtrace

/// Most frames the backtrace shows.
const MAX_BACKTRACE: usize = 16;

/// Walks the frame-pointer chain from `rbp` (guest code is built with
/// `force-frame-pointers`: `[rbp]` is the caller's rbp, `[rbp + 8]` the
/// return address), storing return addresses in `out`; returns how many.
/// Stops at anything implausible: a null, misaligned or non-increasing frame
/// pointer, one in page 0 or so high that `rbp + 16` overflows, one whose
/// two words `readable` does not accept, or a null return address. `read`
/// is only called on addresses passing those checks.
fn walk_frame_pointers(
    mut rbp: u64,
    out: &mut [u64],
    readable: &dyn Fn(u64) -> bool,
    read: impl Fn(u64) -> u64,
) -> usize {
    let mut count = 0;
    while count < out.len() {
        if rbp < 0x1000 || !rbp.is_multiple_of(8) || rbp.checked_add(16).is_none() {
            break;
        }
        if !readable(rbp) || !readable(rbp + 8) {
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
fn write_backtrace(w: &mut dyn Write, frames: &[u64]) -> fmt::Result {
    if frames.is_empty() {
        return Ok(());
    }
    write!(w, "backtrace (frame pointers):")?;
    for address in frames {
        write!(w, " {address:#x}")?;
    }
    writeln!(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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

    /// A platform line like kvm's control registers.
    fn control_regs(w: &mut dyn Write) -> fmt::Result {
        writeln!(w, "CR0: {:#018x}  CR3: {:#018x}  CR4: {:#018x}", 0x8001_0033_u64, 0x10_9000_u64, 0x20_u64)
    }

    fn no_lines(_: &mut dyn Write) -> fmt::Result {
        Ok(())
    }

    /// The registers part of `frame`'s report, on CPU `cpu` (APIC id
    /// `apic_id`), without platform lines.
    fn registers(frame: &TrapFrame, cr2: u64, cpu: Option<usize>, apic_id: u32) -> String {
        let mut out = String::new();
        FatalTrap::new(frame, cr2, cpu, apic_id).write_registers(&mut out, &no_lines).unwrap();
        out
    }

    #[test]
    fn report_for_invalid_opcode() {
        let mut out = String::new();
        let frame = sample_frame(6, 0);
        FatalTrap::new(&frame, 0, Some(0), 0).write_registers(&mut out, &control_regs).unwrap();
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
        // Without platform lines the dump ends with the registers.
        assert_eq!(registers(&frame, 0, Some(0), 0), expected.rsplit_once("CR0:").unwrap().0);
    }

    #[test]
    fn report_for_page_fault_and_gp() {
        let out = registers(&sample_frame(14, 0), 0x10_0000_0000, Some(1), 2);
        assert!(out.starts_with("*** CPU EXCEPTION #PF (vector 14, page fault) on CPU 1 (APIC id 2)\n"));
        assert!(
            out.contains("\nCR2: 0x0000001000000000 (page fault address; not present, read, supervisor)\n")
        );
        assert!(!out.contains("hint:"));

        let out = registers(&sample_frame(14, 2), 0x8, Some(0), 0);
        assert!(out.contains(
            "(page fault address; not present, write, supervisor)\nhint: the address is in page 0: a null-pointer dereference\nRAX: "
        ));

        let out = registers(&sample_frame(13, 0x18), 0x1234, Some(0), 0);
        assert!(
            out.starts_with("*** CPU EXCEPTION #GP (vector 13, general protection) on CPU 0 (APIC id 0)\n")
        );
        assert!(out.contains("\nerror code: 0x18 (selector error: GDT index 3)\n"));
        assert!(!out.contains("CR2"), "CR2 only for #PF and #DF");

        let out = registers(&sample_frame(13, 0), 0, Some(0), 0);
        assert!(out.contains("\nerror code: 0x0\n"));

        let out = registers(&sample_frame(6, 0), 0, None, 3);
        assert!(out.starts_with(
            "*** CPU EXCEPTION #UD (vector 6, invalid opcode) on a CPU not set up yet (APIC id 3)\n"
        ));

        let out = registers(&sample_frame(40, 0), 0, Some(3), 7);
        assert!(
            out.starts_with("*** UNHANDLED INTERRUPT (vector 40, external interrupt) on CPU 3 (APIC id 7)\n")
        );
    }

    #[test]
    fn report_for_double_fault_shows_cr2() {
        let out = registers(&sample_frame(8, 0), 0x100_0000_0ff8, Some(0), 0);
        assert!(out.starts_with("*** CPU EXCEPTION #DF (vector 8, double fault) on CPU 0 (APIC id 0)\n"));
        assert!(out.contains("\nCR2: 0x0000010000000ff8 (last page-fault address: "));
        assert!(!out.contains("hint:"));
    }

    #[test]
    fn explainers_get_the_frame_and_cr2() {
        assert!(uses_cr2(PAGE_FAULT) && uses_cr2(DOUBLE_FAULT));
        assert!(!uses_cr2(GENERAL_PROTECTION) && !uses_cr2(6) && !uses_cr2(32));
        let frame = sample_frame(8, 0);
        assert_eq!(
            FatalTrap::new(&frame, 0x1234, Some(2), 2).info(),
            FaultInfo { vector: 8, error_code: 0, rip: 0x10_2345, rsp: 0x12_3f50, cr2: 0x1234, cpu: Some(2) }
        );
        let frame = sample_frame(14, 2);
        assert_eq!(FatalTrap::new(&frame, 0, None, 0).info().error_code, 2);
        // A fault address for a vector without one (a signal's) is dropped.
        let frame = sample_frame(13, 0);
        assert_eq!(FatalTrap::new(&frame, 0x1234, Some(0), 0).info().cr2, 0);
    }

    #[test]
    fn frame_pointer_walk() {
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
        let everything = |_| true;
        let mut out = [0; MAX_BACKTRACE];
        let n = walk_frame_pointers(0x20_0000, &mut out, &everything, read);
        assert_eq!(out[..n], [0x10_1111, 0x10_2222, 0x10_3333]);
        let walked = out;
        // Implausible frame pointers are never read.
        assert_eq!(walk_frame_pointers(0, &mut out, &everything, read), 0);
        assert_eq!(walk_frame_pointers(0x20_0004, &mut out, &everything, read), 0);
        assert_eq!(walk_frame_pointers(0x8, &mut out, &everything, read), 0);
        assert_eq!(walk_frame_pointers(u64::MAX - 7, &mut out, &everything, read), 0);
        // Nor are words the platform does not call readable: the walk stops
        // before a frame whose link or return address is not.
        let below = |limit: u64| move |addr: u64| addr < limit;
        assert_eq!(walk_frame_pointers(0x20_0000, &mut out, &below(0x20_0008), read), 0);
        assert_eq!(walk_frame_pointers(0x20_0000, &mut out, &below(0x20_0049), read), 2);
        assert_eq!(walk_frame_pointers(0x20_0000, &mut out, &below(0x20_0048), read), 1);
        // A loop stops.
        let looping = |addr: u64| {
            if addr.is_multiple_of(16) { addr } else { 0x10_0000 }
        };
        assert_eq!(walk_frame_pointers(0x20_0000, &mut out, &everything, looping), 1);
        // The output bounds the walk.
        let mut two = [0; 2];
        assert_eq!(walk_frame_pointers(0x20_0000, &mut two, &everything, read), 2);

        let mut text = String::new();
        write_backtrace(&mut text, &walked[..n]).unwrap();
        assert_eq!(text, "backtrace (frame pointers): 0x101111 0x102222 0x103333\n");
        text.clear();
        write_backtrace(&mut text, &[]).unwrap();
        assert_eq!(text, "");
    }

    /// A platform for host tests: kvm-like lines; readable is a range.
    struct TestPlatform {
        readable: core::ops::Range<u64>,
    }

    impl FatalPlatform for TestPlatform {
        fn write_platform_lines(&self, out: &mut dyn Write) -> fmt::Result {
            control_regs(out)
        }
        fn readable(&self, addr: u64) -> bool {
            self.readable.contains(&addr) && self.readable.contains(&(addr + 7))
        }
        fn halt_forever(&self) -> ! {
            panic!("halted")
        }
    }

    fn names_the_thread(info: &FaultInfo, out: &mut dyn Write) -> bool {
        writeln!(out, "in thread `main` (id 1) on CPU {:?}", info.cpu).is_ok()
    }
    fn guard_page(info: &FaultInfo, out: &mut dyn Write) -> bool {
        info.cr2 == 0x100_0000_0ff8 && writeln!(out, "stack overflow: {:#x}", info.cr2).is_ok()
    }

    /// The whole report of a #DF with a real stack: two frames in host
    /// memory the platform calls readable, the third link pointing outside.
    #[test]
    fn whole_report_with_explainers_and_backtrace() {
        let mut stack = [0u64; 8];
        let base = stack.as_ptr() as u64;
        // Frame 0 at stack[0], frame 1 at stack[4]; frame 1's link points
        // just past the array, where the platform says nothing is readable.
        stack[0] = base + 4 * 8;
        stack[1] = 0x10_1111;
        stack[4] = base + 8 * 8;
        stack[5] = 0x10_2222;
        // The words are read back through their address: expose it again,
        // after the writes.
        assert_eq!(stack.as_ptr() as u64, base);
        let platform = TestPlatform { readable: base..base + 8 * 8 };
        let explainers = Explainers::new();
        explainers.register(names_the_thread).unwrap();
        explainers.register(guard_page).unwrap();
        let frame = TrapFrame { rbp: base, ..sample_frame(8, 0) };
        let trap = FatalTrap::new(&frame, 0x100_0000_0ff8, Some(1), 4);
        let mut out = String::new();
        write_fatal_report(&mut out, &trap, &platform, &explainers);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "*** CPU EXCEPTION #DF (vector 8, double fault) on CPU 1 (APIC id 4)");
        assert!(lines[4].starts_with("CR2: 0x0000010000000ff8 (last page-fault address: "));
        assert_eq!(lines[7], format!("RBP: {base:#018x}  R8:  0x0000000000000000  R9:  0x0000000000000000"));
        assert_eq!(lines[10], "CR0: 0x0000000080010033  CR3: 0x0000000000109000  CR4: 0x0000000000000020");
        assert_eq!(lines[11], "in thread `main` (id 1) on CPU Some(1)");
        assert_eq!(lines[12], "stack overflow: 0x10000000ff8");
        assert_eq!(lines[13], "backtrace (frame pointers): 0x101111 0x102222");
        assert_eq!(lines.len(), 14);
        assert!(out.ends_with('\n'));

        // No readable stack: no backtrace line; no explainer: no lines.
        let platform = TestPlatform { readable: 0..0 };
        let mut out = String::new();
        write_fatal_report(&mut out, &trap, &platform, &Explainers::new());
        assert!(out.ends_with("CR4: 0x0000000000000020\n"), "{out}");
    }

    #[test]
    fn nesting_levels() {
        assert_eq!(nesting(0, true), Nesting::Report);
        assert_eq!(nesting(0, false), Nesting::Report);
        assert_eq!(nesting(1, true), Nesting::OneLine);
        assert_eq!(nesting(2, true), Nesting::Silent);
        assert_eq!(nesting(3, true), Nesting::Halt);
        assert_eq!(nesting(u32::MAX, true), Nesting::Halt);
        // Another CPU's report is under way: stop quietly.
        for depth in 1..5 {
            assert_eq!(nesting(depth, false), Nesting::Halt);
        }
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
        // The longest name fits.
        let n = nested_message(9, &mut buf);
        assert!(core::str::from_utf8(&buf[..n]).unwrap().contains("reserved (vector 9)"));
    }
}
