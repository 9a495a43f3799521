//! Host unit tests: every kind under real thread contention, try-lock and
//! preemption-counter semantics, the rwlock's sharing and exclusion, MCS
//! node pools, the irqsave nesting (against the simulated interrupt flag)
//! and the one-CPU paths (called directly: on the host the locks never
//! enter one-CPU mode).

use crate::*;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use lock_api::RawMutex;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};
use ukplat::cpu::{host::bind_this_thread, preempt_count};

/// Threads in the contention tests (each pretends to be its own CPU).
const THREADS: usize = 4;
/// Increments per thread.
const ROUNDS: u64 = 20_000;

/// N threads × M increments of a non-atomic counter under `R`.
fn hammer<R: RawMutex + Sync>() {
    let lock = lock_api::Mutex::<R, u64>::new(0);
    let start = Barrier::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (lock, start) = (&lock, &start);
            s.spawn(move || {
                bind_this_thread(t + 1);
                start.wait();
                for _ in 0..ROUNDS {
                    let mut n = lock.lock();
                    // A torn read-modify-write if two threads were inside.
                    let seen = *n;
                    std::hint::black_box(&mut *n);
                    *n = seen + 1;
                }
                assert_eq!(preempt_count(), 0);
            });
        }
    });
    assert_eq!(lock.into_inner(), THREADS as u64 * ROUNDS);
}

#[test]
fn tas_counts_exactly() {
    hammer::<RawTasLock>();
}

#[test]
fn ticket_counts_exactly() {
    hammer::<RawTicketLock>();
}

#[test]
fn mcs_counts_exactly() {
    hammer::<RawMcsLock>();
}

#[test]
fn configured_kind_counts_exactly() {
    hammer::<RawSpinLock>();
}

#[test]
fn irqsave_kinds_count_exactly() {
    hammer::<IrqSave<RawTasLock>>();
    hammer::<IrqSave<RawMcsLock>>();
}

#[test]
fn rwlock_writers_count_exactly() {
    let lock = RwSpinLock::new(0u64);
    thread::scope(|s| {
        for t in 0..THREADS {
            let lock = &lock;
            s.spawn(move || {
                bind_this_thread(t + 1);
                for _ in 0..ROUNDS / 2 {
                    let mut n = lock.write();
                    let seen = *n;
                    std::hint::black_box(&mut *n);
                    *n = seen + 1;
                }
            });
        }
    });
    assert_eq!(lock.into_inner(), THREADS as u64 * ROUNDS / 2);
}

/// try_lock: fails while held (here and on another thread), succeeds when
/// free; preemption disabled exactly while held.
fn try_lock_semantics<R: RawMutex + Sync>() {
    thread::spawn(|| {
        bind_this_thread(7);
        let raw = R::INIT;
        assert_eq!(preempt_count(), 0);
        assert!(!raw.is_locked());
        assert!(raw.try_lock());
        assert_eq!(preempt_count(), 1, "held: preemption disabled");
        assert!(raw.is_locked());
        assert!(!raw.try_lock());
        assert_eq!(preempt_count(), 1, "a failed try_lock leaves the counter alone");
        thread::scope(|s| {
            s.spawn(|| {
                bind_this_thread(8);
                assert!(!raw.try_lock());
                assert_eq!(preempt_count(), 0);
            });
        });
        // SAFETY: held by this thread.
        unsafe { raw.unlock() };
        assert_eq!(preempt_count(), 0);
        assert!(!raw.is_locked());
        raw.lock();
        assert_eq!(preempt_count(), 1);
        // SAFETY: held by this thread.
        unsafe { raw.unlock() };
        assert!(raw.try_lock());
        // SAFETY: held by this thread.
        unsafe { raw.unlock() };
        assert_eq!(preempt_count(), 0);
    })
    .join()
    .unwrap();
}

#[test]
fn try_lock_semantics_of_every_kind() {
    try_lock_semantics::<RawTasLock>();
    try_lock_semantics::<RawTicketLock>();
    try_lock_semantics::<RawMcsLock>();
    try_lock_semantics::<IrqSave<RawTicketLock>>();
}

#[test]
fn mutex_guards_and_mapping() {
    let lock = SpinLock::new((1u32, [0u8; 4]));
    {
        let mut bytes = SpinLockGuard::map(lock.lock(), |v| &mut v.1);
        bytes[3] = 9;
        assert!(lock.is_locked());
    }
    assert!(!lock.is_locked());
    assert_eq!(lock.lock().1, [0, 0, 0, 9]);
    let mut owned = TicketLock::new(5);
    *owned.get_mut() += 1;
    assert_eq!(owned.into_inner(), 6);
}

/// Waiters are served in the order they queued (`queued` tells when the
/// lock has `n` holders + waiters).
fn fifo_order<R: RawMutex + Sync>(queued: impl Fn(&R) -> usize + Sync) {
    const WAITERS: usize = 3;
    let raw = R::INIT;
    let order = std::sync::Mutex::new(Vec::new());
    thread::scope(|s| {
        bind_this_thread(10);
        raw.lock();
        for w in 0..WAITERS {
            let (raw, order) = (&raw, &order);
            s.spawn(move || {
                bind_this_thread(11 + w);
                raw.lock();
                order.lock().unwrap().push(w);
                // SAFETY: held by this thread.
                unsafe { raw.unlock() };
            });
            // Let waiter w queue before starting the next one.
            let deadline = Instant::now() + Duration::from_secs(10);
            while queued(raw) < w + 2 {
                assert!(Instant::now() < deadline, "waiter {w} never queued");
                thread::yield_now();
            }
        }
        // SAFETY: held by this thread.
        unsafe { raw.unlock() };
    });
    assert_eq!(*order.lock().unwrap(), (0..WAITERS).collect::<Vec<_>>());
}

#[test]
fn ticket_is_fifo() {
    fifo_order::<RawTicketLock>(|raw| raw.queue_len() as usize);
}

#[test]
fn mcs_is_fifo() {
    // The queue length is not stored; count the distinct tails seen.
    let seen = std::sync::Mutex::new(Vec::<usize>::new());
    fifo_order::<RawMcsLock>(|raw| {
        let tail = raw.tail.load(Ordering::Acquire) as usize;
        let mut seen = seen.lock().unwrap();
        if tail != 0 && seen.last() != Some(&tail) {
            seen.push(tail);
        }
        seen.len()
    });
}

#[test]
fn mcs_nested_locks_use_distinct_nodes_and_any_release_order() {
    thread::spawn(|| {
        bind_this_thread(20);
        let locks = [RawMcsLock::new(), RawMcsLock::new(), RawMcsLock::new()];
        for l in &locks {
            l.lock();
        }
        assert_eq!(RawMcsLock::nodes_in_use(20), 3);
        assert_eq!(preempt_count(), 3);
        // SAFETY: all three held by this thread (released out of order).
        unsafe {
            locks[1].unlock();
            locks[0].unlock();
        }
        assert_eq!(RawMcsLock::nodes_in_use(20), 1);
        locks[0].lock();
        assert_eq!(RawMcsLock::nodes_in_use(20), 2);
        // SAFETY: held by this thread.
        unsafe {
            locks[2].unlock();
            locks[0].unlock();
        }
        assert_eq!(RawMcsLock::nodes_in_use(20), 0);
        assert_eq!(preempt_count(), 0);
    })
    .join()
    .unwrap();
}

#[test]
fn mcs_nested_locks_under_contention() {
    // Every thread holds two MCS locks at once (outer, inner) while others
    // queue on both: each CPU needs two nodes, and hand-offs must not mix
    // them up.
    let outer = McsLock::new(0u64);
    let inner = McsLock::new(0u64);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (outer, inner) = (&outer, &inner);
            s.spawn(move || {
                bind_this_thread(30 + t);
                for i in 0..ROUNDS / 2 {
                    if i % 2 == 0 {
                        let mut o = outer.lock();
                        let mut n = inner.lock();
                        *o += 1;
                        *n += 1;
                    } else {
                        // The inner lock alone too: it is contended by
                        // holders of the outer one and by these.
                        *inner.lock() += 1;
                    }
                }
                assert_eq!(RawMcsLock::nodes_in_use(30 + t), 0);
            });
        }
    });
    assert_eq!(outer.into_inner(), THREADS as u64 * ROUNDS / 4);
    assert_eq!(inner.into_inner(), THREADS as u64 * ROUNDS / 2);
}

#[test]
fn mcs_with_explicit_nodes() {
    struct Shared {
        lock: RawMcsLock,
        count: std::cell::UnsafeCell<u64>,
    }
    // SAFETY: `count` is only accessed under `lock`.
    unsafe impl Sync for Shared {}
    let shared = Shared { lock: RawMcsLock::new(), count: std::cell::UnsafeCell::new(0) };
    thread::scope(|s| {
        for t in 0..THREADS {
            let shared = &shared;
            s.spawn(move || {
                bind_this_thread(40 + t);
                let node = McsNode::new();
                for _ in 0..ROUNDS {
                    // SAFETY: `node` lives on this stack frame across the
                    // critical section and is used for nothing else.
                    unsafe {
                        shared.lock.lock_with(&node);
                        *shared.count.get() += 1;
                        shared.lock.unlock_with(&node);
                    }
                }
                // No pool node was taken.
                assert_eq!(RawMcsLock::nodes_in_use(40 + t), 0);
            });
        }
    });
    assert_eq!(shared.count.into_inner(), THREADS as u64 * ROUNDS);
    let node = McsNode::new();
    // SAFETY: `node` outlives both critical sections.
    unsafe {
        assert!(shared.lock.try_lock_with(&node));
        assert!(!shared.lock.try_lock_with(&McsNode::new()));
        shared.lock.unlock_with(&node);
    }
}

#[test]
#[should_panic(expected = "holds or awaits more than 8 MCS locks at once")]
fn mcs_pool_exhaustion_panics() {
    bind_this_thread(50);
    let locks: Vec<RawMcsLock> = (0..=MCS_NODES_PER_CPU).map(|_| RawMcsLock::new()).collect();
    for l in &locks {
        l.lock();
    }
}

#[test]
#[should_panic(expected = "released on CPU 52 but taken on another CPU")]
fn mcs_release_on_another_cpu_panics() {
    bind_this_thread(51);
    let lock = RawMcsLock::new();
    lock.lock();
    bind_this_thread(52);
    // SAFETY: deliberately broken: released "on another CPU".
    unsafe { lock.unlock() };
}

#[test]
fn rwlock_readers_share() {
    let lock = RwSpinLock::new(5u32);
    let both_inside = Barrier::new(2);
    thread::scope(|s| {
        for t in 0..2 {
            let (lock, both_inside) = (&lock, &both_inside);
            s.spawn(move || {
                bind_this_thread(1 + t);
                let value = lock.read();
                // Both readers hold the lock here at once, or this waits
                // forever.
                both_inside.wait();
                // SAFETY: only reads the lock's state.
                assert_eq!(unsafe { lock.raw() }.readers(), 2);
                assert_eq!(*value, 5);
                assert_eq!(preempt_count(), 1);
                both_inside.wait();
            });
        }
    });
    assert!(!lock.is_locked());
}

#[test]
fn rwlock_writer_excludes_everyone() {
    let lock = RwSpinLock::new(0u32);
    let mut w = lock.write();
    *w = 1;
    thread::scope(|s| {
        s.spawn(|| {
            bind_this_thread(1);
            assert!(lock.try_read().is_none());
            assert!(lock.try_write().is_none());
            assert_eq!(preempt_count(), 0);
        });
    });
    drop(w);
    let r = lock.read();
    assert!(lock.try_write().is_none(), "a reader excludes writers");
    drop(r);
    assert_eq!(*lock.try_write().unwrap(), 1);
}

#[test]
fn rwlock_readers_never_see_half_a_write() {
    #[derive(Clone, Copy)]
    struct Pair {
        a: u64,
        b: u64,
    }
    let lock = RwSpinLock::new(Pair { a: 0, b: 0 });
    let writers_done = AtomicUsize::new(0);
    let reads = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..2 {
            let (lock, writers_done, reads) = (&lock, &writers_done, &reads);
            s.spawn(move || {
                bind_this_thread(1 + t);
                for i in 1..=ROUNDS / 4 {
                    let mut p = lock.write();
                    p.a = i;
                    std::hint::black_box(&mut *p);
                    for _ in 0..10 {
                        std::hint::spin_loop();
                    }
                    p.b = i;
                    drop(p);
                    if i % 64 == 0 {
                        // Writers have precedence: let the readers in now
                        // and then, or they could starve.
                        let seen = reads.load(Ordering::Relaxed);
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while reads.load(Ordering::Relaxed) == seen && Instant::now() < deadline {
                            thread::yield_now();
                        }
                    }
                }
                writers_done.fetch_add(1, Ordering::Relaxed);
            });
        }
        for t in 0..2 {
            let (lock, writers_done, reads) = (&lock, &writers_done, &reads);
            s.spawn(move || {
                bind_this_thread(3 + t);
                while writers_done.load(Ordering::Relaxed) < 2 {
                    let p = *lock.read();
                    assert_eq!(p.a, p.b, "reader saw half a write");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
}

/// Spins until the rwlock shows a waiting writer.
fn wait_for_waiting_writer(raw: &RawRwSpinLock) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while raw.state.load(Ordering::Relaxed) & 2 == 0 {
        assert!(Instant::now() < deadline, "the writer never waited");
        thread::yield_now();
    }
}

#[test]
fn rwlock_waiting_writer_holds_back_new_readers_but_not_interrupts() {
    let lock = RwSpinLock::new(0u32);
    let writer_in = AtomicBool::new(false);
    thread::scope(|s| {
        bind_this_thread(1);
        let reader = lock.read();
        s.spawn(|| {
            bind_this_thread(2);
            *lock.write() = 1;
            writer_in.store(true, Ordering::Release);
        });
        // SAFETY: only reads the lock's state.
        wait_for_waiting_writer(unsafe { lock.raw() });
        s.spawn(|| {
            // CPU 63 is used by no other test: its interrupt depth is ours.
            bind_this_thread(63);
            // A new reader yields to the waiting writer ...
            assert!(lock.try_read().is_none(), "writer preference");
            // ... unless it is an interrupt handler (it may have
            // interrupted a reader of this very lock on its CPU).
            ukplat::cpu::irq_enter();
            let in_irq = lock.try_read();
            assert!(in_irq.is_some(), "interrupt-context reader passes a waiting writer");
            drop(in_irq);
            ukplat::cpu::irq_exit();
        });
        thread::sleep(Duration::from_millis(20));
        assert!(!writer_in.load(Ordering::Acquire), "the writer waits for the reader");
        drop(reader);
    });
    assert!(writer_in.load(Ordering::Acquire));
    assert_eq!(*lock.read(), 1);
}

#[test]
fn rwlock_writer_is_not_starved_by_overlapping_readers() {
    // Readers keep the lock read-held continuously (their critical sections
    // overlap); the writer must still get in.
    let lock = RwSpinLock::new(0u64);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for t in 0..3 {
            let (lock, stop) = (&lock, &stop);
            s.spawn(move || {
                bind_this_thread(1 + t);
                while !stop.load(Ordering::Relaxed) {
                    let r = lock.read();
                    std::hint::black_box(*r);
                    thread::yield_now();
                }
            });
        }
        bind_this_thread(4);
        for _ in 0..100 {
            *lock.write() += 1;
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(lock.into_inner(), 100);
}

#[test]
fn rwlock_downgrade() {
    let lock = RwSpinLock::new(3u8);
    let mut w = lock.write();
    *w = 4;
    let r = RwSpinLockWriteGuard::downgrade(w);
    assert_eq!(*r, 4);
    assert_eq!(preempt_count(), 1);
    assert!(lock.try_read().is_some(), "readers share after a downgrade");
    assert!(lock.try_write().is_none());
    drop(r);
    assert_eq!(preempt_count(), 0);
    assert!(!lock.is_locked());
}

#[test]
fn irqsave_disables_and_restores_enabled() {
    thread::spawn(|| {
        assert!(irq::enabled(), "a host thread starts with the simulated flag on");
        let lock = SpinLockIrq::new(0);
        {
            let mut g = lock.lock();
            *g += 1;
            assert!(!irq::enabled());
            assert_eq!(irq::depth(), 1);
            assert_eq!(preempt_count(), 1);
        }
        assert!(irq::enabled());
        assert_eq!(irq::depth(), 0);
        assert_eq!(preempt_count(), 0);
    })
    .join()
    .unwrap();
}

#[test]
fn irqsave_keeps_disabled_disabled() {
    thread::spawn(|| {
        irq::host::set_enabled(false);
        let lock = SpinLockIrq::new(());
        drop(lock.lock());
        assert!(!irq::enabled(), "were disabled: stay disabled");
        irq::host::set_enabled(true);
    })
    .join()
    .unwrap();
}

#[test]
fn irqsave_nesting_restores_at_the_last_release_in_any_order() {
    thread::spawn(|| {
        let a = SpinLockIrq::new(());
        let b = lock_api::Mutex::<IrqSave<RawMcsLock>, ()>::new(());
        let ga = a.lock();
        let gb = b.lock();
        assert_eq!(irq::depth(), 2);
        drop(ga); // out of order
        assert!(!irq::enabled(), "b still held: interrupts stay off");
        drop(gb);
        assert!(irq::enabled());
        // A failed try_lock restores at once.
        let ga = a.lock();
        thread::scope(|s| {
            s.spawn(|| {
                assert!(a.try_lock().is_none());
                assert!(irq::enabled());
                assert_eq!(preempt_count(), 0);
            });
        });
        drop(ga);
        assert!(irq::enabled());
    })
    .join()
    .unwrap();
}

#[test]
fn irqsave_rwlock_readers_and_writer() {
    thread::spawn(|| {
        let lock = RwSpinLockIrq::new(1u32);
        let r1 = lock.read();
        let r2 = lock.read();
        assert!(!irq::enabled());
        assert!(lock.try_write().is_none());
        assert!(!irq::enabled());
        drop(r1);
        assert!(!irq::enabled());
        drop(r2);
        assert!(irq::enabled());
        *lock.write() += 1;
        assert!(irq::enabled());
        assert_eq!(*lock.read(), 2);
        assert_eq!(preempt_count(), 0);
    })
    .join()
    .unwrap();
}

#[test]
#[should_panic(expected = "pop_off without push_off")]
fn unbalanced_pop_off_panics() {
    irq::pop_off();
}

#[test]
fn configured_kind_is_selected_at_compile_time() {
    use core::any::TypeId;
    // Host builds see the declared default (ticket) unless UKRS_CONFIG_RS
    // names an app's configuration.
    let expected = match ukconfig::ukspin::KIND {
        ukconfig::ukspin::Kind::Tas => TypeId::of::<RawTasLock>(),
        ukconfig::ukspin::Kind::Ticket => TypeId::of::<RawTicketLock>(),
        ukconfig::ukspin::Kind::Mcs => TypeId::of::<RawMcsLock>(),
    };
    assert_eq!(TypeId::of::<RawSpinLock>(), expected);
    assert_eq!(select::name_of::<RawSpinLock>(), Some(KIND.as_str()));
    assert_eq!(select::configured_name(), KIND.as_str());
    assert_eq!(select::name_of::<RawRwSpinLock>(), None);
    assert_eq!(select::index(ukconfig::ukspin::Kind::Mcs), 2);
    assert_eq!(TypeId::of::<<select::Kind<0> as select::SelectRaw>::Raw>(), TypeId::of::<RawTasLock>());
    assert_eq!(TypeId::of::<<select::Kind<1> as select::SelectRaw>::Raw>(), TypeId::of::<RawTicketLock>());
    assert_eq!(TypeId::of::<<select::Kind<2> as select::SelectRaw>::Raw>(), TypeId::of::<RawMcsLock>());
    const { assert!(!SINGLE_CPU, "host builds always run the real algorithms") };
}

#[test]
fn sizes_match_the_documentation() {
    assert_eq!(size_of::<RawTasLock>(), 1);
    assert_eq!(size_of::<RawTicketLock>(), 8);
    assert_eq!(size_of::<RawMcsLock>(), 16);
    assert_eq!(size_of::<McsNode>(), 16);
    assert_eq!(size_of::<RawRwSpinLock>(), 4);
    assert_eq!(size_of::<IrqSave<RawTicketLock>>(), 8);
}

// One-CPU paths, called directly (the host never selects them).

#[test]
fn one_cpu_paths_are_flags() {
    let tas = RawTasLock::new();
    assert!(tas.up_try_lock() && tas.is_locked() && !tas.up_try_lock());
    // SAFETY: "held"; unlock is the same store in both modes (preemption
    // was not raised by up_try_lock: raise it for the unlock).
    unsafe {
        ukplat::cpu::preempt_disable();
        tas.unlock();
    }
    let ticket = RawTicketLock::new();
    assert!(ticket.up_try_lock() && ticket.is_locked() && !ticket.up_try_lock());
    let rw = RawRwSpinLock::new();
    assert!(rw.up_try_lock_shared() && rw.up_try_lock_shared());
    assert_eq!(rw.readers(), 2);
    assert!(!rw.up_try_lock_exclusive());
    let mcs = RawMcsLock::new();
    assert!(mcs.up_try_lock(core::ptr::NonNull::dangling().as_ptr()));
    assert!(mcs.is_locked());
    mcs.up_unlock();
    assert!(!mcs.is_locked());
}

#[test]
#[should_panic(expected = "ticket spinlock at")]
fn one_cpu_relock_panics() {
    let ticket = RawTicketLock::new();
    ticket.up_lock();
    ticket.up_lock();
}

#[test]
#[should_panic(expected = "taken again while this CPU holds it (self-deadlock")]
fn one_cpu_write_while_read_panics() {
    let rw = RawRwSpinLock::new();
    rw.up_lock_shared();
    rw.up_lock_exclusive();
}

#[test]
fn ticket_counters_wrap() {
    let raw = RawTicketLock::new();
    raw.next.store(u32::MAX, Ordering::Relaxed);
    raw.serving.store(u32::MAX, Ordering::Relaxed);
    for _ in 0..3 {
        raw.lock();
        assert!(!raw.try_lock());
        // SAFETY: held by this thread.
        unsafe { raw.unlock() };
    }
    assert_eq!(raw.serving.load(Ordering::Relaxed), 2);
    assert!(!raw.is_locked());
}

#[test]
fn debug_output() {
    let raw = RawRwSpinLock::new();
    raw.lock_shared();
    assert_eq!(format!("{raw:?}"), "RawRwSpinLock { writer: false, writer_waiting: false, readers: 1 }");
    // SAFETY: held by this thread.
    unsafe { raw.unlock_shared() };
    assert_eq!(format!("{:?}", RawTasLock::new()), "RawTasLock { locked: false }");
}
