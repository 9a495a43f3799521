//! Per-CPU descriptor tables: the GDT and the TSS with its interrupt stacks.
//!
//! In long mode segmentation is mostly gone, but a CPU still needs a GDT with
//! a 64-bit code segment (CS), a data segment (SS/DS/ES) and a TSS descriptor,
//! and the TSS is where the CPU finds the *interrupt stack table* (IST): the
//! known-good stacks it switches to for exceptions that may arrive with a
//! broken stack — #DF (a stack overflow that faults while pushing the #PF
//! frame becomes a double fault), NMI and #MC (both can interrupt anything,
//! including the first instructions of another handler).
//!
//! # Layout
//!
//! | selector | descriptor |
//! |---|---|
//! | `0x00` | null |
//! | `0x08` ([`KERNEL_CS`]) | kernel code, 64-bit, DPL 0 |
//! | `0x10` ([`KERNEL_DS`]) | kernel data, DPL 0 |
//! | `0x18` ([`TSS_SELECTOR`]) | 64-bit TSS (16 bytes: two slots) |
//!
//! | TSS slot | stack (16 KiB each) | used by |
//! |---|---|---|
//! | RSP0 | `rsp0_stack` | ring 3 → ring 0 transitions (none yet: no user mode) |
//! | IST1 ([`IST_DOUBLE_FAULT`]) | `ist_stacks[0]` | #DF |
//! | IST2 ([`IST_NMI`]) | `ist_stacks[1]` | NMI |
//! | IST3 ([`IST_MACHINE_CHECK`]) | `ist_stacks[2]` | #MC |
//!
//! # Per-CPU design
//!
//! Everything a CPU needs lives in one [`CpuTables`]: its GDT (a TSS
//! descriptor may only be loaded by one CPU, since `ltr` marks it busy), its
//! TSS and its stacks (two CPUs taking a #DF at once must not share a stack).
//! The boot CPU uses the static [`BOOT_CPU`] instance, whose memory
//! (`BOOT_CPU_TABLES`, 64 KiB of it stacks) is left uninitialised in the
//! image's `.stack` section: it costs no image size and, unlike `.bss`, no
//! boot time (boot.S zeroes `.bss` at an instruction per 8 bytes) — the
//! stacks are [`MaybeUninit`] bytes that nothing reads before writing, and
//! [`CpuTablesCell::take`] writes the GDT and TSS before handing the tables
//! out. SMP bring-up gives each application processor its own `&'static mut
//! CpuTables` (zeroed memory it reserved) and calls [`CpuTables::load`] on
//! that CPU. The IDT, by contrast, is shared by all CPUs (see `trap.rs`).
//!
//! The stacks have no guard pages: the boot map uses 2 MiB pages above the
//! first 2 MiB, so an overflowing IST stack silently runs into its neighbour.
//! 16 KiB is ample for the exception report, which is all these handlers do.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

/// Kernel code segment selector (GDT index 1, RPL 0).
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data segment selector (GDT index 2, RPL 0).
pub const KERNEL_DS: u16 = 0x10;
/// TSS selector (GDT index 3; the descriptor also occupies index 4).
pub const TSS_SELECTOR: u16 = 0x18;

/// IST index (1-based, as an IDT gate names it) of the #DF stack.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST index of the NMI stack.
pub const IST_NMI: u8 = 2;
/// IST index of the #MC stack.
pub const IST_MACHINE_CHECK: u8 = 3;

/// Size of each IST stack and of the RSP0 stack.
pub const STACK_SIZE: usize = 16 * 1024;
/// Number of IST stacks each CPU has.
const IST_STACKS: usize = 3;

/// Number of 8-byte GDT slots: null, code, data, TSS (two slots).
const GDT_ENTRIES: usize = 5;

/// Kernel code: present, DPL 0, code, readable, accessed, L (64-bit), G,
/// limit 0xfffff (ignored in long mode). Accessed is preset so the CPU never
/// writes the descriptor.
const KERNEL_CODE_DESCRIPTOR: u64 = 0x00af_9b00_0000_ffff;
/// Kernel data: present, DPL 0, data, writable, accessed, D/B, G, limit
/// 0xfffff.
const KERNEL_DATA_DESCRIPTOR: u64 = 0x00cf_9300_0000_ffff;
/// System descriptor type "available 64-bit TSS".
const TSS_TYPE_AVAILABLE: u64 = 0x9;
/// Descriptor present bit.
const DESCRIPTOR_PRESENT: u64 = 1 << 47;

/// The 64-bit task-state segment (Intel SDM vol. 3, figure 8-11). In long
/// mode the CPU only reads it: stack pointers for privilege changes and the
/// IST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct TaskStateSegment {
    reserved0: u32,
    /// RSP0..RSP2: stacks for entering rings 0..2 from a less privileged ring.
    pub rsp: [u64; 3],
    reserved1: u64,
    /// IST1..IST7 (index 0 is IST1).
    pub ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    /// Offset of the I/O permission bitmap; the TSS size means "none".
    pub iomap_base: u16,
}

impl TaskStateSegment {
    /// An all-zero TSS (zero so that a static `CpuTables` stays in `.bss`).
    pub const fn zeroed() -> Self {
        Self {
            reserved0: 0,
            rsp: [0; 3],
            reserved1: 0,
            ist: [0; 7],
            reserved2: 0,
            reserved3: 0,
            iomap_base: 0,
        }
    }
}

/// A 16-byte-aligned stack. Only the CPU uses its bytes (it writes them
/// before it reads them), so they may be uninitialised.
#[repr(C, align(16))]
pub struct Stack(MaybeUninit<[u8; STACK_SIZE]>);

impl Stack {
    const fn zeroed() -> Self {
        Self(MaybeUninit::zeroed())
    }

    /// The initial stack pointer: one past the highest byte (16-byte aligned).
    fn top(&self) -> u64 {
        self.0.as_ptr() as u64 + STACK_SIZE as u64
    }
}

/// The GDT of one CPU.
#[repr(C, align(16))]
struct Gdt([u64; GDT_ENTRIES]);

/// Everything one CPU needs for segmentation and exception stacks. See the
/// module documentation.
#[repr(C)]
pub struct CpuTables {
    gdt: Gdt,
    tss: TaskStateSegment,
    ist_stacks: [Stack; IST_STACKS],
    rsp0_stack: Stack,
}

impl Default for CpuTables {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuTables {
    /// All-zero tables; [`CpuTables::load`] fills them in. All-zero bytes
    /// are a valid `CpuTables` (integers and byte arrays only), which the
    /// secondary-CPU bring-up relies on to initialise them in place. So is
    /// any content of the stacks: see [`CpuTablesCell::take`].
    pub const fn new() -> Self {
        Self {
            gdt: Gdt([0; GDT_ENTRIES]),
            tss: TaskStateSegment::zeroed(),
            ist_stacks: [Stack::zeroed(), Stack::zeroed(), Stack::zeroed()],
            rsp0_stack: Stack::zeroed(),
        }
    }

    /// Fills in the TSS (RSP0, IST1..IST3) and the GDT (with this TSS's
    /// descriptor). Pure memory writes: host-testable.
    fn fill(&mut self) {
        self.tss = TaskStateSegment::zeroed();
        self.tss.rsp = [self.rsp0_stack.top(), 0, 0];
        let mut ist = [0u64; 7];
        for (slot, stack) in ist.iter_mut().zip(self.ist_stacks.iter()) {
            *slot = stack.top();
        }
        self.tss.ist = ist;
        self.tss.iomap_base = size_of::<TaskStateSegment>() as u16;

        let tss_base = core::ptr::addr_of!(self.tss) as u64;
        let [tss_low, tss_high] = tss_descriptor(tss_base, size_of::<TaskStateSegment>() as u32 - 1);
        self.gdt.0 = [0, KERNEL_CODE_DESCRIPTOR, KERNEL_DATA_DESCRIPTOR, tss_low, tss_high];
    }

    /// Fills in the tables and loads them on the calling CPU: `lgdt`, CS
    /// reloaded through a far return, SS/DS/ES loaded with [`KERNEL_DS`],
    /// FS/GS with the null selector, then `ltr`.
    ///
    /// FS and GS are nulled: call this before anything programs the FS/GS
    /// base MSRs (on Intel CPUs loading a null selector may clear the base).
    ///
    /// # Safety
    /// Call once per CPU, with interrupts disabled, on the CPU that will use
    /// these tables; `self` must never be used by another CPU (`ltr` marks its
    /// TSS descriptor busy, and the stacks are this CPU's).
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn load(&'static mut self) {
        use x86_64::VirtAddr;
        use x86_64::instructions::tables::{DescriptorTablePointer, lgdt};

        self.fill();
        let pointer = DescriptorTablePointer {
            limit: (size_of::<Gdt>() - 1) as u16,
            base: VirtAddr::new(self.gdt.0.as_ptr() as u64),
        };
        // SAFETY: the GDT is 'static and valid (filled just above); its code
        // and data descriptors keep the flat 64-bit model the CPU runs in, so
        // the old selector values stay usable until they are reloaded below.
        unsafe { lgdt(&pointer) };
        // SAFETY: KERNEL_CS is a 64-bit code segment in the GDT just loaded;
        // the far return lands on the next instruction with the same stack.
        unsafe {
            core::arch::asm!(
                "push {sel}",
                "lea {tmp}, [rip + 2f]",
                "push {tmp}",
                "retfq",
                "2:",
                sel = in(reg) u64::from(KERNEL_CS),
                tmp = lateout(reg) _,
                options(preserves_flags),
            );
        }
        // SAFETY: KERNEL_DS is a flat writable data segment of the GDT just
        // loaded; the null selector is valid for DS/ES/FS/GS in long mode.
        unsafe {
            core::arch::asm!(
                "mov ss, {ds:x}",
                "mov ds, {ds:x}",
                "mov es, {ds:x}",
                "mov fs, {null:x}",
                "mov gs, {null:x}",
                ds = in(reg) KERNEL_DS,
                null = in(reg) 0u16,
                options(nostack, preserves_flags),
            );
        }
        // SAFETY: TSS_SELECTOR names the available 64-bit TSS descriptor of
        // the GDT just loaded, pointing at this CPU's 'static TSS; the
        // function contract guarantees no other CPU loads it.
        unsafe {
            x86_64::instructions::tables::load_tss(x86_64::structures::gdt::SegmentSelector(TSS_SELECTOR))
        };
    }
}

/// Builds the 16-byte system descriptor of a 64-bit available TSS.
const fn tss_descriptor(base: u64, limit: u32) -> [u64; 2] {
    let limit = limit as u64;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (TSS_TYPE_AVAILABLE << 40)
        | DESCRIPTOR_PRESENT
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// Memory for one CPU's [`CpuTables`], uninitialised (so it may live in a
/// section the boot code does not zero); a [`CpuTablesCell`] hands it out.
pub struct TablesMemory(UnsafeCell<MaybeUninit<CpuTables>>);

// SAFETY: the memory is only reachable through the one `CpuTablesCell`
// given it (`CpuTablesCell::new`'s contract), which hands out the one
// `&'static mut` at most once.
unsafe impl Sync for TablesMemory {}

impl TablesMemory {
    /// Uninitialised memory.
    pub const fn uninit() -> Self {
        Self(UnsafeCell::new(MaybeUninit::uninit()))
    }
}

/// A [`CpuTables`] in static memory, handed out once as `&'static mut`.
pub struct CpuTablesCell {
    memory: &'static TablesMemory,
    taken: AtomicBool,
}

impl CpuTablesCell {
    /// Tables in `memory`, not yet taken.
    ///
    /// # Safety
    /// `memory` is given to this cell only, and nothing else accesses it.
    pub const unsafe fn new(memory: &'static TablesMemory) -> Self {
        Self { memory, taken: AtomicBool::new(false) }
    }

    /// The tables, on the first call only: the GDT and TSS zeroed, the
    /// stacks as the memory held them.
    #[allow(clippy::mut_from_ref, reason = "hands out the one `&mut`, guarded by `taken`")]
    pub fn take(&'static self) -> Option<&'static mut CpuTables> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        let tables = self.memory.0.get().cast::<CpuTables>();
        // SAFETY: the flag above lets exactly one caller through, and
        // `new`'s contract gives this cell its memory alone, so this is the
        // only access ever made to it. Writing the GDT and the TSS (integers
        // only) makes the whole `CpuTables` valid: its other fields, the
        // stacks, are `MaybeUninit` bytes, valid whatever they hold.
        unsafe {
            core::ptr::addr_of_mut!((*tables).gdt).write(Gdt([0; GDT_ENTRIES]));
            core::ptr::addr_of_mut!((*tables).tss).write(TaskStateSegment::zeroed());
            Some(&mut *tables)
        }
    }
}

/// The boot CPU's tables' memory: in `.stack` (see `link.ld`), which is
/// reserved but not zeroed (see the module documentation).
#[cfg_attr(target_os = "none", unsafe(link_section = ".stack.boot_cpu_tables"))]
static BOOT_CPU_TABLES: TablesMemory = TablesMemory::uninit();

/// The boot CPU's tables.
// SAFETY: BOOT_CPU_TABLES is private to this module and given to this cell
// only.
pub static BOOT_CPU: CpuTablesCell = unsafe { CpuTablesCell::new(&BOOT_CPU_TABLES) };

/// Loads the boot CPU's GDT and TSS ([`BOOT_CPU`]).
///
/// # Panics
/// When called twice.
///
/// # Safety
/// Call on the boot CPU with interrupts disabled, before the FS/GS base MSRs
/// are set (see [`CpuTables::load`]).
#[cfg(target_arch = "x86_64")]
pub unsafe fn init_boot_cpu() {
    let tables = BOOT_CPU.take().expect("gdt::init_boot_cpu called twice");
    // SAFETY: we run on the boot CPU with interrupts off (function contract),
    // and `take` handed these tables out only to us.
    unsafe { tables.load() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tss_is_104_bytes() {
        assert_eq!(size_of::<TaskStateSegment>(), 104);
        assert_eq!(core::mem::offset_of!(TaskStateSegment, rsp), 4);
        assert_eq!(core::mem::offset_of!(TaskStateSegment, ist), 0x24);
        assert_eq!(core::mem::offset_of!(TaskStateSegment, iomap_base), 0x66);
    }

    #[test]
    fn tss_descriptor_encodes_base_and_limit() {
        let [low, high] = tss_descriptor(0x1234_5678_9abc_def0, 0x67);
        assert_eq!(low & 0xffff, 0x67);
        assert_eq!((low >> 16) & 0xff_ffff, 0xbc_def0);
        assert_eq!((low >> 40) & 0xf, 0x9);
        assert_eq!((low >> 47) & 1, 1);
        assert_eq!((low >> 56) & 0xff, 0x9a);
        assert_eq!(high, 0x1234_5678);
        // Same encoding as the x86_64 crate computes for a TSS descriptor.
        assert_eq!(tss_descriptor(0, 0x67), [0x0000_8900_0000_0067, 0]);
    }

    #[test]
    fn segment_descriptors_match_the_x86_64_crate() {
        use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
        let mut gdt = GlobalDescriptorTable::<3>::empty();
        let cs = gdt.append(Descriptor::kernel_code_segment());
        let ds = gdt.append(Descriptor::kernel_data_segment());
        assert_eq!(cs.0, KERNEL_CS);
        assert_eq!(ds.0, KERNEL_DS);
        assert_eq!(gdt.entries()[1].raw(), KERNEL_CODE_DESCRIPTOR);
        assert_eq!(gdt.entries()[2].raw(), KERNEL_DATA_DESCRIPTOR);
    }

    #[test]
    fn fill_points_the_tss_at_the_stacks() {
        let tables: &'static mut CpuTables = Box::leak(Box::new(CpuTables::new()));
        tables.fill();
        let ist = tables.tss.ist;
        let rsp = tables.tss.rsp;
        for (i, stack) in tables.ist_stacks.iter().enumerate() {
            assert_eq!(ist[i], stack.top());
            assert_eq!(ist[i] % 16, 0);
        }
        assert_eq!(ist[3..], [0; 4]);
        assert_eq!(rsp[0], tables.rsp0_stack.top());
        assert_eq!({ tables.tss.iomap_base }, 104);
        let base = core::ptr::addr_of!(tables.tss) as u64;
        assert_eq!(tables.gdt.0[3..], tss_descriptor(base, 103));
        assert_eq!(tables.gdt.0[0], 0);
    }

    #[test]
    fn new_tables_are_all_zero_bytes() {
        let tables = Box::new(CpuTables::new());
        // SAFETY: reading the bytes of a fully initialised value.
        let bytes = unsafe {
            core::slice::from_raw_parts((&*tables as *const CpuTables).cast::<u8>(), size_of::<CpuTables>())
        };
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn boot_tables_are_taken_once() {
        static MEMORY: TablesMemory = TablesMemory::uninit();
        // SAFETY: MEMORY is local to this test and given to this cell only.
        static CELL: CpuTablesCell = unsafe { CpuTablesCell::new(&MEMORY) };
        let tables = CELL.take().unwrap();
        assert_eq!(tables.gdt.0, [0; GDT_ENTRIES]);
        assert_eq!(tables.tss, TaskStateSegment::zeroed());
        tables.fill();
        assert!(CELL.take().is_none());
    }
}
