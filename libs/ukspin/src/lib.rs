//! # ukspin — spinlocks
//!
//! What it offers: the kernel's busy-waiting locks, as raw locks behind the
//! standard [`lock_api`] interface, the kind chosen by configuration.
//!
//! | kind (`ukspin.kind`) | raw lock | fairness | uncontended acquire + release | under contention | bytes per lock |
//! |---|---|---|---|---|---|
//! | `tas` | [`RawTasLock`] | none: the fastest CAS after a release wins | 1 atomic RMW (`lock cmpxchg`) + a plain store | waiters spin reading the shared byte and retry with exponential backoff (1 → 1024 `pause`s); every release starts a race for the line | 1 |
//! | `ticket` (default) | [`RawTicketLock`] | FIFO | 1 atomic RMW (`lock xadd`) + a plain store | waiters spin on one shared `serving` counter: each hand-off sends the line to every waiter (O(n)); proportional backoff thins the reads | 8 |
//! | `mcs` | [`RawMcsLock`] | FIFO | 2 atomic RMWs (`xchg`, `lock cmpxchg`) + per-CPU node bookkeeping (plain loads/stores) | each waiter spins on its own queue node: O(1) line transfers per hand-off, whatever the number of waiters | 16, plus 8 × 16-byte nodes per CPU in all |
//! | — | [`RawRwSpinLock`] | writer preference (a waiting writer stops new readers) | read: 2 RMWs; write: `lock cmpxchg` + 1 RMW | readers share; writers spin until readers drain | 4 |
//!
//! Every acquisition (shared or exclusive) also raises this CPU's
//! preemption counter ([`ukplat::cpu::preempt_disable`], a non-atomic `add`
//! on `gs:`) until its release, as Linux's `spin_lock` does: a preemptive
//! scheduler must not switch away from a thread holding a spinlock, or
//! other CPUs would spin for a whole time slice. The raw locks also work
//! without lock_api (inherent `lock`/`try_lock`/`unlock`).
//!
//! | type | what |
//! |---|---|
//! | [`SpinLock<T>`] (+ [`SpinLockGuard`], [`MappedSpinLockGuard`]) | `lock_api::Mutex` over [`RawSpinLock`], the configured kind |
//! | [`TasLock<T>`], [`TicketLock<T>`], [`McsLock<T>`] | a mutex of one kind, whatever the configuration |
//! | [`SpinLockIrq<T>`] (+ guards) | [`SpinLock`] taken with interrupts disabled ([`IrqSave`]) |
//! | [`RwSpinLock<T>`] (+ guards), [`RwSpinLockIrq<T>`] | `lock_api::RwLock` over [`RawRwSpinLock`], plain and irqsave |
//! | [`IrqSave<R>`] | wraps any raw mutex or rwlock: Linux's `spin_lock_irqsave` |
//! | [`McsNode`], [`RawMcsLock::lock_with`] | MCS with the caller's queue node |
//! | [`irq`] | the nested interrupt disabling behind [`IrqSave`] |
//!
//! All are `const`-constructible (usable in `static`s) and `no_std`; the
//! guards are `!Send` (the preemption counter and interrupt state belong to
//! the CPU that took the lock).
//!
//! ```
//! use ukspin::{SpinLock, RwSpinLock};
//!
//! static COUNTER: SpinLock<u64> = SpinLock::new(0);
//! *COUNTER.lock() += 1;
//!
//! // lock_api's guards map to a part of the data:
//! static PAIR: SpinLock<(u32, u32)> = SpinLock::new((0, 0));
//! let mut second = ukspin::SpinLockGuard::map(PAIR.lock(), |pair| &mut pair.1);
//! *second = 5;
//! drop(second);
//! assert_eq!(*PAIR.lock(), (0, 5));
//!
//! static CONFIG: RwSpinLock<[u8; 4]> = RwSpinLock::new(*b"ukrs");
//! assert_eq!(&*CONFIG.read(), b"ukrs");
//! ```
//!
//! ## Choosing the kind at build time
//!
//! `ukspin.kind` in the app's TOML (or `--set ukspin.kind=mcs`)
//! picks the algorithm behind [`RawSpinLock`] — and so behind every
//! [`SpinLock`] and [`SpinLockIrq`] in the image — with no code change. The
//! choice is resolved by the type system, at compile time: the configured
//! `ukconfig::ukspin::KIND` is turned into a number by a `const fn`
//! ([`select::index`]), which is the const-generic argument of a selector
//! type whose trait implementation names the raw lock:
//!
//! ```text
//! pub type RawSpinLock =
//!     <select::Kind<{ select::index(ukconfig::ukspin::KIND) }> as select::SelectRaw>::Raw;
//! ```
//!
//! So only the chosen algorithm's code is instantiated and linked. Each
//! kind's contended path is an out-of-line function named after it —
//! `tas_lock_contended`, `ticket_lock_contended`,
//! `mcs_lock_contended`/`mcs_unlock_contended` (and
//! `rwlock_read_contended`/`rwlock_write_contended` for the rwlock) — so the
//! image's symbol table shows which algorithm it contains (e.g.
//! `nm image | grep _contended`), in a multi-CPU image: with one CPU no
//! algorithm is linked at all (below). An image that also names other kinds
//! explicitly ([`TicketLock`], [`McsLock`], ...; ukspin's own in-guest tests
//! do) links their paths too; [`select::configured_name`] links exactly one
//! marker function, `ukspin_configured_kind_is_{tas,ticket,mcs}`, named
//! after the configured kind.
//!
//! ## One CPU
//!
//! Built for the guest with `platform.cpus = 1` ([`SINGLE_CPU`]), there is
//! no other CPU to exclude: a spinlock only has to keep this CPU's other
//! threads out (preemption disabled) and, for [`IrqSave`], its interrupt
//! handlers (interrupts disabled). Every lock then compiles down to that
//! control plus a *held* flag kept in the lock word with plain loads and
//! stores — no atomic read-modify-write, no spinning. The flag costs two
//! `mov`s and catches the one bug spinning would have turned into a hang,
//! and skipping the lock would have turned into silent corruption: taking a
//! lock the same CPU already holds (an interrupt handler taking a non-irqsave
//! lock that the code it interrupted holds, or a recursive call). With one
//! CPU nobody else can ever release it, so it panics at once:
//! `ukspin: ticket spinlock at 0x… taken again while this CPU holds it
//! (self-deadlock: with one CPU nobody else can release it)`. `try_lock` of
//! a held lock returns `false`, as usual. Host builds (tests, which are
//! multi-threaded) always use the real algorithms.
//!
//! ## Rules
//!
//! * Do not sleep, block or yield while holding a spinlock.
//! * Data shared with interrupt handlers: [`SpinLockIrq`] / [`IrqSave`]
//!   (see there); otherwise the plain locks.
//! * Release on the CPU that acquired (guards are `!Send`).
//! * A CPU may hold several locks at once (MCS: up to
//!   [`MCS_NODES_PER_CPU`] held or awaited, counting interrupt handlers);
//!   take them in a consistent order.
//! * No recursive locking; for [`RwSpinLock`] not even two read locks of
//!   the same lock (a waiting writer would be stuck between them) —
//!   except in interrupt handlers, whose readers pass a waiting writer.
//!
//! **Needs:** `ukplat` (preemption counter, per-CPU data, CPU index,
//! interrupt nesting), `ukarch` (interrupt flag, `pause`), `ukconfig`. In
//! the guest the locks use the per-CPU header (GS), so a CPU may take them
//! once the platform ran `ukplat::cpu::init_this_cpu` on it — before any
//! library code, by the platform's contract.
//!
//! **Config options:** `kind` (`tas` | `ticket` | `mcs`, default
//! `ticket`): the kind behind [`RawSpinLock`]. The platform's `cpus` option
//! also matters (one CPU: see above).
//!
//! **Why these crates:** [`lock_api`] is the interface `spin` and
//! `parking_lot` implement: writing only the raw lock (a few unsafe
//! methods) gets the whole safe API — `Mutex<R, T>` / `RwLock<R, T>`,
//! RAII guards, mapped guards, `try_lock`, `get_mut`, `into_inner` — and any
//! code generic over `R: RawMutex` (a library that wants "some lock") works
//! with every kind here. 0.4 is what the ecosystem uses. [`loom`] (only in
//! `cfg(loom)` builds, `RUSTFLAGS="--cfg loom" cargo test -p ukspin --release
//! --test loom`) model-checks the real raw locks — the crate's own code,
//! with loom's atomics swapped in (`sync.rs`) — in small tests of two or
//! three threads: [`RawTicketLock`] (`lock`, `try_lock`, `unlock`),
//! [`RawMcsLock`] with explicit nodes (`lock_with`, `try_lock_with`,
//! `unlock_with`, a node reused), [`RawTasLock`] (`lock`, `unlock`) and
//! [`RawRwSpinLock`] (`lock_exclusive`, `lock_shared`, `try_lock_shared`,
//! the unlocks). It explores every interleaving up to a bound of
//! preemptions (`LOOM_MAX_PREEMPTIONS`, 3 by default) and every outcome the
//! C++/Rust memory model allows for the chosen orderings, catching ordering
//! bugs that x86's strong memory model would hide in testing; a spin loop
//! stops branching after 4 fruitless polls (see `sync.rs`). Not in the
//! models (loom builds leave them out, or they are not exercised): the
//! per-CPU MCS node pool (`RawMcsLock::lock`), one-CPU mode, the
//! preemption counter, [`IrqSave`], the `lock_api` wrappers, TAS
//! `try_lock`, and the rwlock's `try_lock_exclusive` and `downgrade`;
//! those are covered by the host tests (real threads, not exhaustive) and
//! the in-guest tests.
//!
//! **Layering:** `ukarch` → `ukplat` (per-CPU data, preemption counter) →
//! `ukspin` (these spinlocks) → the libraries that lock with them (`apic`'s
//! I/O APIC registers, `ukalloc`'s heap, `ukconsole`'s output and input,
//! `ukvmem`) → `uksched` (threads, wait queues) → `uklock` (sleeping locks).
//! Every busy-waiting lock in the libraries is one of these, so `kind`
//! applies to all of them; `ukarch` and `ukplat`, below, hold no lock
//! (`ukplat::once::Once` cells are one-time initialisation, not locks).
//! Sleeping locks block the thread on a scheduler wait queue; the
//! scheduler's run and wait queues are protected by these spinlocks. One
//! crate holding both would depend on the scheduler and the scheduler on it
//! — a cycle Cargo rejects — so the busy-waiting locks live here, below the
//! scheduler, and the sleeping ones in `uklock`, above it. (Until the
//! scheduler existed this crate was called `uklock`.)
//!
//! [`loom`]: https://docs.rs/loom
#![cfg_attr(not(test), no_std)]

#[cfg(all(feature = "uktest", not(loom)))]
mod guest_tests;
pub mod irq;
#[cfg(not(loom))]
mod irqsave;
mod mcs;
mod rwlock;
mod sync;
mod tas;
#[cfg(all(test, not(loom)))]
mod tests;
mod ticket;

#[cfg(not(loom))]
pub use irqsave::IrqSave;
pub use mcs::{MCS_NODES_PER_CPU, McsNode, RawMcsLock};
pub use rwlock::RawRwSpinLock;
pub use tas::{RawTasLock, TAS_BACKOFF_MAX, TAS_BACKOFF_MIN};
pub use ticket::{RawTicketLock, TICKET_BACKOFF_MAX, TICKET_PAUSES_PER_WAITER};

/// The configured kind (`ukspin.kind`), the one behind [`RawSpinLock`].
pub const KIND: ukconfig::ukspin::Kind = ukconfig::ukspin::KIND;

/// Whether the locks run in one-CPU mode: built for the guest
/// (`target_os = "none"`) with `platform.cpus = 1`. Then they reduce to
/// preemption/interrupt control and a held flag (see the crate
/// documentation, "One CPU"). Always `false` on the host.
pub const SINGLE_CPU: bool = cfg!(all(target_os = "none", not(loom))) && ukplat::cpu::CONFIGURED_CPUS == 1;

/// Compile-time selection of the raw lock named by the configuration.
pub mod select {
    use ukconfig::ukspin::Kind as Spinlock;

    /// A kind as a type: `Kind<{ index(kind) }>`.
    #[derive(Debug)]
    pub struct Kind<const K: u8>;

    /// Maps a [`Kind`] to its raw lock.
    pub trait SelectRaw {
        /// The raw lock of this kind.
        type Raw;
        /// The kind's configuration name, returned by an out-of-line
        /// function named after it (see [`configured_name`]; `black_box`
        /// keeps the optimiser from folding the call away).
        fn name() -> &'static str;
    }

    impl SelectRaw for Kind<0> {
        type Raw = crate::RawTasLock;
        fn name() -> &'static str {
            ukspin_configured_kind_is_tas()
        }
    }

    impl SelectRaw for Kind<1> {
        type Raw = crate::RawTicketLock;
        fn name() -> &'static str {
            ukspin_configured_kind_is_ticket()
        }
    }

    impl SelectRaw for Kind<2> {
        type Raw = crate::RawMcsLock;
        fn name() -> &'static str {
            ukspin_configured_kind_is_mcs()
        }
    }

    #[inline(never)]
    fn ukspin_configured_kind_is_tas() -> &'static str {
        core::hint::black_box(crate::RawTasLock::NAME)
    }

    #[inline(never)]
    fn ukspin_configured_kind_is_ticket() -> &'static str {
        core::hint::black_box(crate::RawTicketLock::NAME)
    }

    #[inline(never)]
    fn ukspin_configured_kind_is_mcs() -> &'static str {
        core::hint::black_box(crate::RawMcsLock::NAME)
    }

    /// The configured kind's name, through the selector: the image links
    /// exactly one of the functions `ukspin_configured_kind_is_{tas,
    /// ticket,mcs}` — a symbol-table marker of the selection even in an
    /// image that also uses the other kinds explicitly (as ukspin's own
    /// in-guest tests do), where all `*_contended` paths are present.
    ///
    /// ```
    /// assert_eq!(ukspin::select::configured_name(), ukspin::KIND.as_str());
    /// ```
    pub fn configured_name() -> &'static str {
        <Kind<{ index(ukconfig::ukspin::KIND) }> as SelectRaw>::name()
    }

    /// The selector number of a kind (explicit, so reordering the choices
    /// in Kconfig.toml cannot change the mapping).
    pub const fn index(kind: Spinlock) -> u8 {
        match kind {
            Spinlock::Tas => 0,
            Spinlock::Ticket => 1,
            Spinlock::Mcs => 2,
        }
    }

    /// The configuration name of a raw lock type, for reports.
    ///
    /// ```
    /// assert_eq!(ukspin::select::name_of::<ukspin::RawMcsLock>(), Some("mcs"));
    /// assert_eq!(ukspin::select::name_of::<ukspin::RawSpinLock>(), Some(ukspin::KIND.as_str()));
    /// ```
    pub fn name_of<R: 'static>() -> Option<&'static str> {
        use core::any::TypeId;
        let id = TypeId::of::<R>();
        [
            (TypeId::of::<crate::RawTasLock>(), crate::RawTasLock::NAME),
            (TypeId::of::<crate::RawTicketLock>(), crate::RawTicketLock::NAME),
            (TypeId::of::<crate::RawMcsLock>(), crate::RawMcsLock::NAME),
        ]
        .into_iter()
        .find_map(|(kind, name)| (kind == id).then_some(name))
    }
}

/// The raw spinlock of the configured kind (`ukspin.kind`):
/// [`RawTasLock`], [`RawTicketLock`] or [`RawMcsLock`], resolved at compile
/// time.
///
/// ```
/// // Host builds see the declared default, `ticket`, unless built with an
/// // app's configuration.
/// let expected = match ukspin::KIND {
///     ukconfig::ukspin::Kind::Tas => "ukspin::tas::RawTasLock",
///     ukconfig::ukspin::Kind::Ticket => "ukspin::ticket::RawTicketLock",
///     ukconfig::ukspin::Kind::Mcs => "ukspin::mcs::RawMcsLock",
/// };
/// assert_eq!(core::any::type_name::<ukspin::RawSpinLock>(), expected);
/// ```
pub type RawSpinLock = <select::Kind<{ select::index(ukconfig::ukspin::KIND) }> as select::SelectRaw>::Raw;

/// A mutex over the configured spinlock kind.
///
/// ```
/// static TOTAL: ukspin::SpinLock<u64> = ukspin::SpinLock::new(0);
/// {
///     let mut total = TOTAL.lock();
///     *total += 2;
///     assert!(TOTAL.try_lock().is_none(), "held");
/// }
/// assert_eq!(TOTAL.try_lock().map(|t| *t), Some(2));
/// ```
#[cfg(not(loom))]
pub type SpinLock<T> = lock_api::Mutex<RawSpinLock, T>;
/// The guard of a [`SpinLock`].
#[cfg(not(loom))]
pub type SpinLockGuard<'a, T> = lock_api::MutexGuard<'a, RawSpinLock, T>;
/// A [`SpinLockGuard`] mapped to part of the data.
#[cfg(not(loom))]
pub type MappedSpinLockGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawSpinLock, T>;

/// A mutex over [`RawTasLock`], whatever the configuration.
#[cfg(not(loom))]
pub type TasLock<T> = lock_api::Mutex<RawTasLock, T>;
/// A mutex over [`RawTicketLock`], whatever the configuration.
#[cfg(not(loom))]
pub type TicketLock<T> = lock_api::Mutex<RawTicketLock, T>;
/// A mutex over [`RawMcsLock`], whatever the configuration.
#[cfg(not(loom))]
pub type McsLock<T> = lock_api::Mutex<RawMcsLock, T>;

/// The configured spinlock, taken with interrupts disabled.
#[cfg(not(loom))]
pub type RawSpinLockIrq = IrqSave<RawSpinLock>;
/// A mutex over the configured spinlock, taken with interrupts disabled
/// (Linux's `spin_lock_irqsave`): for data shared with interrupt handlers.
///
/// ```
/// static EVENTS: ukspin::SpinLockIrq<u32> = ukspin::SpinLockIrq::new(0);
/// *EVENTS.lock() += 1; // interrupts off while the guard lives
/// assert!(ukspin::irq::enabled());
/// ```
#[cfg(not(loom))]
pub type SpinLockIrq<T> = lock_api::Mutex<RawSpinLockIrq, T>;
/// The guard of a [`SpinLockIrq`].
#[cfg(not(loom))]
pub type SpinLockIrqGuard<'a, T> = lock_api::MutexGuard<'a, RawSpinLockIrq, T>;
/// A [`SpinLockIrqGuard`] mapped to part of the data.
#[cfg(not(loom))]
pub type MappedSpinLockIrqGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawSpinLockIrq, T>;

/// A reader-writer spinlock ([`RawRwSpinLock`]).
///
/// ```
/// static TABLE: ukspin::RwSpinLock<[u16; 4]> = ukspin::RwSpinLock::new([0; 4]);
/// TABLE.write()[1] = 9;
/// let reader = TABLE.read();
/// assert!(TABLE.try_write().is_none(), "a reader holds it");
/// assert_eq!(TABLE.try_read().map(|t| t[1]), Some(9), "readers share");
/// drop(reader);
/// ```
#[cfg(not(loom))]
pub type RwSpinLock<T> = lock_api::RwLock<RawRwSpinLock, T>;
/// A read guard of a [`RwSpinLock`].
#[cfg(not(loom))]
pub type RwSpinLockReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, RawRwSpinLock, T>;
/// The write guard of a [`RwSpinLock`].
#[cfg(not(loom))]
pub type RwSpinLockWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, RawRwSpinLock, T>;
/// A [`RwSpinLockReadGuard`] mapped to part of the data.
#[cfg(not(loom))]
pub type MappedRwSpinLockReadGuard<'a, T> = lock_api::MappedRwLockReadGuard<'a, RawRwSpinLock, T>;
/// A [`RwSpinLockWriteGuard`] mapped to part of the data.
#[cfg(not(loom))]
pub type MappedRwSpinLockWriteGuard<'a, T> = lock_api::MappedRwLockWriteGuard<'a, RawRwSpinLock, T>;

/// The reader-writer spinlock, taken with interrupts disabled.
#[cfg(not(loom))]
pub type RawRwSpinLockIrq = IrqSave<RawRwSpinLock>;
/// A reader-writer spinlock taken with interrupts disabled, shared or
/// exclusive (Linux's `read_lock_irqsave`/`write_lock_irqsave`).
///
/// ```
/// static STATS: ukspin::RwSpinLockIrq<u64> = ukspin::RwSpinLockIrq::new(0);
/// *STATS.write() += 1;
/// let (a, b) = (STATS.read(), STATS.read());
/// assert!(!ukspin::irq::enabled());
/// drop((a, b));
/// assert!(ukspin::irq::enabled());
/// ```
#[cfg(not(loom))]
pub type RwSpinLockIrq<T> = lock_api::RwLock<RawRwSpinLockIrq, T>;
/// A read guard of a [`RwSpinLockIrq`].
#[cfg(not(loom))]
pub type RwSpinLockIrqReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, RawRwSpinLockIrq, T>;
/// The write guard of a [`RwSpinLockIrq`].
#[cfg(not(loom))]
pub type RwSpinLockIrqWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, RawRwSpinLockIrq, T>;
