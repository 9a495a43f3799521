//! The fault modes: a thread's stack overflow, and the sleeping mutex's
//! owner checks. Each ends the machine (exception or panic report); the
//! functions return only if the fault did not happen.

use crate::cpus;
use ukconsole::println;
use uksched::{Builder, CpuSet};

/// The overflowing thread's stack.
const SMALL_STACK: usize = 16 * 1024;

/// Recurses with a 512-byte frame until the stack runs out.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0; // never: the stack ends long before
    }
    let frame = [depth; 64];
    core::hint::black_box(&frame);
    // Used after the call, so the call is not a tail call.
    recurse(depth + 1).wrapping_add(frame[(depth % 64) as usize])
}

/// `overflow`: thread `deep` overflows its stack into the guard page.
pub(crate) fn overflow() -> i32 {
    println!("sched: thread `deep` recurses until its {} KiB stack overflows", SMALL_STACK / 1024);
    let deep = Builder::new()
        .name("deep")
        .stack_size(SMALL_STACK)
        .affinity(CpuSet::single(cpus() - 1))
        .spawn(|| recurse(0));
    match deep {
        Ok(h) => {
            let v = h.join();
            println!("sched: thread `deep` returned {v}: its stack did not overflow");
        }
        Err(e) => println!("sched: cannot spawn `deep`: {e}"),
    }
    1
}

/// `mutex-relock`: thread `relocker` locks a mutex it holds.
pub(crate) fn mutex_relock() -> i32 {
    static LOCK: uklock::Mutex<u32> = uklock::Mutex::new(0);
    println!("sched: thread `relocker` locks a uklock::Mutex twice");
    let h = Builder::new().name("relocker").spawn(|| {
        let first = LOCK.lock();
        let second = LOCK.lock();
        *first + *second
    });
    match h {
        Ok(h) => println!("sched: relocking returned {}: no owner check", h.join()),
        Err(e) => println!("sched: cannot spawn `relocker`: {e}"),
    }
    1
}

/// `mutex-foreign-unlock`: thread `intruder` unlocks a mutex that thread
/// `holder` holds.
pub(crate) fn mutex_foreign_unlock() -> i32 {
    static LOCK: uklock::Mutex<u32> = uklock::Mutex::new(0);
    static QUEUE: uksched::WaitQueue = uksched::WaitQueue::new();
    static DONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    println!("sched: thread `intruder` unlocks a uklock::Mutex held by thread `holder`");
    let holder = Builder::new().name("holder").spawn(|| {
        let guard = LOCK.lock();
        // Keep it locked until the intruder has tried.
        QUEUE.wait_until(|| DONE.load(core::sync::atomic::Ordering::Acquire));
        drop(guard);
    });
    let Ok(holder) = holder else {
        println!("sched: cannot spawn `holder`");
        return 1;
    };
    while !LOCK.is_locked() {
        uksched::yield_now();
    }
    let intruder = Builder::new().name("intruder").spawn(|| {
        // SAFETY: deliberately not the holder: uklock's owner check panics
        // before the lock word changes, which is what this mode shows; if
        // it did not, the `holder` thread's guard would still be the only
        // access to the data (nothing here touches it).
        unsafe { LOCK.force_unlock() };
    });
    match intruder {
        Ok(h) => {
            h.join();
            println!("sched: the foreign unlock returned: no owner check");
        }
        Err(e) => println!("sched: cannot spawn `intruder`: {e}"),
    }
    DONE.store(true, core::sync::atomic::Ordering::Release);
    QUEUE.wake_all();
    holder.join();
    1
}

/// `rcu-block`: thread `reader` sleeps inside an RCU read-side critical
/// section; debug builds panic, and ukrcu's hook names the section.
pub(crate) fn rcu_block() -> i32 {
    println!("sched: thread `reader` sleeps inside an RCU read-side critical section");
    let reader = Builder::new().name("reader").spawn(|| {
        let _guard = ukrcu::read_lock();
        uksched::sleep(core::time::Duration::from_millis(1));
    });
    match reader {
        Ok(h) => {
            h.join();
            println!("sched: thread `reader` slept inside a read-side section unreported");
        }
        Err(e) => println!("sched: cannot spawn `reader`: {e}"),
    }
    1
}

/// `rcu-stall` (meant for `uksched.policy=coop`, `ukrcu.stall_timeout_ms`
/// small): thread `hog` runs on the last CPU inside a read-side section
/// without ever yielding for 400 ms while a grace period waits for it; the
/// stall report must name the CPU and the thread (`qsbr`) or the open
/// section (`refcount`), and the grace period must end once it stops.
pub(crate) fn rcu_stall() -> i32 {
    use core::time::Duration;
    if cpus() < 2 {
        println!("sched: rcu-stall needs 2 CPUs");
        return 1;
    }
    let last = cpus() - 1;
    if let Some(gp) = ukrcu::gp_thread() {
        let _ = gp.set_affinity(CpuSet::single(0));
    }
    println!(
        "sched: thread `hog` runs 400 ms on CPU {last} inside a read-side section, without a quiescent state"
    );
    let hog = Builder::new().name("hog").affinity(CpuSet::single(last)).spawn(|| {
        let _section = ukrcu::read_lock();
        uktime::busy_wait(Duration::from_millis(400));
    });
    let Ok(hog) = hog else {
        println!("sched: cannot spawn `hog`");
        return 1;
    };
    uksched::sleep(Duration::from_millis(5));
    let start = uktime::now();
    ukrcu::synchronize();
    let waited = start.elapsed();
    hog.join();
    let stalls = ukrcu::stats().stalls;
    println!(
        "sched: rcu-stall: synchronize returned after {} ms, {stalls} stall report(s)",
        waited.as_millis()
    );
    if stalls > 0 { 0 } else { 1 }
}
