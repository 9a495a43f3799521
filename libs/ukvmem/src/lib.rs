//! # ukvmem — guarded stacks in the kernel page tables
//!
//! What it offers:
//!
//! * [`GuardedStack`]: a kernel stack of whole 4 KiB pages with an
//!   **unmapped guard page** just below it, so that overflowing the stack
//!   faults at once instead of silently overwriting whatever lies below
//!   (the thread stacks of `uksched`);
//! * a **fault explainer** (registered with [`ukplat::fault`] at boot):
//!   when a fatal page fault or double fault touches a guard page, the
//!   platform's report gains the line
//!   `stack overflow: 0x… is in the guard page below the stack 0x…-0x…`;
//! * [`guard_page_at`] (lock-free: usable in fault handlers), [`translate`]
//!   (a virtual address's physical address, through the live page tables),
//!   [`stats`].
//!
//! # The stack area
//!
//! Stacks live in a virtual range of their own, [`AREA`], from
//! [`AREA_BASE`] = 1 TiB — PML4 entry 2, far above the boot identity map of
//! the first 4 GiB (PML4 entry 0), so nothing else ever maps there. The area
//! is cut into `ukvmem.max_stacks` equal **slots** of
//! `ukvmem.max_stack_kib` + 4 KiB. A stack of N pages takes the top N pages
//! of its slot; the page below is its guard page and the rest of the slot
//! below that is unmapped too (an oversized frame that jumps the guard page
//! still faults while it stays in the slot). The slot above starts with its
//! own unmapped part, so the page above a stack is never mapped either.
//!
//! ```text
//!  slot i                                                            slot i+1
//!  | unmapped ......................| guard |  N mapped pages        | unmapped ...
//!                                           ^ bottom()               ^ top() (RSP starts here)
//! ```
//!
//! Pages are mapped 4 KiB at a time into the **running** page tables (the
//! ones CR3 points at, built by the platform's `boot.S` and shared by every
//! CPU) with the `x86_64` crate's [`OffsetPageTable`] at physical offset 0:
//! the heap and every page table are identity-mapped. The stack pages and
//! any page tables the mapping needs come from the heap (`ukalloc`; page
//! tables 4 KiB-aligned and zeroed), and must lie below 4 GiB, inside the
//! identity map (asserted). One spinlock ([`ukspin::SpinLockIrq`])
//! serialises every page-table change and the slots' bookkeeping.
//!
//! # Freed stacks are cached, never unmapped
//!
//! Dropping a [`GuardedStack`] keeps its pages mapped and puts its slot on
//! a free list for its page count; the next allocation of that many pages
//! takes it back (the most recently freed first) without touching a page
//! table. When every slot has been used, an allocation grows a cached
//! smaller stack by mapping the missing pages below it. Pages are therefore
//! only ever *added* to the page tables, never removed or changed — and
//! adding a translation where the entry was not present needs no TLB
//! invalidation on x86 (the CPU caches only present translations), so
//! **no TLB shootdown (cross-CPU invalidation IPI) is ever needed**, on any
//! number of CPUs.
//!
//! The price: the memory of the largest number of stacks that ever existed
//! at once (of each size) stays reserved for reuse rather than going back
//! to the heap — the trade-off Linux makes when it caches freed
//! `vmalloc`'d thread stacks instead of unmapping them. [`stats`] shows it
//! (`cached`, `bytes_mapped`).
//!
//! Every stack starts zeroed: fresh pages are zeroed when mapped, a reused
//! stack is cleared when it is handed out again (as Linux clears its cached
//! stacks, so no stale pointers survive into the new thread).
//!
//! **Needs:** `ukplat` (the fault-explainer registry, the console for a
//! warning), `ukboot` (the init function registering the explainer, at
//! `ukboot::priority::MEMORY`), `ukalloc` (stack pages and page tables from
//! the heap: allocate stacks after the heap's init, i.e. from priority
//! `MEMORY` on), `ukspin` (the lock), `ukarch` (CR3), `ukconfig`, `x86_64`.
//!
//! **Config options:**
//!
//! * `max_stacks` (1..=65536, default 1024): slots, i.e. the most stacks
//!   that can exist at once, live or cached. Each costs 6 bytes of
//!   bookkeeping and a slot of virtual address space (no memory unless
//!   used);
//! * `max_stack_kib` (4..=8192, default 1024): the largest stack, rounded
//!   up to whole pages; a slot is this plus its guard page. The whole area
//!   (at most 65536 × 8196 KiB ≈ 512 GiB) always fits in the lower half of
//!   the address space above the identity map.
//!
//! **Why the `x86_64` crate:** it is already the platform's dependency, and
//! its `paging` module — available with only the `instructions` feature, on
//! stable Rust — provides the typed 4-level page-table structures and a
//! complete [`Mapper`]/[`Translate`] implementation ([`OffsetPageTable`]
//! over [`MappedPageTable`]): the walk, the creation of missing
//! intermediate tables through a [`FrameAllocator`] we implement over the
//! heap, entry flags, and huge-page-aware translation (the identity map
//! uses 2 MiB pages). Widely used (the `bootloader`/`blog_os` ecosystem),
//! it saves writing and testing that walk again.
//!
//! ```no_run
//! use ukvmem::GuardedStack;
//!
//! let stack = GuardedStack::allocate(64 * 1024).expect("no stack");
//! assert_eq!(stack.size(), 64 * 1024);
//! assert_eq!(stack.guard().end, stack.bottom());
//! // A new thread starts with RSP = stack.top(); running past
//! // stack.bottom() faults in the guard page, and the fault report says:
//! //   stack overflow: 0x… is in the guard page below the stack 0x…-0x…
//! assert_eq!(ukvmem::guard_page_at(stack.bottom() - 8), Some(stack.bottom()..stack.top()));
//! drop(stack); // cached, still mapped, for the next 64 KiB stack
//! assert_eq!(ukvmem::stats().cached, 1);
//! ```
//!
//! [`OffsetPageTable`]: x86_64::structures::paging::OffsetPageTable
//! [`MappedPageTable`]: x86_64::structures::paging::MappedPageTable
//! [`Mapper`]: x86_64::structures::paging::Mapper
//! [`Translate`]: x86_64::structures::paging::Translate
//! [`FrameAllocator`]: x86_64::structures::paging::FrameAllocator
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "uktest")]
extern crate alloc;

mod freelist;
#[cfg(feature = "uktest")]
mod guest_tests;
mod layout;
mod paging;
mod pool;

use core::fmt::{self, Write};
use core::ops::Range;
use core::sync::atomic::AtomicU16;
use ukplat::fault::FaultInfo;

pub use layout::PAGE_SIZE;

/// First address of the stack area: 1 TiB, the start of PML4 entry 2.
pub const AREA_BASE: usize = 0x0000_0100_0000_0000;
// Its own PML4 entry, above the identity map's entry 0.
const _: () = assert!(AREA_BASE >> 39 == 2);

/// Slots in the stack area: the option `max_stacks`.
pub const MAX_STACKS: usize = ukconfig::ukvmem::MAX_STACKS;

/// Pages of the largest stack: the option `max_stack_kib`, rounded up.
const MAX_STACK_PAGES: usize = ukconfig::ukvmem::MAX_STACK_KIB.div_ceil(PAGE_SIZE / 1024);

/// The largest stack [`GuardedStack::allocate`] gives, in bytes.
pub const MAX_STACK_SIZE: usize = MAX_STACK_PAGES * PAGE_SIZE;

/// Page counts + 1: the free lists' index range.
const CLASSES: usize = MAX_STACK_PAGES + 1;

/// The slots.
const LAYOUT: layout::Layout = layout::Layout::new(AREA_BASE, MAX_STACKS, MAX_STACK_PAGES);

/// The stack area: every slot, mapped or not.
pub const AREA: Range<usize> = LAYOUT.area();

const _: () = {
    assert!(AREA.end <= 0x0000_8000_0000_0000, "ukvmem: the stack area leaves the lower canonical half");
    assert!(MAX_STACK_PAGES <= u16::MAX as usize, "ukvmem: page counts are kept in 16 bits");
};

/// Why [`GuardedStack::allocate`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackError {
    /// More than [`MAX_STACK_SIZE`] (the option `max_stack_kib`) was asked.
    TooLarge {
        /// Bytes asked for.
        size: usize,
        /// The largest stack a slot holds, in bytes.
        max: usize,
    },
    /// Every slot of the stack area holds a live stack, or a cached one
    /// that cannot serve this size (larger, or smaller while no other slot
    /// is free to grow it): raise the option `max_stacks`.
    OutOfVirtualArea {
        /// Bytes asked for.
        size: usize,
        /// Slots in the area.
        slots: usize,
    },
    /// The heap could not give the stack's pages or the page tables to map
    /// them.
    OutOfMemory {
        /// Bytes of stack asked for.
        size: usize,
        /// Bytes the failed heap allocation asked for.
        needed: usize,
        /// Bytes the heap had free.
        free: usize,
    },
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooLarge { size, max } => write!(
                f,
                "ukvmem: a stack of {size} bytes is larger than the largest a slot holds ({max} bytes; option ukvmem.max_stack_kib)"
            ),
            Self::OutOfVirtualArea { size, slots } => write!(
                f,
                "ukvmem: out of virtual stack area for a stack of {size} bytes: all {slots} slots hold live stacks or cached ones of other sizes (option ukvmem.max_stacks)"
            ),
            Self::OutOfMemory { size, needed, free } => write!(
                f,
                "ukvmem: out of memory for a stack of {size} bytes: the heap could not give {needed} bytes ({free} bytes free)"
            ),
        }
    }
}

/// The slots' bookkeeping and the page-table reserve, under one lock that
/// also serialises every change to the page tables.
struct State {
    pool: pool::Pool<MAX_STACKS, CLASSES>,
    tables: paging::TableReserve,
}

static STATE: ukspin::SpinLockIrq<State> =
    ukspin::SpinLockIrq::new(State { pool: pool::Pool::new(), tables: paging::TableReserve::new() });

/// Each slot's mapped page count (0: never used), written under [`STATE`]'s
/// lock, read without it by [`guard_page_at`].
static MAPPED: [AtomicU16; MAX_STACKS] = [const { AtomicU16::new(0) }; MAX_STACKS];

/// A kernel stack in the stack area, above an unmapped guard page. Owns its
/// slot; dropping it caches the slot, still mapped, for the next stack of
/// the same size (see the crate documentation).
#[derive(Debug)]
pub struct GuardedStack {
    slot: usize,
    pages: usize,
}

const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<GuardedStack>();
};

impl GuardedStack {
    /// A zeroed stack of `size` bytes rounded up to whole 4 KiB pages (at
    /// least one), above an unmapped guard page.
    ///
    /// # Errors
    /// [`StackError::TooLarge`] above [`MAX_STACK_SIZE`],
    /// [`StackError::OutOfVirtualArea`] when no slot can take it,
    /// [`StackError::OutOfMemory`] when the heap cannot back it. A failed
    /// allocation changes nothing.
    ///
    /// # Panics
    /// When the heap hands out memory above 4 GiB, outside the identity
    /// map the page tables are reached through.
    pub fn allocate(size: usize) -> Result<Self, StackError> {
        let allocation = {
            let mut state = STATE.lock();
            let State { pool, tables } = &mut *state;
            // Host builds take the page-table path, which fails at once:
            // they have no heap.
            if cfg!(not(target_os = "none")) || ukplat::vmem::page_tables().is_some() {
                pool.allocate(&LAYOUT, size, &MAPPED, &mut paging::KernelBacking::new(tables))?
            } else {
                pool.allocate(&LAYOUT, size, &MAPPED, &mut paging::HostBacking)?
            }
        };
        let stack = Self { slot: allocation.slot, pages: allocation.pages };
        if allocation.reused_pages > 0 {
            let start = stack.top() - allocation.reused_pages * PAGE_SIZE;
            // SAFETY: these pages are mapped (they belonged to the cached
            // stack this one reuses) and belong to this stack alone: its
            // slot left the free list under the lock.
            unsafe {
                core::ptr::write_bytes(
                    core::ptr::with_exposed_provenance_mut::<u8>(start),
                    0,
                    allocation.reused_pages * PAGE_SIZE,
                );
            }
        }
        Ok(stack)
    }

    /// One past the highest usable address: where RSP starts (page-aligned,
    /// so 16-byte aligned as the ABI wants before a `call` pushes).
    pub fn top(&self) -> usize {
        LAYOUT.slot_top(self.slot)
    }

    /// The lowest usable address.
    pub fn bottom(&self) -> usize {
        LAYOUT.stack(self.slot, self.pages).start
    }

    /// The usable range, `bottom()..top()`.
    pub fn range(&self) -> Range<usize> {
        LAYOUT.stack(self.slot, self.pages)
    }

    /// The unmapped guard page just below [`bottom`](Self::bottom).
    pub fn guard(&self) -> Range<usize> {
        LAYOUT.guard(self.slot, self.pages)
    }

    /// Usable bytes: the size asked for, rounded up to whole pages.
    pub fn size(&self) -> usize {
        self.pages * PAGE_SIZE
    }
}

impl Drop for GuardedStack {
    fn drop(&mut self) {
        STATE.lock().pool.release(self.slot, self.pages);
    }
}

/// If `addr` is in the guard page of a stack of the stack area — or deeper
/// in the unmapped part of its slot below the guard page — that stack's
/// usable range (`bottom..top`). Cached stacks count too (an overflow of a
/// freed stack is a use after free). Takes no lock: fault handlers and
/// explainers may call it whatever the faulting code held.
pub fn guard_page_at(addr: usize) -> Option<Range<usize>> {
    pool::guard_lookup(&LAYOUT, &MAPPED, addr)
}

/// The physical address `addr` translates to through the running page
/// tables (any address: the identity map's huge pages too), or `None` when
/// it is not mapped or not canonical. Always `None` on the host, which has
/// no page tables of ours.
pub fn translate(addr: usize) -> Option<usize> {
    if cfg!(not(target_os = "none")) || ukplat::vmem::page_tables().is_none() {
        return None;
    }
    let _state = STATE.lock();
    paging::translate(addr)
}

/// The boot identity map's extent: the platform maps the first 4 GiB
/// (the image, the heap, every page table) at boot.
const IDENTITY_MAPPED: u64 = 4 << 30;

/// Whether `addr` can be read without a fault. Answered without a lock
/// for the image and the RAM of the boot memory map (the statics, the
/// heap; on a platform with page tables of ours only inside the 4 GiB
/// identity map). Otherwise, with page tables of ours (kvm), an address
/// the running tables map ([`translate`], under this crate's lock); on a
/// host-mapped platform (linuxu), a page of a stack in the stack area
/// (this crate's bookkeeping), or else whatever the host says (a system
/// call: the boot CPU's stack, for instance). Page 0 never is. For system
/// calls that must answer `EFAULT` rather than fault (`posix-futex`).
pub fn is_mapped(addr: usize) -> bool {
    if addr < PAGE_SIZE {
        return false;
    }
    let a = addr as u64;
    let info = ukplat::boot_info();
    let in_ram = info
        .memory_map
        .iter()
        .any(|r| r.kind == ukplat::MemoryKind::Ram && r.range.start <= a && a < r.range.end);
    // The common case (statics, the heap) is answered before asking the
    // platform about page tables: on kvm that question reads CR3, which an
    // emulating hypervisor traps.
    if (in_ram && a < IDENTITY_MAPPED) || (info.image.start <= a && a < info.image.end) {
        return true;
    }
    let own_tables = ukplat::vmem::page_tables().is_some();
    if in_ram && !own_tables {
        return true;
    }
    if own_tables {
        translate(addr).is_some()
    } else if AREA.contains(&addr) {
        // The host maps the stack area only where this crate asked it to.
        pool::is_mapped(&LAYOUT, &MAPPED, addr)
    } else {
        ukplat::vmem::readable(addr)
    }
}

/// What the stack area holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Stacks allocated and not dropped.
    pub live: usize,
    /// Dropped stacks, still mapped, waiting for reuse.
    pub cached: usize,
    /// Slots ever used (live + cached).
    pub slots_used: usize,
    /// Slots in the area ([`MAX_STACKS`]).
    pub slots: usize,
    /// Bytes of stack mapped (live and cached stacks).
    pub bytes_mapped: usize,
    /// Heap bytes taken for page tables (linked into the tables, or held in
    /// reserve for the next mapping).
    pub page_table_bytes: usize,
}

/// A snapshot of the stack area's counters.
pub fn stats() -> Stats {
    let state = STATE.lock();
    let counts = state.pool.counts();
    Stats {
        live: counts.live,
        cached: counts.cached,
        slots_used: counts.slots_used,
        slots: MAX_STACKS,
        bytes_mapped: counts.mapped_pages * PAGE_SIZE,
        page_table_bytes: state.tables.heap_bytes(),
    }
}

/// Writes the explanation of a fault at `addr` (the fault address, or the
/// stack pointer when `stack_pointer`) below `stack`.
fn write_explanation(
    out: &mut dyn Write,
    addr: u64,
    stack_pointer: bool,
    stack: &Range<usize>,
) -> fmt::Result {
    let what = if stack_pointer { "the stack pointer " } else { "" };
    let (start, end) = (stack.start, stack.end);
    let below = (start as u64).saturating_sub(addr);
    if below <= PAGE_SIZE as u64 {
        writeln!(
            out,
            "stack overflow: {what}{addr:#x} is in the guard page below the stack {start:#x}-{end:#x}"
        )
    } else {
        writeln!(
            out,
            "stack overflow: {what}{addr:#x} is {below} bytes below the stack {start:#x}-{end:#x}, past its guard page"
        )
    }
}

/// The fault explainer: recognises a fault address (CR2), or failing that a
/// stack pointer, in a guard page.
fn explain_stack_overflow(info: &FaultInfo, out: &mut dyn Write) -> bool {
    for (addr, stack_pointer) in [(info.cr2, false), (info.rsp, true)] {
        if let Some(stack) = usize::try_from(addr).ok().and_then(guard_page_at) {
            let _ = write_explanation(out, addr, stack_pointer, &stack);
            return true;
        }
    }
    false
}

/// Registers the fault explainer.
fn init() {
    if let Err(full) = ukplat::fault::register_explainer(explain_stack_overflow) {
        let _ = writeln!(ukplat::console::Writer, "ukvmem: stack overflows will not be explained: {full}");
    }
}

ukboot::init!(ukboot::priority::MEMORY, init);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_change() {
        let e = StackError::TooLarge { size: 5 << 20, max: 1 << 20 };
        assert_eq!(
            e.to_string(),
            "ukvmem: a stack of 5242880 bytes is larger than the largest a slot holds (1048576 bytes; option ukvmem.max_stack_kib)"
        );
        let e = StackError::OutOfVirtualArea { size: 4096, slots: 8 };
        assert!(
            e.to_string()
                .starts_with("ukvmem: out of virtual stack area for a stack of 4096 bytes: all 8 slots")
        );
        assert!(e.to_string().ends_with("(option ukvmem.max_stacks)"));
        let e = StackError::OutOfMemory { size: 16384, needed: 16384, free: 100 };
        assert_eq!(
            e.to_string(),
            "ukvmem: out of memory for a stack of 16384 bytes: the heap could not give 16384 bytes (100 bytes free)"
        );
    }

    #[test]
    fn explanations() {
        let stack = 0x100_0000_5000..0x100_0000_8000;
        let mut out = String::new();
        write_explanation(&mut out, 0x100_0000_4ff8, false, &stack).unwrap();
        assert_eq!(
            out,
            "stack overflow: 0x10000004ff8 is in the guard page below the stack 0x10000005000-0x10000008000\n"
        );
        out.clear();
        write_explanation(&mut out, 0x100_0000_4000, true, &stack).unwrap();
        assert!(
            out.starts_with("stack overflow: the stack pointer 0x10000004000 is in the guard page below")
        );
        out.clear();
        write_explanation(&mut out, 0x100_0000_3ff0, false, &stack).unwrap();
        assert_eq!(
            out,
            "stack overflow: 0x10000003ff0 is 4112 bytes below the stack 0x10000005000-0x10000008000, past its guard page\n"
        );
    }

    #[test]
    fn the_explainer_ignores_other_faults() {
        // Nothing is allocated on the host: no address is a guard page.
        let info =
            FaultInfo { vector: ukplat::fault::DOUBLE_FAULT, cr2: AREA_BASE as u64, ..FaultInfo::default() };
        let mut out = String::new();
        assert!(!explain_stack_overflow(&info, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn the_host_has_no_heap_and_no_page_tables() {
        assert!(matches!(GuardedStack::allocate(4096), Err(StackError::OutOfMemory { size: 4096, .. })));
        assert!(matches!(GuardedStack::allocate(MAX_STACK_SIZE + 1), Err(StackError::TooLarge { .. })));
        let s = stats();
        assert_eq!((s.live, s.cached, s.slots_used, s.slots, s.bytes_mapped), (0, 0, 0, MAX_STACKS, 0));
        assert_eq!(guard_page_at(AREA_BASE), None);
    }
}
