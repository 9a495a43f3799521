//! Model checks of the grace-period state machine (`ukrcu::gp`, the real
//! code: a `cfg(loom)` build of the crate contains only it, compiled with
//! loom's atomics) against model CPUs.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p ukrcu --release --test loom`
//!
//! The model CPUs stand in for `uksched::qs` and `ukplat::cpu`'s counters:
//! a CPU reports a quiescent state with a `SeqCst` increment of its pass
//! counter, as the scheduler does on every pass, and an idle CPU keeps an
//! extended-quiescent-state counter that is even while idle and made odd
//! (`SeqCst` increment) around an interrupt handler, as `irq_enter` and
//! `irq_exit` do. Readers load the published pointer with a `SeqCst` load,
//! as `RcuCell::load` does.
//!
//! One liberty: loom treats `SeqCst` loads, stores and read-modify-writes
//! as `AcqRel` (loom's README, tokio-rs/loom#180) and models only
//! `fence(SeqCst)` fully. The kernel's argument rests on the single total
//! order of `SeqCst` operations (and, on x86, on a locked increment being a
//! full barrier), so each model increment is followed by the
//! `fence(SeqCst)` that stands for that order; the state machine's own
//! fences (`GpSeq::snap`, `start`, `end`) are the real ones. The writer replaces the pointer, takes its
//! snapshot, and runs one grace period exactly as the engine's
//! `grace_period` does (start, snapshot the hold-outs, rescan until none
//! is left, end), then "frees" the old object. A reader that sees a freed
//! object fails the model.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use loom::thread;
use ukrcu::gp::{Cpus, GpSeq, Holdouts};

/// Two objects: 0 is published at the start, 1 replaces it.
struct World {
    published: AtomicUsize,
    freed: [AtomicBool; 2],
    /// CPU 0: a thread-context reader; its scheduler-pass counter.
    passes: AtomicU64,
    /// CPU 1: idle, with an interrupt handler that reads; its extended
    /// quiescent-state counter (even: idle).
    eqs: AtomicU64,
    gp: GpSeq,
}

#[derive(Clone, Copy)]
enum Snap {
    Passes(u64),
    Eqs(u64),
}

/// The model CPUs; `broken` claims quiescent states that did not happen.
struct ModelCpus<'a> {
    world: &'a World,
    broken: bool,
}

impl Cpus for ModelCpus<'_> {
    type Snapshot = Snap;

    fn count(&self) -> usize {
        2
    }

    fn snapshot(&self, cpu: usize) -> Option<Snap> {
        match cpu {
            0 => Some(Snap::Passes(self.world.passes.load(Ordering::SeqCst))),
            _ => {
                let eqs = self.world.eqs.load(Ordering::SeqCst);
                // Even: idle now, quiescent already (as the engine's
                // `KernelCpus::snapshot`).
                (eqs & 1 == 1).then_some(Snap::Eqs(eqs))
            }
        }
    }

    fn passed(&self, snapshot: &Snap) -> bool {
        self.broken
            || match *snapshot {
                Snap::Passes(p) => self.world.passes.load(Ordering::SeqCst) != p,
                Snap::Eqs(e) => self.world.eqs.load(Ordering::SeqCst) != e,
            }
    }
}

/// A quiescent-state counter increment as the kernel does it (see the
/// module documentation for the fence).
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
}

/// One read-side critical section: load the published object and use it.
fn read_section(world: &World) {
    let object = world.published.load(Ordering::SeqCst);
    assert!(!world.freed[object].load(Ordering::SeqCst), "a reader used object {object} after it was freed");
}

/// Executions that reached the free (so the model is not vacuous).
static FREES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn model(broken: bool) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.max_branches = 20_000;
    builder.check(move || {
        let world = Arc::new(World {
            published: AtomicUsize::new(0),
            freed: [AtomicBool::new(false), AtomicBool::new(false)],
            passes: AtomicU64::new(0),
            eqs: AtomicU64::new(0),
            gp: GpSeq::new(),
        });
        // CPU 0: two read sections separated by a pass through the
        // scheduler.
        let cpu0 = {
            let world = Arc::clone(&world);
            thread::spawn(move || {
                read_section(&world);
                bump(&world.passes);
                read_section(&world);
                bump(&world.passes);
            })
        };
        // CPU 1: idle, then an interrupt whose handler reads.
        let cpu1 = {
            let world = Arc::clone(&world);
            thread::spawn(move || {
                bump(&world.eqs);
                read_section(&world);
                bump(&world.eqs);
            })
        };
        // The writer: replace, wait for a grace period as the engine does,
        // free.
        let old = world.published.swap(1, Ordering::SeqCst);
        let snap = world.gp.snap();
        world.gp.request(snap);
        assert!(world.gp.needed());
        world.gp.start();
        let cpus = ModelCpus { world: &world, broken };
        let mut holdouts: Holdouts<Snap, 2> = Holdouts::take(&cpus);
        // The engine sleeps between scans; here each scan yields. A scan
        // has no side effect but a fence, so an execution with more
        // fruitless scans only stutters: what it can reach, one with fewer
        // scans (the readers running earlier) reaches too. Executions that
        // scan in vain `SCANS` times are cut short there (nothing freed),
        // which keeps loom from exploring the writer spinning forever.
        const SCANS: u32 = 3;
        let mut scans = 0;
        while holdouts.scan(&cpus) > 0 {
            scans += 1;
            if scans == SCANS {
                cpu0.join().unwrap();
                cpu1.join().unwrap();
                return;
            }
            thread::yield_now();
        }
        world.gp.end();
        assert!(world.gp.done(snap));
        world.freed[old].store(true, Ordering::SeqCst);
        FREES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        cpu0.join().unwrap();
        cpu1.join().unwrap();
    });
}

/// No reader on either kind of CPU ever uses a freed object.
#[test]
fn a_grace_period_outlasts_every_reader_that_could_see_the_old_object() {
    model(false);
    assert!(FREES.load(std::sync::atomic::Ordering::Relaxed) > 0, "no execution completed a grace period");
}

/// Negative control: a detector that takes quiescent states for granted
/// lets a reader use a freed object, and loom finds the interleaving.
#[test]
#[should_panic(expected = "after it was freed")]
fn a_detector_that_does_not_wait_is_caught() {
    model(true);
}
