//! Virtual memory, as far as the platform decides it: either the image
//! manages its own 4-level page tables (kvm: the platform reports their
//! root, and `ukvmem` edits them) or the host maps memory for it (linuxu:
//! `mmap`), and then the platform maps and answers "can this be read".
//!
//! ```no_run
//! match ukplat::vmem::page_tables() {
//!     Some(root) => { /* walk and edit the tables at `root` */ let _ = root; }
//!     None => ukplat::vmem::map(1 << 40, 4096).expect("the host maps a page"),
//! }
//! ```

/// The live page tables' root (physical address of the PML4), when the
/// image manages its own; `None` when the host maps memory.
#[inline(always)]
pub fn page_tables() -> Option<u64> {
    imp::page_tables()
}

/// Maps `len` zeroed read-write bytes at `start` (host-mapped platforms
/// only: see [`page_tables`]).
///
/// # Errors
/// The host's error number.
#[inline(always)]
pub fn map(start: usize, len: usize) -> Result<(), i32> {
    imp::map(start, len)
}

/// Whether the byte at `addr` can be read (host-mapped platforms only).
#[inline(always)]
pub fn readable(addr: usize) -> bool {
    imp::readable(addr)
}

#[cfg(target_os = "none")]
mod imp {
    pub(super) use crate::platform::imports::{
        vmem_map as map, vmem_page_tables as page_tables, vmem_readable as readable,
    };
}

/// Host builds: no page tables of ours, and nothing to map.
#[cfg(not(target_os = "none"))]
mod imp {
    pub(super) fn page_tables() -> Option<u64> {
        None
    }

    pub(super) fn map(start: usize, len: usize) -> Result<(), i32> {
        panic!("ukplat::vmem::map({start:#x}, {len}): host builds have no platform to map memory");
    }

    pub(super) fn readable(_addr: usize) -> bool {
        false
    }
}
