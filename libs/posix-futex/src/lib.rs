//! # posix-futex — Linux futexes
//!
//! A futex ("fast userspace mutex") is a 32-bit word in ordinary memory and
//! a kernel wait queue that belongs to its address. Locks built on one
//! take and release the word with a single atomic instruction when nobody
//! contends; only a thread that must wait asks the kernel to sleep
//! ([`FUTEX_WAIT`]: "sleep if the word still holds this value"), and only an
//! unlock that saw waiters asks it to wake ([`FUTEX_WAKE`]). The value check
//! and the queueing happen under the queue's lock, so a waker that changes
//! the word and then wakes is never missed.
//!
//! What it offers:
//!
//! * the raw Linux ABI: [`sys_futex`] with Linux's arguments and results
//!   (a count, or `-errno`), [`sys_futex_waitv`], [`sys_set_robust_list`],
//!   [`sys_get_robust_list`]; the constants of `linux/futex.h` ([`abi`],
//!   re-exported here), the error numbers ([`errno`]) and [`Timespec`];
//! * a safe Rust API over the same code: [`futex_wait`],
//!   [`futex_wait_bitset`], [`futex_wake`], [`futex_wake_bitset`],
//!   [`futex_requeue`], [`futex_cmp_requeue`], [`futex_wake_op`],
//!   [`futex_waitv`], and [`gettid`] for robust and PI-style owner words.
//!
//! | Linux | here | notes |
//! |---|---|---|
//! | `FUTEX_WAIT` | [`futex_wait`] | relative timeout, monotonic clock |
//! | `FUTEX_WAKE` | [`futex_wake`] | |
//! | `FUTEX_REQUEUE`, `FUTEX_CMP_REQUEUE` | [`futex_requeue`], [`futex_cmp_requeue`] | waiters move between buckets under both locks |
//! | `FUTEX_WAKE_OP` | [`futex_wake_op`] | all 5 operations, 6 comparisons, Linux's encoding ([`abi::futex_op`]) |
//! | `FUTEX_WAIT_BITSET`, `FUTEX_WAKE_BITSET` | [`futex_wait_bitset`], [`futex_wake_bitset`] | absolute timeout, monotonic or `FUTEX_CLOCK_REALTIME` |
//! | `futex_waitv` | [`futex_waitv`] | 1..=128 words, returns the index woken |
//! | `set_robust_list`, `get_robust_list` | [`sys_set_robust_list`], [`sys_get_robust_list`] | owner-died marking and one wake-up per held futex when a thread exits |
//! | PI operations (`FUTEX_LOCK_PI`, `UNLOCK_PI`, `TRYLOCK_PI`, `WAIT_REQUEUE_PI`, `CMP_REQUEUE_PI`, `LOCK_PI2`) | — | `ENOSYS`, as a Linux built without `CONFIG_FUTEX_PI` answers |
//!
//! ## How it works
//!
//! Waiters sleep in a table of hash buckets, [`BUCKETS_PER_CPU`] per CPU
//! (rounded up to a power of two; Linux uses 256 per CPU), each a
//! [`uksched::WaitQueue`] on its own cache line. A waiter's key is its
//! word's address: a unikernel has one address space, so a word has one
//! address, and `FUTEX_PRIVATE_FLAG` (private to a process) selects the
//! same futex as the shared form — the flag is accepted and changes
//! nothing. A wait checks the word under its bucket's lock
//! ([`uksched::WaitQueue::wait_if`]); a wake takes the matching waiters off
//! in one hold of the lock; a requeue or `FUTEX_WAKE_OP` locks both buckets
//! (lower address first) and moves or wakes in one step. Timeouts, wake-ups
//! and requeues may race freely: each waiter knows which bucket holds it
//! (see `uksched::waitq`, model-checked with loom).
//!
//! ## Where it differs from Linux
//!
//! * **No signals**, so no `EINTR`: a wait ends woken (0), timed out
//!   (`ETIMEDOUT`) or refused (`EAGAIN`).
//! * **`EFAULT`** is decided before touching the word: null, or not mapped
//!   (not RAM of the identity map, nor a mapped page of a thread stack).
//!   Linux answers a private `FUTEX_WAKE` on an unmapped address with 0;
//!   here every operation reports `EFAULT` for it.
//! * **`FUTEX_CLOCK_REALTIME`** deadlines are converted to the monotonic
//!   clock when the wait starts ([`uktime::realtime`]); nothing can set the
//!   realtime clock later, so the conversion is exact.
//! * **`futex_waitv`** accepts 32-bit private or shared words; `FUTEX2_NUMA`
//!   is `EINVAL` (as before Linux 6.16).
//! * **`get_robust_list`** reads only the calling thread's list (pid 0 or its
//!   own id); another thread's is `EPERM`, as if ptrace access were denied.
//!
//! **Needs:** `uksched` (wait queues, threads, thread-local robust lists),
//! `uktime` (timeouts, the realtime clock), `ukvmem` (whether a stack
//! address is mapped), `ukplat` (the memory map, CPU count).
//!
//! **Config options:** `posix-futex.buckets_per_cpu`; `broken_unlocked_check`
//! (test only: reads the word before taking the bucket's lock, the race
//! this crate exists to avoid, so that the futex app's stress can show it
//! notices).
//!
//! ```no_run
//! use core::sync::atomic::{AtomicU32, Ordering};
//! use posix_futex::{futex_wait, futex_wake};
//!
//! static READY: AtomicU32 = AtomicU32::new(0);
//! let waiter = uksched::spawn(|| {
//!     while READY.load(Ordering::Acquire) == 0 {
//!         // Sleeps only while the word is still 0; EAGAIN if it changed.
//!         let _ = futex_wait(&READY, 0, None);
//!     }
//! });
//! READY.store(1, Ordering::Release);
//! futex_wake(&READY, 1);
//! waiter.join();
//! ```
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod abi;
pub mod errno;
mod robust;
pub mod table;

pub use abi::*;
pub use robust::{RobustList, RobustListHead, sys_get_robust_list, sys_set_robust_list};

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use uksched::{AnyEntry, AnyOutcome, Instant, WaitOutcome, WaitQueue};

/// Hash buckets per CPU (`posix_futex.buckets_per_cpu`).
pub const BUCKETS_PER_CPU: usize = ukconfig::posix_futex::BUCKETS_PER_CPU;

/// An error number (positive), as [`sys_futex`] returns it negated.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Its symbolic name (`"EAGAIN"`).
    pub fn name(self) -> &'static str {
        errno::name(self.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// When a bitset wait or [`futex_waitv`] gives up: an absolute time on one
/// of the two clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// An instant of the monotonic clock ([`uktime::now`]).
    Monotonic(Instant),
    /// A time of day, since the Unix epoch ([`uktime::realtime`]).
    Realtime(Duration),
}

impl Deadline {
    fn instant(self) -> Instant {
        match self {
            Deadline::Monotonic(at) => at,
            Deadline::Realtime(t) => uktime::realtime::deadline_of_realtime(t),
        }
    }
}

/// How many threads wait on `word` now (also those requeued to it): a
/// diagnostic for tests and statistics, stale as soon as it returns.
pub fn waiters(word: &AtomicU32) -> usize {
    let addr = table::key(word);
    table::bucket(addr).count_where(|key, _| key == addr)
}

/// The calling thread's id as a futex owner word holds it (robust futexes:
/// the low 30 bits, [`FUTEX_TID_MASK`]).
pub fn gettid() -> u32 {
    (uksched::current_id() as u32) & FUTEX_TID_MASK
}

// ---------------------------------------------------------------------------
// The operations, on checked words.

type Result<T> = core::result::Result<T, i32>;

/// Waits on `word` (at address `addr`) while it holds `val`.
fn wait(word: &AtomicU32, val: u32, bitset: u32, deadline: Option<Instant>) -> Result<()> {
    let addr = table::key(word);
    let broken = ukconfig::posix_futex::BROKEN_UNLOCKED_CHECK;
    if broken {
        // TEST ONLY (`broken_unlocked_check`): the check before the lock,
        // with a window a waker can fall into.
        if word.load(Ordering::SeqCst) != val {
            return Err(errno::EAGAIN);
        }
        uktime::busy_wait(Duration::from_micros(20));
    }
    let still = || broken || word.load(Ordering::SeqCst) == val;
    match table::bucket(addr).wait_if(addr, bitset, still, deadline) {
        WaitOutcome::NotQueued => Err(errno::EAGAIN),
        WaitOutcome::Woken => Ok(()),
        WaitOutcome::TimedOut => Err(errno::ETIMEDOUT),
    }
}

/// Wakes up to `max` waiters of `word` whose bitset meets `bitset`.
fn wake(word: &AtomicU32, max: usize, bitset: u32) -> usize {
    let addr = table::key(word);
    table::bucket(addr).wake_where(max, |key, bits| key == addr && bits & bitset != 0)
}

/// Wakes up to `nr_wake` waiters of `from` and moves up to `nr_requeue` of
/// the next to `to`; with `expected`, only if `from` still holds it
/// (checked under both locks).
fn requeue(
    from: &AtomicU32,
    to: &AtomicU32,
    nr_wake: usize,
    nr_requeue: usize,
    expected: Option<u32>,
) -> Result<usize> {
    let (a, b) = (table::key(from), table::key(to));
    let mut pair = WaitQueue::pair(table::bucket(a), table::bucket(b));
    if expected.is_some_and(|v| from.load(Ordering::SeqCst) != v) {
        return Err(errno::EAGAIN);
    }
    let woken = pair.wake_first(nr_wake, |key, _| key == a);
    let moved = if nr_requeue > 0 { pair.requeue(nr_requeue, |key, _| key == a, b) } else { 0 };
    Ok(woken + moved)
}

/// `FUTEX_WAKE_OP`: under both locks, applies `op` to `word2`, wakes up to
/// `nr_wake` waiters of `word1` and, if the comparison held on the old
/// value, up to `nr_wake2` of `word2` (bitsets ignored, as in Linux).
fn wake_op(
    word1: &AtomicU32,
    word2: &AtomicU32,
    nr_wake: usize,
    nr_wake2: usize,
    op: &WakeOp,
) -> Result<usize> {
    let (a, b) = (table::key(word1), table::key(word2));
    let mut pair = WaitQueue::pair(table::bucket(a), table::bucket(b));
    let old = abi::rmw(word2, op);
    // Linux: an unknown comparison fails after the word was changed.
    let wake_second = op.compare(old)?;
    let mut woken = pair.wake_first(nr_wake, |key, _| key == a);
    if wake_second {
        woken += pair.wake_second(nr_wake2, |key, _| key == b);
    }
    Ok(woken)
}

/// `futex_waitv`: waits on every (word, value) pair at once.
fn waitv(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> Result<usize> {
    let checks: Vec<_> = words.iter().map(|&(w, v)| move || w.load(Ordering::SeqCst) == v).collect();
    let entries: Vec<AnyEntry<'_>> = words
        .iter()
        .zip(&checks)
        .map(|(&(w, _), check)| {
            let addr = table::key(w);
            AnyEntry { queue: table::bucket(addr), key: addr, bitset: FUTEX_BITSET_MATCH_ANY, check }
        })
        .collect();
    match uksched::wait_any(&entries, deadline) {
        AnyOutcome::Woken(i) => Ok(i),
        AnyOutcome::NotQueued(_) => Err(errno::EAGAIN),
        AnyOutcome::TimedOut => Err(errno::ETIMEDOUT),
    }
}

// ---------------------------------------------------------------------------
// The safe API.

/// Sleeps while `word` holds `expected`, until a wake-up, or `timeout`
/// (relative) passes. `FUTEX_WAIT`.
///
/// # Errors
/// `EAGAIN`: the word did not hold `expected`. `ETIMEDOUT`: the timeout
/// passed.
pub fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> core::result::Result<(), Errno> {
    let deadline = timeout.map(|t| uktime::now() + t);
    wait(word, expected, FUTEX_BITSET_MATCH_ANY, deadline).map_err(Errno)
}

/// Sleeps while `word` holds `expected`, until a wake-up whose bitset
/// shares a bit with `bitset`, or `deadline`. `FUTEX_WAIT_BITSET`.
///
/// # Errors
/// `EINVAL`: `bitset` is 0. `EAGAIN`, `ETIMEDOUT` as [`futex_wait`].
pub fn futex_wait_bitset(
    word: &AtomicU32,
    expected: u32,
    bitset: u32,
    deadline: Option<Deadline>,
) -> core::result::Result<(), Errno> {
    if bitset == 0 {
        return Err(Errno(errno::EINVAL));
    }
    wait(word, expected, bitset, deadline.map(Deadline::instant)).map_err(Errno)
}

/// Wakes up to `max` threads waiting on `word` (0 wakes none: unlike the
/// raw [`FUTEX_WAKE`], where 0 wakes one); returns how many.
pub fn futex_wake(word: &AtomicU32, max: usize) -> usize {
    wake(word, max, FUTEX_BITSET_MATCH_ANY)
}

/// Wakes up to `max` threads waiting on `word` with a bitset that shares a
/// bit with `bitset`; returns how many. `FUTEX_WAKE_BITSET`.
///
/// # Errors
/// `EINVAL`: `bitset` is 0.
pub fn futex_wake_bitset(word: &AtomicU32, max: usize, bitset: u32) -> core::result::Result<usize, Errno> {
    if bitset == 0 {
        return Err(Errno(errno::EINVAL));
    }
    Ok(wake(word, max, bitset))
}

/// Wakes up to `nr_wake` threads waiting on `from` and moves up to
/// `nr_requeue` more to wait on `to`; returns how many it woke and moved.
/// `FUTEX_REQUEUE`.
pub fn futex_requeue(from: &AtomicU32, to: &AtomicU32, nr_wake: usize, nr_requeue: usize) -> usize {
    requeue(from, to, nr_wake, nr_requeue, None).unwrap_or(0)
}

/// [`futex_requeue`] if `from` still holds `expected` (checked under both
/// buckets' locks). `FUTEX_CMP_REQUEUE`.
///
/// # Errors
/// `EAGAIN`: `from` did not hold `expected`; nothing was woken or moved.
pub fn futex_cmp_requeue(
    from: &AtomicU32,
    to: &AtomicU32,
    nr_wake: usize,
    nr_requeue: usize,
    expected: u32,
) -> core::result::Result<usize, Errno> {
    requeue(from, to, nr_wake, nr_requeue, Some(expected)).map_err(Errno)
}

/// `FUTEX_WAKE_OP`: atomically applies the operation encoded in `op` (see
/// [`abi::futex_op`]) to `word2`, wakes up to `nr_wake` waiters of `word1`
/// and, if the encoded comparison holds on `word2`'s old value, up to
/// `nr_wake2` waiters of `word2`; returns how many it woke.
///
/// # Errors
/// `ENOSYS`: an unknown operation (nothing changed) or comparison (after
/// `word2` was changed; nobody woken), as Linux.
pub fn futex_wake_op(
    word1: &AtomicU32,
    word2: &AtomicU32,
    nr_wake: usize,
    nr_wake2: usize,
    op: u32,
) -> core::result::Result<usize, Errno> {
    let op = WakeOp::decode(op).map_err(Errno)?;
    wake_op(word1, word2, nr_wake, nr_wake2, &op).map_err(Errno)
}

/// Sleeps while every word holds its value, until a wake-up on any of
/// them, or `deadline`; returns the index of a word woken (the lowest, if
/// several were). `futex_waitv`.
///
/// # Errors
/// `EINVAL`: no words, or more than [`FUTEX_WAITV_MAX`]. `EAGAIN`: a word
/// did not hold its value (and none was woken). `ETIMEDOUT`.
pub fn futex_waitv(
    words: &[(&AtomicU32, u32)],
    deadline: Option<Deadline>,
) -> core::result::Result<usize, Errno> {
    if words.is_empty() || words.len() > FUTEX_WAITV_MAX {
        return Err(Errno(errno::EINVAL));
    }
    waitv(words, deadline.map(Deadline::instant)).map_err(Errno)
}

// ---------------------------------------------------------------------------
// The raw ABI.

/// Checks a futex word's address: aligned ([`EINVAL`](errno::EINVAL)),
/// not null and mapped ([`EFAULT`](errno::EFAULT)).
fn word_at<'a>(addr: usize) -> Result<&'a AtomicU32> {
    check_uaddr(addr)?;
    if !ukvmem::is_mapped(addr) {
        return Err(errno::EFAULT);
    }
    // SAFETY: aligned, mapped, and by `sys_futex`'s contract a futex word
    // accessed only atomically while the call runs.
    Ok(unsafe { AtomicU32::from_ptr(addr as *mut u32) })
}

/// Reads a `T` from `addr`, if every byte of it is mapped.
fn read_in<T: Copy>(addr: usize) -> Result<T> {
    let end = addr.checked_add(size_of::<T>() - 1).ok_or(errno::EFAULT)?;
    if addr == 0 || !ukvmem::is_mapped(addr) || !ukvmem::is_mapped(end) {
        return Err(errno::EFAULT);
    }
    // SAFETY: both ends are mapped, and a `T` of at most a page spans at
    // most two pages; by the caller's contract nothing writes it
    // concurrently; `read_unaligned` needs no alignment.
    Ok(unsafe { (addr as *const T).read_unaligned() })
}

/// Linux's `futex(2)`: `uaddr`, `op`, `val`, the timeout pointer or
/// `val2`, `uaddr2`, `val3`, as in the table of [`abi`]. Returns what Linux
/// returns: a count (woken, or woken plus requeued), 0 for a wait that was
/// woken, or a negated [`errno`] value, with Linux's checks in Linux's
/// order (see [`abi`]).
///
/// # Safety
/// The futex words the operation uses (`uaddr`, and `uaddr2` for
/// requeues and `FUTEX_WAKE_OP`) must be null, misaligned, unmapped — each
/// answered with an error, never touched — or words that nothing accesses
/// non-atomically while the call runs; the timeout pointer, when the
/// command takes one, must be null, unmapped, or a [`Timespec`] nothing
/// writes meanwhile.
pub unsafe fn sys_futex(
    uaddr: *mut u32,
    op: i32,
    val: u32,
    timeout_or_val2: usize,
    uaddr2: *mut u32,
    val3: u32,
) -> isize {
    match futex(uaddr as usize, op, val, timeout_or_val2, uaddr2 as usize, val3) {
        Ok(n) => n as isize,
        Err(e) => -(e as isize),
    }
}

fn futex(uaddr: usize, op: i32, val: u32, timeout_or_val2: usize, uaddr2: usize, val3: u32) -> Result<usize> {
    let cmd = cmd_of(op);
    let mut timeout = None;
    if has_timeout(cmd) && timeout_or_val2 != 0 {
        timeout = Some(read_in::<Timespec>(timeout_or_val2)?.to_duration()?);
    }
    let decoded = decode(op)?;
    let deadline = timeout.map(|t| match decoded.timeout_kind() {
        TimeoutKind::Relative => uktime::now() + t,
        TimeoutKind::AbsoluteRealtime => uktime::realtime::deadline_of_realtime(t),
        TimeoutKind::AbsoluteMonotonic | TimeoutKind::Unused => Instant::from_nanos(t.as_nanos() as u64),
    });
    let val2 = val2_from_timeout_arg(timeout_or_val2);
    match decoded.cmd {
        Command::Wait | Command::WaitBitset => {
            let bitset = decoded.cmd.bitset(val3).unwrap_or(FUTEX_BITSET_MATCH_ANY);
            if bitset == 0 {
                return Err(errno::EINVAL);
            }
            wait(word_at(uaddr)?, val, bitset, deadline).map(|()| 0)
        }
        Command::Wake | Command::WakeBitset => {
            let bitset = decoded.cmd.bitset(val3).unwrap_or(FUTEX_BITSET_MATCH_ANY);
            if bitset == 0 {
                return Err(errno::EINVAL);
            }
            Ok(wake(word_at(uaddr)?, wake_limit(val), bitset))
        }
        Command::Requeue | Command::CmpRequeue => {
            let (nr_wake, nr_requeue) = requeue_counts(val, val2)?;
            let (from, to) = (word_at(uaddr)?, word_at(uaddr2)?);
            let expected = (decoded.cmd == Command::CmpRequeue).then_some(val3);
            requeue(from, to, nr_wake, nr_requeue, expected)
        }
        Command::WakeOp => {
            let (word1, word2) = (word_at(uaddr)?, word_at(uaddr2)?);
            let op = WakeOp::decode(val3)?;
            wake_op(word1, word2, wake_limit(val), wake_limit(val2), &op)
        }
        Command::Pi(_) => Err(errno::ENOSYS),
    }
}

/// Linux's `futex_waitv(2)`: waits on `nr_futexes` entries of `waiters`
/// until one is woken (returns its index), `timeout` (an absolute time on
/// `clockid`, `CLOCK_MONOTONIC` or `CLOCK_REALTIME`; null: none) passes, or
/// returns at once when an entry's word does not hold its value
/// (`-EAGAIN`). Checks run in Linux's order ([`check_waitv_call`]).
///
/// # Safety
/// As [`sys_futex`], for the array, every entry's word and the timeout.
pub unsafe fn sys_futex_waitv(
    waiters: *const FutexWaitv,
    nr_futexes: u32,
    flags: u32,
    timeout: *const Timespec,
    clockid: i32,
) -> isize {
    match futex_waitv_raw(waiters as usize, nr_futexes as usize, flags, timeout as usize, clockid) {
        Ok(n) => n as isize,
        Err(e) => -(e as isize),
    }
}

fn futex_waitv_raw(waiters: usize, nr: usize, flags: u32, timeout: usize, clockid: i32) -> Result<usize> {
    let nr = check_waitv_call(waiters, nr, flags, timeout != 0, clockid)?;
    let deadline = if timeout != 0 {
        let t = read_in::<Timespec>(timeout)?.to_duration()?;
        Some(if clockid == CLOCK_REALTIME {
            uktime::realtime::deadline_of_realtime(t)
        } else {
            Instant::from_nanos(t.as_nanos() as u64)
        })
    } else {
        None
    };
    let mut entries = Vec::with_capacity(nr);
    for i in 0..nr {
        let at = waiters + i * size_of::<FutexWaitv>();
        let entry = read_in::<FutexWaitv>(at)?;
        check_waitv_entry(&entry)?;
        entries.push(entry);
    }
    let mut words = Vec::with_capacity(nr);
    for e in &entries {
        words.push((word_at(e.uaddr as usize)?, e.val as u32));
    }
    waitv(&words, deadline)
}
