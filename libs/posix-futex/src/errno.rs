//! The Linux `errno` values that the futex system calls can report.
//!
//! Every constant is the positive number of the x86-64 (asm-generic) ABI; a
//! system call hands it back negated (`-EINVAL` in `rax`), and libc turns that
//! into `-1` with `errno` set. Only the numbers that `futex(2)`,
//! `futex_waitv(2)`, `set_robust_list(2)` and `get_robust_list(2)` can produce
//! are here; each constant says in which situations Linux reports it (see
//! [`crate::abi`] for the order in which the checks run).
//!
//! Linux also uses a few kernel-internal codes on these paths (`ERESTARTSYS`,
//! `ERESTARTNOINTR`, `ERESTART_RESTARTBLOCK`, `EBUSY` for an exiting PI
//! owner). They never reach user space as such: the signal code turns the
//! restart codes into a restart or into [`EINTR`], and `EBUSY` only makes the
//! kernel wait and retry.

/// Operation not permitted.
///
/// Futex: `FUTEX_UNLOCK_PI` by a thread whose TID is not the owner recorded
/// in the futex word; a PI lock operation on a word whose owner TID is a
/// kernel thread. `get_robust_list(2)`: the caller may not inspect the
/// target thread (the ptrace read check fails).
pub const EPERM: i32 = 1;

/// No such process.
///
/// Futex: a PI lock operation finds no thread with the owner TID stored in
/// the futex word. `get_robust_list(2)`: no thread has the given id.
pub const ESRCH: i32 = 3;

/// Interrupted system call.
///
/// A sleeping wait (`FUTEX_WAIT`, `FUTEX_WAIT_BITSET`, `futex_waitv(2)`)
/// ended because a signal handler ran. A wait without a timeout is
/// restarted instead when the handler was installed with `SA_RESTART`; a
/// wait with a timeout reports `EINTR` whenever a handler runs. The PI lock
/// operations never report it (Linux always restarts them).
pub const EINTR: i32 = 4;

/// Try again (the same number as `EWOULDBLOCK`).
///
/// `FUTEX_WAIT`, `FUTEX_WAIT_BITSET`, `FUTEX_WAIT_REQUEUE_PI`,
/// `futex_waitv(2)`: the futex word did not hold the expected value when the
/// caller was about to sleep. `FUTEX_CMP_REQUEUE`, `FUTEX_CMP_REQUEUE_PI`:
/// the word at `uaddr` did not hold `val3`. `FUTEX_TRYLOCK_PI`: the lock is
/// taken.
pub const EAGAIN: i32 = 11;

/// Same number as [`EAGAIN`]; the futex manual page uses this name for a
/// value mismatch in the wait operations.
pub const EWOULDBLOCK: i32 = EAGAIN;

/// Out of memory.
///
/// `futex_waitv(2)`: the kernel could not allocate its copy of the waiter
/// array. PI operations: no memory for the priority-inheritance state.
pub const ENOMEM: i32 = 12;

/// Bad address.
///
/// A futex address (`uaddr`, `uaddr2`, a waiter's `uaddr`) cannot be read
/// (or, where the operation stores to it, written): null, unmapped, or
/// outside user space. Also: the timeout or the `futex_waitv` array could
/// not be copied in; `get_robust_list(2)` could not store its results.
pub const EFAULT: i32 = 14;

/// Invalid argument.
///
/// A futex address not aligned to 4 bytes; a timeout with a negative
/// `tv_sec` or a `tv_nsec` outside `0..1_000_000_000`; a zero bitset in the
/// `*_BITSET` operations; a negative count in the requeue operations;
/// `futex_waitv(2)` with non-zero flags, a count outside `1..=128`, a null
/// array, an unknown clock, or an entry with bad flags, a non-zero reserved
/// field or a value wider than its futex; a plain futex operation that finds
/// a PI waiter queued on the word (or the reverse);
/// `set_robust_list(2)` with a wrong head size.
pub const EINVAL: i32 = 22;

/// Resource deadlock would occur.
///
/// The PI lock operations: the caller already owns the lock, or blocking
/// would close a cycle of PI waiters.
pub const EDEADLK: i32 = 35;

/// Function not implemented.
///
/// `futex(2)` with an unknown command (including the long-removed
/// `FUTEX_FD`); `FUTEX_CLOCK_REALTIME` combined with a command other than
/// `FUTEX_WAIT_BITSET`, `FUTEX_WAIT_REQUEUE_PI` or `FUTEX_LOCK_PI2`;
/// `FUTEX_WAKE_OP` with an unknown operation or comparison; any PI command
/// on a kernel built without PI futex support (as this one is).
pub const ENOSYS: i32 = 38;

/// Connection timed out.
///
/// A wait or a PI lock gave up because its timeout expired first.
pub const ETIMEDOUT: i32 = 110;

/// The symbolic name of `errno` (`"EAGAIN"` for `11`), for diagnostics.
///
/// Accepts the value with either sign, so the raw negative return value of
/// a system call can be passed directly. Numbers outside this module give
/// `"UNKNOWN"`. [`EWOULDBLOCK`] is [`EAGAIN`] and is named `"EAGAIN"`.
pub fn name(errno: i32) -> &'static str {
    match errno.unsigned_abs() {
        1 => "EPERM",
        3 => "ESRCH",
        4 => "EINTR",
        11 => "EAGAIN",
        12 => "ENOMEM",
        14 => "EFAULT",
        22 => "EINVAL",
        35 => "EDEADLK",
        38 => "ENOSYS",
        110 => "ETIMEDOUT",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers of the x86-64 Linux ABI (asm-generic/errno-base.h and
    /// asm-generic/errno.h).
    #[test]
    fn values_match_linux() {
        assert_eq!(EPERM, 1);
        assert_eq!(ESRCH, 3);
        assert_eq!(EINTR, 4);
        assert_eq!(EAGAIN, 11);
        assert_eq!(EWOULDBLOCK, 11);
        assert_eq!(ENOMEM, 12);
        assert_eq!(EFAULT, 14);
        assert_eq!(EINVAL, 22);
        assert_eq!(EDEADLK, 35);
        assert_eq!(ENOSYS, 38);
        assert_eq!(ETIMEDOUT, 110);
    }

    #[test]
    fn names() {
        let all = [
            (EPERM, "EPERM"),
            (ESRCH, "ESRCH"),
            (EINTR, "EINTR"),
            (EAGAIN, "EAGAIN"),
            (ENOMEM, "ENOMEM"),
            (EFAULT, "EFAULT"),
            (EINVAL, "EINVAL"),
            (EDEADLK, "EDEADLK"),
            (ENOSYS, "ENOSYS"),
            (ETIMEDOUT, "ETIMEDOUT"),
        ];
        for (errno, expected) in all {
            assert_eq!(name(errno), expected);
            assert_eq!(name(-errno), expected, "negated {expected}");
        }
        assert_eq!(name(EWOULDBLOCK), "EAGAIN");
    }

    #[test]
    fn unknown_names() {
        for errno in [0, 2, 5, 13, 16, 39, 109, 111, 512, i32::MAX, i32::MIN] {
            assert_eq!(name(errno), "UNKNOWN", "{errno}");
        }
    }
}
