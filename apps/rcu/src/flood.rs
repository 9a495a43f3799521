//! The `call_rcu` flood: many callbacks queued at once from a thread on
//! every CPU, then one `barrier()`; each callback must have run exactly
//! once by then.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};
use uksched::{Builder, CpuSet};

/// The largest flood (`flood=` on the command line).
pub const MAX: usize = 16384;

/// Runs of each callback.
static RAN: [AtomicU8; MAX] = [const { AtomicU8::new(0) }; MAX];

/// What the flood found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flood {
    /// Callbacks queued.
    pub queued: usize,
    /// Callbacks that had not run when `barrier()` returned.
    pub missing: usize,
    /// Callbacks that ran more than once.
    pub duplicated: usize,
    /// Threads that could not be spawned.
    pub spawn_errors: usize,
    /// From the first thread's start until the last one queued its share.
    pub queueing: core::time::Duration,
}

/// Queues `total` callbacks (at most [`MAX`]) from one thread pinned to
/// each CPU, joins them, calls `barrier()` and checks every callback's run
/// count.
pub fn run(total: usize) -> Flood {
    let total = total.min(MAX);
    for r in &RAN[..total] {
        r.store(0, Ordering::SeqCst);
    }
    let cpus = ukplat::cpu::count();
    let started = uktime::now();
    let mut flood = Flood { queued: 0, ..Flood::default() };
    let mut handles = Vec::with_capacity(cpus);
    for cpu in 0..cpus {
        let spawned = Builder::new().name("flood").affinity(CpuSet::single(cpu)).spawn(move || {
            let mut queued = 0;
            for i in (cpu..total).step_by(cpus) {
                ukrcu::call_rcu(move || {
                    RAN[i].fetch_add(1, Ordering::SeqCst);
                });
                queued += 1;
                if queued % 64 == 0 {
                    uksched::yield_now();
                }
            }
            queued
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(_) => flood.spawn_errors += 1,
        }
    }
    for h in handles {
        flood.queued += h.join();
    }
    flood.queueing = started.elapsed();
    ukrcu::barrier();
    for r in &RAN[..total] {
        match r.load(Ordering::SeqCst) {
            0 => flood.missing += 1,
            1 => {}
            _ => flood.duplicated += 1,
        }
    }
    // With a thread missing, its share counts as missing above.
    flood
}
