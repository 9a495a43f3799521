//! MCS queue lock (Mellor-Crummey & Scott, 1991): FIFO, each waiter spins
//! on its own queue node.

use crate::SINGLE_CPU;
use crate::sync::{AtomicBool, AtomicPtr, Ordering, Spin, compiler_fence, const_fn, preempt_off, preempt_on};
use core::ptr;

/// Queue nodes per CPU for [`RawMcsLock::lock`]: how many MCS locks one CPU
/// can hold or wait for at once, counting every nesting level (a thread's
/// nested locks, an interrupt handler's, an exception handler's on top).
pub const MCS_NODES_PER_CPU: usize = 8;

/// One waiter's place in an MCS queue: the successor's link and the flag
/// its owner spins on. 16 bytes.
///
/// [`RawMcsLock::lock`] takes one from a per-CPU pool; [`RawMcsLock::lock_with`]
/// uses the caller's.
///
/// ```
/// use ukspin::{McsNode, RawMcsLock};
///
/// static LOCK: RawMcsLock = RawMcsLock::new();
/// let node = McsNode::new();
/// // SAFETY: `node` stays put and alive until `unlock_with` returns, and
/// // queues for nothing else meanwhile.
/// unsafe {
///     LOCK.lock_with(&node);
///     assert!(!LOCK.try_lock_with(&McsNode::new()));
///     LOCK.unlock_with(&node);
/// }
/// ```
pub struct McsNode {
    /// The next waiter, written by it once it has queued behind us.
    next: AtomicPtr<McsNode>,
    /// True while the owner must wait; the predecessor clears it to hand
    /// the lock over.
    locked: AtomicBool,
}

impl McsNode {
    const_fn! {
        /// A node, free to queue with.
        pub fn new() -> Self {
            Self { next: AtomicPtr::new(ptr::null_mut()), locked: AtomicBool::new(false) }
        }
    }
}

impl Default for McsNode {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for McsNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("McsNode")
            .field("next", &self.next.load(Ordering::Relaxed))
            .field("locked", &self.locked.load(Ordering::Relaxed))
            .finish()
    }
}

/// MCS queue spinlock: FIFO, each waiter spins on its own node.
///
/// The lock is a pointer to the last node of a queue of waiters (null:
/// free). An acquirer swaps its node into the tail; if there was a
/// predecessor it links itself into the predecessor's node and spins on
/// *its own* node's flag, which the predecessor clears at release.
///
/// * **Acquire:** one `xchg` on the tail (plus taking a node from this CPU's
///   pool: plain loads and stores with preemption disabled). When queued,
///   the contended path (`mcs_lock_contended`) links in and spins on the own
///   node — a line no other waiter reads.
/// * **Release:** one `lock cmpxchg` of the tail back to null when nobody
///   queued; otherwise a plain store into the successor's node (and, in the
///   window where a successor has swapped the tail but not linked yet,
///   `mcs_unlock_contended` waits for the link).
/// * **Fairness:** strict FIFO.
/// * **Under contention:** each hand-off touches only the successor's node:
///   O(1) cache-line transfers per hand-off however many CPUs wait — the
///   lock that scales to many CPUs. Slightly slower than a ticket lock
///   uncontended (the release needs an atomic RMW).
/// * **Memory:** 16 bytes per lock (tail and the holder's node) plus
///   [`MCS_NODES_PER_CPU`] 16-byte nodes per CPU, shared by all MCS locks.
///
/// # Nodes
///
/// [`lock`](Self::lock) (and lock_api's `Mutex`) takes a node from a per-CPU
/// pool of [`MCS_NODES_PER_CPU`] (a bitmap, changed with preemption
/// disabled so the CPU cannot change, by this CPU only: an interrupt handler
/// that runs in between takes and returns its own node before it returns)
/// and records it in the lock: lock_api's `unlock` has no per-acquisition
/// argument, and only the holder reads or writes that field. Holding or
/// awaiting more than [`MCS_NODES_PER_CPU`] MCS locks at once on one CPU
/// panics. A lock taken by [`lock`](Self::lock) must be released on the same
/// CPU (lock_api's guards are `!Send`, and preemption is disabled anyway).
///
/// [`lock_with`](Self::lock_with) / [`unlock_with`](Self::unlock_with) take
/// the node from the caller instead (what the per-CPU path uses inside, and
/// what the loom models check).
///
/// ```
/// use lock_api::RawMutex;
/// use ukspin::{McsNode, RawMcsLock};
///
/// static LIST: ukspin::McsLock<[u8; 3]> = ukspin::McsLock::new([1, 2, 3]);
/// LIST.lock().reverse();
/// assert_eq!(*LIST.lock(), [3, 2, 1]);
///
/// // Two MCS locks held at once on one CPU: two nodes of its pool.
/// let (a, b) = (RawMcsLock::new(), RawMcsLock::new());
/// a.lock();
/// b.lock();
/// // SAFETY: both held by this thread.
/// unsafe { a.unlock(); b.unlock() };
///
/// // With an explicit node.
/// let node = McsNode::new();
/// // SAFETY: `node` outlives the critical section and queues on nothing else.
/// unsafe {
///     a.lock_with(&node);
///     a.unlock_with(&node);
/// }
/// ```
pub struct RawMcsLock {
    /// The last queued node (null: free).
    pub(crate) tail: AtomicPtr<McsNode>,
    /// The holder's node when taken by [`lock`](Self::lock) (only the holder
    /// reads or writes it). Unused in loom builds (explicit nodes only).
    #[cfg_attr(loom, allow(dead_code))]
    owner: AtomicPtr<McsNode>,
}

impl RawMcsLock {
    /// The configuration name of this kind (`ukspin.kind = "mcs"`).
    pub const NAME: &'static str = "mcs";

    const_fn! {
        /// An unlocked lock.
        pub fn new() -> Self {
            Self { tail: AtomicPtr::new(ptr::null_mut()), owner: AtomicPtr::new(ptr::null_mut()) }
        }
    }

    /// Whether some CPU holds the lock (a snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        !self.tail.load(Ordering::Relaxed).is_null()
    }

    /// Acquires the lock with the caller's queue node, waiting in FIFO
    /// order (preemption disabled from here until
    /// [`unlock_with`](Self::unlock_with)).
    ///
    /// # Safety
    /// Until the matching [`unlock_with`](Self::unlock_with) on this lock
    /// *returns*, `node` must stay where it is, alive, and must not be used
    /// for any other acquisition: other CPUs hold pointers to it.
    #[inline]
    pub unsafe fn lock_with(&self, node: &McsNode) {
        preempt_off();
        if SINGLE_CPU {
            self.up_lock(node);
        } else {
            self.acquire(node);
        }
    }

    /// Acquires the lock with the caller's node if it is free; never waits.
    /// Preemption stays disabled only on success.
    ///
    /// # Safety
    /// As for [`lock_with`](Self::lock_with), when it returns `true`.
    #[inline]
    pub unsafe fn try_lock_with(&self, node: &McsNode) -> bool {
        preempt_off();
        let taken = if SINGLE_CPU { self.up_try_lock(node) } else { self.try_acquire(node) };
        if !taken {
            preempt_on();
        }
        taken
    }

    /// Releases the lock taken with `node`, handing it to the next waiter.
    ///
    /// # Safety
    /// This CPU holds the lock, acquired with [`lock_with`](Self::lock_with)
    /// or [`try_lock_with`](Self::try_lock_with) and this very `node`.
    #[inline]
    pub unsafe fn unlock_with(&self, node: &McsNode) {
        if SINGLE_CPU {
            self.up_unlock();
        } else {
            // SAFETY: forwarded caller contract.
            unsafe { self.release(node) };
        }
        preempt_on();
    }

    /// The algorithm: queue `node` at the tail, wait for the predecessor.
    #[inline(always)]
    fn acquire(&self, node: &McsNode) {
        node.next.store(ptr::null_mut(), Ordering::Relaxed);
        node.locked.store(true, Ordering::Relaxed);
        // AcqRel: Acquire pairs with the release of the previous holder
        // when the queue was empty; Release publishes the initialisation
        // above to the successor that will find `node` in the tail.
        let prev = self.tail.swap(ptr::from_ref(node).cast_mut(), Ordering::AcqRel);
        if !prev.is_null() {
            mcs_lock_contended(prev, node);
        }
    }

    #[inline(always)]
    fn try_acquire(&self, node: &McsNode) -> bool {
        if !self.tail.load(Ordering::Relaxed).is_null() {
            return false;
        }
        // Initialise before publishing: once in the tail, a successor may
        // write `next` at any time.
        node.next.store(ptr::null_mut(), Ordering::Relaxed);
        self.tail
            .compare_exchange(
                ptr::null_mut(),
                ptr::from_ref(node).cast_mut(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// # Safety
    /// This CPU holds the lock, taken with `node`.
    #[inline(always)]
    unsafe fn release(&self, node: &McsNode) {
        let mut next = node.next.load(Ordering::Acquire);
        if next.is_null() {
            // Nobody linked behind us: try to empty the queue.
            if self
                .tail
                .compare_exchange(
                    ptr::from_ref(node).cast_mut(),
                    ptr::null_mut(),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return;
            }
            // A successor swapped itself into the tail but has not linked
            // into our node yet.
            next = mcs_unlock_contended(node);
        }
        // SAFETY: `next` is the successor's node: it stays valid until its
        // owner sees this store (it is spinning on it) and later releases.
        unsafe { (*next).locked.store(false, Ordering::Release) };
    }

    /// One CPU: the tail is a held flag (the node or a dangling marker),
    /// written with plain stores (see the crate documentation, "One CPU").
    #[inline(always)]
    fn up_lock(&self, node: *const McsNode) {
        if !self.up_try_lock(node) {
            crate::sync::self_deadlock(Self::NAME, ptr::from_ref(self).cast());
        }
    }

    #[inline(always)]
    pub(crate) fn up_try_lock(&self, node: *const McsNode) -> bool {
        if !self.tail.load(Ordering::Relaxed).is_null() {
            return false;
        }
        self.tail.store(node.cast_mut(), Ordering::Relaxed);
        compiler_fence(Ordering::Acquire);
        true
    }

    #[inline(always)]
    pub(crate) fn up_unlock(&self) {
        compiler_fence(Ordering::Release);
        self.tail.store(ptr::null_mut(), Ordering::Relaxed);
    }
}

impl Default for RawMcsLock {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for RawMcsLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawMcsLock").field("locked", &self.is_locked()).finish()
    }
}

/// The contended path of [`RawMcsLock`]'s acquire: link behind `prev`, spin
/// on our own node until `prev`'s owner hands over. Out of line (and named
/// after its kind) so that an image's symbol table shows which algorithm is
/// linked.
#[inline(never)]
#[cold]
fn mcs_lock_contended(prev: *mut McsNode, node: &McsNode) {
    // SAFETY: `prev` was the tail: a queued node whose owner cannot finish
    // its release (and reuse the node) before it sees this link.
    unsafe { (*prev).next.store(ptr::from_ref(node).cast_mut(), Ordering::Release) };
    let mut spin = Spin::new();
    while node.locked.load(Ordering::Acquire) {
        spin.wait();
    }
}

/// The contended path of [`RawMcsLock`]'s release: a successor is in the
/// tail but not linked yet; wait for its link.
#[inline(never)]
#[cold]
fn mcs_unlock_contended(node: &McsNode) -> *mut McsNode {
    let mut spin = Spin::new();
    loop {
        let next = node.next.load(Ordering::Acquire);
        if !next.is_null() {
            return next;
        }
        spin.wait();
    }
}

// ---------------------------------------------------------------------------
// Per-CPU nodes: `lock` / `try_lock` / `unlock` without a caller's node.

#[cfg(not(loom))]
mod per_cpu {
    use super::{MCS_NODES_PER_CPU, McsNode};
    use core::sync::atomic::{AtomicU32, Ordering};

    const _: () = assert!(MCS_NODES_PER_CPU <= 32);

    /// One CPU's pool.
    pub(super) struct CpuNodes {
        /// Bit i set: `nodes[i]` is in use.
        used: AtomicU32,
        nodes: [McsNode; MCS_NODES_PER_CPU],
    }

    impl CpuNodes {
        const fn new() -> Self {
            Self { used: AtomicU32::new(0), nodes: [const { McsNode::new() }; MCS_NODES_PER_CPU] }
        }
    }

    ukplat::per_cpu! {
        /// Every CPU's MCS queue nodes.
        static NODES: CpuNodes = CpuNodes::new();
    }

    /// Takes a free node of this CPU's pool.
    ///
    /// Call with preemption disabled (the CPU must not change until
    /// [`free`]). In the guest the bitmap is changed with a plain load and
    /// store: only this CPU touches it, and an interrupt handler running in
    /// between returns every node it took before it returns. On the host,
    /// test threads might share a CPU index, so it is a CAS.
    #[inline(always)]
    pub(super) fn alloc() -> &'static McsNode {
        let pool = NODES.get();
        #[cfg(target_os = "none")]
        {
            let used = pool.used.load(Ordering::Relaxed);
            let index = first_free(used);
            pool.used.store(used | 1 << index, Ordering::Relaxed);
            &pool.nodes[index]
        }
        #[cfg(not(target_os = "none"))]
        {
            let mut used = pool.used.load(Ordering::Relaxed);
            loop {
                let index = first_free(used);
                match pool.used.compare_exchange(
                    used,
                    used | 1 << index,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return &pool.nodes[index],
                    Err(seen) => used = seen,
                }
            }
        }
    }

    /// The lowest clear bit of `used`.
    #[inline(always)]
    fn first_free(used: u32) -> usize {
        let index = (!used).trailing_zeros() as usize;
        if index >= MCS_NODES_PER_CPU {
            exhausted();
        }
        index
    }

    /// Returns `node` (from [`alloc`] on this CPU) to the pool.
    #[inline(always)]
    pub(super) fn free(node: *const McsNode) {
        let pool = NODES.get();
        let offset = (node as usize).wrapping_sub(pool.nodes.as_ptr() as usize);
        let index = offset / size_of::<McsNode>();
        if index >= MCS_NODES_PER_CPU {
            foreign_node();
        }
        let bit = 1 << index;
        #[cfg(target_os = "none")]
        {
            let used = pool.used.load(Ordering::Relaxed);
            pool.used.store(used & !bit, Ordering::Relaxed);
        }
        #[cfg(not(target_os = "none"))]
        pool.used.fetch_and(!bit, Ordering::Relaxed);
    }

    /// Nodes of CPU `cpu` in use (for tests and reports).
    pub(super) fn in_use(cpu: usize) -> u32 {
        NODES.get_for(cpu).used.load(Ordering::Relaxed).count_ones()
    }

    #[cold]
    #[inline(never)]
    fn exhausted() -> ! {
        panic!(
            "ukspin: CPU {} holds or awaits more than {MCS_NODES_PER_CPU} MCS locks at once \
             (MCS_NODES_PER_CPU)",
            ukplat::cpu::this_cpu()
        )
    }

    #[cold]
    #[inline(never)]
    fn foreign_node() -> ! {
        panic!(
            "ukspin: MCS lock released on CPU {} but taken on another CPU \
             (or unlocked without being locked)",
            ukplat::cpu::this_cpu()
        )
    }
}

#[cfg(not(loom))]
impl RawMcsLock {
    /// Acquires the lock with a node of this CPU's pool, waiting in FIFO
    /// order (preemption disabled from here until [`unlock`](Self::unlock)).
    ///
    /// # Panics
    /// When this CPU already holds or awaits [`MCS_NODES_PER_CPU`] MCS
    /// locks.
    #[inline]
    pub fn lock(&self) {
        preempt_off();
        if SINGLE_CPU {
            self.up_lock(ptr::NonNull::dangling().as_ptr());
            return;
        }
        let node = per_cpu::alloc();
        self.acquire(node);
        self.owner.store(ptr::from_ref(node).cast_mut(), Ordering::Relaxed);
    }

    /// Acquires the lock if it is free; never waits. Preemption stays
    /// disabled only on success.
    #[inline]
    pub fn try_lock(&self) -> bool {
        preempt_off();
        let taken = if SINGLE_CPU {
            self.up_try_lock(ptr::NonNull::dangling().as_ptr())
        } else if self.is_locked() {
            false
        } else {
            let node = per_cpu::alloc();
            let taken = self.try_acquire(node);
            if taken {
                self.owner.store(ptr::from_ref(node).cast_mut(), Ordering::Relaxed);
            } else {
                per_cpu::free(node);
            }
            taken
        };
        if !taken {
            preempt_on();
        }
        taken
    }

    /// Releases the lock taken by [`lock`](Self::lock) or
    /// [`try_lock`](Self::try_lock), handing it to the next waiter.
    ///
    /// # Safety
    /// This CPU holds the lock, taken by [`lock`](Self::lock) or
    /// [`try_lock`](Self::try_lock).
    #[inline]
    pub unsafe fn unlock(&self) {
        if SINGLE_CPU {
            self.up_unlock();
        } else {
            let node = self.owner.load(Ordering::Relaxed);
            // SAFETY: the caller holds the lock, taken with `node` from this
            // CPU's pool (recorded in `owner` by that acquisition).
            unsafe { self.release(&*node) };
            per_cpu::free(node);
        }
        preempt_on();
    }

    /// Nodes of CPU `cpu`'s pool in use: MCS locks it holds or awaits
    /// through [`lock`](Self::lock) (always 0 in a one-CPU image, which
    /// needs no nodes).
    pub fn nodes_in_use(cpu: ukplat::cpu::CpuIndex) -> u32 {
        per_cpu::in_use(cpu)
    }
}

crate::sync::forward_raw_mutex!(
    RawMcsLock,
    fair,
    safety = "the MCS queue admits one holder at a time: the tail swap orders acquirers, and each waits until its predecessor clears its node's flag at release (or, with one CPU, the tail is a flag checked and set with preemption disabled and no other CPU)."
);
