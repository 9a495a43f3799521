//! Mapping pages into the running kernel page tables with the `x86_64`
//! crate's `OffsetPageTable` (physical offset 0: page tables and the heap
//! are identity-mapped). Everything here runs under the crate's lock.

use crate::layout::{PAGE_SIZE, tables_bound};
use crate::pool::{Backing, MapFailure};
use core::alloc::Layout as HeapLayout;
use core::ops::Range;
use core::ptr::NonNull;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

/// The end of the platform's identity map: page tables and stack frames
/// must lie below it, where physical = virtual.
const IDENTITY_MAP_END: usize = 4 << 30;

/// Page-table pages kept ready for one mapping (the most any stack can need
/// is below this: see the assertion).
const RESERVE: usize = 16;

const _: () = assert!(
    crate::MAX_STACK_SIZE / (2 << 20) + 2 + 2 + 2 <= RESERVE,
    "ukvmem: the page-table reserve is too small for the largest stack"
);

/// Zeroed, identity-mapped page-table pages taken from the heap before a
/// mapping starts, so that the mapping itself cannot fail half-way.
pub struct TableReserve {
    /// Addresses of the pages ready for use (`frames[..len]`).
    frames: [usize; RESERVE],
    len: usize,
    /// Pages ever taken from the heap (in the tables or in reserve).
    taken: usize,
}

impl TableReserve {
    /// Empty.
    pub const fn new() -> Self {
        Self { frames: [0; RESERVE], len: 0, taken: 0 }
    }

    /// Heap bytes taken for page tables so far.
    pub const fn heap_bytes(&self) -> usize {
        self.taken * PAGE_SIZE
    }

    /// Takes pages from the heap until `need` are ready.
    fn fill(&mut self, need: usize) -> Result<(), MapFailure> {
        assert!(need <= RESERVE, "ukvmem: a mapping needs {need} page tables, more than the reserve holds");
        let layout = page_layout(PAGE_SIZE);
        while self.len < need {
            let page = ukalloc::try_alloc(layout).map_err(|f| MapFailure { needed: f.size, free: f.free })?;
            let addr = identity_mapped(page, PAGE_SIZE, "a page table");
            // SAFETY: a fresh heap block of one page, ours alone.
            unsafe { core::ptr::write_bytes(page.as_ptr(), 0, PAGE_SIZE) };
            self.frames[self.len] = addr;
            self.len += 1;
            self.taken += 1;
        }
        Ok(())
    }
}

// SAFETY: every frame handed out is a distinct zeroed 4 KiB heap block,
// 4 KiB-aligned and identity-mapped, that nothing else uses and that is
// never freed (page tables stay for good): unique and unused, as the trait
// demands.
unsafe impl FrameAllocator<Size4KiB> for TableReserve {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.len = self.len.checked_sub(1)?;
        PhysFrame::from_start_address(PhysAddr::new(self.frames[self.len] as u64)).ok()
    }
}

/// The heap layout of `bytes` of whole, page-aligned pages.
fn page_layout(bytes: usize) -> HeapLayout {
    HeapLayout::from_size_align(bytes, PAGE_SIZE).expect("ukvmem: a page-aligned layout")
}

/// `ptr`'s address, after checking that `len` bytes from it lie inside the
/// identity map.
fn identity_mapped(ptr: NonNull<u8>, len: usize, what: &str) -> usize {
    let addr = ptr.as_ptr().expose_provenance();
    assert!(
        addr.checked_add(len).is_some_and(|end| end <= IDENTITY_MAP_END),
        "ukvmem: the heap gave {what} at {addr:#x}, above the 4 GiB identity map; page tables and stack pages must be identity-mapped (physical = virtual)"
    );
    addr
}

/// The running PML4, as the platform reports it.
///
/// # Panics
/// On a platform whose host maps memory (it has no page tables of ours:
/// [`HostBacking`] serves it instead).
fn pml4() -> *mut PageTable {
    let root = ukplat::vmem::page_tables().expect("ukvmem: the platform has no page tables of the image's");
    core::ptr::with_exposed_provenance_mut(root as usize)
}

/// The running page tables.
///
/// # Safety
/// The caller holds the crate's lock (the only code that changes the page
/// tables after boot) for as long as it uses the result.
unsafe fn kernel_tables<'a>() -> OffsetPageTable<'a> {
    // SAFETY: CR3 holds the physical address of the live PML4, which is
    // identity-mapped like every page table (offset 0); the caller's lock
    // makes this the only reference that writes to the tables.
    unsafe { OffsetPageTable::new(&mut *pml4(), VirtAddr::new(0)) }
}

/// Maps stack pages into the kernel page tables: the [`Backing`] of a
/// platform whose image manages its page tables (kvm).
pub struct KernelBacking<'a> {
    tables: &'a mut TableReserve,
}

impl<'a> KernelBacking<'a> {
    /// Maps with page tables from `tables` (proof that the lock is held:
    /// it lives in the locked state).
    pub fn new(tables: &'a mut TableReserve) -> Self {
        Self { tables }
    }
}

impl Backing for KernelBacking<'_> {
    fn map(&mut self, range: Range<usize>) -> Result<(), MapFailure> {
        let bytes = range.len();
        let layout = page_layout(bytes);
        let chunk = ukalloc::try_alloc(layout).map_err(|f| MapFailure { needed: f.size, free: f.free })?;
        if let Err(failure) = self.tables.fill(tables_bound(&range)) {
            // SAFETY: allocated just above with `layout`, not used.
            unsafe { ukalloc::free(chunk, layout) };
            return Err(failure);
        }
        let frames = identity_mapped(chunk, bytes, "stack pages");
        // SAFETY: a fresh heap block of `bytes`, ours alone.
        unsafe { core::ptr::write_bytes(chunk.as_ptr(), 0, bytes) };
        // SAFETY: the reserve is in the locked state, so the lock is held.
        let mut tables = unsafe { kernel_tables() };
        for (i, page) in range.step_by(PAGE_SIZE).enumerate() {
            map_page(&mut tables, page, frames + i * PAGE_SIZE, self.tables);
        }
        Ok(())
    }
}

/// Maps the 4 KiB page at `virt` to the frame at `phys`: present, writable,
/// not executable, supervisor only.
///
/// # Panics
/// When the page is already mapped or lies in a huge page (the stack area
/// is ours alone: a bug), or the reserve ran dry (the bound is wrong).
fn map_page(tables: &mut OffsetPageTable<'_>, virt: usize, phys: usize, reserve: &mut TableReserve) {
    let page = Page::<Size4KiB>::from_start_address(VirtAddr::new(virt as u64))
        .expect("ukvmem: a page-aligned stack address");
    let frame = PhysFrame::<Size4KiB>::from_start_address(PhysAddr::new(phys as u64))
        .expect("ukvmem: a page-aligned stack frame");
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    // SAFETY: the page is in the stack area, which only this crate maps and
    // where nothing is mapped at this page yet (the pool maps each page of
    // a slot once); the frame is a fresh heap page given to this mapping
    // alone, never freed: no existing reference is affected and the new
    // one aliases nothing.
    match unsafe { tables.map_to(page, frame, flags, reserve) } {
        // No TLB flush: the entry was not present, and the CPU caches only
        // present translations.
        Ok(flush) => flush.ignore(),
        Err(error) => panic!("ukvmem: mapping the stack page {virt:#x} failed: {error:?}"),
    }
}

/// `addr`'s physical address through the running page tables. The caller
/// holds the crate's lock.
pub fn translate(addr: usize) -> Option<usize> {
    let addr = VirtAddr::try_new(addr as u64).ok()?;
    // SAFETY: the caller holds the lock (and this only reads).
    let tables = unsafe { kernel_tables() };
    tables.translate_addr(addr).map(|phys| phys.as_u64() as usize)
}

/// Maps stack pages through the host: the [`Backing`] of a platform whose
/// host maps memory (linuxu: `mmap` at the slot's address). The host's
/// memory is not the heap's, so a failure reports the heap as untouched.
pub struct HostBacking;

impl Backing for HostBacking {
    fn map(&mut self, range: Range<usize>) -> Result<(), MapFailure> {
        let bytes = range.len();
        ukplat::vmem::map(range.start, bytes).map_err(|_| MapFailure { needed: bytes, free: 0 })
    }
}
