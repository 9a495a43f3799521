//! The running thread in fault reports: every fatal exception and every
//! panic names the thread it interrupted, and a stack overflow names the thread whose guard
//! page was hit.

use crate::sched::current_ptr_unguarded;
use core::fmt::Write;
use ukplat::fault::FaultInfo;

/// Registers the explainer with the platform's fault reports.
pub(crate) fn install() {
    if ukplat::fault::register_explainer(explain).is_err() {
        log::warn!("uksched: no free fault-explainer slot; stack overflows will not name their thread");
    }
}

/// One line naming the thread that was running on the faulting CPU; for a
/// fault whose address (CR2) or stack pointer lies in that thread's guard
/// page, the line says so. Nothing before the scheduler runs a thread.
fn explain(info: &FaultInfo, out: &mut dyn Write) -> bool {
    let me = current_ptr_unguarded();
    if me.is_null() {
        return false;
    }
    // SAFETY: the running thread's record lives while it runs (the fault
    // report stops the machine before anything frees it).
    let me = unsafe { &*me };
    // The fault may have interrupted the lock's holder: do not wait.
    let overflow = me.stack.try_lock().and_then(|locked| {
        let stack = locked.as_ref()?;
        let guard_page = stack.guard();
        let ours = stack.range();
        // ukvmem recognises the whole unmapped part of the stack's slot, so
        // a frame that jumped past the guard page is caught too.
        let addr = [info.cr2, info.rsp]
            .into_iter()
            .find(|&a| a != 0 && ukvmem::guard_page_at(a as usize) == Some(ours.clone()))?;
        let place = if guard_page.contains(&(addr as usize)) {
            "in the guard page below"
        } else {
            "below the guard page of"
        };
        Some((addr, place, stack.size() / 1024, stack.bottom(), stack.top()))
    });
    let _ = match overflow {
        Some((addr, place, kib, bottom, top)) => writeln!(
            out,
            "STACK OVERFLOW in thread `{}` (id {}): {addr:#x} is {place} its {kib} KiB stack {bottom:#x}..{top:#x}",
            me.name, me.id,
        ),
        None => writeln!(out, "in thread `{}` (id {})", me.name, me.id),
    };
    true
}
