//! Robust futexes: what happens to the locks a thread holds when it exits.
//!
//! A thread registers the head of a list of the futex-based locks it holds
//! ([`sys_set_robust_list`]); the list lives in its own memory and the
//! kernel only reads it. When the thread exits, each listed lock whose
//! word still names the thread as owner ([`FUTEX_TID_MASK`] bits = its id,
//! [`crate::gettid`]) gets [`FUTEX_OWNER_DIED`] (keeping [`FUTEX_WAITERS`])
//! and, when waiters were flagged, one waiter is woken; it can then take
//! the lock and repair what the dead owner left (pthread's
//! `EOWNERDEAD`). The entry named in `list_op_pending` — a lock the thread
//! was taking or releasing when it exited — is handled too; if its word is
//! 0 (released, waiters not yet woken), one waiter is woken. This is
//! Linux's `exit_robust_list` / `handle_futex_death`, including its bound
//! of [`ROBUST_LIST_LIMIT`] entries (a list that loops cannot hang the
//! exit) and the low bit of each entry pointer that marks a PI futex (which
//! is marked but not woken).
//!
//! The head is kept per thread in a `uksched` thread-local value, whose
//! destructor runs in the exiting thread: that is where the list is
//! walked. Entries that are not readable (unmapped, misaligned words) end
//! the walk or are skipped, as in Linux, rather than fault.

use crate::abi::{
    FUTEX_BITSET_MATCH_ANY, FUTEX_OWNER_DIED, FUTEX_TID_MASK, FUTEX_WAITERS, ROBUST_LIST_LIMIT,
};
use crate::errno;
use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};

/// An entry of a robust list: embedded in each held lock, at
/// `futex_offset` bytes before (or after) its futex word.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RobustList {
    /// The next entry (its low bit set: a PI futex), or the head's `list`
    /// at the end.
    pub next: *mut RobustList,
}

/// The head a thread registers (`struct robust_list_head`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RobustListHead {
    /// The first entry; the list is circular through this field.
    pub list: RobustList,
    /// Where an entry's futex word is, relative to the entry.
    pub futex_offset: isize,
    /// A lock being taken or released, or null.
    pub list_op_pending: *mut RobustList,
}

/// This thread's registered head (0: none); the list is walked when the
/// thread exits.
struct Registered(Cell<usize>);

impl Drop for Registered {
    fn drop(&mut self) {
        let head = self.0.get();
        if head != 0 {
            exit_robust_list(head, crate::gettid());
        }
    }
}

uksched::thread_local! {
    static HEAD: Registered = Registered(Cell::new(0));
}

/// Linux's `set_robust_list(2)`: registers `head` (of `len` bytes, which
/// must be `size_of::<RobustListHead>()`) for the calling thread; null
/// unregisters. Returns 0 or `-EINVAL`.
///
/// # Safety
/// The list must stay valid (or become unreadable, which is detected)
/// until the thread exits or registers another; its words are only
/// accessed atomically.
pub unsafe fn sys_set_robust_list(head: *mut RobustListHead, len: usize) -> isize {
    if len != size_of::<RobustListHead>() {
        return -(errno::EINVAL as isize);
    }
    HEAD.with(|h| h.0.set(head as usize));
    0
}

/// Linux's `get_robust_list(2)`: stores the calling thread's head and its
/// length at `head_ptr` and `len_ptr`. `pid` must be 0 or the caller's
/// [`crate::gettid`] (another thread's list: `-EPERM`); unwritable
/// pointers: `-EFAULT`.
///
/// # Safety
/// `head_ptr` and `len_ptr` must be null, unmapped, or point to memory
/// nothing else accesses meanwhile.
pub unsafe fn sys_get_robust_list(
    pid: i32,
    head_ptr: *mut *mut RobustListHead,
    len_ptr: *mut usize,
) -> isize {
    if pid != 0 && pid as u32 != crate::gettid() {
        return -(errno::EPERM as isize);
    }
    let ok = |p: usize, size: usize| {
        p != 0 && p.is_multiple_of(8) && ukvmem::is_mapped(p) && ukvmem::is_mapped(p + size - 1)
    };
    if !ok(head_ptr as usize, 8) || !ok(len_ptr as usize, 8) {
        return -(errno::EFAULT as isize);
    }
    let head = HEAD.with(|h| h.0.get());
    // SAFETY: both checked mapped and aligned; the caller's contract.
    unsafe {
        head_ptr.write(head as *mut RobustListHead);
        len_ptr.write(size_of::<RobustListHead>());
    }
    0
}

/// Reads a pointer-sized word at `addr`, if it is readable.
fn read_word(addr: usize) -> Option<usize> {
    (addr != 0 && addr.is_multiple_of(8) && ukvmem::is_mapped(addr))
        // SAFETY: aligned and mapped; the list's owner is the exiting
        // thread, which is here.
        .then(|| unsafe { (addr as *const usize).read_volatile() })
}

/// Walks the exiting thread's list (Linux's `exit_robust_list`).
pub(crate) fn exit_robust_list(head: usize, tid: u32) {
    let Some(first) = read_word(head) else { return };
    let Some(offset) = read_word(head + 8) else { return };
    let Some(pending) = read_word(head + 16) else { return };
    let offset = offset as isize;
    let (pending, pending_pi) = (pending & !1, pending & 1 != 0);
    let (mut entry, mut pi) = (first & !1, first & 1 != 0);
    let mut limit = ROBUST_LIST_LIMIT;
    while entry != head {
        // Read the next entry before the futex word is handed over.
        let next = read_word(entry);
        if entry != pending {
            handle_futex_death(entry.wrapping_add_signed(offset), tid, pi, false);
        }
        let Some(next) = next else { return };
        (entry, pi) = (next & !1, next & 1 != 0);
        limit -= 1;
        if limit == 0 {
            break;
        }
    }
    if pending != 0 {
        handle_futex_death(pending.wrapping_add_signed(offset), tid, pending_pi, true);
    }
}

/// Marks the futex at `uaddr` as owner-died if `tid` owns it, waking one
/// waiter (Linux's `handle_futex_death`).
fn handle_futex_death(uaddr: usize, tid: u32, pi: bool, pending_op: bool) {
    if !uaddr.is_multiple_of(4) || !ukvmem::is_mapped(uaddr) {
        return;
    }
    // SAFETY: aligned and mapped; futex words are only accessed atomically.
    let word = unsafe { AtomicU32::from_ptr(uaddr as *mut u32) };
    let mut uval = word.load(Ordering::SeqCst);
    loop {
        // Released (0) while its unlock was pending: the waiters may not
        // have been woken yet.
        if pending_op && !pi && uval == 0 {
            crate::wake(word, 1, FUTEX_BITSET_MATCH_ANY);
            return;
        }
        if uval & FUTEX_TID_MASK != tid {
            return;
        }
        let mval = (uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
        match word.compare_exchange(uval, mval, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => break,
            Err(now) => uval = now,
        }
    }
    if !pi && uval & FUTEX_WAITERS != 0 {
        crate::wake(word, 1, FUTEX_BITSET_MATCH_ANY);
    }
}
