//! Lost-wake-up stress on every CPU. Each scenario counts exactly, and a
//! wait that lasts `LOST` (2 s) where the protocol guarantees a wake-up is
//! reported as a lost wake-up. With `posix-futex.broken_unlocked_check`
//! (the word read before the bucket lock) the ping-pong and the
//! semaphores lose wake-ups and fail.

use crate::{futex, settle, timespec, ts};
use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use core::time::Duration;
use posix_futex::errno::{EAGAIN, ETIMEDOUT};
use posix_futex::*;
use ukconsole::println;
use uksched::{Builder, CpuSet, JoinHandle};
use uktest::{OrFail, TestResult, ut_assert, ut_assert_eq, ut_fail};

/// A wait this long where a wake-up is due counts as lost.
const LOST: Duration = Duration::from_secs(2);
const NULL: *const AtomicU32 = ptr::null();

fn cpus() -> usize {
    ukplat::cpu::count()
}

fn spawn_on<T: Send + 'static>(
    name: &str,
    cpu: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, uktest::Stop> {
    Builder::new().name(name).affinity(CpuSet::single(cpu % cpus())).spawn(f).or_fail()
}

/// Waits while `word` is `val`, at most [`LOST`]; true when that ran out
/// (a lost wake-up).
fn wait_lost(word: &AtomicU32, val: u32) -> bool {
    futex_wait(word, val, Some(LOST)) == Err(Errno(ETIMEDOUT)) && word.load(Ordering::SeqCst) != val
}

/// Pairs of threads on neighbouring CPUs hand a turn back and forth
/// through one futex word, `ROUNDS` times: each side waits while the word
/// says "the other's turn", then flips it and wakes. A hand-over that is
/// not seen within 2 s is a lost wake-up.
fn ping_pong_loses_no_wake_up() -> TestResult {
    const ROUNDS: u32 = 300;
    static LOSSES: AtomicUsize = AtomicUsize::new(0);
    LOSSES.store(0, Ordering::SeqCst);
    let pairs = cpus().max(2) / 2;
    let words: &'static [AtomicU32] = Vec::leak((0..pairs).map(|_| AtomicU32::new(0)).collect());
    let mut handles = Vec::new();
    for (p, word) in words.iter().enumerate() {
        for side in 0..2u32 {
            handles.push(spawn_on("pingpong", 2 * p + side as usize, move || {
                for _ in 0..ROUNDS {
                    // Wait for my turn (the word == side).
                    loop {
                        let now = word.load(Ordering::SeqCst);
                        if now == side {
                            break;
                        }
                        if wait_lost(word, now) {
                            LOSSES.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    word.store(1 - side, Ordering::SeqCst);
                    futex_wake(word, 1);
                }
            })?);
        }
    }
    for h in handles {
        h.join();
    }
    let lost = LOSSES.load(Ordering::SeqCst);
    println!("futex: ping-pong: {} pairs x {} rounds, {} lost wake-ups", pairs, ROUNDS, lost);
    ut_assert_eq!(lost, 0, "hand-overs that waited {:?}: lost wake-ups", LOST);
    Ok(())
}
uktest::test_case!(ping_pong_loses_no_wake_up);

/// A counting semaphore on one futex word: the count.
struct Semaphore(AtomicU32);

impl Semaphore {
    /// Takes one; false if a wait ran [`LOST`] while permits were there.
    fn acquire(&self) -> bool {
        let mut clean = true;
        loop {
            let c = self.0.load(Ordering::SeqCst);
            if c > 0 {
                if self.0.compare_exchange(c, c - 1, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    return clean;
                }
            } else if wait_lost(&self.0, 0) {
                clean = false;
            }
        }
    }

    fn release(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        futex_wake(&self.0, 1);
    }
}

/// Producers and consumers, one of each per CPU, over a 2-slot buffer
/// guarded by two futex semaphores (`empty` slots, `full` slots), so both
/// sides block often: every item produced is consumed exactly once (each
/// consumer takes its exact share; the sums agree) and no wait outlasts
/// [`LOST`].
fn semaphores_count_exactly() -> TestResult {
    const ITEMS: u64 = 400;
    static EMPTY: Semaphore = Semaphore(AtomicU32::new(2));
    static FULL: Semaphore = Semaphore(AtomicU32::new(0));
    static PRODUCED: AtomicUsize = AtomicUsize::new(0);
    static CONSUMED: AtomicUsize = AtomicUsize::new(0);
    static LOSSES: AtomicUsize = AtomicUsize::new(0);
    EMPTY.0.store(2, Ordering::SeqCst);
    FULL.0.store(0, Ordering::SeqCst);
    for c in [&PRODUCED, &CONSUMED, &LOSSES] {
        c.store(0, Ordering::SeqCst);
    }
    let n = cpus();
    let mut handles = Vec::new();
    for i in 0..n {
        handles.push(spawn_on("producer", i, move || {
            for k in 1..=ITEMS {
                if !EMPTY.acquire() {
                    LOSSES.fetch_add(1, Ordering::SeqCst);
                }
                PRODUCED.fetch_add(k as usize, Ordering::SeqCst);
                FULL.release();
            }
        })?);
        handles.push(spawn_on("consumer", i + 1, move || {
            for _ in 0..ITEMS {
                if !FULL.acquire() {
                    LOSSES.fetch_add(1, Ordering::SeqCst);
                }
                CONSUMED.fetch_add(1, Ordering::SeqCst);
                EMPTY.release();
            }
        })?);
    }
    for h in handles {
        h.join();
    }
    let per_producer = (ITEMS * (ITEMS + 1) / 2) as usize;
    ut_assert_eq!(PRODUCED.load(Ordering::SeqCst), n * per_producer);
    ut_assert_eq!(CONSUMED.load(Ordering::SeqCst), n * ITEMS as usize);
    ut_assert_eq!(FULL.0.load(Ordering::SeqCst), 0);
    ut_assert_eq!(EMPTY.0.load(Ordering::SeqCst), 2);
    let lost = LOSSES.load(Ordering::SeqCst);
    println!("futex: semaphores: {} producers and consumers x {} items, {} lost wake-ups", n, ITEMS, lost);
    ut_assert_eq!(lost, 0, "semaphore waits that outlasted {:?} with permits available", LOST);
    Ok(())
}
uktest::test_case!(semaphores_count_exactly);

/// Waiters on `A` with timeouts of 50–450 µs, while movers requeue them
/// to `B` (`FUTEX_CMP_REQUEUE`, none woken directly), back to `A`
/// (`FUTEX_REQUEUE`), and wake on both: every wait ends (0 or
/// `ETIMEDOUT`), the waits that ended woken are exactly the wake-ups the
/// wakers counted, and no waiter is left on either word.
fn requeue_races_timeouts() -> TestResult {
    static A: AtomicU32 = AtomicU32::new(0);
    static B: AtomicU32 = AtomicU32::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    static WOKEN: AtomicUsize = AtomicUsize::new(0);
    static TIMED_OUT: AtomicUsize = AtomicUsize::new(0);
    static COUNTED: AtomicUsize = AtomicUsize::new(0);
    static MOVED: AtomicUsize = AtomicUsize::new(0);
    for c in [&WOKEN, &TIMED_OUT, &COUNTED, &MOVED] {
        c.store(0, Ordering::SeqCst);
    }
    STOP.store(false, Ordering::SeqCst);
    let mut sleepers = Vec::new();
    for i in 0..6 {
        sleepers.push(spawn_on("waiter", i, move || {
            let mut rng = uktest::Rng::new(0x5eed + i as u64);
            while !STOP.load(Ordering::Relaxed) {
                let t = timespec(Duration::from_micros(50 + rng.below(400)));
                match futex(&A, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0, ts(&t), NULL, 0) {
                    0 => WOKEN.fetch_add(1, Ordering::SeqCst),
                    r if r == crate::err(ETIMEDOUT) => TIMED_OUT.fetch_add(1, Ordering::SeqCst),
                    r => panic!("futex: a wait returned {r}"),
                };
            }
        })?);
    }
    let mut movers = Vec::new();
    for m in 0..cpus().clamp(1, 3) {
        movers.push(spawn_on("mover", m + 1, move || {
            let mut rng = uktest::Rng::new(0xabc + m as u64);
            let end = uktime::now() + Duration::from_millis(300);
            while uktime::now() < end {
                let n = 1 + rng.below(3) as usize;
                let op = FUTEX_PRIVATE_FLAG;
                match rng.below(4) {
                    0 => {
                        let r = futex(&A, FUTEX_CMP_REQUEUE | op, 0, n, &B, 0);
                        assert!(r >= 0, "cmp_requeue: {r}");
                        MOVED.fetch_add(r as usize, Ordering::Relaxed);
                    }
                    1 => {
                        let r = futex(&B, FUTEX_REQUEUE | op, 0, n, &A, 0);
                        assert!(r >= 0, "requeue: {r}");
                        MOVED.fetch_add(r as usize, Ordering::Relaxed);
                    }
                    2 => {
                        let r = futex(&A, FUTEX_WAKE | op, n as u32, 0, NULL, 0);
                        COUNTED.fetch_add(r as usize, Ordering::SeqCst);
                    }
                    _ => {
                        let r = futex(&B, FUTEX_WAKE | op, n as u32, 0, NULL, 0);
                        COUNTED.fetch_add(r as usize, Ordering::SeqCst);
                    }
                }
                uksched::yield_now();
            }
        })?);
    }
    for h in movers {
        h.join();
    }
    STOP.store(true, Ordering::SeqCst);
    for h in sleepers {
        h.join();
    }
    let (woken, counted) = (WOKEN.load(Ordering::SeqCst), COUNTED.load(Ordering::SeqCst));
    let (timed_out, moved) = (TIMED_OUT.load(Ordering::SeqCst), MOVED.load(Ordering::Relaxed));
    println!("futex: requeue race: {} woken, {} timed out, {} moved", woken, timed_out, moved);
    ut_assert_eq!(posix_futex::waiters(&A) + posix_futex::waiters(&B), 0, "waiters left queued");
    ut_assert_eq!(
        woken,
        counted,
        "waits woken vs wake-ups counted ({} timed out, {} moved)",
        timed_out,
        moved
    );
    ut_assert!(
        woken > 0 && timed_out > 0 && moved > 0,
        "no race: {} woken, {} timed out, {} moved",
        woken,
        timed_out,
        moved
    );
    Ok(())
}
uktest::test_case!(requeue_races_timeouts);

/// Waiters alternate between the two words of a `FUTEX_WAKE_OP` (on the
/// second, expecting its current value) while wakers run `WAKE_OP`s that
/// add 1 to the second word and wake one waiter of each (the second only
/// when the old value was even): the waits that ended woken are exactly
/// the wake-ups counted, and the second word counts every operation.
fn wake_op_races_waits() -> TestResult {
    static WORD1: AtomicU32 = AtomicU32::new(0);
    static WORD2: AtomicU32 = AtomicU32::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    static WOKEN: AtomicUsize = AtomicUsize::new(0);
    static COUNTED: AtomicUsize = AtomicUsize::new(0);
    static OPS: AtomicUsize = AtomicUsize::new(0);
    for c in [&WOKEN, &COUNTED, &OPS] {
        c.store(0, Ordering::SeqCst);
    }
    WORD1.store(0, Ordering::SeqCst);
    WORD2.store(0, Ordering::SeqCst);
    STOP.store(false, Ordering::SeqCst);
    let mut sleepers = Vec::new();
    for i in 0..4 {
        sleepers.push(spawn_on("waiter", i, move || {
            let mut k = i;
            while !STOP.load(Ordering::Relaxed) {
                let (word, val) =
                    if k.is_multiple_of(2) { (&WORD1, 0) } else { (&WORD2, WORD2.load(Ordering::SeqCst)) };
                match futex_wait(word, val, Some(Duration::from_micros(300))) {
                    Ok(()) => {
                        WOKEN.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(Errno(ETIMEDOUT | EAGAIN)) => {}
                    Err(e) => panic!("futex: a wait failed: {e}"),
                }
                k += 1;
            }
        })?);
    }
    let mut wakers = Vec::new();
    for w in 0..cpus().clamp(1, 2) {
        wakers.push(spawn_on("waker", w + 1, move || {
            let end = uktime::now() + Duration::from_millis(300);
            // ADD 1 to word 2; wake its waiter when the old value was even
            // (old & 1 == 0 is not expressible: use old >= 0 on alternate
            // operations, old < 0 (never) on the others).
            let mut k = 0u32;
            while uktime::now() < end {
                let cmp = if k.is_multiple_of(2) { FUTEX_OP_CMP_GE } else { FUTEX_OP_CMP_LT };
                let r =
                    futex_wake_op(&WORD1, &WORD2, 1, 1, futex_op(FUTEX_OP_ADD, 1, cmp, 0)).expect("wake_op");
                COUNTED.fetch_add(r, Ordering::SeqCst);
                OPS.fetch_add(1, Ordering::SeqCst);
                k += 1;
                uksched::yield_now();
            }
        })?);
    }
    for h in wakers {
        h.join();
    }
    STOP.store(true, Ordering::SeqCst);
    for h in sleepers {
        h.join();
    }
    let (woken, counted, ops) =
        (WOKEN.load(Ordering::SeqCst), COUNTED.load(Ordering::SeqCst), OPS.load(Ordering::SeqCst));
    println!("futex: wake_op race: {} operations, {} woken", ops, woken);
    ut_assert_eq!(WORD2.load(Ordering::SeqCst) as usize, ops, "the second word counts the operations");
    ut_assert_eq!(woken, counted, "waits woken vs wake-ups counted");
    ut_assert!(woken > 0, "no waiter was ever woken in {} operations", ops);
    if !settle(Duration::from_secs(1), || waiters(&WORD1) + waiters(&WORD2) == 0) {
        ut_fail!("waiters left queued");
    }
    Ok(())
}
uktest::test_case!(wake_op_races_waits);

/// `posix_futex::waiters`, local name.
fn waiters(word: &AtomicU32) -> usize {
    posix_futex::waiters(word)
}
