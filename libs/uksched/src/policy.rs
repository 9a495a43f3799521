//! The two scheduling policies, chosen at build time (`uksched.policy`).
//!
//! Both keep a FIFO run queue per CPU and the same placement, stealing and
//! blocking; they differ only in when a running thread gives way:
//!
//! * [`Coop`]: only when it yields, blocks, sleeps or exits. No timer
//!   interrupt ever switches threads, wake-ups never interrupt the running
//!   thread (an idle CPU is woken), so a thread that spins forever keeps its
//!   CPU for good: threads queued behind it there run only if an idle CPU
//!   steals them (see the crate documentation).
//! * [`Preempt`]: besides those, after `uksched.quantum_us` of running while
//!   another thread waits on its CPU. The slice is a one-shot event on the
//!   CPU's APIC timer, armed only while the CPU has a thread queued behind
//!   the running one — a CPU with one runnable thread, or idle, takes no
//!   timer interrupts (tickless). A thread woken onto a CPU that runs
//!   another thread with nothing queued (so no slice is armed) makes that
//!   CPU switch at once: a reschedule request and, if remote, an IPI.
//!
//! The choice is a type ([`Configured`]) picked by a const-generic
//! selector from `ukconfig::uksched::POLICY`, so only the chosen policy's
//! code is instantiated; each links one marker function,
//! `uksched_policy_is_coop` or `uksched_policy_is_preempt`, which
//! `cargo xtask test` looks for in the image's symbols.

/// What a policy decides.
pub(crate) trait Policy {
    /// The configuration name.
    const NAME: &'static str;
    /// Whether a running thread can be switched away from involuntarily.
    const PREEMPTIVE: bool;
    /// The time slice in nanoseconds (0: none).
    const SLICE_NS: u64;
    /// Links this policy's marker function and returns the name.
    fn marker() -> &'static str;
}

/// Run until yield, block or exit.
pub(crate) struct Coop;

/// Round-robin time slices on the APIC timer.
pub(crate) struct Preempt;

impl Policy for Coop {
    const NAME: &'static str = "coop";
    const PREEMPTIVE: bool = false;
    const SLICE_NS: u64 = 0;
    fn marker() -> &'static str {
        uksched_policy_is_coop()
    }
}

impl Policy for Preempt {
    const NAME: &'static str = "preempt";
    const PREEMPTIVE: bool = true;
    const SLICE_NS: u64 = ukconfig::uksched::QUANTUM_US as u64 * 1000;
    fn marker() -> &'static str {
        uksched_policy_is_preempt()
    }
}

#[inline(never)]
fn uksched_policy_is_coop() -> &'static str {
    core::hint::black_box(Coop::NAME)
}

#[inline(never)]
fn uksched_policy_is_preempt() -> &'static str {
    core::hint::black_box(Preempt::NAME)
}

/// Maps the configured choice to its policy type.
pub(crate) trait SelectPolicy {
    type Policy: Policy;
}

/// Selector: 0 coop, 1 preempt.
pub(crate) struct Select<const N: u8>;

impl SelectPolicy for Select<0> {
    type Policy = Coop;
}

impl SelectPolicy for Select<1> {
    type Policy = Preempt;
}

/// The selector number of a policy.
pub(crate) const fn index(policy: ukconfig::uksched::Policy) -> u8 {
    match policy {
        ukconfig::uksched::Policy::Coop => 0,
        ukconfig::uksched::Policy::Preempt => 1,
    }
}

/// The configured policy.
pub(crate) type Configured = <Select<{ index(ukconfig::uksched::POLICY) }> as SelectPolicy>::Policy;

/// Whether the configured policy preempts.
pub(crate) const PREEMPTIVE: bool = <Configured as Policy>::PREEMPTIVE;
/// The configured time slice (ns; 0 under coop).
pub(crate) const SLICE_NS: u64 = <Configured as Policy>::SLICE_NS;
