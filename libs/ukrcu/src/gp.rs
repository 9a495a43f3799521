//! The grace-period state machine, independent of where quiescent states
//! come from (so that `tests/loom.rs` runs this very code against model
//! CPUs).
//!
//! # Sequence numbers
//!
//! As Linux's `rcu_seq_*` (kernel/rcu/rcu.h): one counter, [`GpSeq::seq`],
//! whose low bit says whether a grace period is in progress and whose other
//! bits count the grace periods started. `2n` is "idle, n grace periods
//! done"; `2n + 1` is "grace period n + 1 in progress".
//!
//! A waiter does not wait for "a" grace period but for the sequence value
//! at which one that *started after it arrived* has ended: its
//! [`snapshot`](snap). From idle `2n` that is `2n + 2`; during `2n + 1`
//! the running grace period may have looked at the CPUs before the waiter's
//! update, so it needs the next one: `2n + 4`. Every caller that arrives
//! before a grace period starts gets the same snapshot, so any number of
//! them share one grace period; a caller that arrives during one shares the
//! next.
//!
//! # States
//!
//! ```text
//!            request(snap) with snap beyond seq
//!   IDLE (seq even) ──────────────────────────────▶ start(): seq odd, fence,
//!       ▲                                              snapshot every CPU
//!       │                                                    │
//!       │ end(): fence, seq even;                           ▼
//!       │ waiters with snap <= seq wake      WAITING: poll CPUs until each
//!       └──────────────────────────────────  has passed a quiescent state
//!                                            (force the late ones, report
//!                                            stalls)
//! ```
//!
//! The grace-period thread loops over these while [`GpSeq::needed`].
//!
//! # Ordering
//!
//! Everything here is `SeqCst`. A writer's update (the unlink it wants a
//! grace period for), then its [`GpSeq::snap`], are ordered before the
//! [`GpSeq::start`] of the grace period its snapshot names and before the
//! quiescent-state snapshots taken after it; those snapshots are ordered
//! before [`GpSeq::end`], which is ordered before the waiter sees
//! [`GpSeq::done`] and frees. The CPUs' quiescent-state counters are
//! `SeqCst` read-modify-writes (full barriers) and the readers' loads of
//! published pointers are `SeqCst` too (a plain `mov` on x86), so the loads
//! of a read-side critical section that begins after a counter increment
//! the snapshot missed see the update.

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering, fence};

/// The snapshot a waiter arriving at sequence value `seq` waits for.
///
/// ```
/// use ukrcu::gp::snap;
/// assert_eq!(snap(4), 6, "idle: the next grace period");
/// assert_eq!(snap(5), 8, "in progress: the one after it");
/// ```
pub const fn snap(seq: u64) -> u64 {
    (seq + 3) & !1
}

/// Whether sequence value `seq` is at or past snapshot `snap`. (A `u64` of
/// grace periods does not wrap: at one per nanosecond, 292 years.)
pub const fn done(seq: u64, snap: u64) -> bool {
    seq >= snap
}

/// Grace periods completed at sequence value `seq`.
pub const fn completed(seq: u64) -> u64 {
    seq >> 1
}

/// The grace-period sequence and the highest snapshot anyone waits for.
pub struct GpSeq {
    seq: AtomicU64,
    requested: AtomicU64,
}

impl Default for GpSeq {
    fn default() -> Self {
        Self::new()
    }
}

impl GpSeq {
    /// Idle, no grace period done or requested.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self { seq: AtomicU64::new(0), requested: AtomicU64::new(0) }
    }

    /// Idle, no grace period done or requested.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self { seq: AtomicU64::new(0), requested: AtomicU64::new(0) }
    }

    /// The sequence value now.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// The snapshot for a waiter arriving now (after a full barrier that
    /// orders the caller's updates before it).
    pub fn snap(&self) -> u64 {
        fence(Ordering::SeqCst);
        snap(self.seq.load(Ordering::SeqCst))
    }

    /// Records that somebody waits for `snap`; true when that is beyond
    /// what was requested before (the grace-period thread may be asleep
    /// and needs a wake-up).
    pub fn request(&self, snap: u64) -> bool {
        self.requested.fetch_max(snap, Ordering::SeqCst) < snap
    }

    /// Whether snapshot `snap` is done.
    pub fn done(&self, snap: u64) -> bool {
        done(self.seq.load(Ordering::SeqCst), snap)
    }

    /// Whether a grace period is wanted that has not ended.
    pub fn needed(&self) -> bool {
        !done(self.seq.load(Ordering::SeqCst), self.requested.load(Ordering::SeqCst))
    }

    /// Starts a grace period (the grace-period thread only): the sequence
    /// turns odd, then a full barrier, so the quiescent-state snapshots
    /// that follow are ordered after every update whose waiter saw the old
    /// value.
    pub fn start(&self) {
        let seq = self.seq.load(Ordering::SeqCst);
        debug_assert!(seq & 1 == 0, "ukrcu: a grace period starts while one runs");
        self.seq.store(seq + 1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Ends the running grace period (the grace-period thread only): a
    /// full barrier, then the sequence turns even.
    pub fn end(&self) {
        fence(Ordering::SeqCst);
        let seq = self.seq.load(Ordering::SeqCst);
        debug_assert!(seq & 1 == 1, "ukrcu: a grace period ends that did not start");
        self.seq.store(seq + 1, Ordering::SeqCst);
    }
}

/// Where quiescent states come from: the scheduler's per-CPU counters in
/// the kernel, model CPUs in `tests/loom.rs`.
pub trait Cpus {
    /// What a CPU's counters were at the start of a grace period.
    type Snapshot;
    /// CPUs that may hold read-side critical sections.
    fn count(&self) -> usize;
    /// CPU `cpu`'s counters now; `None` when it is quiescent now already
    /// (idle, or the CPU taking the snapshot).
    fn snapshot(&self, cpu: usize) -> Option<Self::Snapshot>;
    /// Whether the CPU of `snapshot` has passed a quiescent state since.
    fn passed(&self, snapshot: &Self::Snapshot) -> bool;
}

/// The CPUs a grace period still waits for, as snapshots taken right after
/// [`GpSeq::start`]. `N` bounds the CPUs (`ukplat::cpu::MAX_CPUS` in the
/// kernel): no allocation in the grace-period machinery.
pub struct Holdouts<S, const N: usize> {
    slots: [Option<S>; N],
    left: usize,
}

impl<S, const N: usize> Holdouts<S, N> {
    /// Snapshots every CPU of `cpus` that is not quiescent already.
    pub fn take<C: Cpus<Snapshot = S>>(cpus: &C) -> Self {
        let mut slots = [const { None }; N];
        let mut left = 0;
        for (cpu, slot) in slots.iter_mut().enumerate().take(cpus.count().min(N)) {
            *slot = cpus.snapshot(cpu);
            left += usize::from(slot.is_some());
        }
        Self { slots, left }
    }

    /// Drops the CPUs that have passed a quiescent state; returns how many
    /// are left. Begins with a full barrier, so that the scan sees every
    /// quiescent state that is ordered before it.
    pub fn scan<C: Cpus<Snapshot = S>>(&mut self, cpus: &C) -> usize {
        fence(Ordering::SeqCst);
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|s| cpus.passed(s)) {
                *slot = None;
                self.left -= 1;
            }
        }
        self.left
    }

    /// The CPUs still holding the grace period up.
    pub fn cpus(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(cpu, _)| cpu)
    }

    /// How many CPUs are left.
    pub fn left(&self) -> usize {
        self.left
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn waiters_share_grace_periods_and_never_take_a_running_one() {
        let gp = GpSeq::new();
        let a = gp.snap();
        let b = gp.snap();
        assert_eq!((a, b), (2, 2), "two callers before a grace period share it");
        assert!(gp.request(a));
        assert!(!gp.request(b), "already requested");
        assert!(gp.needed());
        gp.start();
        let c = gp.snap();
        assert_eq!(c, 4, "a caller during grace period 1 needs grace period 2");
        assert!(gp.request(c));
        gp.end();
        assert!(gp.done(a) && gp.done(b) && !gp.done(c));
        assert!(gp.needed());
        gp.start();
        gp.end();
        assert!(gp.done(c) && !gp.needed());
        assert_eq!(completed(gp.seq()), 2);
    }

    struct Fake {
        counters: [u64; 3],
        quiescent_now: [bool; 3],
    }

    impl Cpus for std::cell::RefCell<Fake> {
        type Snapshot = (usize, u64);
        fn count(&self) -> usize {
            3
        }
        fn snapshot(&self, cpu: usize) -> Option<(usize, u64)> {
            let f = self.borrow();
            (!f.quiescent_now[cpu]).then_some((cpu, f.counters[cpu]))
        }
        fn passed(&self, s: &(usize, u64)) -> bool {
            self.borrow().counters[s.0] != s.1
        }
    }

    #[test]
    fn holdouts_are_the_cpus_without_a_quiescent_state_yet() {
        let cpus = std::cell::RefCell::new(Fake { counters: [5, 7, 9], quiescent_now: [true, false, false] });
        let mut h: Holdouts<(usize, u64), 4> = Holdouts::take(&cpus);
        assert_eq!(h.cpus().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(h.scan(&cpus), 2);
        cpus.borrow_mut().counters[2] += 1;
        assert_eq!(h.scan(&cpus), 1);
        assert_eq!(h.cpus().collect::<Vec<_>>(), [1]);
        cpus.borrow_mut().counters[1] += 1;
        assert_eq!(h.scan(&cpus), 0);
    }
}
