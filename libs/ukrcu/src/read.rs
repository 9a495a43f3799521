//! Read-side critical sections.

use crate::flavor::{self, Select, Selected};
use core::marker::PhantomData;

/// An open read-side critical section ([`read_lock`]). References loaded
/// under it ([`crate::RcuCell::load`], [`crate::RcuList::iter`]) cannot
/// outlive it. Not `Send`: the section belongs to the thread that opened
/// it.
#[must_use = "the read-side critical section ends when the guard is dropped"]
pub struct ReadGuard {
    pub(crate) section: flavor::Section,
    _not_send: PhantomData<*const ()>,
}

/// Opens a read-side critical section (`rcu_read_lock`): data published
/// with [`crate::RcuCell`] or [`crate::RcuList`] and loaded under the
/// returned guard stays valid until the guard is dropped
/// (`rcu_read_unlock`). Sections nest.
///
/// The cost depends on the flavour (`ukrcu.flavor`):
///
/// * `qsbr`: a preemption-counter increment and decrement under
///   `preempt`, nothing under `coop` (release builds). Inside a section do
///   not block, sleep or yield (debug builds panic, naming the section).
/// * `refcount`: one atomic add on a per-CPU counter at each end, and each
///   load counts a reference (given back when the guard drops). The
///   section may be preempted and may sleep; a long one delays
///   [`crate::synchronize`] and [`crate::call_rcu`], not frees.
///
/// Under both, do not call [`crate::synchronize`] or [`crate::barrier`]
/// inside a section: they would wait for the section itself.
///
/// ```no_run
/// static CONFIG: ukrcu::RcuCell<u32> = ukrcu::RcuCell::null();
/// let guard = ukrcu::read_lock();
/// let value = CONFIG.load(&guard).copied();
/// drop(guard);
/// # let _ = value;
/// ```
#[inline(always)]
pub fn read_lock() -> ReadGuard {
    ReadGuard { section: flavor::Section::begin(), _not_send: PhantomData }
}

impl Drop for ReadGuard {
    // Always inlined: an out-of-line call would cost more than a `qsbr`
    // section.
    #[inline(always)]
    fn drop(&mut self) {
        self.section.end();
    }
}

/// Read-side sections open here: on this CPU (`qsbr`) or in this thread
/// (`refcount`). Debug builds only; 0 in release builds.
///
/// ```no_run
/// let guard = ukrcu::read_lock();
/// assert_eq!(ukrcu::read_depth(), if cfg!(debug_assertions) { 1 } else { 0 });
/// drop(guard);
/// ```
pub fn depth() -> u32 {
    <Selected as Select>::depth()
}

/// Panics when `what` (a blocking call) is made inside a read-side
/// section here (debug builds).
#[track_caller]
pub(crate) fn assert_not_reading(what: &str) {
    if cfg!(debug_assertions) && depth() != 0 {
        panic!(
            "ukrcu: {what}() inside an RCU read-side critical section (ukrcu::read_lock) would wait for itself"
        );
    }
}

fn init() {
    <Selected as Select>::init();
}

ukboot::init!(ukboot::priority::LIBRARY + 1, init);
