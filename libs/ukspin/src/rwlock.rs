//! Reader-writer spinlock with writer preference.

use crate::SINGLE_CPU;
use crate::sync::{AtomicU32, Ordering, Spin, compiler_fence, const_fn, preempt_off, preempt_on};

/// Bit 0: a writer holds the lock.
const WRITER: u32 = 1;
/// Bit 1: a writer waits (new readers outside interrupt handlers hold back).
const WAITING: u32 = 2;
/// Readers count in the bits above: one reader adds this.
const READER: u32 = 4;

/// Reader-writer spinlock: readers share, a writer is alone; writers take
/// precedence over new readers. 4 bytes.
///
/// One 32-bit word: bit 0 "writer holds", bit 1 "writer waits", the rest
/// counts readers.
///
/// * **Read acquire:** one `lock xadd` adding a reader; when a writer holds
///   or waits, the contended path (`rwlock_read_contended`) takes it back
///   and waits. **Read release:** one `lock xadd`.
/// * **Write acquire:** one `lock cmpxchg` 0 → writer; otherwise the
///   contended path (`rwlock_write_contended`) sets "writer waits" and spins
///   until the readers drained. **Write release:** one `lock xadd`.
/// * **Fairness — writer preference.** A waiting writer stops *new* readers,
///   so under a continuous stream of overlapping readers (the load an
///   rwlock exists for) the readers inside drain and the writer gets in: a
///   writer never starves. The price: readers can starve under a continuous
///   stream of writers, and writers among themselves are unordered (like
///   [`RawTasLock`](crate::RawTasLock)). An rwlock pays off for read-mostly
///   data; write-heavy data wants a plain spinlock.
/// * **Readers in interrupt handlers** ignore a *waiting* writer (not a
///   holding one), as Linux's `qrwlock` does: an interrupt that read-locks a
///   lock its CPU already read-holds must not queue behind a writer that
///   waits for that very CPU's read lock. Outside interrupt handlers,
///   taking a read lock twice on one CPU can deadlock against a waiting
///   writer: do not nest read locks of the same lock.
/// * **Memory:** 4 bytes.
///
/// Preemption is disabled while the lock is held, shared or exclusive.
///
/// ```
/// use lock_api::RawRwLock;
/// use ukspin::RawRwSpinLock;
///
/// let raw = RawRwSpinLock::new();
/// raw.lock_shared();
/// assert!(raw.try_lock_shared() && !raw.try_lock_exclusive());
/// // SAFETY: two read locks held by this thread.
/// unsafe { raw.unlock_shared(); raw.unlock_shared() };
/// assert!(raw.try_lock_exclusive());
/// // SAFETY: write-locked just above.
/// unsafe { raw.unlock_exclusive() };
///
/// static ROUTES: ukspin::RwSpinLock<[u32; 2]> = ukspin::RwSpinLock::new([1, 2]);
/// {
///     let (a, b) = (ROUTES.read(), ROUTES.read()); // readers share
///     assert_eq!(a[0] + b[1], 3);
/// }
/// ROUTES.write()[0] = 10;
/// assert_eq!(ROUTES.read()[0], 10);
/// ```
pub struct RawRwSpinLock {
    pub(crate) state: AtomicU32,
}

impl RawRwSpinLock {
    const_fn! {
        /// An unlocked lock.
        pub fn new() -> Self {
            Self { state: AtomicU32::new(0) }
        }
    }

    /// Acquires a shared (read) lock, waiting while a writer holds or —
    /// outside interrupt handlers — waits for the lock.
    #[inline]
    pub fn lock_shared(&self) {
        preempt_off();
        if SINGLE_CPU {
            self.up_lock_shared();
            return;
        }
        let before = self.state.fetch_add(READER, Ordering::Acquire);
        if before & (WRITER | WAITING) != 0 {
            rwlock_read_contended(&self.state, before);
        }
    }

    /// Acquires a shared lock if no writer holds or waits; never waits.
    /// Preemption stays disabled only on success.
    #[inline]
    pub fn try_lock_shared(&self) -> bool {
        preempt_off();
        let taken =
            if SINGLE_CPU { self.up_try_lock_shared() } else { try_add_reader(&self.state, reader_bar()) };
        if !taken {
            preempt_on();
        }
        taken
    }

    /// Releases a shared lock.
    ///
    /// # Safety
    /// This CPU holds a shared lock.
    #[inline]
    pub unsafe fn unlock_shared(&self) {
        if SINGLE_CPU {
            compiler_fence(Ordering::Release);
            let state = self.state.load(Ordering::Relaxed);
            self.state.store(state - READER, Ordering::Relaxed);
        } else {
            self.state.fetch_sub(READER, Ordering::Release);
        }
        preempt_on();
    }

    /// Acquires the exclusive (write) lock, waiting until no reader or
    /// writer holds it.
    #[inline]
    pub fn lock_exclusive(&self) {
        preempt_off();
        if SINGLE_CPU {
            self.up_lock_exclusive();
            return;
        }
        if self.state.compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed).is_err() {
            rwlock_write_contended(&self.state);
        }
    }

    /// Acquires the exclusive lock if nobody holds the lock; never waits.
    /// Preemption stays disabled only on success.
    #[inline]
    pub fn try_lock_exclusive(&self) -> bool {
        preempt_off();
        let taken = if SINGLE_CPU {
            self.up_try_lock_exclusive()
        } else {
            let state = self.state.load(Ordering::Relaxed);
            state & !WAITING == 0
                && self.state.compare_exchange(state, WRITER, Ordering::Acquire, Ordering::Relaxed).is_ok()
        };
        if !taken {
            preempt_on();
        }
        taken
    }

    /// Releases the exclusive lock.
    ///
    /// # Safety
    /// This CPU holds the exclusive lock.
    #[inline]
    pub unsafe fn unlock_exclusive(&self) {
        if SINGLE_CPU {
            compiler_fence(Ordering::Release);
            self.state.store(0, Ordering::Relaxed);
        } else {
            // An RMW: readers' fast paths and waiting writers change the
            // other bits concurrently.
            self.state.fetch_sub(WRITER, Ordering::Release);
        }
        preempt_on();
    }

    /// Turns the held exclusive lock into a shared one, atomically (no
    /// writer can get in between).
    ///
    /// # Safety
    /// This CPU holds the exclusive lock.
    #[inline]
    pub unsafe fn downgrade(&self) {
        if SINGLE_CPU {
            compiler_fence(Ordering::Release);
            self.state.store(READER, Ordering::Relaxed);
        } else {
            // WRITER (bit 0) + (READER - WRITER) = READER: one RMW clears
            // the writer bit and adds a reader, leaving WAITING as it is.
            self.state.fetch_add(READER - WRITER, Ordering::Release);
        }
    }

    /// Whether a reader or a writer holds the lock (a snapshot; a reader
    /// backing off from the fast path may show for an instant).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & !WAITING != 0
    }

    /// Whether a writer holds the lock (a snapshot).
    #[inline]
    pub fn is_locked_exclusive(&self) -> bool {
        self.state.load(Ordering::Relaxed) & WRITER != 0
    }

    /// Readers holding the lock (a snapshot).
    #[inline]
    pub fn readers(&self) -> u32 {
        self.state.load(Ordering::Relaxed) / READER
    }

    // One CPU: the word is changed with plain loads and stores (see the
    // crate documentation, "One CPU"). An interrupt handler that runs
    // between a load and its store releases what it took before it returns,
    // so the store writes a still-current value.

    #[inline(always)]
    pub(crate) fn up_lock_shared(&self) {
        if !self.up_try_lock_shared() {
            crate::sync::self_deadlock(
                "reader-writer (read while write-held)",
                core::ptr::from_ref(self).cast(),
            );
        }
    }

    #[inline(always)]
    pub(crate) fn up_try_lock_shared(&self) -> bool {
        let state = self.state.load(Ordering::Relaxed);
        if state & WRITER != 0 {
            return false;
        }
        self.state.store(state + READER, Ordering::Relaxed);
        compiler_fence(Ordering::Acquire);
        true
    }

    #[inline(always)]
    pub(crate) fn up_lock_exclusive(&self) {
        if !self.up_try_lock_exclusive() {
            crate::sync::self_deadlock("reader-writer (write while held)", core::ptr::from_ref(self).cast());
        }
    }

    #[inline(always)]
    pub(crate) fn up_try_lock_exclusive(&self) -> bool {
        if self.state.load(Ordering::Relaxed) != 0 {
            return false;
        }
        self.state.store(WRITER, Ordering::Relaxed);
        compiler_fence(Ordering::Acquire);
        true
    }
}

impl Default for RawRwSpinLock {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for RawRwSpinLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("RawRwSpinLock")
            .field("writer", &(state & WRITER != 0))
            .field("writer_waiting", &(state & WAITING != 0))
            .field("readers", &(state / READER))
            .finish()
    }
}

/// The bits that keep a new reader out: a holding writer, and a waiting one
/// unless this CPU is in an interrupt handler (see [`RawRwSpinLock`]).
#[inline(always)]
fn reader_bar() -> u32 {
    #[cfg(not(loom))]
    if ukplat::cpu::in_interrupt() {
        return WRITER;
    }
    WRITER | WAITING
}

/// Adds a reader unless a bit of `bar` is set (a CAS loop: other readers'
/// changes are retried, not reported as failure).
#[inline(always)]
fn try_add_reader(state: &AtomicU32, bar: u32) -> bool {
    let mut seen = state.load(Ordering::Relaxed);
    loop {
        if seen & bar != 0 {
            return false;
        }
        match state.compare_exchange_weak(seen, seen + READER, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => seen = now,
        }
    }
}

/// The contended path of [`RawRwSpinLock::lock_shared`]: the fast path's
/// `fetch_add` found the word `before` with a writer bit set. Out of line so
/// the fast path stays small (and visible in the symbol table).
#[inline(never)]
#[cold]
fn rwlock_read_contended(state: &AtomicU32, before: u32) {
    let bar = reader_bar();
    if before & bar == 0 {
        // Only a waiting writer, and we are in an interrupt handler: the
        // reader we added stands.
        return;
    }
    // Take the optimistic reader back, then wait with loads only (no RMW
    // traffic that would keep the count from draining for the writer).
    state.fetch_sub(READER, Ordering::Relaxed);
    let mut spin = Spin::new();
    loop {
        while state.load(Ordering::Relaxed) & bar != 0 {
            spin.wait();
        }
        if try_add_reader(state, bar) {
            return;
        }
    }
}

/// The contended path of [`RawRwSpinLock::lock_exclusive`]: announce the
/// writer, wait for the readers and any writer to leave.
#[inline(never)]
#[cold]
fn rwlock_write_contended(state: &AtomicU32) {
    let mut spin = Spin::new();
    loop {
        let seen = state.load(Ordering::Relaxed);
        if seen & !WAITING == 0 {
            // Free (perhaps with our own or another writer's WAITING bit).
            // Taking it clears WAITING; writers still waiting set it again.
            if state.compare_exchange_weak(seen, WRITER, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return;
            }
            continue;
        }
        if seen & WAITING == 0 {
            state.fetch_or(WAITING, Ordering::Relaxed);
        }
        spin.wait();
    }
}

#[cfg(not(loom))]
// SAFETY: readers enter only while the writer bit is clear and add
// themselves atomically; a writer enters only by a CAS from a word with no
// writer and no readers: a writer excludes everyone, readers only writers.
unsafe impl lock_api::RawRwLock for RawRwSpinLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self::new();
    // The preemption counter is per CPU: guards must be dropped where they
    // were created.
    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    fn lock_shared(&self) {
        RawRwSpinLock::lock_shared(self);
    }

    #[inline]
    fn try_lock_shared(&self) -> bool {
        RawRwSpinLock::try_lock_shared(self)
    }

    #[inline]
    unsafe fn unlock_shared(&self) {
        // SAFETY: forwarded caller contract.
        unsafe { RawRwSpinLock::unlock_shared(self) }
    }

    #[inline]
    fn lock_exclusive(&self) {
        RawRwSpinLock::lock_exclusive(self);
    }

    #[inline]
    fn try_lock_exclusive(&self) -> bool {
        RawRwSpinLock::try_lock_exclusive(self)
    }

    #[inline]
    unsafe fn unlock_exclusive(&self) {
        // SAFETY: forwarded caller contract.
        unsafe { RawRwSpinLock::unlock_exclusive(self) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        RawRwSpinLock::is_locked(self)
    }

    #[inline]
    fn is_locked_exclusive(&self) -> bool {
        RawRwSpinLock::is_locked_exclusive(self)
    }
}

#[cfg(not(loom))]
// SAFETY: `downgrade` turns the writer bit into one reader in one atomic
// step; no writer can enter in between.
unsafe impl lock_api::RawRwLockDowngrade for RawRwSpinLock {
    #[inline]
    unsafe fn downgrade(&self) {
        // SAFETY: forwarded caller contract.
        unsafe { RawRwSpinLock::downgrade(self) }
    }
}
