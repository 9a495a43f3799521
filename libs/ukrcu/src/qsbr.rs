//! The `qsbr` flavour (`ukrcu.flavor = "qsbr"`, the default): read-side
//! sections that cost nothing (a preemption-count increment and decrement
//! under `preempt`), published objects are plain boxes behind plain
//! pointers, and every free waits for a grace period, detected from the
//! scheduler's quiescent states (`uksched::qs`).
//!
//! The types here have the same inherent API as those of
//! [`refcount`](crate::refcount); [`crate::flavor`] picks one set.

use crate::engine::{COUNTERS, GP};
use crate::gp::{Cpus, Holdouts};
use alloc::boxed::Box;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};
use core::time::Duration;
use ukplat::cpu::{self, CpuIndex, MAX_CPUS, PreemptGuard};
use uksched::qs::Snapshot;

/// The flavour's name in the configuration.
pub(crate) const NAME: &str = "qsbr";

/// Links do not own what they point to: a structure owns its nodes, and
/// frees them only after a grace period.
pub(crate) const LINKS_OWN: bool = false;

// ---------------------------------------------------------------------------
// Read-side sections

/// Whether a read-side critical section disables preemption: under
/// `uksched.policy = "preempt"` that is what keeps the scheduler — the
/// source of quiescent states — away; under `coop` nothing preempts a
/// thread, so release builds do nothing at all. Debug builds disable it
/// under both, so that blocking or yielding inside a section is reported
/// by the scheduler (see [`explain`]).
const DISABLES_PREEMPTION: bool =
    matches!(ukconfig::uksched::POLICY, ukconfig::uksched::Policy::Preempt) || cfg!(debug_assertions);

#[cfg(debug_assertions)]
ukplat::per_cpu! {
    /// Read-side sections open on each CPU (debug builds).
    static DEPTH: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
}

/// What a read guard keeps: nothing.
pub(crate) struct Section;

impl Section {
    /// Opens a section.
    #[inline(always)]
    pub(crate) fn begin() -> Self {
        if DISABLES_PREEMPTION {
            ukplat::cpu::preempt_disable();
        }
        #[cfg(debug_assertions)]
        DEPTH.get().fetch_add(1, Ordering::Relaxed);
        Section
    }

    /// Closes it. Always inlined: an out-of-line call would cost more than
    /// the section.
    #[inline(always)]
    pub(crate) fn end(&mut self) {
        #[cfg(debug_assertions)]
        DEPTH.get().fetch_sub(1, Ordering::Relaxed);
        if DISABLES_PREEMPTION {
            ukplat::cpu::preempt_enable();
        }
    }
}

/// Read-side sections open on this CPU (debug builds; 0 in release builds).
pub(crate) fn depth() -> u32 {
    #[cfg(debug_assertions)]
    {
        DEPTH.get().load(Ordering::Relaxed)
    }
    #[cfg(not(debug_assertions))]
    0
}

/// The scheduler's hook before it panics on a thread that tried to block
/// or yield where it must not: says so when a read-side section is open
/// (Linux: "voluntary context switch within RCU read-side critical
/// section").
fn explain(_cpu: CpuIndex) {
    let depth = depth();
    if depth != 0 {
        ukconsole::println!(
            "ukrcu: a thread blocks, sleeps or yields inside {depth} RCU read-side critical section(s) (ukrcu::read_lock)"
        );
    }
}

/// Init: the scheduler's bug hook.
pub(crate) fn init() {
    uksched::hooks::on_schedule_bug(explain).expect("ukrcu: a free uksched hook slot");
}

// ---------------------------------------------------------------------------
// Links and the objects behind them

/// A published pointer to a boxed `T`.
pub(crate) struct Link<T> {
    ptr: AtomicPtr<T>,
}

/// One owner of a published box. Links do not own in this flavour (see
/// [`LINKS_OWN`]): a handle is a pointer, and what frees is explicit.
pub(crate) struct Owned<T>(NonNull<T>);

impl<T> Owned<T> {
    /// A new object.
    pub(crate) fn new(value: T) -> Self {
        Self::from_box(Box::new(value))
    }

    /// The object `b` holds.
    pub(crate) fn from_box(b: Box<T>) -> Self {
        Self(NonNull::from(Box::leak(b)))
    }

    /// The value's address.
    pub(crate) fn as_ptr(&self) -> *const T {
        self.0.as_ptr()
    }

    /// A second handle on the same object (a second link to it).
    ///
    /// # Safety
    /// The object is alive.
    pub(crate) unsafe fn dup(&self) -> Self {
        Self(self.0)
    }

    /// Drops the handle without freeing (its link took the object over).
    pub(crate) fn forget(self) {}

    /// The object, to free or take apart.
    ///
    /// # Safety
    /// No reader can hold it (a grace period has passed since it was
    /// unlinked, or the structure is exclusively borrowed) and no other
    /// handle frees it.
    pub(crate) unsafe fn release(self) -> Option<Exclusive<T>> {
        // SAFETY: from `Box::leak`; exclusive, as the caller promises.
        Some(Exclusive(unsafe { Box::from_raw(self.0.as_ptr()) }))
    }

    /// The box of an object that was never published.
    pub(crate) fn into_unpublished_box(self) -> Box<T> {
        // SAFETY: never published: this is its only handle.
        unsafe { Box::from_raw(self.0.as_ptr()) }
    }
}

/// An object nobody else can reach; dropping it frees it.
pub(crate) struct Exclusive<T>(Box<T>);

impl<T> Exclusive<T> {
    /// As a box.
    pub(crate) fn into_box(self) -> Box<T> {
        self.0
    }
}

impl<T> core::ops::Deref for Exclusive<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> core::ops::DerefMut for Exclusive<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> Link<T> {
    /// Null.
    pub(crate) const fn null() -> Self {
        Self { ptr: AtomicPtr::new(ptr::null_mut()) }
    }

    /// Holding `owner`'s object.
    pub(crate) fn new(owner: Option<Owned<T>>) -> Self {
        Self { ptr: AtomicPtr::new(owner.map_or(ptr::null_mut(), |o| o.0.as_ptr())) }
    }

    /// The object, for a reader (`rcu_dereference`): one `SeqCst` load (a
    /// plain `mov` on x86, ordered after the quiescent state that began the
    /// section; see [`crate::gp`]).
    #[inline(always)]
    pub(crate) fn load<'g>(&'g self, _section: &'g Section) -> Option<&'g T> {
        let p = self.ptr.load(Ordering::SeqCst);
        // SAFETY: a non-null pointer here is a published box, freed only a
        // grace period after it was unlinked; the section keeps this CPU
        // from passing a quiescent state while the reference lives.
        unsafe { p.as_ref() }
    }

    /// The object, for a writer that excludes frees of it (the list's
    /// writer lock).
    ///
    /// # Safety
    /// Nobody frees the object while the reference lives.
    pub(crate) unsafe fn peek_ref(&self) -> Option<&T> {
        // SAFETY: as the caller promises.
        unsafe { self.ptr.load(Ordering::Relaxed).as_ref() }
    }

    /// A handle standing for this link's hold on its object, to move it to
    /// another link.
    ///
    /// # Safety
    /// As [`Link::peek_ref`]; the caller then unlinks the object here.
    pub(crate) unsafe fn peek_owned(&self) -> Option<Owned<T>> {
        NonNull::new(self.ptr.load(Ordering::Relaxed)).map(Owned)
    }

    /// Whether it is null now.
    pub(crate) fn is_null(&self) -> bool {
        self.ptr.load(Ordering::SeqCst).is_null()
    }

    /// Publishes `new` (`rcu_assign_pointer`: a `SeqCst` swap, so the
    /// object's initialisation is visible before its address) and returns
    /// what the link held.
    pub(crate) fn swap(&self, new: Option<Owned<T>>) -> Option<Owned<T>> {
        let new = new.map_or(ptr::null_mut(), |o| o.0.as_ptr());
        NonNull::new(self.ptr.swap(new, Ordering::SeqCst)).map(Owned)
    }

    /// [`Link::swap`] only while the link holds `current`.
    ///
    /// # Errors
    /// `new`, when it does not.
    #[allow(clippy::type_complexity)]
    pub(crate) fn compare_exchange(
        &self,
        current: *const T,
        new: Option<Owned<T>>,
    ) -> Result<Option<Owned<T>>, Option<Owned<T>>> {
        let raw = new.as_ref().map_or(ptr::null_mut(), |o| o.0.as_ptr());
        match self.ptr.compare_exchange(current.cast_mut(), raw, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(old) => Ok(NonNull::new(old).map(Owned)),
            Err(_) => Err(new),
        }
    }

    /// The object, leaving the link null (exclusive access).
    pub(crate) fn take_mut(&mut self) -> Option<Owned<T>> {
        NonNull::new(core::mem::replace(self.ptr.get_mut(), ptr::null_mut())).map(Owned)
    }

    /// The value, mutably (exclusive access: no reader holds it).
    pub(crate) fn get_mut(&mut self) -> Option<&mut T> {
        // SAFETY: `&mut self`: no reference into the link's object exists.
        unsafe { self.ptr.get_mut().as_mut() }
    }
}

/// A raw box pointer handed to a callback.
struct SendPtr<T>(NonNull<T>);
// SAFETY: it stands for a `Box<T>` moved to the callback (`T: Send`).
unsafe impl<T: Send> Send for SendPtr<T> {}

/// An unlinked object and the grace-period snapshot taken when it was
/// unlinked: freed once that grace period has ended.
pub(crate) struct Retired<T: Send + 'static> {
    ptr: NonNull<T>,
    snap: u64,
    _owns: PhantomData<Box<T>>,
}

impl<T: Send + 'static> Retired<T> {
    /// `owner`, unlinked just before this call (the snapshot follows the
    /// unlinking store).
    pub(crate) fn new(owner: Owned<T>) -> Self {
        Self { ptr: owner.0, snap: GP.snap(), _owns: PhantomData }
    }

    /// The value.
    pub(crate) fn value(&self) -> &T {
        // SAFETY: the box lives until this frees it.
        unsafe { self.ptr.as_ref() }
    }

    /// Whether it can be freed now: a grace period has ended since.
    pub(crate) fn done(&self) -> bool {
        GP.done(self.snap)
    }

    /// Frees it after the grace period, from the grace-period thread.
    pub(crate) fn free_later(self) {
        let ptr = SendPtr(self.ptr);
        core::mem::forget(self);
        crate::call_rcu(move || {
            let ptr = ptr;
            // SAFETY: unlinked a grace period ago: no reader holds it, and
            // this is its only owner.
            drop(unsafe { Box::from_raw(ptr.0.as_ptr()) });
        });
    }

    /// Its box, once the grace period has ended.
    pub(crate) fn into_box(self) -> Result<Box<T>, Self> {
        if !self.done() {
            return Err(self);
        }
        let ptr = self.ptr;
        core::mem::forget(self);
        // SAFETY: a grace period ended since it was unlinked: no reader
        // holds it; this was its only owner.
        Ok(unsafe { Box::from_raw(ptr.as_ptr()) })
    }
}

impl<T: Send + 'static> Drop for Retired<T> {
    fn drop(&mut self) {
        if self.done() {
            // SAFETY: as in `into_box`.
            drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
        } else {
            // Too early: free it after the grace period instead.
            Retired { ptr: self.ptr, snap: self.snap, _owns: PhantomData }.free_later();
        }
    }
}

// ---------------------------------------------------------------------------
// Grace periods: the scheduler's quiescent states

/// The kernel's CPUs as seen by the state machine: the scheduler's
/// quiescent-state counters.
struct KernelCpus {
    /// The CPU taking the snapshots: quiescent at that moment (the
    /// grace-period thread runs there, outside any read-side section, and
    /// whatever ran there before it passed through the scheduler).
    me: CpuIndex,
}

impl Cpus for KernelCpus {
    type Snapshot = Snapshot;

    fn count(&self) -> usize {
        cpu::count()
    }

    fn snapshot(&self, c: usize) -> Option<Snapshot> {
        let snapshot = Snapshot::take(c);
        // Idle now (even counter): quiescent, and never woken for it.
        (c != self.me && snapshot.eqs & 1 == 1).then_some(snapshot)
    }

    fn passed(&self, snapshot: &Snapshot) -> bool {
        snapshot.passed()
    }
}

/// The readers one grace period waits for: the CPUs that had not passed a
/// quiescent state when it started.
pub(crate) struct Readers {
    cpus: KernelCpus,
    holdouts: Holdouts<Snapshot, MAX_CPUS>,
}

impl Readers {
    /// Snapshots every CPU (right after [`crate::gp::GpSeq::start`]).
    pub(crate) fn start() -> Self {
        let _here = PreemptGuard::new();
        let cpus = KernelCpus { me: cpu::this_cpu() };
        let holdouts = Holdouts::take(&cpus);
        Self { cpus, holdouts }
    }

    /// Rescans the holdouts; true when none is left.
    pub(crate) fn done(&mut self) -> bool {
        self.holdouts.scan(&self.cpus) == 0
    }

    /// Forces the holdouts: an interrupt under `preempt`, a note for the
    /// next scheduling point under `coop`.
    pub(crate) fn force(&self) {
        for c in self.holdouts.cpus() {
            if uksched::qs::force(c) {
                COUNTERS.forced.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Prints a stall report: the grace period and its holdouts here, and
    /// each holdout's running thread from that CPU itself (a cross-CPU
    /// call, which runs when the CPU next enables interrupts).
    pub(crate) fn report_stall(&self, n: u64, for_: Duration) {
        let mut list = alloc::string::String::new();
        for c in self.holdouts.cpus() {
            use core::fmt::Write;
            let _ = write!(list, " {c}");
        }
        ukconsole::println!(
            "ukrcu: INFO: grace period {n} stalled for {} ms by CPU(s){list} (no quiescent state; uksched.policy = \"{}\")",
            for_.as_millis(),
            uksched::POLICY
        );
        for c in self.holdouts.cpus() {
            let ms = for_.as_millis();
            uksmp::run_on_nowait(c, move || {
                let (id, name) = match uksched::try_current_id() {
                    Some(id) => (id, uksched::current().name().into()),
                    None => (0, alloc::string::String::from("?")),
                };
                ukconsole::println!(
                    "ukrcu: INFO: rcu_qsbr self-detected stall on CPU {}: thread `{name}` (id {id}) has run {ms} ms into grace period {n} without a quiescent state",
                    cpu::this_cpu()
                );
            });
        }
    }
}

/// This flavour's name, from an out-of-line function named after it: a
/// symbol-table marker of the selection (`cargo xtask test` checks that an
/// image links exactly one flavour).
#[inline(never)]
pub(crate) fn ukrcu_flavor_is_qsbr() -> &'static str {
    core::hint::black_box(NAME)
}
