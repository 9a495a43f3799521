//! loom model checks of the wake/sleep protocol.
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p uksched --release --test loom
//! ```
//!
//! **Real code and stand-ins.** Of uksched, the models run `src/state.rs`
//! and `src/waitq.rs`: the real [`StateWord`] (`begin_wait`, `block`,
//! `wake`, `end_wait`, `set_running`) and the real wait-queue core
//! (`Queue`, `Waiter`: `push`, `wake`, `lock_pair`, `requeue`, `dequeue`,
//! `Drop`), whose atomics and lock are loom's under `cfg(loom)` — a
//! `cfg(loom)` build of the crate contains nothing else. Written here by
//! hand, following `src/wait.rs` and `src/sched.rs` step by step:
//!
//! * the **wait-queue wrapper**: `push` (`begin_wait` and queueing under the
//!   lock), `pop` (wake one, woken after the lock is released), and the
//!   waiters' sequences (`waiter`, `timed_waiter`, `futex_waiter`), which
//!   re-write `WaitQueue::round` and `wait_if`;
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
//! Not modelled: preemption control and interrupts, more than one waiter
//! per queue except in model 6, `wait_any`, yields (`set_queued`), exit and
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
//!    nor enqueues, a later wait;
//! 4. the futex protocol (`wait_if`): a word checked under the queue's lock
//!    against a store-then-wake: no lost wake-up;
//! 5. a requeue (to another queue, or within one) racing the waiter's
//!    timeout and a wake-up on the target queue: exactly one of the waker
//!    and the waiter takes the node off, and no queue keeps it;
//! 6. two requeues in opposite directions at once: no deadlock (the pair
//!    is locked lower address first), no waiter lost.
//!
//! Plus negative controls: the waiter of model 1 checking its condition
//! *before* it queues itself, and the waiter of model 4 reading the word
//! before taking the lock, must lose a wake-up, and do; and model 3 with
//! the late wake-up racing the end of its own wait. (A `dequeue` that
//! trusts the queue it read without re-reading it under that queue's lock
//! fails model 5; that was checked by editing `waitq.rs`, not by a
//! committed test.)
#![cfg(loom)]

use core::cell::Cell;
use core::pin::{Pin, pin};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use uksched::state::{BLOCKED, QUEUED, RUNNING, StateWord, Wake};
use uksched::waitq::{self, MATCH_ANY};

/// A model builder bounded to `LOOM_MAX_PREEMPTIONS`, or 3.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

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

/// The real wait-queue core (`src/waitq.rs`), with a token holding the
/// wait sequence number, as `WaitQueue`'s does.
type Queue = waitq::Queue<Seq>;
type Node = waitq::Waiter<Seq>;

/// The wait sequence number a waker is handed.
struct Seq(Cell<u64>);

// SAFETY: written before the node is queued, read by wakers under the
// queue's lock (as `wait.rs`'s `Wakee::seq`).
unsafe impl Sync for Seq {}

fn node() -> Node {
    Node::new(Seq(Cell::new(0)), 0, MATCH_ANY)
}

/// `WaitQueue::round`'s first step: under the queue's lock, begin the wait
/// and queue the node with its sequence number.
fn push(q: &Queue, node: Pin<&Node>, t: &Thread) -> u64 {
    let mut q = q.lock();
    let seq = t.state.begin_wait();
    node.token().0.set(seq);
    // SAFETY: the queue (in the model's shared state) outlives the node,
    // which is off every queue before the waiter returns.
    unsafe { q.push(node) };
    seq
}

/// `wake_one`'s first half: take the longest waiter off the queue (it is
/// woken after the lock is released, as `WaitQueue`'s wake batch does).
fn pop(q: &Queue) -> Option<u64> {
    let mut seq = None;
    q.lock().wake(1, |_, _| true, |t| seq = Some(t.0.get()));
    seq
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
        queue: Queue::new(),
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
        let node = pin!(node());
        let seq = push(&s.queue, node.as_ref(), &s.t);
        assert_eq!(s.t.state.load() >> 8, seq);
        if !check_first && s.cond.load(Ordering::Acquire) {
            // Satisfied after queueing: no sleep.
            node.as_ref().dequeue();
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
        let still_queued = node.as_ref().dequeue();
        s.t.state.end_wait();
        assert!(!still_queued, "ran again while still on the queue, with no timeout");
    }
    slept
}

fn waker(s: &WaitShared) {
    s.cond.store(true, Ordering::Release);
    if let Some(seq) = pop(&s.queue) {
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
        assert!(s.queue.is_empty(), "left on the queue");
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
    let node = pin!(node());
    let seq = push(&s.queue, node.as_ref(), &s.t);
    // No condition to check: `before_sleep` says sleep.
    *s.timer.lock().unwrap() = Some(seq);
    let slept = s.t.schedule(&s.wakers_done, 2);
    let still_queued = node.as_ref().dequeue();
    s.t.state.end_wait();
    s.timer.lock().unwrap().take();
    s.waiter_done.store(true, Ordering::Release);
    (still_queued, slept)
}

fn timed_model() {
    model(|| {
        let s = Arc::new(TimedShared {
            t: Thread::new(),
            queue: Queue::new(),
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
            if let Some(seq) = pop(&sw.queue) {
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
        assert!(s.queue.is_empty());
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
            first: Queue::new(),
            second: Queue::new(),
            first_over: AtomicBool::new(false),
            cond2: AtomicBool::new(false),
            second_waker_woke: AtomicBool::new(false),
            wakers_done: AtomicUsize::new(0),
            stale_result: Mutex::new(None),
        });
        let node1 = pin!(node());
        let seq1 = push(&s.first, node1.as_ref(), &s.t);
        // The first wait's waker pops wait 1 (at any time) and wakes it.
        let s1 = s.clone();
        let stale_waker = thread::spawn(move || {
            if let Some(seq) = pop(&s1.first) {
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
            if let Some(seq) = pop(&s2.second) {
                s2.second_waker_woke.store(true, Ordering::SeqCst);
                s2.t.wake(seq);
            }
            s2.wakers_done.fetch_add(1, Ordering::Release);
        });

        // Wait 1 ends by itself.
        node1.as_ref().dequeue();
        s.t.state.end_wait();
        s.first_over.store(true, Ordering::Release);
        // Wait 2: queue, check the condition, sleep until the second waker.
        let node2 = pin!(node());
        let seq2 = push(&s.second, node2.as_ref(), &s.t);
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
        let still_queued = node2.as_ref().dequeue();
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

// ---------------------------------------------------------------------------
// Model 4: the futex protocol — a value checked under the queue's lock.

struct FutexShared {
    t: Thread,
    queue: Queue,
    /// The futex word: 0 = wait, 1 = go.
    word: AtomicU32,
    wakers_done: AtomicUsize,
}

/// `WaitQueue::wait_if(key 0, MATCH_ANY, word == 0)`: check the word under
/// the queue's lock and queue only if it still says wait. `check_first`:
/// the broken variant that reads the word before taking the lock (the
/// lost-wake-up race of a futex that checks outside its bucket lock).
/// Returns whether it slept.
fn futex_waiter(s: &FutexShared, check_first: bool) -> bool {
    let node = pin!(node());
    let queued = if check_first {
        s.word.load(Ordering::Relaxed) == 0 && {
            push(&s.queue, node.as_ref(), &s.t);
            true
        }
    } else {
        let mut q = s.queue.lock();
        s.word.load(Ordering::Relaxed) == 0 && {
            let seq = s.t.state.begin_wait();
            node.token().0.set(seq);
            // SAFETY: the queue is in the shared state, which outlives the
            // node.
            unsafe { q.push(node.as_ref()) };
            true
        }
    };
    if !queued {
        return false;
    }
    let slept = s.t.schedule(&s.wakers_done, 1);
    let still_queued = node.as_ref().dequeue();
    s.t.state.end_wait();
    assert!(!still_queued, "ran again while still queued, with no timeout");
    slept
}

/// `FUTEX_WAKE` after a store to the word: under the lock, take every
/// waiter; wake them after the lock is released.
fn futex_waker(s: &FutexShared) {
    s.word.store(1, Ordering::Relaxed);
    let mut seq = None;
    let n = s.queue.lock().wake(usize::MAX, |key, _| key == 0, |t| seq = Some(t.0.get()));
    assert!(n <= 1);
    if let Some(seq) = seq {
        s.t.wake(seq);
    }
    s.wakers_done.fetch_add(1, Ordering::Release);
}

fn futex_model(check_first: bool) {
    model(move || {
        let s = Arc::new(FutexShared {
            t: Thread::new(),
            queue: Queue::new(),
            word: AtomicU32::new(0),
            wakers_done: AtomicUsize::new(0),
        });
        let w = s.clone();
        let waker = thread::spawn(move || futex_waker(&w));
        let slept = futex_waiter(&s, check_first);
        waker.join().unwrap();
        assert_eq!(s.t.state.state(), RUNNING);
        assert_eq!(s.t.enqueued.load(Ordering::Relaxed), usize::from(slept));
        assert!(s.queue.is_empty(), "left on the queue");
    });
}

#[test]
fn a_value_checked_under_the_queue_lock_loses_no_wake_up() {
    futex_model(false);
}

/// Negative control: reading the word before taking the queue's lock lets
/// the waker store and find the queue empty in between.
#[test]
#[should_panic(expected = "lost wake-up")]
fn a_value_checked_before_the_queue_lock_loses_wake_ups() {
    futex_model(true);
}

// ---------------------------------------------------------------------------
// Model 5: a requeue racing a timeout and a wake-up on the target queue.

struct RequeueShared {
    a: Queue,
    b: Queue,
    requeued: AtomicUsize,
    woken: AtomicUsize,
}

/// A waiter with key 1 sits on queue `a`. At once: a requeuer moves key-1
/// waiters from `a` to `b` as key 2 (`FUTEX_REQUEUE`), a waker wakes one
/// key-2 waiter of `b`, and the waiter times out and takes itself off
/// (`Waiter::dequeue`, which must follow the node to `b`). Exactly one of
/// the waker and the waiter takes it off; it ends on no queue; its key
/// says whether the requeue moved it. `same`: `a` and `b` are one queue
/// (two futex words in one hash bucket: the requeue only changes the key).
fn requeue_model(same: bool) {
    model(move || {
        let s = Arc::new(RequeueShared {
            a: Queue::new(),
            b: Queue::new(),
            requeued: AtomicUsize::new(0),
            woken: AtomicUsize::new(0),
        });
        let target = move |s: &RequeueShared| -> *const Queue { if same { &s.a } else { &s.b } };
        let node = pin!(Node::new(Seq(Cell::new(0)), 1, MATCH_ANY));
        // SAFETY: the queues (in `s`) outlive the node, dropped first.
        unsafe { s.a.lock().push(node.as_ref()) };
        let r = s.clone();
        let requeuer = thread::spawn(move || {
            // SAFETY: `target` points into `r`, alive for this closure.
            let to = unsafe { &*target(&r) };
            let mut pair = Queue::lock_pair(&r.a, to);
            // SAFETY: the target queue lives in the shared state, which
            // outlives the waiter.
            let n = unsafe { pair.requeue(usize::MAX, |key, _| key == 1, 2) };
            r.requeued.store(n, Ordering::Relaxed);
        });
        let w = s.clone();
        let waker = thread::spawn(move || {
            // SAFETY: as above.
            let on = unsafe { &*target(&w) };
            let n = on.lock().wake(1, |key, _| key == 2, |_| {});
            w.woken.store(n, Ordering::Relaxed);
        });
        let timed_out = node.as_ref().dequeue();
        requeuer.join().unwrap();
        waker.join().unwrap();
        let (requeued, woken) = (s.requeued.load(Ordering::Relaxed), s.woken.load(Ordering::Relaxed));
        assert!(requeued <= 1 && woken <= 1);
        assert_eq!(timed_out, woken == 0, "taken off by both or by neither");
        assert!(woken <= requeued, "woken on the target queue without being moved there");
        assert!(!node.is_queued());
        assert_eq!(node.key(), if requeued == 1 { 2 } else { 1 });
        assert!(s.a.is_empty() && s.b.is_empty(), "a node left on a queue");
    });
}

#[test]
fn requeue_racing_a_timeout_and_a_wake_up_leaves_no_node_behind() {
    requeue_model(false);
}

#[test]
fn requeue_within_one_queue_racing_a_timeout_and_a_wake_up() {
    requeue_model(true);
}

// ---------------------------------------------------------------------------
// Model 6: two requeues in opposite directions at once.

/// One waiter on each of two queues; two threads requeue `a` → `b` and
/// `b` → `a` at once (both lock the pair lower address first, so neither
/// deadlocks — loom reports a deadlock as a failure). Both waiters end on
/// some queue, each where the later requeue that moved it put it, and
/// take themselves off from there.
#[test]
fn opposite_requeues_neither_deadlock_nor_lose_a_waiter() {
    model(|| {
        let s = Arc::new((Queue::new(), Queue::new()));
        let on_a = pin!(Node::new(Seq(Cell::new(0)), 1, MATCH_ANY));
        let on_b = pin!(Node::new(Seq(Cell::new(0)), 1, MATCH_ANY));
        // SAFETY: the queues (in `s`) outlive the nodes, dropped first.
        unsafe {
            s.0.lock().push(on_a.as_ref());
            s.1.lock().push(on_b.as_ref());
        }
        let s1 = s.clone();
        // SAFETY: the target queue lives in `s`, which outlives the nodes.
        let t1 = thread::spawn(move || unsafe { Queue::lock_pair(&s1.0, &s1.1).requeue(1, |_, _| true, 1) });
        let s2 = s.clone();
        // SAFETY: as above.
        let t2 = thread::spawn(move || unsafe { Queue::lock_pair(&s2.1, &s2.0).requeue(1, |_, _| true, 1) });
        let (m1, m2) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(m1 <= 1 && m2 <= 1);
        assert_eq!(s.0.len() + s.1.len(), 2, "a waiter lost");
        assert!(on_a.as_ref().dequeue() && on_b.as_ref().dequeue(), "a waiter not where it was put");
        assert!(s.0.is_empty() && s.1.is_empty());
    });
}
