//! loom model checks of the lock algorithms.
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p ukspin --release --test loom
//! ```
//!
//! The models run the crate's real raw locks (`src/tas.rs`, `ticket.rs`,
//! `mcs.rs`, `rwlock.rs`), built with loom's atomics in place of
//! `core`'s (`src/sync.rs`); nothing here re-implements them. What they
//! exercise:
//!
//! | lock | operations | threads |
//! |---|---|---|
//! | `RawTicketLock` | `lock`, `try_lock`, `unlock` | 2 and 3 |
//! | `RawMcsLock` | `lock_with`, `try_lock_with`, `unlock_with` (explicit nodes; one reused) | 2 and 3 |
//! | `RawTasLock` | `lock`, `unlock` | 2 |
//! | `RawRwSpinLock` | `lock_exclusive`, `lock_shared`, `try_lock_shared`, `unlock_*` | 2 writers; 1 writer and 2 readers |
//!
//! Not modelled: the per-CPU MCS node pool (`RawMcsLock::lock`, which loom
//! builds leave out), the preemption counter and one-CPU mode (compiled
//! out under loom), `IrqSave`, the `lock_api` wrappers, TAS `try_lock`, and
//! the rwlock's `try_lock_exclusive` and `downgrade`.
//!
//! loom runs each model under every thread interleaving up to a bound on
//! preemptions (`LOOM_MAX_PREEMPTIONS`, 3 when unset) and every value the
//! memory model lets each atomic load return for the orderings used, so a
//! missing Acquire/Release shows up here even though x86 would hide it. A
//! spin loop stops branching after `LOOM_POLLS` (4) fruitless polls and runs
//! on deterministically (`src/sync.rs` explains why that loses no outcome).
//! Mutual exclusion is checked by `loom::cell::UnsafeCell`, which fails the
//! model on any two unsynchronised accesses (at least one a write), and by
//! the final counts.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use ukspin::{McsNode, RawMcsLock, RawRwSpinLock, RawTasLock, RawTicketLock};

/// A model builder bounded to `LOOM_MAX_PREEMPTIONS`, or 3.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// A lock and the counter it protects.
struct Guarded<L> {
    lock: L,
    count: UnsafeCell<u32>,
}

// SAFETY: `count` is only touched under `lock` (which loom verifies).
unsafe impl<L: Sync> Sync for Guarded<L> {}

impl<L> Guarded<L> {
    fn new(lock: L) -> Arc<Self> {
        Arc::new(Self { lock, count: UnsafeCell::new(0) })
    }

    /// The critical section: a read-modify-write loom checks for races.
    fn bump(&self) {
        // SAFETY: called with `lock` held.
        self.count.with_mut(|n| unsafe { *n += 1 });
    }

    fn count(&self) -> u32 {
        // SAFETY: all threads joined.
        self.count.with(|n| unsafe { *n })
    }
}

/// Runs `body` on `threads` threads (the model's main thread being one of
/// them) and returns the joined state.
fn run<L: Send + Sync + 'static>(shared: &Arc<Guarded<L>>, threads: usize, body: fn(&Guarded<L>)) {
    let handles: Vec<_> = (1..threads)
        .map(|_| {
            let shared = shared.clone();
            thread::spawn(move || body(&shared))
        })
        .collect();
    body(shared);
    for h in handles {
        h.join().unwrap();
    }
}

// ---------------------------------------------------------------------------
// Ticket

fn ticket_section(g: &Guarded<RawTicketLock>) {
    g.lock.lock();
    g.bump();
    // SAFETY: held by this thread.
    unsafe { g.lock.unlock() };
}

#[test]
fn ticket_two_threads() {
    model(|| {
        let g = Guarded::new(RawTicketLock::new());
        run(&g, 2, ticket_section);
        assert_eq!(g.count(), 2);
        assert!(!g.lock.is_locked());
    });
}

#[test]
fn ticket_three_threads() {
    model(|| {
        let g = Guarded::new(RawTicketLock::new());
        run(&g, 3, ticket_section);
        assert_eq!(g.count(), 3);
        assert!(!g.lock.is_locked());
    });
}

#[test]
fn ticket_try_lock_against_lock() {
    model(|| {
        let g = Guarded::new(RawTicketLock::new());
        run(&g, 2, |g| {
            if g.lock.try_lock() {
                g.bump();
                // SAFETY: held by this thread.
                unsafe { g.lock.unlock() };
            } else {
                ticket_section(g);
            }
        });
        assert_eq!(g.count(), 2);
        assert!(!g.lock.is_locked());
    });
}

// ---------------------------------------------------------------------------
// MCS, explicit nodes

fn mcs_section(g: &Guarded<RawMcsLock>) {
    let node = McsNode::new();
    // SAFETY: `node` lives on this thread's stack until after `unlock_with`
    // and queues on nothing else.
    unsafe {
        g.lock.lock_with(&node);
        g.bump();
        g.lock.unlock_with(&node);
    }
}

#[test]
fn mcs_two_threads_hand_off() {
    model(|| {
        let g = Guarded::new(RawMcsLock::new());
        run(&g, 2, mcs_section);
        assert_eq!(g.count(), 2);
        assert!(!g.lock.is_locked());
    });
}

#[test]
fn mcs_three_threads_queue() {
    model(|| {
        let g = Guarded::new(RawMcsLock::new());
        run(&g, 3, mcs_section);
        assert_eq!(g.count(), 3);
        assert!(!g.lock.is_locked());
    });
}

#[test]
fn mcs_three_threads_one_trying() {
    model(|| {
        let g = Guarded::new(RawMcsLock::new());
        let trier = {
            let g = g.clone();
            thread::spawn(move || {
                let node = McsNode::new();
                // SAFETY: as in `mcs_section`.
                unsafe {
                    if g.lock.try_lock_with(&node) {
                        g.bump();
                        g.lock.unlock_with(&node);
                    }
                }
            })
        };
        run(&g, 2, mcs_section);
        trier.join().unwrap();
        assert!((2..=3).contains(&g.count()));
        assert!(!g.lock.is_locked());
    });
}

#[test]
fn mcs_node_reused_for_a_second_acquisition() {
    // A node may be reused once its release returned, even while the
    // successor it handed over to is still inside.
    model(|| {
        let g = Guarded::new(RawMcsLock::new());
        run(&g, 2, |g| {
            let node = McsNode::new();
            for _ in 0..2 {
                // SAFETY: `node` outlives both critical sections, used by
                // one acquisition at a time.
                unsafe {
                    g.lock.lock_with(&node);
                    g.bump();
                    g.lock.unlock_with(&node);
                }
            }
        });
        assert_eq!(g.count(), 4);
    });
}

#[test]
fn mcs_try_lock_against_lock() {
    model(|| {
        let g = Guarded::new(RawMcsLock::new());
        run(&g, 2, |g| {
            let node = McsNode::new();
            // SAFETY: as in `mcs_section`.
            unsafe {
                if g.lock.try_lock_with(&node) {
                    g.bump();
                    g.lock.unlock_with(&node);
                } else {
                    mcs_section(g);
                }
            }
        });
        assert_eq!(g.count(), 2);
        assert!(!g.lock.is_locked());
    });
}

// ---------------------------------------------------------------------------
// TAS

#[test]
fn tas_two_threads() {
    model(|| {
        let g = Guarded::new(RawTasLock::new());
        run(&g, 2, |g| {
            g.lock.lock();
            g.bump();
            // SAFETY: held by this thread.
            unsafe { g.lock.unlock() };
        });
        assert_eq!(g.count(), 2);
        assert!(!g.lock.is_locked());
    });
}

// ---------------------------------------------------------------------------
// Reader-writer

/// Two fields the writer sets one after the other; readers must see them
/// equal.
struct Pair {
    lock: RawRwSpinLock,
    a: UnsafeCell<u32>,
    b: UnsafeCell<u32>,
}

// SAFETY: `a`, `b` are only touched under `lock` (which loom verifies).
unsafe impl Sync for Pair {}

#[test]
fn rwlock_writer_and_readers() {
    model(|| {
        let p = Arc::new(Pair { lock: RawRwSpinLock::new(), a: UnsafeCell::new(0), b: UnsafeCell::new(0) });
        let writer = {
            let p = p.clone();
            thread::spawn(move || {
                p.lock.lock_exclusive();
                // SAFETY: write-locked.
                unsafe {
                    p.a.with_mut(|a| *a = 1);
                    p.b.with_mut(|b| *b = 1);
                    p.lock.unlock_exclusive();
                }
            })
        };
        let reader = {
            let p = p.clone();
            thread::spawn(move || {
                p.lock.lock_shared();
                // SAFETY: read-locked.
                unsafe {
                    assert_eq!(p.a.with(|a| *a), p.b.with(|b| *b));
                    p.lock.unlock_shared();
                }
            })
        };
        if p.lock.try_lock_shared() {
            // SAFETY: read-locked.
            unsafe {
                assert_eq!(p.a.with(|a| *a), p.b.with(|b| *b));
                p.lock.unlock_shared();
            }
        }
        writer.join().unwrap();
        reader.join().unwrap();
        assert!(!p.lock.is_locked());
        // SAFETY: all threads joined.
        assert_eq!(unsafe { p.b.with(|b| *b) }, 1);
    });
}

#[test]
fn rwlock_two_writers() {
    model(|| {
        let g = Guarded::new(RawRwSpinLock::new());
        run(&g, 2, |g| {
            g.lock.lock_exclusive();
            g.bump();
            // SAFETY: write-locked by this thread.
            unsafe { g.lock.unlock_exclusive() };
        });
        assert_eq!(g.count(), 2);
    });
}
