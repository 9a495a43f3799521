//! CPUs: which one is running, per-CPU data, the preemption counter, the
//! machine's CPU topology and the hand-over of secondary CPUs.
//!
//! # Per-CPU header through GS
//!
//! Every CPU's GS base points at its [`CpuLocal`] header, set by the platform
//! with [`init_this_cpu`] before any library code runs on that CPU (on the
//! boot CPU: first thing in the platform's entry; on the others: in their
//! bring-up path). Fixed offsets in the header make the hot accessors one
//! instruction each, with no lookup and no lock:
//!
//! | offset | field | accessor |
//! |---|---|---|
//! | 0 | address of the header itself | — |
//! | 8 | CPU index | [`this_cpu`] (`mov gs:[8]`) |
//! | 16 | preemption counter | [`preempt_disable`] / [`preempt_enable`] (`add`/`sub gs:[16]`) |
//! | 20 | reschedule request | [`request_resched`] |
//! | 24 | interrupt nesting depth | [`in_interrupt`] |
//! | 28 | local APIC id | [`this_apic_id`] |
//! | 32 | extended-quiescent-state counter (odd: running, even: idle) | [`eqs_enter`] / [`eqs_exit`] / [`eqs_counter`] |
//! | 40 | the running interrupt came from an extended quiescent state | [`irq_enter`] / [`irq_exit`] |
//! | 48 | the running thread's id (0: none), set by the scheduler at each switch | [`current_thread_id`] (`mov gs:[48]`) / [`set_current_thread_id`] |
//!
//! A read-modify-write on `gs:[..]` is a single instruction, so it cannot be
//! torn by an interrupt on the same CPU; other CPUs never write a header's
//! counters (the reschedule flag excepted, which is atomic).
//!
//! # Per-CPU variables
//!
//! [`per_cpu!`](crate::per_cpu) defines a static with one cache-line-aligned slot per possible
//! CPU ([`MAX_CPUS`], the platform option `max_cpus`), reached through
//! [`PerCpu::get`] (this CPU's slot: `gs:[8]` and an index) or
//! [`PerCpu::get_for`]. Slots are shared references, so the type must be
//! `Sync` (atomics, locks): a thread preempted and moved to another CPU
//! between `get` and its use still holds a valid reference, only to the
//! slot of the CPU it *was* on. Code that needs "this CPU" to stay true
//! disables preemption ([`PreemptGuard`]) or interrupts around it.
//!
//! # Preemption
//!
//! The counter is nestable and per CPU: spinlocks raise it, a preemptive
//! scheduler (`uksched`) must not switch away while it is non-zero. When
//! [`preempt_enable`] brings it back to zero and a reschedule was requested,
//! it calls the hook the scheduler registered with [`set_resched_hook`].
//! Without a scheduler the counter is kept but nothing consults it.
//!
//! # Secondary CPUs
//!
//! The platform starts every configured CPU at boot and parks the secondary
//! ones (halted, interrupts enabled, no work). A library that wants them
//! (`uksmp`) stores their entry with [`release_secondaries`] and then wakes
//! them with an IPI; each parked CPU calls the entry with its index.
//!
//! On the host (unit tests), GS is not ours: [`this_cpu`] and the preemption
//! counter are per thread, and [`host::bind_this_thread`] chooses the CPU
//! index a test thread pretends to be.

use crate::slot::FnSlot;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use ukarch::cache::CacheAligned;

/// Index of a CPU: 0 is the boot CPU, the others follow in the order the
/// platform numbered them (the firmware's order, boot CPU first).
pub type CpuIndex = usize;

/// Most CPUs this image supports: the platform option `max_cpus`. Sizes every
/// per-CPU array; the platform starts at most this many CPUs.
pub const MAX_CPUS: usize = ukconfig::platform::MAX_CPUS;

/// CPUs this image is configured to run on: the platform option `cpus`
/// (`cargo xtask run --smp N` sets it). Libraries may specialise on it at
/// compile time (with one CPU, spinlocks reduce to interrupt/preemption
/// control).
pub const CONFIGURED_CPUS: usize = ukconfig::platform::CPUS;

/// The per-CPU header that GS points at. See the module documentation for
/// the layout, which the accessors hard-code.
#[repr(C, align(64))]
pub struct CpuLocal {
    this: AtomicU64,
    index: AtomicUsize,
    preempt_count: AtomicU32,
    need_resched: AtomicU32,
    irq_depth: AtomicU32,
    apic_id: AtomicU32,
    /// The extended-quiescent-state counter: see [`eqs_enter`].
    eqs: AtomicU64,
    /// The outermost interrupt handler running now interrupted an
    /// extended quiescent state (and made `eqs` odd).
    irq_from_eqs: AtomicU32,
    /// The running thread's id, 0 when none (see [`current_thread_id`]).
    thread_id: AtomicU64,
}

impl CpuLocal {
    const fn new() -> Self {
        Self {
            this: AtomicU64::new(0),
            index: AtomicUsize::new(0),
            preempt_count: AtomicU32::new(0),
            need_resched: AtomicU32::new(0),
            irq_depth: AtomicU32::new(0),
            apic_id: AtomicU32::new(0),
            eqs: AtomicU64::new(1),
            irq_from_eqs: AtomicU32::new(0),
            thread_id: AtomicU64::new(0),
        }
    }

    /// The CPU index stored in this header.
    pub fn index(&self) -> CpuIndex {
        self.index.load(Ordering::Relaxed)
    }

    /// The local APIC id stored in this header.
    pub fn apic_id(&self) -> u32 {
        self.apic_id.load(Ordering::Relaxed)
    }

    /// The preemption counter of this header's CPU.
    pub fn preempt_count(&self) -> u32 {
        self.preempt_count.load(Ordering::Relaxed)
    }
}

// The accessors below hard-code these offsets.
const _: () = {
    assert!(core::mem::offset_of!(CpuLocal, this) == 0);
    assert!(core::mem::offset_of!(CpuLocal, index) == 8);
    assert!(core::mem::offset_of!(CpuLocal, preempt_count) == 16);
    assert!(core::mem::offset_of!(CpuLocal, need_resched) == 20);
    assert!(core::mem::offset_of!(CpuLocal, irq_depth) == 24);
    assert!(core::mem::offset_of!(CpuLocal, apic_id) == 28);
    assert!(core::mem::offset_of!(CpuLocal, eqs) == 32);
    assert!(core::mem::offset_of!(CpuLocal, irq_from_eqs) == 40);
    assert!(core::mem::offset_of!(CpuLocal, thread_id) == 48);
};

/// Every CPU's header, indexed by [`CpuIndex`].
static LOCALS: [CpuLocal; MAX_CPUS] = [const { CpuLocal::new() }; MAX_CPUS];

/// The header of CPU `cpu`.
///
/// # Panics
/// When `cpu >= MAX_CPUS`.
pub fn local(cpu: CpuIndex) -> &'static CpuLocal {
    &LOCALS[cpu]
}

/// Makes the calling CPU CPU number `index` with local APIC id `apic_id`:
/// fills its header and points GS at it. Called by the platform once per
/// CPU, before anything reads per-CPU data on it.
///
/// # Panics
/// When `index >= MAX_CPUS` (the platform checks the count first).
///
/// # Safety
/// Call on the CPU being described, once, with interrupts disabled; no two
/// CPUs may claim the same index.
pub unsafe fn init_this_cpu(index: CpuIndex, apic_id: u32) {
    let local = &LOCALS[index];
    local.this.store(core::ptr::from_ref(local) as u64, Ordering::Relaxed);
    local.index.store(index, Ordering::Relaxed);
    local.apic_id.store(apic_id, Ordering::Relaxed);
    // The header is 'static and now filled in; the caller runs on the CPU
    // it describes, so GS-relative accessors find its own header.
    #[cfg(target_os = "none")]
    crate::platform::imports::cpu_set_base(local);
    #[cfg(not(target_os = "none"))]
    host::bind_this_thread(index);
}

/// The index of the CPU running this code.
///
/// Valid once the platform ran [`init_this_cpu`] on this CPU (before any
/// library code). With preemption enabled the answer may be stale by the
/// time it is used; see the module documentation.
#[inline(always)]
pub fn this_cpu() -> CpuIndex {
    #[cfg(target_os = "none")]
    {
        let index: usize;
        // SAFETY: GS points at this CPU's `CpuLocal` (set up by the platform
        // before any library code runs), whose offset 8 is the index. Not
        // `pure`: a later call may run on another CPU.
        unsafe {
            core::arch::asm!("mov {}, gs:[8]", out(reg) index, options(nostack, readonly, preserves_flags))
        };
        index
    }
    #[cfg(not(target_os = "none"))]
    host::this_cpu()
}

/// The index of the CPU running this code, or `None` when its GS base does
/// not point at a per-CPU header yet (a report from the first instructions
/// of a CPU). Asks the platform for the base (on kvm a read of the GS base
/// MSR, a VM exit under a hypervisor): for panic and exception reports, not
/// hot paths.
pub fn try_this_cpu() -> Option<CpuIndex> {
    #[cfg(target_os = "none")]
    {
        let base = this_base() as usize;
        let first = LOCALS.as_ptr() as usize;
        let offset = base.checked_sub(first)?;
        (offset % size_of::<CpuLocal>() == 0 && offset / size_of::<CpuLocal>() < MAX_CPUS)
            .then(|| offset / size_of::<CpuLocal>())
    }
    #[cfg(not(target_os = "none"))]
    Some(host::this_cpu())
}

/// This CPU's per-CPU base as the platform reads it back (on kvm the GS base
/// MSR, a VM exit under a hypervisor): what [`init_this_cpu`] set, or 0
/// before. For reports and tests, not hot paths (which read through GS).
pub fn this_base() -> u64 {
    #[cfg(target_os = "none")]
    return crate::platform::imports::cpu_base();
    #[cfg(not(target_os = "none"))]
    return core::ptr::from_ref(local(host::this_cpu())) as u64;
}

/// The id of the thread running this code, as the scheduler recorded it at
/// its last switch on this CPU (0: no thread yet). One instruction
/// (`mov gs:[48]`), so preemption cannot split it: a thread moved to another
/// CPU right before or after still reads its own id — whichever CPU it
/// runs the instruction on, that CPU's running thread is the caller. For
/// owner fields of locks, which must not disable preemption to know who
/// they are.
#[inline(always)]
pub fn current_thread_id() -> u64 {
    #[cfg(target_os = "none")]
    {
        let id: u64;
        // SAFETY: GS points at this CPU's `CpuLocal`, whose offset 48 is
        // the running thread's id.
        unsafe {
            core::arch::asm!("mov {}, gs:[48]", out(reg) id, options(nostack, readonly, preserves_flags))
        };
        id
    }
    #[cfg(not(target_os = "none"))]
    local(host::this_cpu()).thread_id.load(Ordering::Relaxed)
}

/// Records `id` as the thread now running on this CPU (the scheduler, at
/// each switch, with interrupts disabled).
#[inline(always)]
pub fn set_current_thread_id(id: u64) {
    this_local().thread_id.store(id, Ordering::Relaxed);
}

/// The local APIC id of the CPU running this code.
#[inline(always)]
pub fn this_apic_id() -> u32 {
    local(this_cpu()).apic_id()
}

/// The header of the CPU running this code.
#[inline(always)]
pub fn this_local() -> &'static CpuLocal {
    local(this_cpu())
}

// ---------------------------------------------------------------------------
// Preemption

/// Raises this CPU's preemption counter: until the matching
/// [`preempt_enable`], a preemptive scheduler does not switch away from the
/// running thread. Nestable. Prefer [`PreemptGuard`].
#[inline(always)]
pub fn preempt_disable() {
    #[cfg(target_os = "none")]
    // SAFETY: GS points at this CPU's header; offset 16 is its preemption
    // counter, changed only by this CPU, and a single `add` cannot be torn
    // by an interrupt. The asm clobbers memory (no `nomem`), so it is also a
    // compiler barrier: no access moves out of the critical section.
    unsafe {
        core::arch::asm!("add dword ptr gs:[16], 1", options(nostack))
    };
    #[cfg(not(target_os = "none"))]
    host::preempt_add(1);
}

/// Lowers this CPU's preemption counter; when it reaches zero with a
/// reschedule requested and interrupts enabled, calls the hook registered
/// with [`set_resched_hook`].
///
/// # Panics
/// On the host, when the counter is already zero (a mismatched call). In
/// the guest the same mistake wraps the counter, which [`preempt_count`]
/// then shows; `uksched` checks it at every switch.
#[inline(always)]
pub fn preempt_enable() {
    #[cfg(target_os = "none")]
    let now_zero = {
        let zero: u8;
        // SAFETY: as in `preempt_disable`; `setz` reads the flags of the
        // `sub` just before it.
        unsafe {
            core::arch::asm!("sub dword ptr gs:[16], 1", "setz {}", out(reg_byte) zero, options(nostack))
        };
        zero != 0
    };
    #[cfg(not(target_os = "none"))]
    let now_zero = host::preempt_add(-1) == 0;
    // Interrupts disabled: the code that disabled them does not want to
    // switch (the next interrupt return or `preempt_enable` will).
    if now_zero && this_local().need_resched.load(Ordering::Relaxed) != 0 && interrupts_enabled() {
        resched();
    }
}

/// This CPU's preemption counter (0: preemptible, as far as locks go).
#[inline(always)]
pub fn preempt_count() -> u32 {
    #[cfg(target_os = "none")]
    {
        let count: u32;
        // SAFETY: GS points at this CPU's header; offset 16 is the counter.
        unsafe {
            core::arch::asm!("mov {:e}, gs:[16]", out(reg) count, options(nostack, readonly, preserves_flags))
        };
        count
    }
    #[cfg(not(target_os = "none"))]
    host::preempt_count()
}

/// Preemption stays disabled while the guard lives. Guards nest.
///
/// ```
/// let before = ukplat::cpu::preempt_count();
/// {
///     let _guard = ukplat::cpu::PreemptGuard::new();
///     assert_eq!(ukplat::cpu::preempt_count(), before + 1);
/// }
/// assert_eq!(ukplat::cpu::preempt_count(), before);
/// ```
#[must_use = "preemption is enabled again when the guard is dropped"]
pub struct PreemptGuard {
    // Not Send: the guard must be dropped on the CPU that created it.
    _not_send: core::marker::PhantomData<*const ()>,
}

impl PreemptGuard {
    /// Disables preemption until the guard is dropped.
    #[inline(always)]
    pub fn new() -> Self {
        preempt_disable();
        Self { _not_send: core::marker::PhantomData }
    }
}

impl Default for PreemptGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PreemptGuard {
    #[inline(always)]
    fn drop(&mut self) {
        preempt_enable();
    }
}

/// The reschedule hook, if one is registered.
static RESCHED_HOOK: FnSlot<fn()> = FnSlot::new();

/// Registers the scheduler's reschedule function, called by
/// [`preempt_enable`] when the counter drops to zero while a reschedule is
/// requested on that CPU. It runs with the counter at zero and must clear
/// the request ([`take_resched_request`]). The last registration wins.
pub fn set_resched_hook(hook: fn()) {
    RESCHED_HOOK.store(hook);
}

/// Asks CPU `cpu` to reschedule at its next preemption point.
pub fn request_resched(cpu: CpuIndex) {
    local(cpu).need_resched.store(1, Ordering::Release);
}

/// Clears this CPU's reschedule request; returns whether one was pending.
pub fn take_resched_request() -> bool {
    let flag = &this_local().need_resched;
    // A plain load first: the common case (no request) costs no locked
    // instruction.
    flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::AcqRel) != 0
}

/// Whether interrupts are enabled (always "yes" on the host).
#[inline(always)]
fn interrupts_enabled() -> bool {
    #[cfg(target_os = "none")]
    return crate::irq::enabled();
    #[cfg(not(target_os = "none"))]
    true
}

#[cold]
fn resched() {
    if let Some(hook) = RESCHED_HOOK.load() {
        hook();
    }
}

// ---------------------------------------------------------------------------
// Interrupt nesting

/// Whether this CPU is running an interrupt handler (an external interrupt
/// or IPI, vectors 32–255; exceptions do not count).
#[inline(always)]
pub fn in_interrupt() -> bool {
    this_local().irq_depth.load(Ordering::Relaxed) != 0
}

/// How many interrupt handlers are running on this CPU (nested ones
/// included): 0 in thread context.
#[inline(always)]
pub fn interrupt_depth() -> u32 {
    this_local().irq_depth.load(Ordering::Relaxed)
}

/// Marks entry into an interrupt handler on this CPU. The platform's trap
/// path calls it (and [`irq_exit`]) around the handlers of vectors 32–255.
/// An interrupt that arrives in an extended quiescent state (the idle
/// loop, see [`eqs_enter`]) leaves it for the handler's duration.
#[inline(always)]
pub fn irq_enter() {
    let local = this_local();
    if local.irq_depth.fetch_add(1, Ordering::Relaxed) == 0 && local.eqs.load(Ordering::Relaxed) & 1 == 0 {
        local.eqs.fetch_add(1, Ordering::SeqCst);
        local.irq_from_eqs.store(1, Ordering::Relaxed);
    }
}

/// Marks the end of an interrupt handler on this CPU (and the return to an
/// extended quiescent state the interrupt came from).
#[inline(always)]
pub fn irq_exit() {
    let local = this_local();
    if local.irq_depth.fetch_sub(1, Ordering::Relaxed) == 1 && local.irq_from_eqs.load(Ordering::Relaxed) != 0
    {
        local.irq_from_eqs.store(0, Ordering::Relaxed);
        local.eqs.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Extended quiescent states

/// Enters an *extended quiescent state* on this CPU: its idle loop, which
/// holds no reference into shared data structures, for as long as it lasts
/// (Linux's "dynticks idle"). Each CPU has a counter, odd while it runs
/// code and even while it is in such a state; entering and leaving one
/// (here, in [`eqs_exit`], and around an interrupt handler that runs from
/// one, see [`irq_enter`]) adds one, with a full barrier.
///
/// A grace-period detector (RCU) reads the counter of every CPU
/// ([`eqs_counter`]) without disturbing it: a CPU whose counter was even
/// at a snapshot, or has moved since, has passed a quiescent state, so an
/// idle CPU is never woken to report one.
///
/// Call with interrupts disabled, from the idle loop only, paired with
/// [`eqs_exit`]; nothing between the two may read data that a grace
/// period protects (an interrupt handler may: it leaves the state).
#[inline]
pub fn eqs_enter() {
    let eqs = &this_local().eqs;
    debug_assert!(eqs.load(Ordering::Relaxed) & 1 == 1, "ukplat: eqs_enter twice");
    eqs.fetch_add(1, Ordering::SeqCst);
}

/// Leaves the extended quiescent state entered with [`eqs_enter`].
#[inline]
pub fn eqs_exit() {
    let eqs = &this_local().eqs;
    debug_assert!(eqs.load(Ordering::Relaxed) & 1 == 0, "ukplat: eqs_exit without eqs_enter");
    eqs.fetch_add(1, Ordering::SeqCst);
}

/// CPU `cpu`'s extended-quiescent-state counter (even: in one), read with
/// sequential consistency. See [`eqs_enter`].
#[inline]
pub fn eqs_counter(cpu: CpuIndex) -> u64 {
    local(cpu).eqs.load(Ordering::SeqCst)
}

/// The preemption point on the way back from an interrupt. The platform's
/// trap path calls it after [`irq_exit`], still with interrupts disabled,
/// passing whether the interrupted code had them enabled. When that code
/// was preemptible — interrupts enabled, not itself an interrupt handler,
/// preemption counter zero — and a reschedule is requested on this CPU, it
/// calls the hook registered with [`set_resched_hook`], which may switch to
/// another thread; the interrupted one resumes when it is switched back to.
#[inline(always)]
pub fn preempt_on_irq_return(interrupts_were_enabled: bool) {
    let local = this_local();
    // The request first: it is almost always clear, and then one load is
    // all an interrupt return pays.
    if interrupts_were_enabled
        && local.need_resched.load(Ordering::Relaxed) != 0
        && local.irq_depth.load(Ordering::Relaxed) == 0
        && preempt_count() == 0
    {
        resched();
    }
}

// ---------------------------------------------------------------------------
// Per-CPU variables

/// One slot per possible CPU, each on its own cache line. Define instances
/// with [`per_cpu!`](crate::per_cpu).
pub struct PerCpu<T> {
    slots: [CacheAligned<T>; MAX_CPUS],
}

impl<T> PerCpu<T> {
    /// Wraps the slots (what [`per_cpu!`](crate::per_cpu) expands to).
    pub const fn from_slots(slots: [CacheAligned<T>; MAX_CPUS]) -> Self {
        Self { slots }
    }

    /// The slot of the CPU running this code (see the module documentation
    /// on preemption).
    #[inline(always)]
    pub fn get(&self) -> &T {
        &self.slots[this_cpu()]
    }

    /// The slot of CPU `cpu`.
    ///
    /// # Panics
    /// When `cpu >= MAX_CPUS`.
    #[inline(always)]
    pub fn get_for(&self, cpu: CpuIndex) -> &T {
        &self.slots[cpu]
    }

    /// Every slot, CPU 0 first (all [`MAX_CPUS`] of them, online or not).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|slot| &slot.0)
    }
}

#[doc(hidden)]
pub use ukarch::cache::CacheAligned as __CacheAligned;

/// Defines per-CPU statics: one cache-aligned slot per possible CPU, each
/// initialised with the (constant) initialiser.
///
/// ```
/// use core::sync::atomic::{AtomicU64, Ordering};
///
/// ukplat::per_cpu! {
///     /// Interrupts handled, per CPU.
///     static HANDLED: AtomicU64 = AtomicU64::new(0);
/// }
///
/// HANDLED.get().fetch_add(1, Ordering::Relaxed);
/// let total: u64 = HANDLED.iter().map(|n| n.load(Ordering::Relaxed)).sum();
/// assert_eq!(total, 1);
/// ```
#[macro_export]
macro_rules! per_cpu {
    ($($(#[$meta:meta])* $vis:vis static $name:ident: $ty:ty = $init:expr;)+) => {$(
        $(#[$meta])*
        $vis static $name: $crate::cpu::PerCpu<$ty> = $crate::cpu::PerCpu::from_slots(
            [const { $crate::cpu::__CacheAligned::new($init) }; $crate::cpu::MAX_CPUS],
        );
    )+};
}

// ---------------------------------------------------------------------------
// Topology

/// One CPU the platform started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuDesc {
    /// Its local APIC id.
    pub apic_id: u32,
    /// Its ACPI processor UID (from the MADT), for matching ACPI objects.
    pub acpi_uid: u32,
    /// TSC when the CPU reported itself alive during bring-up (the boot CPU:
    /// the platform's entry).
    pub online_tsc: u64,
}

/// The CPUs of the machine, as the platform found and started them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Topology {
    /// The CPUs running, indexed by [`CpuIndex`] (boot CPU first).
    pub cpus: &'static [CpuDesc],
    /// Usable CPUs the firmware reported (may exceed `cpus.len()` when the
    /// image is configured for fewer).
    pub cpus_in_firmware: usize,
    /// TSC when the platform began starting the secondary CPUs (0 when it
    /// started none).
    pub bringup_start_tsc: u64,
    /// Physical address of the local APIC registers (xAPIC mode).
    pub local_apic_address: u64,
    /// The I/O APICs.
    pub io_apics: &'static [crate::irq::IoApicDesc],
    /// How ISA IRQs map onto global system interrupts, where not 1:1.
    pub isa_overrides: &'static [crate::irq::IsaOverride],
    /// Whether legacy 8259 PICs are present (for reports: they reach a CPU
    /// only through LINT0 or an I/O APIC input, both masked by `apic`).
    pub has_8259: bool,
}

/// The topology the platform published (see [`crate::boot_info`]).
pub fn topology() -> &'static Topology {
    &crate::boot_info().topology
}

/// Number of CPUs running (the platform started them all at boot).
pub fn count() -> usize {
    topology().cpus.len()
}

// ---------------------------------------------------------------------------
// Secondary CPUs

/// The entry parked secondary CPUs run, once released.
static SECONDARY_ENTRY: FnSlot<fn(CpuIndex) -> !> = FnSlot::new();

/// Sets the function every parked secondary CPU runs, with its index, when
/// it next wakes up. The caller then wakes them (an IPI to each). The first
/// call wins; later ones return `false`.
pub fn release_secondaries(entry: fn(CpuIndex) -> !) -> bool {
    SECONDARY_ENTRY.store_if_empty(entry).is_ok()
}

/// The released entry, if any (polled by the platform's parking loop).
pub fn secondary_entry() -> Option<fn(CpuIndex) -> !> {
    SECONDARY_ENTRY.load()
}

/// The parking loop of a started secondary CPU, the same on every
/// platform: halted with interrupts enabled until a library released the
/// secondaries ([`release_secondaries`]) and an interrupt (the library's
/// wake-up IPI) lets it see the entry, which it then runs for good.
pub fn park_secondary(index: CpuIndex) -> ! {
    loop {
        crate::irq::disable();
        if let Some(entry) = secondary_entry() {
            entry(index);
        }
        crate::irq::enable_and_halt();
    }
}

// ---------------------------------------------------------------------------
// Host stand-ins

/// Host builds (unit tests): the CPU index and the preemption counter are
/// per thread.
#[cfg(not(target_os = "none"))]
pub mod host {
    use super::CpuIndex;
    use core::cell::Cell;

    extern crate std;

    std::thread_local! {
        static CPU: Cell<CpuIndex> = const { Cell::new(0) };
        static PREEMPT: Cell<u32> = const { Cell::new(0) };
    }

    /// Makes the calling thread pretend to be CPU `cpu` for [`super::this_cpu`].
    ///
    /// # Panics
    /// When `cpu >= MAX_CPUS`.
    pub fn bind_this_thread(cpu: CpuIndex) {
        assert!(cpu < super::MAX_CPUS, "CPU index {cpu} >= MAX_CPUS {}", super::MAX_CPUS);
        CPU.with(|c| c.set(cpu));
    }

    pub(super) fn this_cpu() -> CpuIndex {
        CPU.with(Cell::get)
    }

    pub(super) fn preempt_add(delta: i32) -> u32 {
        PREEMPT.with(|p| {
            let now = p.get().checked_add_signed(delta).expect("preempt_enable without preempt_disable");
            p.set(now);
            now
        })
    }

    pub(super) fn preempt_count() -> u32 {
        PREEMPT.with(Cell::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    per_cpu! {
        static COUNTS: AtomicU64 = AtomicU64::new(0);
    }

    #[test]
    fn per_cpu_slots_are_separate_and_aligned() {
        host::bind_this_thread(1);
        COUNTS.get().fetch_add(5, Ordering::Relaxed);
        assert_eq!(COUNTS.get_for(1).load(Ordering::Relaxed), 5);
        assert_eq!(COUNTS.get_for(0).load(Ordering::Relaxed), 0);
        let a = COUNTS.get_for(0) as *const _ as usize;
        let b = COUNTS.get_for(1) as *const _ as usize;
        assert_eq!(b - a, 64);
        assert_eq!(COUNTS.iter().count(), MAX_CPUS);
    }

    #[test]
    fn preempt_counter_nests_and_calls_the_hook_at_zero() {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        fn hook() {
            if take_resched_request() {
                CALLS.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::spawn(|| {
            host::bind_this_thread(2);
            set_resched_hook(hook);
            let outer = PreemptGuard::new();
            {
                let _inner = PreemptGuard::new();
                assert_eq!(preempt_count(), 2);
                request_resched(2);
            }
            assert_eq!(CALLS.load(Ordering::Relaxed), 0, "not at zero yet");
            drop(outer);
            assert_eq!(preempt_count(), 0);
            assert_eq!(CALLS.load(Ordering::Relaxed), 1);
            // No request: no call.
            drop(PreemptGuard::new());
            assert_eq!(CALLS.load(Ordering::Relaxed), 1);
        })
        .join()
        .unwrap();
    }

    #[test]
    #[should_panic(expected = "preempt_enable without preempt_disable")]
    fn unbalanced_enable_panics_on_the_host() {
        preempt_enable();
    }

    #[test]
    fn init_this_cpu_fills_the_header() {
        std::thread::spawn(|| {
            // SAFETY: host stand-in; no GS is touched.
            unsafe { init_this_cpu(3, 0x30) };
            assert_eq!(this_cpu(), 3);
            assert_eq!(this_apic_id(), 0x30);
            assert_eq!(local(3).index(), 3);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn interrupt_depth() {
        std::thread::spawn(|| {
            host::bind_this_thread(4);
            assert!(!in_interrupt());
            irq_enter();
            assert!(in_interrupt());
            irq_exit();
            assert!(!in_interrupt());
        })
        .join()
        .unwrap();
    }
}
