//! # futex — posix-futex's test app
//!
//! `main` prints the configuration and runs the registered in-guest tests
//! (`uktest`, filter `futex::` in `config/futex.toml`): LTP's futex
//! scenarios through the raw ABI ([`ltp`]), robust lists ([`robust`]), and
//! lost-wake-up stress on every CPU ([`stress`]). `cargo xtask test` runs
//! it under both scheduler policies on 1, 2 and 4 CPUs, and once with
//! `posix-futex.broken_unlocked_check=true`, which must fail the stress.
//!
//! | case | LTP test | checks |
//! |---|---|---|
//! | `ltp::futex_wait01_timeout_and_eagain` | futex_wait01 | a matching value times out (`ETIMEDOUT`), a different one is refused (`EAGAIN`), private and shared |
//! | `ltp::futex_wait03_woken_by_another_thread` | futex_wait03 | a waiter on another thread returns 0 after one `FUTEX_WAKE`, which returns 1 |
//! | `ltp::futex_wait04_fresh_memory` | futex_wait04 | a word in freshly allocated memory times out |
//! | `ltp::futex_wait05_timeouts_last_as_asked` | futex_wait05 | 1, 10, 20 ms timeouts last at least that, at most 50 ms more |
//! | `ltp::futex_wait_errors` | futex_wait06 (EFAULT), futex_wait EINVAL cases | null and unmapped words and timeouts: `EFAULT`; misaligned words, bad timespecs, zero bitsets: `EINVAL`; misplaced `FUTEX_CLOCK_REALTIME`: `ENOSYS` |
//! | `ltp::futex_wait_bitset01_absolute_timeouts` | futex_wait_bitset01 | absolute deadlines on the monotonic and (`FUTEX_CLOCK_REALTIME`) realtime clocks |
//! | `ltp::futex_wake01_nobody_waiting` | futex_wake01 | waking with nobody waiting returns 0, for any count |
//! | `ltp::futex_wake02_wakes_n_of_m` | futex_wake02 | 2 of 5 waiters, then the other 3; bitsets select |
//! | `ltp::futex_cmp_requeue01_counts` | futex_cmp_requeue01 | woken + requeued counts and where every waiter ends, for several (wake, requeue) pairs |
//! | `ltp::futex_cmp_requeue02_errors` | futex_cmp_requeue02 | negative counts (CVE-2018-6927) `EINVAL`, a changed value `EAGAIN` |
//! | `ltp::futex_waitv01_errors` | futex_waitv01 | every `EINVAL` case, `EAGAIN`, `ETIMEDOUT` |
//! | `ltp::futex_waitv02_wakes_by_index` | futex_waitv02 | the index of the private futex woken |
//! | `ltp::wake_op_operations_and_comparisons` | (futex_wake_op in LTP's tst) | all 5 operations (and the shift flag) change the word as Linux's table says; all 6 comparisons decide the second wake-up |
//! | `ltp::pi_and_unknown_operations_are_enosys` | | the PI operations, `FUTEX_FD` and unknown numbers |
//! | `robust::an_exiting_owner_marks_its_futexes` | (set_robust_list01, get_robust_list01) | `FUTEX_OWNER_DIED` in the word of a lock held at exit; `get_robust_list` returns the head |
//! | `robust::a_contended_robust_lock_wakes_one_waiter` | | `FUTEX_WAITERS` kept, exactly one of two waiters woken; a pending entry whose word is 0 wakes its waiter |
//! | `robust::robust_list_errors` | | a wrong length `EINVAL`, another thread's list `EPERM` |
//! | `stress::ping_pong_loses_no_wake_up` | | pairs of threads hand a turn back and forth through one futex word; a hand-over that waits 2 s is a lost wake-up |
//! | `stress::semaphores_count_exactly` | | producers and consumers over two futex semaphores of a 2-slot buffer: exact counts, no 2 s wait |
//! | `stress::requeue_races_timeouts` | | waits with short timeouts, `FUTEX_CMP_REQUEUE`s and wake-ups at once: woken waits = wake-ups counted |
//! | `stress::wake_op_races_waits` | | `FUTEX_WAKE_OP` against waits on both words: woken waits = wake-ups counted, the word = operations done |
#![no_std]

extern crate alloc;

pub mod ltp;
pub mod robust;
pub mod stress;

pub use uksched::yield_until as settle;

use core::sync::atomic::AtomicU32;
use core::time::Duration;
use posix_futex::Timespec;
use ukconsole::println;

/// The app's entry point: the tests.
pub fn main(_args: &[&str]) -> i32 {
    println!(
        "futex: {} policy on {} CPU(s), {} hash buckets, broken_unlocked_check={}",
        uksched::POLICY,
        ukplat::cpu::count(),
        posix_futex::table::buckets(),
        ukconfig::posix_futex::BROKEN_UNLOCKED_CHECK
    );
    uktest::run_all()
}

/// `futex(2)` on `word` (and `word2`), the fourth argument a timeout
/// pointer or a count.
pub fn futex(
    word: *const AtomicU32,
    op: u32,
    val: u32,
    arg4: usize,
    word2: *const AtomicU32,
    val3: u32,
) -> isize {
    // SAFETY: the words are `AtomicU32`s (or deliberately bad addresses,
    // which the call refuses without touching), and timeouts `Timespec`s
    // on the caller's stack.
    unsafe { posix_futex::sys_futex(word as *mut u32, op as i32, val, arg4, word2 as *mut u32, val3) }
}

/// The address of a timespec, as `futex(2)`'s fourth argument.
pub fn ts(t: &Timespec) -> usize {
    core::ptr::from_ref(t) as usize
}

/// A relative or absolute time as a [`Timespec`].
pub fn timespec(d: Duration) -> Timespec {
    Timespec::from_duration(d)
}

/// `-errno`, as `futex(2)` returns it.
pub const fn err(e: i32) -> isize {
    -(e as isize)
}
