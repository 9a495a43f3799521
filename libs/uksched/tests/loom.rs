//! loom model checks of the wake/sleep protocol.
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p uksched --release --test loom
//! ```
//!
//! **Real code and stand-ins.** Of uksched, the models run only
//! `src/state.rs`: the real [`StateWord`] (`begin_wait`, `block`, `wake`,
//! `end_wait`, `set_running`, `state`, `load`), whose atomics are loom's
//! under `cfg(loom)` — a `cfg(loom)` build of the crate contains nothing
//! else. Everything else below is written here by hand, following
//! `src/wait.rs` and `src/sched.rs` step by step but not compiled from
//! them, so a change there is only checked once it is copied here:
//!
//! * the **wait queue**: a loom `Mutex` around a `Vec` of (thread, wait
//!   sequence) entries, standing in for `WaitQueue`'s intrusive list under
//!   a `SpinLockIrq`; `waiter` and `timed_waiter` re-write
//!   `WaitQueue::round` (queue and `begin_wait` under the lock, check,
//!   sleep, dequeue, `end_wait`), `pop` + `Thread::wake` re-write
//!   `wake_one`;
//! * the **scheduler**: the waiter's `schedule()` is `block()`; when it
//!   succeeds the thread "switches out" and spins (with loom's
//!   `yield_now`) until some waker's `wake` returned `Enqueue` and put it on
//!   the "run queue" (a counter: it must reach 1 and never 2), then the
//!   "CPU picks it" (`set_running`) — no real run queue, CPU, IPI,
//!   preemption or migration;
//! * a **timer**: an armed (sequence) slot that the timer thread takes and
//!   wakes, and the waiter cancels when it runs again, standing in for
//!   `sched::add_timer` / `on_timer` / `cancel_timer`.
//!
//! Not modelled at all: preemption control and interrupts, several waiters
//! on one queue, `wake_all` / `wake_n`, yields (`set_queued`), exit and
//! `join`.
//!
//! loom runs each model under every interleaving up to a bound of
//! preemptions (`LOOM_MAX_PREEMPTIONS`, 3 when unset) and every value the
//! memory model allows the atomics' orderings to return; `loom::cell::UnsafeCell` fails
//! a model on unsynchronised accesses. A lost wake-up shows as a waiter
//! that is still switched out when every waker is done (the models check
//! for it rather than spin forever).
//!
//! The models:
//!
//! 1. a waiter (`wait_until`) against a waker: it always ends up running
//!    (no lost wake-up), enqueued at most once, and sees what the waker
//!    wrote before waking;
//! 2. a timed wait whose timer races the queue's waker: exactly one of them
//!    ends it, and "timed out" / "woken" agrees with who took it off the
//!    queue;
//! 3. a late wake-up carrying an old wait's sequence number never ends,
//!    nor enqueues, a later wait.
//!
//! Plus a negative control — the waiter of model 1 checking its condition
//! *before* it queues itself must lose a wake-up, and does — and model 3
//! with the late wake-up racing the end of its own wait.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use uksched::state::{BLOCKED, QUEUED, RUNNING, StateWord, Wake};

/// A model builder bounded to `LOOM_MAX_PREEMPTIONS`, or 3.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// The waiting thread's id in the queue models.
const WAITER: usize = 1;

/// One thread as the scheduler sees it.
struct Thread {
    state: StateWord,
    /// Times a waker put it on a run queue (`Wake::Enqueue`).
    enqueued: AtomicUsize,
}

impl Thread {
    fn new() -> Self {
        Self { state: StateWord::new_running(), enqueued: AtomicUsize::new(0) }
    }

    /// A waker's `sched::wake`: end wait `seq`, enqueueing when the thread
    /// had switched out.
    fn wake(&self, seq: u64) -> Wake {
        let w = self.state.wake(seq);
        if w == Wake::Enqueue {
            self.enqueued.fetch_add(1, Ordering::Release);
        }
        w
    }

    /// The waiter's `sched::schedule()`: switch out unless woken already,
    /// and if switched out, wait to be enqueued and picked. Returns whether
    /// it slept. `wakers_done` counts wakers that finished: when all
    /// `wakers` did and nobody enqueued it, the wake-up was lost.
    fn schedule(&self, wakers_done: &AtomicUsize, wakers: usize) -> bool {
        if !self.state.block() {
            return false;
        }
        // Switched out: blocked, or already queued by a waker.
        assert!(matches!(self.state.state(), BLOCKED | QUEUED));
        loop {
            if self.enqueued.load(Ordering::Acquire) > 0 {
                break;
            }
            if wakers_done.load(Ordering::Acquire) == wakers {
                assert!(
                    self.enqueued.load(Ordering::Acquire) > 0,
                    "lost wake-up: switched out, every waker done"
                );
            }
            thread::yield_now();
        }
        // A CPU picks it from its run queue.
        self.state.set_running();
        true
    }
}

/// A wait queue: (thread, wait sequence) entries.
type Queue = Mutex<Vec<(usize, u64)>>;

fn remove(q: &Queue, who: usize) -> bool {
    let mut q = q.lock().unwrap();
    match q.iter().position(|&(t, _)| t == who) {
        Some(i) => {
            q.remove(i);
            true
        }
        None => false,
    }
}

/// `wake_one`'s first half: take the longest waiter off the queue (it
/// wakes it after releasing the queue lock, as `WaitQueue::wake_one` does).
fn pop(q: &Queue) -> Option<(usize, u64)> {
    let mut q = q.lock().unwrap();
    if q.is_empty() { None } else { Some(q.remove(0)) }
}

/// Data the waker writes before waking: the woken waiter reads it as soon
/// as it runs again, before any lock, so the state word (or the run queue)
/// must order the two.
struct Message(UnsafeCell<u32>);

// SAFETY: accesses are checked by loom (a race fails the model).
unsafe impl Sync for Message {}

// ---------------------------------------------------------------------------
// Model 1: a waiter against a waker — no lost wake-up, enqueued at most once.

struct WaitShared {
    t: Thread,
    queue: Queue,
    cond: AtomicBool,
    message: Message,
    wakers_done: AtomicUsize,
}

fn wait_shared() -> Arc<WaitShared> {
    Arc::new(WaitShared {
        t: Thread::new(),
        queue: Mutex::new(Vec::new()),
        cond: AtomicBool::new(false),
        message: Message(UnsafeCell::new(0)),
        wakers_done: AtomicUsize::new(0),
    })
}

/// `WaitQueue::wait_until(cond)`, one thread, `src/wait.rs` step by step.
/// `check_first`: the broken variant that checks the condition *before*
/// queueing (and not after). Returns whether it slept.
fn waiter(s: &WaitShared, check_first: bool) -> bool {
    let mut slept = false;
    while !s.cond.load(Ordering::Acquire) {
        let seq = {
            let mut q = s.queue.lock().unwrap();
            let seq = s.t.state.begin_wait();
            q.push((WAITER, seq));
            seq
        };
        assert_eq!(s.t.state.load() >> 8, seq);
        if !check_first && s.cond.load(Ordering::Acquire) {
            // Satisfied after queueing: no sleep.
            remove(&s.queue, WAITER);
            s.t.state.end_wait();
            break;
        }
        if s.t.schedule(&s.wakers_done, 1) {
            slept = true;
        }
        // Woken (either way): the waker wrote its message before waking.
        // SAFETY: loom checks that the wake-up ordered this read after
        // the waker's write.
        let m = s.message.0.with(|m| unsafe { *m });
        assert_eq!(m, 1, "woken without the waker's message");
        let still_queued = remove(&s.queue, WAITER);
        s.t.state.end_wait();
        assert!(!still_queued, "ran again while still on the queue, with no timeout");
    }
    slept
}

fn waker(s: &WaitShared) {
    s.cond.store(true, Ordering::Release);
    if let Some((who, seq)) = pop(&s.queue) {
        assert_eq!(who, WAITER);
        // SAFETY: only this thread writes, before the wake-up that
        // publishes it.
        s.message.0.with_mut(|m| unsafe { *m = 1 });
        // Stale when the waiter saw the condition after queueing and
        // ended the wait itself.
        s.t.wake(seq);
    }
    s.wakers_done.fetch_add(1, Ordering::Release);
}

/// Runs model 1: the waiter in the model's main thread, the waker in
/// another. The waiter always ends up running, enqueued at most once.
fn waiter_against_waker(check_first: bool) {
    model(move || {
        let s = wait_shared();
        let w = s.clone();
        let waker_thread = thread::spawn(move || waker(&w));
        let slept = waiter(&s, check_first);
        waker_thread.join().unwrap();
        assert_eq!(s.t.state.state(), RUNNING);
        let enqueued = s.t.enqueued.load(Ordering::Relaxed);
        assert!(enqueued <= 1, "enqueued {enqueued} times");
        assert_eq!(enqueued, usize::from(slept), "enqueued without sleeping, or woke unenqueued");
        assert!(s.queue.lock().unwrap().is_empty(), "left on the queue");
    });
}

#[test]
fn no_lost_wake_up_and_enqueued_at_most_once() {
    waiter_against_waker(false);
}

/// Negative control: the waiter checks its condition *before* queueing
/// itself, not after; the waker sets the condition and finds the queue
/// empty in between, and the waiter sleeps forever. The model must find
/// that interleaving.
#[test]
#[should_panic(expected = "lost wake-up")]
fn checking_before_queueing_loses_wake_ups() {
    waiter_against_waker(true);
}

// ---------------------------------------------------------------------------
// Model 2: a timeout racing with a wake-up.

struct TimedShared {
    t: Thread,
    queue: Queue,
    /// The armed timer: the wait sequence it wakes.
    timer: Mutex<Option<u64>>,
    /// Whether the queue waker popped the waiter.
    popped: AtomicBool,
    wakers_done: AtomicUsize,
    /// The timer's wake-up ended the wait (it was not stale).
    timer_woke: AtomicBool,
    /// The waiter finished (cancelled its timer).
    waiter_done: AtomicBool,
}

/// The waiter of `wait_with(|| true, Some(deadline))`: queue, arm the
/// timer, sleep; when it runs again it looks whether it is still queued
/// (timed out) or not (woken), takes itself off, ends the wait and cancels
/// the timer (`src/wait.rs`, `round`). Returns (timed out, slept).
fn timed_waiter(s: &TimedShared) -> (bool, bool) {
    let seq = {
        let mut q = s.queue.lock().unwrap();
        let seq = s.t.state.begin_wait();
        q.push((WAITER, seq));
        seq
    };
    // No condition to check: `before_sleep` says sleep.
    *s.timer.lock().unwrap() = Some(seq);
    let slept = s.t.schedule(&s.wakers_done, 2);
    let still_queued = remove(&s.queue, WAITER);
    s.t.state.end_wait();
    s.timer.lock().unwrap().take();
    s.waiter_done.store(true, Ordering::Release);
    (still_queued, slept)
}

fn timed_model() {
    model(|| {
        let s = Arc::new(TimedShared {
            t: Thread::new(),
            queue: Mutex::new(Vec::new()),
            timer: Mutex::new(None),
            popped: AtomicBool::new(false),
            wakers_done: AtomicUsize::new(0),
            timer_woke: AtomicBool::new(false),
            waiter_done: AtomicBool::new(false),
        });
        // The timer interrupt: fires once, at some moment after it was
        // armed, unless the waiter cancelled it first.
        let st = s.clone();
        let timer = thread::spawn(move || {
            loop {
                let armed = st.timer.lock().unwrap().take();
                if let Some(seq) = armed {
                    let w = st.t.wake(seq);
                    st.timer_woke.store(w != Wake::Stale, Ordering::Relaxed);
                    break;
                }
                if st.waiter_done.load(Ordering::Acquire) {
                    break;
                }
                thread::yield_now();
            }
            st.wakers_done.fetch_add(1, Ordering::Release);
        });
        // `wake_one` on the queue.
        let sw = s.clone();
        let queue_waker = thread::spawn(move || {
            if let Some((_, seq)) = pop(&sw.queue) {
                sw.popped.store(true, Ordering::Relaxed);
                sw.t.wake(seq);
            }
            sw.wakers_done.fetch_add(1, Ordering::Release);
        });
        let (timed_out, slept) = timed_waiter(&s);
        timer.join().unwrap();
        queue_waker.join().unwrap();
        let enqueued = s.t.enqueued.load(Ordering::Relaxed);
        assert!(enqueued <= 1, "enqueued {enqueued} times: by the timer and the waker");
        assert_eq!(enqueued, usize::from(slept), "enqueued without sleeping, or woke unenqueued");
        assert_eq!(s.t.state.state(), RUNNING);
        // Consistent result: "woken" exactly when the queue waker took it
        // off the queue (then `wake_one` woke exactly this waiter), "timed
        // out" exactly when nobody did (then the waker woke nobody).
        assert_eq!(timed_out, !s.popped.load(Ordering::Relaxed), "the result disagrees with the queue");
        // A timeout is only reported when the timer ended this wait.
        if timed_out {
            assert!(s.timer_woke.load(Ordering::Relaxed), "timed out, but the timer did not wake it");
        }
        assert!(s.queue.lock().unwrap().is_empty());
        assert!(s.timer.lock().unwrap().is_none(), "the timer was left armed");
    });
}

#[test]
fn a_timeout_racing_a_wake_up_enqueues_once() {
    timed_model();
}

// ---------------------------------------------------------------------------
// Model 3: a stale wake-up never ends a later wait.

struct StaleShared {
    t: Thread,
    first: Queue,
    second: Queue,
    /// Wait 1 is over (the waiter ended it itself).
    first_over: AtomicBool,
    /// The second wait's condition.
    cond2: AtomicBool,
    /// The second wait's waker has started waking (set before its `wake`).
    second_waker_woke: AtomicBool,
    wakers_done: AtomicUsize,
    /// What the stale waker's wake-up of the first wait did.
    stale_result: Mutex<Option<Wake>>,
}

/// The waiter's wait 1 is queued, then ends by itself (its condition held
/// after queueing); a waker that popped it wakes it late — with wait 1's
/// sequence number — while the waiter is in wait 2, which only the second
/// waker may end. `race_the_end`: the late wake-up may also come while wait
/// 1 is still ending (its `end_wait` racing the wake's compare-and-swap);
/// otherwise it comes after (at any point of wait 2).
fn stale_model(race_the_end: bool) {
    model(move || {
        let s = Arc::new(StaleShared {
            t: Thread::new(),
            first: Mutex::new(Vec::new()),
            second: Mutex::new(Vec::new()),
            first_over: AtomicBool::new(false),
            cond2: AtomicBool::new(false),
            second_waker_woke: AtomicBool::new(false),
            wakers_done: AtomicUsize::new(0),
            stale_result: Mutex::new(None),
        });
        let seq1 = {
            let mut q = s.first.lock().unwrap();
            let seq = s.t.state.begin_wait();
            q.push((WAITER, seq));
            seq
        };
        // The first wait's waker pops wait 1 (at any time) and wakes it.
        let s1 = s.clone();
        let stale_waker = thread::spawn(move || {
            if let Some((_, seq)) = pop(&s1.first) {
                while !race_the_end && !s1.first_over.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                *s1.stale_result.lock().unwrap() = Some(s1.t.wake(seq));
            }
            s1.wakers_done.fetch_add(1, Ordering::Release);
        });
        // The second wait's waker: sets the condition, then wakes.
        let s2 = s.clone();
        let second_waker = thread::spawn(move || {
            s2.cond2.store(true, Ordering::Release);
            if let Some((_, seq)) = pop(&s2.second) {
                s2.second_waker_woke.store(true, Ordering::SeqCst);
                s2.t.wake(seq);
            }
            s2.wakers_done.fetch_add(1, Ordering::Release);
        });

        // Wait 1 ends by itself.
        remove(&s.first, WAITER);
        s.t.state.end_wait();
        s.first_over.store(true, Ordering::Release);
        // Wait 2: queue, check the condition, sleep until the second waker.
        let seq2 = {
            let mut q = s.second.lock().unwrap();
            let seq = s.t.state.begin_wait();
            q.push((WAITER, seq));
            seq
        };
        assert_ne!(seq1, seq2);
        let mut slept = false;
        if !s.cond2.load(Ordering::Acquire) {
            let blocked = s.t.state.block();
            if !blocked {
                // Only wait 2's own waker may keep it from sleeping, and
                // its wake-up publishes what the waker did before it.
                let word = s.t.state.load();
                assert!(
                    s.second_waker_woke.load(Ordering::SeqCst),
                    "wait {seq2} ended before it slept (word {word:#x}), not visibly by its own waker: {}",
                    if word >> 8 == seq2 {
                        "a wake-up that does not publish the waker's writes"
                    } else {
                        "a stale wake-up"
                    }
                );
            } else {
                slept = true;
                while s.t.enqueued.load(Ordering::Acquire) == 0 {
                    if s.wakers_done.load(Ordering::Acquire) == 2 {
                        assert!(
                            s.t.enqueued.load(Ordering::Acquire) > 0,
                            "lost wake-up: switched out, every waker done"
                        );
                    }
                    thread::yield_now();
                }
                assert!(s.second_waker_woke.load(Ordering::SeqCst), "a stale wake-up enqueued a later wait");
                s.t.state.set_running();
            }
        }
        let still_queued = remove(&s.second, WAITER);
        s.t.state.end_wait();
        assert!(!(still_queued && slept), "ran again while still queued");
        stale_waker.join().unwrap();
        second_waker.join().unwrap();

        // The late wake-up either caught wait 1 before it ended (it kept
        // running) or found it over; it never enqueued anything.
        let r = *s.stale_result.lock().unwrap();
        assert!(matches!(r, None | Some(Wake::StillRunning | Wake::Stale)), "the late wake-up did {r:?}");
        if !race_the_end {
            assert!(matches!(r, None | Some(Wake::Stale)), "a wake-up after the wait's end did {r:?}");
        }
        assert_eq!(s.t.enqueued.load(Ordering::Relaxed), usize::from(slept), "enqueued by the wrong wake-up");
        assert_eq!(s.t.state.state(), RUNNING);
    });
}

#[test]
fn a_stale_wake_up_never_wakes_a_later_wait() {
    stale_model(false);
}

/// The same, with the late wake-up's compare-and-swap also racing wait 1's
/// `end_wait` and wait 2's `begin_wait`. Both are `swap`s: loom 0.7 places
/// a plain store between the read and the write of another thread's
/// read-modify-write (tokio-rs/loom#389, which the C/C++ memory model
/// forbids), so with plain stores this model reported a stale wake-up
/// ending wait 2 that real hardware cannot produce; read-modify-writes are
/// modelled exactly (and cost nothing extra on x86 for `begin_wait`).
#[test]
fn a_stale_wake_up_racing_the_end_of_its_wait() {
    stale_model(true);
}
