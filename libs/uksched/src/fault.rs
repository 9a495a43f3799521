//! Stack overflows in fault reports: names the thread whose guard page was
//! hit.

use crate::sched::current_ptr_unguarded;
use core::fmt::Write;
use ukplat::fault::FaultInfo;

/// Registers the explainer with the platform's fault reports.
pub(crate) fn install() {
    if ukplat::fault::register_explainer(explain).is_err() {
        log::warn!("uksched: no free fault-explainer slot; stack overflows will not name their thread");
    }
}

/// For a #PF or #DF whose address (CR2) or stack pointer lies in the
/// running thread's guard page: one line naming the thread.
fn explain(info: &FaultInfo, out: &mut dyn Write) -> bool {
    let me = current_ptr_unguarded();
    if me.is_null() {
        return false;
    }
    // SAFETY: the running thread's record lives while it runs (the fault
    // report stops the machine before anything frees it).
    let me = unsafe { &*me };
    // The fault may have interrupted the lock's holder: do not wait.
    let Some(locked) = me.stack.try_lock() else { return false };
    let Some(stack) = locked.as_ref() else { return false };
    let guard_page = stack.guard();
    let ours = stack.range();
    // ukvmem recognises the whole unmapped part of the stack's slot, so a
    // frame that jumped past the guard page is caught too.
    let hit =
        [info.cr2, info.rsp].into_iter().find(|&a| ukvmem::guard_page_at(a as usize) == Some(ours.clone()));
    let Some(addr) = hit else { return false };
    let _ = writeln!(
        out,
        "STACK OVERFLOW in thread `{}` (id {}): {addr:#x} is {} its {} KiB stack {:#x}..{:#x}",
        me.name,
        me.id,
        if guard_page.contains(&(addr as usize)) {
            "in the guard page below"
        } else {
            "below the guard page of"
        },
        stack.size() / 1024,
        stack.bottom(),
        stack.top()
    );
    true
}
