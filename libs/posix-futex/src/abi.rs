//! The Linux futex ABI as pure functions: the numbers of
//! `include/uapi/linux/futex.h`, the decoding of `futex(2)`'s `op` and
//! `FUTEX_WAKE_OP`'s encoded operation, and the argument checks of
//! `futex(2)` and `futex_waitv(2)`, each answering with the `errno` Linux
//! would give ([`crate::errno`]).
//!
//! Nothing here touches memory it is not handed, sleeps or allocates, so
//! every rule can be tested on the host; the wait queues, the reading of
//! user words and the timeouts belong to the caller. The behaviour mirrors
//! Linux's `kernel/futex/` (`syscalls.c`, `waitwake.c`, `requeue.c`,
//! `futex.h`, `core.c`) and `arch/x86/include/asm/futex.h` as of Linux 6.18;
//! the doc comment of each function names the Linux function it follows.
//!
//! Priority-inheritance futexes are not implemented: [`decode`] recognises
//! the PI commands ([`Command::Pi`]) so that the caller can answer them with
//! [`ENOSYS`], which is what Linux does when built without
//! `CONFIG_FUTEX_PI`.
//!
//! # Which argument each command uses
//!
//! `futex(uaddr, op, val, timeout, uaddr2, val3)`. For four commands the
//! fourth argument is not a pointer but a count, "`val2`": Linux takes the
//! low 32 bits of the register ([`val2_from_timeout_arg`], [`val2_is_count`]).
//! "—" means the argument is ignored.
//!
//! | command (number) | `val` | `timeout` / `val2` | `uaddr2` | `val3` |
//! |---|---|---|---|---|
//! | `FUTEX_WAIT` (0) | expected value of `*uaddr` | relative timeout on the monotonic clock; null: none | — | — (all-ones bitset) |
//! | `FUTEX_WAKE` (1) | how many to wake ([`wake_limit`]) | — | — | — (all-ones bitset) |
//! | `FUTEX_FD` (2) | removed from Linux: [`ENOSYS`] | | | |
//! | `FUTEX_REQUEUE` (3) | how many to wake | `val2`: how many to requeue ([`requeue_counts`]) | the futex to requeue to | — |
//! | `FUTEX_CMP_REQUEUE` (4) | how many to wake | `val2`: how many to requeue | the futex to requeue to | expected value of `*uaddr` |
//! | `FUTEX_WAKE_OP` (5) | how many to wake on `uaddr` | `val2`: how many to wake on `uaddr2` | the word modified (and maybe woken) | the encoded operation ([`WakeOp`]) |
//! | `FUTEX_LOCK_PI` (6) | — | absolute timeout, always `CLOCK_REALTIME` | — | — |
//! | `FUTEX_UNLOCK_PI` (7) | — | — | — | — |
//! | `FUTEX_TRYLOCK_PI` (8) | — | — | — | — |
//! | `FUTEX_WAIT_BITSET` (9) | expected value of `*uaddr` | absolute timeout, monotonic (or realtime with `FUTEX_CLOCK_REALTIME`) | — | bitset (0: [`EINVAL`]) |
//! | `FUTEX_WAKE_BITSET` (10) | how many to wake | — | — | bitset (0: [`EINVAL`]) |
//! | `FUTEX_WAIT_REQUEUE_PI` (11) | expected value of `*uaddr` | absolute timeout, clock as for `FUTEX_WAIT_BITSET` | the PI futex to end up on | — (all-ones bitset) |
//! | `FUTEX_CMP_REQUEUE_PI` (12) | how many to wake (must be 1) | `val2`: how many to requeue | the PI futex | expected value of `*uaddr` |
//! | `FUTEX_LOCK_PI2` (13) | — | absolute timeout, clock as for `FUTEX_WAIT_BITSET` | — | — |
//!
//! # Order of the checks (which `errno` wins)
//!
//! Linux's `sys_futex` runs these steps in this order; a caller that wants
//! the same answers for bad arguments runs them in the same order.
//!
//! 1. `cmd = op & FUTEX_CMD_MASK` ([`cmd_of`]). If [`has_timeout`]`(cmd)` and
//!    the timeout pointer is not null: copy the [`Timespec`] in
//!    ([`EFAULT`]) and check it ([`Timespec::to_duration`], [`EINVAL`]).
//!    This happens *before* the command is validated: an unsupported
//!    `FUTEX_WAIT | FUTEX_CLOCK_REALTIME` with a bad timeout is
//!    [`EINVAL`], with a good one [`ENOSYS`].
//! 2. [`decode`]: a misplaced `FUTEX_CLOCK_REALTIME` or an unknown command
//!    is [`ENOSYS`]; a PI command is answered [`ENOSYS`] by the caller.
//! 3. The command itself:
//!    * wait (`FUTEX_WAIT`, `FUTEX_WAIT_BITSET`): a zero bitset
//!      ([`Command::bitset`]) is [`EINVAL`]; then [`check_uaddr`]`(uaddr)`;
//!      then reading `*uaddr` ([`EFAULT`]); a value other than `val` is
//!      [`EAGAIN`]; then the sleep ends in 0, [`ETIMEDOUT`] or [`EINTR`];
//!    * wake (`FUTEX_WAKE`, `FUTEX_WAKE_BITSET`): a zero bitset is
//!      [`EINVAL`]; then [`check_uaddr`]`(uaddr)`; then up to
//!      [`wake_limit`]`(val)` waiters whose bitset shares a bit with the
//!      given one are woken, and the number woken is returned;
//!    * requeue (`FUTEX_REQUEUE`, `FUTEX_CMP_REQUEUE`): [`requeue_counts`]
//!      ([`EINVAL`]); then [`check_uaddr`] of `uaddr`, then of `uaddr2`;
//!      for `FUTEX_CMP_REQUEUE` reading `*uaddr` ([`EFAULT`]) and comparing
//!      it with `val3` ([`EAGAIN`]); the result is the number woken plus the
//!      number requeued;
//!    * `FUTEX_WAKE_OP`: [`check_uaddr`] of `uaddr`, then of `uaddr2`; then
//!      [`WakeOp::decode`]`(val3)` (an unknown operation is [`ENOSYS`],
//!      before memory is touched); then [`rmw`] on `*uaddr2` ([`EFAULT`]);
//!      then [`WakeOp::compare`] on the old value — an unknown comparison is
//!      [`ENOSYS`] *after* `*uaddr2` was modified, and nobody is woken;
//!      otherwise up to [`wake_limit`]`(val)` waiters of `uaddr` are woken
//!      and, if the comparison held, up to [`wake_limit`]`(val2)` waiters
//!      of `uaddr2`, both regardless of their bitsets; the result is the
//!      total woken.
//!
//! `futex_waitv(2)` has its own order, documented at [`check_waitv_call`].
//!
//! Bits 9 and 10 of `op` (512, 1024) are part of the command number here,
//! so an `op` using them is [`ENOSYS`], as on Linux up to 6.18. (A
//! "robust unlock" extension worked on in 2026 gives them a meaning for the
//! wake and PI-unlock commands; [`ENOSYS`] is what a kernel without it
//! answers.)

use crate::errno::{EFAULT, EINVAL, ENOSYS};
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

// Only linked to from the documentation.
#[cfg(doc)]
use crate::errno::{EAGAIN, EINTR, ETIMEDOUT};

/// Sleep while `*uaddr == val`; the timeout is relative.
pub const FUTEX_WAIT: u32 = 0;
/// Wake waiters of `uaddr`: at most [`wake_limit`]`(val)`.
pub const FUTEX_WAKE: u32 = 1;
/// Create a file descriptor for a futex; removed in Linux 2.6.26, now
/// [`ENOSYS`].
pub const FUTEX_FD: u32 = 2;
/// Wake up to `val` waiters of `uaddr`, move up to `val2` more to `uaddr2`.
pub const FUTEX_REQUEUE: u32 = 3;
/// [`FUTEX_REQUEUE`] if `*uaddr == val3`, else [`EAGAIN`].
pub const FUTEX_CMP_REQUEUE: u32 = 4;
/// Modify `*uaddr2` atomically, wake waiters of `uaddr` and, depending on
/// the old value of `*uaddr2`, of `uaddr2` ([`WakeOp`]).
pub const FUTEX_WAKE_OP: u32 = 5;
/// Take a priority-inheritance lock (absolute `CLOCK_REALTIME` timeout).
pub const FUTEX_LOCK_PI: u32 = 6;
/// Release a priority-inheritance lock.
pub const FUTEX_UNLOCK_PI: u32 = 7;
/// Try to take a priority-inheritance lock without sleeping.
pub const FUTEX_TRYLOCK_PI: u32 = 8;
/// [`FUTEX_WAIT`] with a wake-up bitset (`val3`) and an absolute timeout.
pub const FUTEX_WAIT_BITSET: u32 = 9;
/// [`FUTEX_WAKE`] limited to waiters whose bitset shares a bit with `val3`.
pub const FUTEX_WAKE_BITSET: u32 = 10;
/// Wait on a plain futex to be requeued onto the PI futex `uaddr2`.
pub const FUTEX_WAIT_REQUEUE_PI: u32 = 11;
/// Requeue waiters of [`FUTEX_WAIT_REQUEUE_PI`] onto a PI futex.
pub const FUTEX_CMP_REQUEUE_PI: u32 = 12;
/// [`FUTEX_LOCK_PI`] whose timeout clock is chosen by
/// [`FUTEX_CLOCK_REALTIME`] (monotonic without it).
pub const FUTEX_LOCK_PI2: u32 = 13;

/// Flag of `op`: the futex is used by one process only (Linux can key it by
/// address instead of by page). In this single address space private and
/// shared futexes behave alike.
pub const FUTEX_PRIVATE_FLAG: u32 = 128;
/// Flag of `op`: the absolute timeout is on `CLOCK_REALTIME`. Only valid
/// with [`FUTEX_WAIT_BITSET`], [`FUTEX_WAIT_REQUEUE_PI`] and
/// [`FUTEX_LOCK_PI2`]; [`ENOSYS`] with any other command.
pub const FUTEX_CLOCK_REALTIME: u32 = 256;
/// The bits of `op` that select the command: everything except
/// [`FUTEX_PRIVATE_FLAG`] and [`FUTEX_CLOCK_REALTIME`].
pub const FUTEX_CMD_MASK: u32 = !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);

/// A bitset that matches every other non-zero bitset; what [`FUTEX_WAIT`]
/// and [`FUTEX_WAKE`] use.
pub const FUTEX_BITSET_MATCH_ANY: u32 = 0xffff_ffff;

/// `FUTEX_WAKE_OP` operation: store the operand (`*uaddr2 = oparg`).
pub const FUTEX_OP_SET: u32 = 0;
/// `FUTEX_WAKE_OP` operation: add the operand, wrapping (`*uaddr2 += oparg`).
pub const FUTEX_OP_ADD: u32 = 1;
/// `FUTEX_WAKE_OP` operation: `*uaddr2 |= oparg`.
pub const FUTEX_OP_OR: u32 = 2;
/// `FUTEX_WAKE_OP` operation: clear the operand's bits (`*uaddr2 &= !oparg`).
pub const FUTEX_OP_ANDN: u32 = 3;
/// `FUTEX_WAKE_OP` operation: `*uaddr2 ^= oparg`.
pub const FUTEX_OP_XOR: u32 = 4;
/// Added to a `FUTEX_WAKE_OP` operation: the operand is `1 << oparg`.
pub const FUTEX_OP_OPARG_SHIFT: u32 = 8;

/// `FUTEX_WAKE_OP` comparison: wake `uaddr2`'s waiters if `old == cmparg`.
pub const FUTEX_OP_CMP_EQ: u32 = 0;
/// `FUTEX_WAKE_OP` comparison: `old != cmparg`.
pub const FUTEX_OP_CMP_NE: u32 = 1;
/// `FUTEX_WAKE_OP` comparison: `old < cmparg` (signed).
pub const FUTEX_OP_CMP_LT: u32 = 2;
/// `FUTEX_WAKE_OP` comparison: `old <= cmparg` (signed).
pub const FUTEX_OP_CMP_LE: u32 = 3;
/// `FUTEX_WAKE_OP` comparison: `old > cmparg` (signed).
pub const FUTEX_OP_CMP_GT: u32 = 4;
/// `FUTEX_WAKE_OP` comparison: `old >= cmparg` (signed).
pub const FUTEX_OP_CMP_GE: u32 = 5;

/// Bit of a PI or robust futex word: threads are (or were) waiting.
pub const FUTEX_WAITERS: u32 = 0x8000_0000;
/// Bit of a robust futex word: the owner died holding the lock.
pub const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// The owner's thread id in a PI or robust futex word.
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// The most entries a `futex_waitv(2)` call may pass.
pub const FUTEX_WAITV_MAX: usize = 128;

/// futex2 flags: an 8-bit futex (not supported: [`EINVAL`]).
pub const FUTEX2_SIZE_U8: u32 = 0x00;
/// futex2 flags: a 16-bit futex (not supported: [`EINVAL`]).
pub const FUTEX2_SIZE_U16: u32 = 0x01;
/// futex2 flags: a 32-bit futex, the only size Linux implements.
pub const FUTEX2_SIZE_U32: u32 = 0x02;
/// futex2 flags: a 64-bit futex (not supported: [`EINVAL`]).
pub const FUTEX2_SIZE_U64: u32 = 0x03;
/// futex2 flags: the bits holding the size.
pub const FUTEX2_SIZE_MASK: u32 = 0x03;
/// futex2 flags: a NUMA futex (the word is followed by a node number).
/// Linux accepts it since 6.16; this implementation does not
/// ([`EINVAL`], what Linux answered before 6.16).
pub const FUTEX2_NUMA: u32 = 0x04;
/// futex2 flags: pick the node of a NUMA futex by the memory policy
/// (Linux 6.16). Not supported here: [`EINVAL`].
pub const FUTEX2_MPOL: u32 = 0x08;
/// futex2 flags: a process-private futex; the same bit as
/// [`FUTEX_PRIVATE_FLAG`].
pub const FUTEX2_PRIVATE: u32 = FUTEX_PRIVATE_FLAG;
/// The futex2 flag bits that exist at all (Linux's `FUTEX2_VALID_MASK`
/// before 6.16; newer kernels add [`FUTEX2_MPOL`], which ends in [`EINVAL`]
/// here either way). Other bits are [`EINVAL`].
pub const FUTEX2_VALID_MASK: u32 = FUTEX2_SIZE_MASK | FUTEX2_NUMA | FUTEX2_PRIVATE;

/// The most entries the kernel walks in a robust list before giving up (a
/// guard against a circular list).
pub const ROBUST_LIST_LIMIT: usize = 2048;

/// `clockid_t` of the wall clock.
pub const CLOCK_REALTIME: i32 = 0;
/// `clockid_t` of the monotonic clock.
pub const CLOCK_MONOTONIC: i32 = 1;

/// Nanoseconds in a second; [`Timespec::tv_nsec`] must stay below.
const NSEC_PER_SEC: i64 = 1_000_000_000;

/// Encodes a `FUTEX_WAKE_OP` operation for `val3`, as the uapi `FUTEX_OP`
/// macro: `op` in bits 28..32 (add [`FUTEX_OP_OPARG_SHIFT`] for a shifted
/// operand), `cmp` in bits 24..28, `oparg` in bits 12..24 and `cmparg` in
/// bits 0..12. The operands keep their low 12 bits (two's complement, so
/// -2048..=2047 survive [`WakeOp::decode`]'s sign extension).
/// `futex_op(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_GT, 0)` is `0x1400_1000`.
pub const fn futex_op(op: u32, oparg: i32, cmp: u32, cmparg: i32) -> u32 {
    ((op & 0xf) << 28) | ((cmp & 0xf) << 24) | (((oparg as u32) & 0xfff) << 12) | ((cmparg as u32) & 0xfff)
}

/// The `struct __kernel_timespec` of the 64-bit syscall ABI: a timeout or a
/// point in time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Timespec {
    /// Whole seconds.
    pub tv_sec: i64,
    /// Nanoseconds, `0..1_000_000_000` to be valid.
    pub tv_nsec: i64,
}

const _: () = assert!(size_of::<Timespec>() == 16 && align_of::<Timespec>() == 8);

impl Timespec {
    /// The time as a [`Duration`], or [`EINVAL`] for what Linux's
    /// `timespec64_valid` refuses: a negative `tv_sec`, or a `tv_nsec` that
    /// is negative or a full second or more.
    ///
    /// Every accepted value fits a [`Duration`]. Linux then clamps times
    /// beyond about 292 years to its largest time (`timespec64_to_ktime`);
    /// deadline arithmetic on the result should saturate likewise rather
    /// than fail.
    pub fn to_duration(&self) -> Result<Duration, i32> {
        if self.tv_sec < 0 || !(0..NSEC_PER_SEC).contains(&self.tv_nsec) {
            return Err(EINVAL);
        }
        // Both fit: tv_sec is not negative, tv_nsec is below 10^9.
        Ok(Duration::new(self.tv_sec as u64, self.tv_nsec as u32))
    }

    /// The [`Timespec`] of `duration`; seconds beyond [`i64::MAX`] (which no
    /// clock reaches) saturate.
    pub fn from_duration(duration: Duration) -> Timespec {
        Timespec {
            tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(duration.subsec_nanos()),
        }
    }
}

/// One entry of `futex_waitv(2)`'s array (`struct futex_waitv`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FutexWaitv {
    /// The value `*uaddr` must hold for the caller to sleep.
    pub val: u64,
    /// The futex's address (a user pointer widened to 64 bits).
    pub uaddr: u64,
    /// futex2 flags: [`FUTEX2_SIZE_U32`], optionally [`FUTEX2_PRIVATE`].
    pub flags: u32,
    /// Must be 0 (Linux's `__reserved`).
    pub reserved: u32,
}

const _: () = assert!(size_of::<FutexWaitv>() == 24 && align_of::<FutexWaitv>() == 8);

/// Checks one `futex_waitv(2)` entry as Linux's `futex_parse_waitv` does
/// (with `futex2_to_flags`, `futex_flags_valid` and `futex_validate_input`);
/// every failure is [`EINVAL`]:
///
/// * flag bits outside [`FUTEX2_VALID_MASK`], or a non-zero `reserved`;
/// * [`FUTEX2_NUMA`] (not implemented here; Linux 6.16 and later accept it);
/// * a size other than [`FUTEX2_SIZE_U32`] (Linux implements no other);
/// * a `val` that does not fit the futex's 32 bits.
///
/// The entry's address is not checked here: Linux validates it only when
/// it queues the waiter ([`check_uaddr`] on `uaddr`, after all entries
/// passed this check).
pub fn check_waitv_entry(entry: &FutexWaitv) -> Result<(), i32> {
    if entry.flags & !FUTEX2_VALID_MASK != 0 || entry.reserved != 0 {
        return Err(EINVAL);
    }
    if entry.flags & FUTEX2_NUMA != 0 {
        return Err(EINVAL);
    }
    if entry.flags & FUTEX2_SIZE_MASK != FUTEX2_SIZE_U32 {
        return Err(EINVAL);
    }
    if entry.val > u64::from(u32::MAX) {
        return Err(EINVAL);
    }
    Ok(())
}

/// Checks the arguments of `futex_waitv(waiters, nr_futexes, flags, timeout,
/// clockid)` that Linux checks before reading the array, and returns the
/// number of entries to read.
///
/// Pass the raw register values: like Linux's syscall wrapper this uses
/// only the low 32 bits of `nr_futexes` (an `unsigned int`). `flags` and
/// `clockid` are the low 32 bits of theirs; `has_timeout` says whether the
/// timeout pointer is non-null.
///
/// Linux's `sys_futex_waitv` (with `futex2_setup_timeout`) goes in this
/// order; the steps after this function are the caller's:
///
/// 1. `flags != 0`: [`EINVAL`] (no flags are defined yet);
/// 2. `nr_futexes` 0 or above [`FUTEX_WAITV_MAX`], or `waiters` null:
///    [`EINVAL`];
/// 3. only with a timeout: a `clockid` other than [`CLOCK_MONOTONIC`] or
///    [`CLOCK_REALTIME`] is [`EINVAL`] (without a timeout `clockid` is
///    ignored);
/// 4. *(caller)* copy the [`Timespec`] ([`EFAULT`]) and check it with
///    [`Timespec::to_duration`] ([`EINVAL`]); it is an absolute time on
///    the chosen clock;
/// 5. *(caller)* allocate room for the entries (Linux: `ENOMEM`);
/// 6. *(caller)* for each entry in order: copy it ([`EFAULT`]), then
///    [`check_waitv_entry`] ([`EINVAL`]);
/// 7. *(caller)* [`check_uaddr`] of every entry's address, then compare
///    every word with its `val` ([`EAGAIN`] if one differs and none was
///    woken meanwhile) and sleep; the result is the index of a woken entry,
///    [`ETIMEDOUT`] or [`EINTR`].
pub fn check_waitv_call(
    waiters: usize,
    nr_futexes: usize,
    flags: u32,
    has_timeout: bool,
    clockid: i32,
) -> Result<usize, i32> {
    if flags != 0 {
        return Err(EINVAL);
    }
    // The syscall parameter is an unsigned int: the register's high half
    // never reaches Linux's checks.
    let nr = nr_futexes as u32 as usize;
    if nr == 0 || nr > FUTEX_WAITV_MAX || waiters == 0 {
        return Err(EINVAL);
    }
    if has_timeout && clockid != CLOCK_REALTIME && clockid != CLOCK_MONOTONIC {
        return Err(EINVAL);
    }
    Ok(nr)
}

/// The command number of a `futex(2)` `op`: `op & FUTEX_CMD_MASK`.
///
/// Needed before [`decode`] to decide with [`has_timeout`] whether the
/// fourth argument is a timeout to copy in, as Linux does.
pub const fn cmd_of(op: i32) -> u32 {
    op as u32 & FUTEX_CMD_MASK
}

/// Whether the fourth argument of command `cmd` ([`cmd_of`]) is a timeout
/// pointer, as Linux's `futex_cmd_has_timeout`: [`FUTEX_WAIT`],
/// [`FUTEX_LOCK_PI`], [`FUTEX_LOCK_PI2`], [`FUTEX_WAIT_BITSET`] and
/// [`FUTEX_WAIT_REQUEUE_PI`].
///
/// Linux copies and checks a non-null timeout of these commands before it
/// looks at anything else (PI commands included, even when it then answers
/// [`ENOSYS`]); for every other command the argument is never dereferenced.
pub const fn has_timeout(cmd: u32) -> bool {
    matches!(cmd, FUTEX_WAIT | FUTEX_LOCK_PI | FUTEX_LOCK_PI2 | FUTEX_WAIT_BITSET | FUTEX_WAIT_REQUEUE_PI)
}

/// Whether command `cmd` ([`cmd_of`]) reads its fourth argument as the count
/// `val2` ([`val2_from_timeout_arg`]): [`FUTEX_REQUEUE`],
/// [`FUTEX_CMP_REQUEUE`], [`FUTEX_WAKE_OP`] and [`FUTEX_CMP_REQUEUE_PI`].
pub const fn val2_is_count(cmd: u32) -> bool {
    matches!(cmd, FUTEX_REQUEUE | FUTEX_CMP_REQUEUE | FUTEX_WAKE_OP | FUTEX_CMP_REQUEUE_PI)
}

/// `val2` from the raw fourth argument of `futex(2)`: its low 32 bits, as
/// Linux's `(u32)(unsigned long)utime`. The counts it carries are then
/// read as a signed `int` ([`requeue_counts`], [`wake_limit`]).
pub const fn val2_from_timeout_arg(timeout_arg: usize) -> u32 {
    timeout_arg as u32
}

/// A `futex(2)` command that this implementation dispatches, from
/// [`decode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// [`FUTEX_WAIT`]: sleep while `*uaddr == val`, relative timeout, every
    /// waker matches (`val3` ignored).
    Wait,
    /// [`FUTEX_WAIT_BITSET`]: as [`Command::Wait`] with the bitset `val3`
    /// and an absolute timeout.
    WaitBitset,
    /// [`FUTEX_WAKE`]: wake up to [`wake_limit`]`(val)` waiters.
    Wake,
    /// [`FUTEX_WAKE_BITSET`]: as [`Command::Wake`], only waiters whose
    /// bitset shares a bit with `val3`.
    WakeBitset,
    /// [`FUTEX_REQUEUE`]: wake some waiters, move others to `uaddr2`.
    Requeue,
    /// [`FUTEX_CMP_REQUEUE`]: [`Command::Requeue`] if `*uaddr == val3`.
    CmpRequeue,
    /// [`FUTEX_WAKE_OP`]: see [`WakeOp`].
    WakeOp,
    /// A priority-inheritance command (its number: [`FUTEX_LOCK_PI`],
    /// [`FUTEX_UNLOCK_PI`], [`FUTEX_TRYLOCK_PI`], [`FUTEX_WAIT_REQUEUE_PI`],
    /// [`FUTEX_CMP_REQUEUE_PI`] or [`FUTEX_LOCK_PI2`]). Not implemented:
    /// the caller answers [`ENOSYS`], as a Linux built without
    /// `CONFIG_FUTEX_PI`. (Such a Linux checks [`requeue_counts`] for
    /// `FUTEX_CMP_REQUEUE_PI` first, so negative counts are [`EINVAL`]
    /// there; every other PI command is [`ENOSYS`] at once.)
    Pi(u32),
}

impl Command {
    /// The command's number ([`FUTEX_WAIT`], ...).
    pub const fn number(self) -> u32 {
        match self {
            Command::Wait => FUTEX_WAIT,
            Command::WaitBitset => FUTEX_WAIT_BITSET,
            Command::Wake => FUTEX_WAKE,
            Command::WakeBitset => FUTEX_WAKE_BITSET,
            Command::Requeue => FUTEX_REQUEUE,
            Command::CmpRequeue => FUTEX_CMP_REQUEUE,
            Command::WakeOp => FUTEX_WAKE_OP,
            Command::Pi(number) => number,
        }
    }

    /// The wake-up bitset of a wait or wake command given the call's
    /// `val3`: [`FUTEX_BITSET_MATCH_ANY`] for [`Command::Wait`] and
    /// [`Command::Wake`] (Linux overrides `val3`), `val3` for the
    /// `*_BITSET` commands, `None` for commands without a bitset. A bitset
    /// of 0 is [`EINVAL`] (checked before the address).
    pub const fn bitset(self, val3: u32) -> Option<u32> {
        match self {
            Command::Wait | Command::Wake => Some(FUTEX_BITSET_MATCH_ANY),
            Command::WaitBitset | Command::WakeBitset => Some(val3),
            _ => None,
        }
    }
}

/// How a command reads its timeout argument, from [`Decoded::timeout_kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// The argument is not a timeout ([`has_timeout`] is false).
    Unused,
    /// A duration from now, measured on the monotonic clock
    /// ([`FUTEX_WAIT`]; Linux adds it to the current time, saturating).
    Relative,
    /// An absolute time on the monotonic clock.
    AbsoluteMonotonic,
    /// An absolute time on the wall clock ([`FUTEX_CLOCK_REALTIME`], and
    /// always for [`FUTEX_LOCK_PI`]).
    AbsoluteRealtime,
}

/// A decoded `futex(2)` `op`, from [`decode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decoded {
    /// The command.
    pub cmd: Command,
    /// [`FUTEX_PRIVATE_FLAG`] was set.
    pub private: bool,
    /// [`FUTEX_CLOCK_REALTIME`] was set (only ever with a command that
    /// allows it).
    pub clock_realtime: bool,
}

impl Decoded {
    /// How the command reads its timeout, as Linux's `futex_init_timeout`
    /// and `do_futex`: relative for [`FUTEX_WAIT`], absolute on the wall
    /// clock for [`FUTEX_LOCK_PI`] whatever the flags say, and otherwise
    /// absolute on the clock [`FUTEX_CLOCK_REALTIME`] selects.
    pub const fn timeout_kind(&self) -> TimeoutKind {
        let number = self.cmd.number();
        if !has_timeout(number) {
            TimeoutKind::Unused
        } else if number == FUTEX_WAIT {
            TimeoutKind::Relative
        } else if number == FUTEX_LOCK_PI || self.clock_realtime {
            TimeoutKind::AbsoluteRealtime
        } else {
            TimeoutKind::AbsoluteMonotonic
        }
    }
}

/// Decodes `futex(2)`'s `op` as Linux's `do_futex` (with `futex_to_flags`)
/// does; every failure is [`ENOSYS`]:
///
/// * the command is `op & FUTEX_CMD_MASK` ([`cmd_of`]), so any bit other
///   than the two flags makes an unknown command;
/// * [`FUTEX_CLOCK_REALTIME`] is only allowed with [`FUTEX_WAIT_BITSET`],
///   [`FUTEX_WAIT_REQUEUE_PI`] and [`FUTEX_LOCK_PI2`]. In particular plain
///   [`FUTEX_WAIT`] with it is refused: its relative timeout is always
///   measured on the monotonic clock (`futex_init_timeout`). Some older
///   kernels (from 4.5) accepted the combination; current ones do not.
///   [`FUTEX_LOCK_PI`] with it is refused too, although `FUTEX_LOCK_PI`
///   always uses the wall clock;
/// * [`FUTEX_FD`] and numbers above [`FUTEX_LOCK_PI2`] are unknown.
///
/// The PI commands decode to [`Command::Pi`], for the caller to answer
/// [`ENOSYS`]. Timeouts are checked before this (see the module
/// documentation).
pub const fn decode(op: i32) -> Result<Decoded, i32> {
    let cmd = cmd_of(op);
    let op = op as u32;
    let private = op & FUTEX_PRIVATE_FLAG != 0;
    let clock_realtime = op & FUTEX_CLOCK_REALTIME != 0;
    if clock_realtime && !matches!(cmd, FUTEX_WAIT_BITSET | FUTEX_WAIT_REQUEUE_PI | FUTEX_LOCK_PI2) {
        return Err(ENOSYS);
    }
    let cmd = match cmd {
        FUTEX_WAIT => Command::Wait,
        FUTEX_WAIT_BITSET => Command::WaitBitset,
        FUTEX_WAKE => Command::Wake,
        FUTEX_WAKE_BITSET => Command::WakeBitset,
        FUTEX_REQUEUE => Command::Requeue,
        FUTEX_CMP_REQUEUE => Command::CmpRequeue,
        FUTEX_WAKE_OP => Command::WakeOp,
        FUTEX_LOCK_PI
        | FUTEX_UNLOCK_PI
        | FUTEX_TRYLOCK_PI
        | FUTEX_WAIT_REQUEUE_PI
        | FUTEX_CMP_REQUEUE_PI
        | FUTEX_LOCK_PI2 => Command::Pi(cmd),
        _ => return Err(ENOSYS),
    };
    Ok(Decoded { cmd, private, clock_realtime })
}

/// The most waiters a wake may wake for the count `val` (`FUTEX_WAKE`'s and
/// `FUTEX_WAKE_BITSET`'s `val`, `FUTEX_WAKE_OP`'s `val` and `val2`).
///
/// Linux reads the count as a signed `int`, and its wake loops
/// (`futex_wake`, `futex_wake_op`) wake a waiter *before* comparing the
/// running total with the count. So a count of 0, or one that is negative
/// as an `int` (`0x8000_0000` and up), still wakes one waiter if one
/// matches; any positive count is the exact limit. (The requeue commands
/// differ: their counts are exact, see [`requeue_counts`].)
pub const fn wake_limit(val: u32) -> usize {
    let count = val as i32;
    if count <= 0 { 1 } else { count as usize }
}

/// The counts of `FUTEX_REQUEUE` and `FUTEX_CMP_REQUEUE`: how many waiters
/// to wake (`val`) and how many of the rest to move to `uaddr2` (`val2`,
/// [`val2_from_timeout_arg`]).
///
/// Linux's `futex_requeue` takes both as `int` and refuses a negative one
/// with [`EINVAL`] (for both commands, before looking at the addresses: the
/// fix for CVE-2018-6927). Unlike a wake, the counts are exact: 0 wakes or
/// moves nobody. The waiters are taken in queue order: the first
/// `nr_wake` are woken, the next `nr_requeue` moved, and the call returns
/// how many were woken plus moved.
pub const fn requeue_counts(nr_wake: u32, nr_requeue: u32) -> Result<(usize, usize), i32> {
    if (nr_wake as i32) < 0 || (nr_requeue as i32) < 0 {
        return Err(EINVAL);
    }
    Ok((nr_wake as usize, nr_requeue as usize))
}

/// Checks a futex address as Linux's `get_futex_key` does, in its order:
/// an address that is not 4-byte aligned is [`EINVAL`] (null is aligned);
/// then a null address is [`EFAULT`].
///
/// Deciding whether a non-null address is mapped (and writable, for
/// `FUTEX_WAKE_OP`'s `uaddr2`) is the caller's job: [`EFAULT`] when the
/// word cannot be accessed. Null is refused here outright, which is what
/// Linux answers whenever it reads or writes the word; a private
/// `FUTEX_WAKE` on a null address, which Linux never dereferences, returns
/// 0 on Linux (no waiter can be queued there) but [`EFAULT`] here.
pub const fn check_uaddr(addr: usize) -> Result<(), i32> {
    if !addr.is_multiple_of(size_of::<u32>()) {
        return Err(EINVAL);
    }
    if addr == 0 {
        return Err(EFAULT);
    }
    Ok(())
}

/// A decoded `FUTEX_WAKE_OP` operation (`val3`): what to do to `*uaddr2`
/// and when to wake its waiters.
///
/// Linux's `futex_atomic_op_inuser` splits the encoding ([`futex_op`]) into
/// `op` (bits 28..31), the shift flag (bit 31), `cmp` (bits 24..28) and two
/// 12-bit signed operands; `arch_futex_atomic_op_inuser` then modifies the
/// word and yields its old value, which decides the second wake:
///
/// ```text
/// old = *uaddr2;  *uaddr2 = old OP oparg;  if (old CMP cmparg) wake uaddr2;
/// ```
///
/// The comparison is on signed 32-bit values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WakeOp {
    op: u32,
    cmp: u32,
    oparg: u32,
    cmparg: u32,
}

impl WakeOp {
    /// Decodes `encoded` (`val3`) as Linux's `futex_atomic_op_inuser`.
    ///
    /// * `oparg` and `cmparg` are sign-extended from 12 bits (`0xfff` is -1).
    /// * With [`FUTEX_OP_OPARG_SHIFT`], the operand becomes `1 << oparg`. An
    ///   `oparg` outside `0..=31` is not refused: Linux logs a rate-limited
    ///   complaint and uses `oparg & 31` (so -1 shifts by 31).
    /// * An operation other than [`FUTEX_OP_SET`]..=[`FUTEX_OP_XOR`] is
    ///   [`ENOSYS`]; Linux's x86 helper answers this before touching the
    ///   word.
    /// * An unknown comparison (above [`FUTEX_OP_CMP_GE`]) is *not* refused
    ///   here: Linux applies the operation to `*uaddr2` first and only then
    ///   fails with [`ENOSYS`]; [`WakeOp::compare`] reports it.
    pub const fn decode(encoded: u32) -> Result<WakeOp, i32> {
        let op = (encoded >> 28) & 7;
        let cmp = (encoded >> 24) & 15;
        let mut oparg = sign_extend_12(encoded >> 12);
        let cmparg = sign_extend_12(encoded);
        if encoded & (FUTEX_OP_OPARG_SHIFT << 28) != 0 {
            // Out-of-range shifts are masked, not refused.
            oparg = 1i32 << (oparg & 31);
        }
        if op > FUTEX_OP_XOR {
            return Err(ENOSYS);
        }
        Ok(WakeOp { op, cmp, oparg: oparg as u32, cmparg: cmparg as u32 })
    }

    /// The operation, [`FUTEX_OP_SET`]..=[`FUTEX_OP_XOR`] (without the
    /// shift flag).
    pub const fn op(&self) -> u32 {
        self.op
    }

    /// The comparison as encoded, 0..=15; only
    /// [`FUTEX_OP_CMP_EQ`]..=[`FUTEX_OP_CMP_GE`] are valid.
    pub const fn cmp(&self) -> u32 {
        self.cmp
    }

    /// The operand, after sign extension and the optional shift (the bits
    /// of Linux's `int`).
    pub const fn oparg(&self) -> u32 {
        self.oparg
    }

    /// The comparison's operand, sign-extended (the bits of Linux's `int`).
    pub const fn cmparg(&self) -> u32 {
        self.cmparg
    }

    /// The value the operation stores given the word's `old` value
    /// (additions wrap, as the hardware's do).
    pub const fn apply(&self, old: u32) -> u32 {
        match self.op {
            FUTEX_OP_SET => self.oparg,
            FUTEX_OP_ADD => old.wrapping_add(self.oparg),
            FUTEX_OP_OR => old | self.oparg,
            FUTEX_OP_ANDN => old & !self.oparg,
            // FUTEX_OP_XOR: decode admits nothing else.
            _ => old ^ self.oparg,
        }
    }

    /// Whether the waiters of `uaddr2` are to be woken given the word's
    /// `old` value: `old` compared with `cmparg`, both as signed 32-bit
    /// values (so `0xffff_ffff` is less than 0). An unknown comparison is
    /// [`ENOSYS`]; Linux has modified the word by then and wakes nobody.
    pub const fn compare(&self, old: u32) -> Result<bool, i32> {
        let old = old as i32;
        let cmparg = self.cmparg as i32;
        match self.cmp {
            FUTEX_OP_CMP_EQ => Ok(old == cmparg),
            FUTEX_OP_CMP_NE => Ok(old != cmparg),
            FUTEX_OP_CMP_LT => Ok(old < cmparg),
            FUTEX_OP_CMP_LE => Ok(old <= cmparg),
            FUTEX_OP_CMP_GT => Ok(old > cmparg),
            FUTEX_OP_CMP_GE => Ok(old >= cmparg),
            _ => Err(ENOSYS),
        }
    }
}

/// Sign-extends the low 12 bits of `value` (Linux's `sign_extend32(value, 11)`).
const fn sign_extend_12(value: u32) -> i32 {
    ((value << 20) as i32) >> 20
}

/// Applies `op` to `word` atomically and returns the old value (what
/// [`WakeOp::compare`] then judges), with the same effect as Linux's x86
/// `arch_futex_atomic_op_inuser`: one atomic read-modify-write, sequentially
/// consistent (Linux uses `xchg`, `lock xadd` or a `lock cmpxchg` loop, all
/// full barriers). The stored value is [`WakeOp::apply`] of the old one.
pub fn rmw(word: &AtomicU32, op: &WakeOp) -> u32 {
    let oparg = op.oparg;
    match op.op {
        FUTEX_OP_SET => word.swap(oparg, Ordering::SeqCst),
        FUTEX_OP_ADD => word.fetch_add(oparg, Ordering::SeqCst),
        FUTEX_OP_OR => word.fetch_or(oparg, Ordering::SeqCst),
        FUTEX_OP_ANDN => word.fetch_and(!oparg, Ordering::SeqCst),
        // FUTEX_OP_XOR: decode admits nothing else.
        _ => word.fetch_xor(oparg, Ordering::SeqCst),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::EAGAIN;
    use core::mem::offset_of;

    /// The numbers of include/uapi/linux/futex.h and the clock ids of
    /// include/uapi/linux/time.h.
    #[test]
    fn uapi_constants() {
        let commands = [
            FUTEX_WAIT,
            FUTEX_WAKE,
            FUTEX_FD,
            FUTEX_REQUEUE,
            FUTEX_CMP_REQUEUE,
            FUTEX_WAKE_OP,
            FUTEX_LOCK_PI,
            FUTEX_UNLOCK_PI,
            FUTEX_TRYLOCK_PI,
            FUTEX_WAIT_BITSET,
            FUTEX_WAKE_BITSET,
            FUTEX_WAIT_REQUEUE_PI,
            FUTEX_CMP_REQUEUE_PI,
            FUTEX_LOCK_PI2,
        ];
        for (number, cmd) in commands.into_iter().enumerate() {
            assert_eq!(cmd as usize, number);
        }
        assert_eq!(FUTEX_PRIVATE_FLAG, 128);
        assert_eq!(FUTEX_CLOCK_REALTIME, 256);
        assert_eq!(FUTEX_CMD_MASK, 0xffff_fe7f);
        assert_eq!(FUTEX_BITSET_MATCH_ANY, u32::MAX);
        assert_eq!(
            [FUTEX_OP_SET, FUTEX_OP_ADD, FUTEX_OP_OR, FUTEX_OP_ANDN, FUTEX_OP_XOR, FUTEX_OP_OPARG_SHIFT],
            [0, 1, 2, 3, 4, 8]
        );
        assert_eq!(
            [
                FUTEX_OP_CMP_EQ,
                FUTEX_OP_CMP_NE,
                FUTEX_OP_CMP_LT,
                FUTEX_OP_CMP_LE,
                FUTEX_OP_CMP_GT,
                FUTEX_OP_CMP_GE
            ],
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            (FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK),
            (0x8000_0000, 0x4000_0000, 0x3fff_ffff)
        );
        assert_eq!(FUTEX_WAITERS | FUTEX_OWNER_DIED | FUTEX_TID_MASK, u32::MAX);
        assert_eq!(FUTEX_WAITV_MAX, 128);
        assert_eq!([FUTEX2_SIZE_U8, FUTEX2_SIZE_U16, FUTEX2_SIZE_U32, FUTEX2_SIZE_U64], [0, 1, 2, 3]);
        assert_eq!((FUTEX2_SIZE_MASK, FUTEX2_NUMA, FUTEX2_MPOL, FUTEX2_PRIVATE), (3, 4, 8, 128));
        assert_eq!(FUTEX2_PRIVATE, FUTEX_PRIVATE_FLAG);
        assert_eq!(FUTEX2_VALID_MASK, 0x87);
        assert_eq!(ROBUST_LIST_LIMIT, 2048);
        assert_eq!((CLOCK_REALTIME, CLOCK_MONOTONIC), (0, 1));
    }

    /// Encodings as the C macro computes them (glibc's and the man page's
    /// examples).
    #[test]
    fn futex_op_encodings() {
        assert_eq!(futex_op(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_GT, 0), 0x1400_1000);
        // glibc's old FUTEX_OP_CLEAR_WAKE_IF_GT_ONE.
        assert_eq!(futex_op(FUTEX_OP_SET, 0, FUTEX_OP_CMP_GT, 1), 0x0400_0001);
        assert_eq!(futex_op(FUTEX_OP_OPARG_SHIFT | FUTEX_OP_OR, 31, FUTEX_OP_CMP_NE, 0), 0xa101_f000);
        assert_eq!(futex_op(FUTEX_OP_XOR, -1, FUTEX_OP_CMP_GE, -2048), 0x45ff_f800);
        // Only the low 12 bits of the operands and 4 bits of op/cmp survive.
        assert_eq!(futex_op(0x1f, 0x1_2345, 0x1f, 0x6789), 0xff34_5789);
    }

    #[test]
    fn wake_op_decode_fields() {
        let op = WakeOp::decode(futex_op(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_GT, 0)).unwrap();
        assert_eq!((op.op(), op.cmp(), op.oparg(), op.cmparg()), (FUTEX_OP_ADD, FUTEX_OP_CMP_GT, 1, 0));
        for op_number in [FUTEX_OP_SET, FUTEX_OP_ADD, FUTEX_OP_OR, FUTEX_OP_ANDN, FUTEX_OP_XOR] {
            let decoded = WakeOp::decode(futex_op(op_number, 7, FUTEX_OP_CMP_EQ, 3)).unwrap();
            assert_eq!((decoded.op(), decoded.oparg(), decoded.cmparg()), (op_number, 7, 3));
        }
    }

    /// 12-bit operands are signed: 0xfff is -1, 0x800 is -2048, 0x7ff 2047.
    #[test]
    fn wake_op_sign_extension() {
        let op = WakeOp::decode(0x00ff_ffff).unwrap();
        assert_eq!((op.oparg(), op.cmparg()), (u32::MAX, u32::MAX));
        let op = WakeOp::decode(0x0080_0800).unwrap();
        assert_eq!((op.oparg() as i32, op.cmparg() as i32), (-2048, -2048));
        let op = WakeOp::decode(0x007f_f7ff).unwrap();
        assert_eq!((op.oparg() as i32, op.cmparg() as i32), (2047, 2047));
        assert_eq!(sign_extend_12(0xffff_f001), 1);
        assert_eq!(sign_extend_12(0x0000_0801), -2047);
    }

    /// FUTEX_OP_OPARG_SHIFT: 1 << oparg; out-of-range shifts are masked to
    /// 0..=31, as Linux does after its warning.
    #[test]
    fn wake_op_oparg_shift() {
        let shifted = |oparg: i32| {
            WakeOp::decode(futex_op(FUTEX_OP_OPARG_SHIFT | FUTEX_OP_OR, oparg, FUTEX_OP_CMP_EQ, 0))
                .unwrap()
                .oparg()
        };
        assert_eq!(shifted(0), 1);
        assert_eq!(shifted(5), 32);
        assert_eq!(shifted(31), 0x8000_0000);
        assert_eq!(shifted(32), 1);
        assert_eq!(shifted(33), 2);
        assert_eq!(shifted(-1), 0x8000_0000);
        assert_eq!(shifted(-32), 1);
        assert_eq!(shifted(2047), 0x8000_0000);
        assert_eq!(shifted(-2048), 1);
        // The shift flag does not change the operation.
        let op =
            WakeOp::decode(futex_op(FUTEX_OP_OPARG_SHIFT | FUTEX_OP_ANDN, 3, FUTEX_OP_CMP_EQ, 0)).unwrap();
        assert_eq!((op.op(), op.oparg()), (FUTEX_OP_ANDN, 8));
        assert_eq!(op.apply(0xff), 0xf7);
    }

    #[test]
    fn wake_op_unknown_op_is_enosys() {
        for op in 5..8 {
            assert_eq!(WakeOp::decode(futex_op(op, 0, FUTEX_OP_CMP_EQ, 0)), Err(ENOSYS), "op {op}");
            let shifted = futex_op(op | FUTEX_OP_OPARG_SHIFT, 0, FUTEX_OP_CMP_EQ, 0);
            assert_eq!(WakeOp::decode(shifted), Err(ENOSYS), "op {op} shifted");
        }
    }

    /// An unknown comparison decodes (Linux applies the operation first) and
    /// fails at the comparison.
    #[test]
    fn wake_op_unknown_cmp_is_enosys_after_the_update() {
        for cmp in 6..16 {
            let op = WakeOp::decode(futex_op(FUTEX_OP_ADD, 1, cmp, 0)).unwrap();
            let word = AtomicU32::new(41);
            assert_eq!(rmw(&word, &op), 41);
            assert_eq!(word.load(Ordering::SeqCst), 42, "the word changes before the failure");
            assert_eq!(op.compare(41), Err(ENOSYS), "cmp {cmp}");
        }
    }

    #[test]
    fn wake_op_apply() {
        let apply = |op: u32, oparg: i32, old: u32| {
            WakeOp::decode(futex_op(op, oparg, FUTEX_OP_CMP_EQ, 0)).unwrap().apply(old)
        };
        assert_eq!(apply(FUTEX_OP_SET, 5, 0xdead_beef), 5);
        assert_eq!(apply(FUTEX_OP_SET, -1, 0), u32::MAX);
        assert_eq!(apply(FUTEX_OP_ADD, 1, 41), 42);
        assert_eq!(apply(FUTEX_OP_ADD, 1, u32::MAX), 0);
        assert_eq!(apply(FUTEX_OP_ADD, -1, 0), u32::MAX);
        assert_eq!(apply(FUTEX_OP_ADD, -2048, 0x8000_0000), 0x7fff_f800);
        assert_eq!(apply(FUTEX_OP_OR, 0x0f0, 0x00f), 0x0ff);
        assert_eq!(apply(FUTEX_OP_ANDN, 0x0f0, 0x0ff), 0x00f);
        assert_eq!(apply(FUTEX_OP_ANDN, -1, 0x1234), 0);
        assert_eq!(apply(FUTEX_OP_XOR, 0x0ff, 0x0f0), 0x00f);
        assert_eq!(apply(FUTEX_OP_XOR, -1, 0x8000_0000), 0x7fff_ffff);
    }

    /// The comparisons are signed, as Linux's `int oldval` against `int
    /// cmparg`.
    #[test]
    fn wake_op_compare_signed() {
        let compare = |cmp: u32, cmparg: i32, old: u32| {
            WakeOp::decode(futex_op(FUTEX_OP_SET, 0, cmp, cmparg)).unwrap().compare(old).unwrap()
        };
        // LT with negative old values.
        assert!(compare(FUTEX_OP_CMP_LT, 0, u32::MAX));
        assert!(compare(FUTEX_OP_CMP_LT, 0, 0x8000_0000));
        assert!(!compare(FUTEX_OP_CMP_LT, -1, u32::MAX));
        assert!(compare(FUTEX_OP_CMP_LT, -1, 0xffff_fffe));
        assert!(!compare(FUTEX_OP_CMP_LT, 5, 5));
        // LE
        assert!(compare(FUTEX_OP_CMP_LE, 5, 5));
        assert!(compare(FUTEX_OP_CMP_LE, -2048, 0x8000_0000));
        assert!(!compare(FUTEX_OP_CMP_LE, 5, 6));
        // GT: 0x8000_0000 is i32::MIN, not a large number.
        assert!(!compare(FUTEX_OP_CMP_GT, 0, 0x8000_0000));
        assert!(compare(FUTEX_OP_CMP_GT, 1, 2));
        assert!(compare(FUTEX_OP_CMP_GT, -1, 0));
        assert!(!compare(FUTEX_OP_CMP_GT, 1, 1));
        // GE
        assert!(compare(FUTEX_OP_CMP_GE, 1, 1));
        assert!(compare(FUTEX_OP_CMP_GE, -1, u32::MAX));
        assert!(!compare(FUTEX_OP_CMP_GE, 0, u32::MAX));
        // EQ / NE with a sign-extended operand.
        assert!(compare(FUTEX_OP_CMP_EQ, -1, u32::MAX));
        assert!(!compare(FUTEX_OP_CMP_EQ, -1, 0xfff));
        assert!(compare(FUTEX_OP_CMP_EQ, 2047, 2047));
        assert!(compare(FUTEX_OP_CMP_NE, 0, 1));
        assert!(!compare(FUTEX_OP_CMP_NE, -5, (-5i32) as u32));
    }

    /// `rmw` stores `apply(old)` and returns `old`, for every operation and
    /// a spread of values and operands.
    #[test]
    fn rmw_matches_apply() {
        let olds = [0, 1, 2, 41, 0x7fff_ffff, 0x8000_0000, 0xdead_beef, u32::MAX];
        let opargs = [0, 1, -1, 2047, -2048, 0x155];
        for op_number in [FUTEX_OP_SET, FUTEX_OP_ADD, FUTEX_OP_OR, FUTEX_OP_ANDN, FUTEX_OP_XOR] {
            for shift in [0, FUTEX_OP_OPARG_SHIFT] {
                for oparg in opargs {
                    let op = WakeOp::decode(futex_op(op_number | shift, oparg, FUTEX_OP_CMP_EQ, 0)).unwrap();
                    for old in olds {
                        let word = AtomicU32::new(old);
                        assert_eq!(rmw(&word, &op), old);
                        assert_eq!(word.load(Ordering::SeqCst), op.apply(old), "{op:?} on {old:#x}");
                    }
                }
            }
        }
    }

    /// The man page's FUTEX_WAKE_OP example end to end: add 1, wake uaddr2's
    /// waiters if the old value was above 0.
    #[test]
    fn wake_op_round_trip() {
        let op = WakeOp::decode(futex_op(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_GT, 0)).unwrap();
        let word = AtomicU32::new(0);
        let old = rmw(&word, &op);
        assert_eq!((old, op.compare(old)), (0, Ok(false)));
        let old = rmw(&word, &op);
        assert_eq!((old, op.compare(old)), (1, Ok(true)));
        assert_eq!(word.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn decode_commands() {
        let plain = [
            (FUTEX_WAIT, Command::Wait),
            (FUTEX_WAKE, Command::Wake),
            (FUTEX_REQUEUE, Command::Requeue),
            (FUTEX_CMP_REQUEUE, Command::CmpRequeue),
            (FUTEX_WAKE_OP, Command::WakeOp),
            (FUTEX_WAIT_BITSET, Command::WaitBitset),
            (FUTEX_WAKE_BITSET, Command::WakeBitset),
        ];
        for (number, cmd) in plain {
            let decoded = decode(number as i32).unwrap();
            assert_eq!(decoded, Decoded { cmd, private: false, clock_realtime: false });
            assert_eq!(cmd.number(), number);
            let private = decode((number | FUTEX_PRIVATE_FLAG) as i32).unwrap();
            assert_eq!(private, Decoded { cmd, private: true, clock_realtime: false });
        }
        for number in [
            FUTEX_LOCK_PI,
            FUTEX_UNLOCK_PI,
            FUTEX_TRYLOCK_PI,
            FUTEX_WAIT_REQUEUE_PI,
            FUTEX_CMP_REQUEUE_PI,
            FUTEX_LOCK_PI2,
        ] {
            let decoded = decode((number | FUTEX_PRIVATE_FLAG) as i32).unwrap();
            assert_eq!(decoded.cmd, Command::Pi(number));
            assert_eq!(decoded.cmd.number(), number);
            assert!(decoded.private);
        }
    }

    #[test]
    fn decode_unknown_is_enosys() {
        assert_eq!(decode(FUTEX_FD as i32), Err(ENOSYS));
        assert_eq!(decode((FUTEX_FD | FUTEX_PRIVATE_FLAG) as i32), Err(ENOSYS));
        for cmd in 14..128 {
            assert_eq!(decode(cmd), Err(ENOSYS), "{cmd}");
        }
        // Bits other than the two flags belong to the command number.
        assert_eq!(decode((FUTEX_WAKE | 512) as i32), Err(ENOSYS));
        assert_eq!(decode((FUTEX_WAKE | 1024) as i32), Err(ENOSYS));
        assert_eq!(decode((FUTEX_WAIT | 0x1_0000) as i32), Err(ENOSYS));
        assert_eq!(decode(i32::MIN | FUTEX_WAKE as i32), Err(ENOSYS));
        assert_eq!(decode(-1), Err(ENOSYS));
    }

    /// FUTEX_CLOCK_REALTIME: only with WAIT_BITSET, WAIT_REQUEUE_PI and
    /// LOCK_PI2; every other command, plain FUTEX_WAIT included, is ENOSYS.
    #[test]
    fn decode_clock_realtime() {
        let rt = FUTEX_CLOCK_REALTIME;
        let decoded = decode((FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG | rt) as i32).unwrap();
        assert_eq!(decoded, Decoded { cmd: Command::WaitBitset, private: true, clock_realtime: true });
        let decoded = decode((FUTEX_WAIT_BITSET | rt) as i32).unwrap();
        assert_eq!(decoded, Decoded { cmd: Command::WaitBitset, private: false, clock_realtime: true });
        assert_eq!(
            decode((FUTEX_WAIT_REQUEUE_PI | rt) as i32).unwrap().cmd,
            Command::Pi(FUTEX_WAIT_REQUEUE_PI)
        );
        assert_eq!(decode((FUTEX_LOCK_PI2 | rt) as i32).unwrap().cmd, Command::Pi(FUTEX_LOCK_PI2));
        for cmd in [
            FUTEX_WAIT,
            FUTEX_WAKE,
            FUTEX_FD,
            FUTEX_REQUEUE,
            FUTEX_CMP_REQUEUE,
            FUTEX_WAKE_OP,
            FUTEX_LOCK_PI,
            FUTEX_UNLOCK_PI,
            FUTEX_TRYLOCK_PI,
            FUTEX_WAKE_BITSET,
            FUTEX_CMP_REQUEUE_PI,
            14,
        ] {
            assert_eq!(decode((cmd | rt) as i32), Err(ENOSYS), "{cmd}");
            assert_eq!(decode((cmd | rt | FUTEX_PRIVATE_FLAG) as i32), Err(ENOSYS), "{cmd} private");
        }
    }

    #[test]
    fn command_bitset() {
        assert_eq!(Command::Wait.bitset(0), Some(FUTEX_BITSET_MATCH_ANY));
        assert_eq!(Command::Wake.bitset(0x10), Some(FUTEX_BITSET_MATCH_ANY));
        assert_eq!(Command::WaitBitset.bitset(0x10), Some(0x10));
        assert_eq!(Command::WakeBitset.bitset(0), Some(0));
        for cmd in [Command::Requeue, Command::CmpRequeue, Command::WakeOp, Command::Pi(FUTEX_LOCK_PI)] {
            assert_eq!(cmd.bitset(1), None);
        }
    }

    #[test]
    fn cmd_of_masks_the_flags() {
        assert_eq!(cmd_of((FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) as i32), 9);
        assert_eq!(cmd_of(-1), 0xffff_fe7f);
        assert_eq!(cmd_of((FUTEX_WAKE | 512) as i32), 513);
    }

    /// futex_cmd_has_timeout, for every small command number.
    #[test]
    fn has_timeout_commands() {
        let with_timeout =
            [FUTEX_WAIT, FUTEX_LOCK_PI, FUTEX_LOCK_PI2, FUTEX_WAIT_BITSET, FUTEX_WAIT_REQUEUE_PI];
        for cmd in 0..64 {
            assert_eq!(has_timeout(cmd), with_timeout.contains(&cmd), "{cmd}");
        }
        assert!(!has_timeout(cmd_of((FUTEX_WAIT | 512) as i32)));
        assert!(has_timeout(cmd_of((FUTEX_WAIT | FUTEX_CLOCK_REALTIME) as i32)));
    }

    #[test]
    fn val2_commands() {
        let with_val2 = [FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP, FUTEX_CMP_REQUEUE_PI];
        for cmd in 0..64 {
            assert_eq!(val2_is_count(cmd), with_val2.contains(&cmd), "{cmd}");
            assert!(!(val2_is_count(cmd) && has_timeout(cmd)), "{cmd} is never both");
        }
        assert_eq!(val2_from_timeout_arg(5), 5);
        assert_eq!(val2_from_timeout_arg(0x1_0000_0005), 5);
        assert_eq!(val2_from_timeout_arg(usize::MAX), u32::MAX);
    }

    #[test]
    fn timeout_kinds() {
        let kind = |op: u32| decode(op as i32).unwrap().timeout_kind();
        assert_eq!(kind(FUTEX_WAIT), TimeoutKind::Relative);
        assert_eq!(kind(FUTEX_WAIT | FUTEX_PRIVATE_FLAG), TimeoutKind::Relative);
        assert_eq!(kind(FUTEX_WAIT_BITSET), TimeoutKind::AbsoluteMonotonic);
        assert_eq!(kind(FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME), TimeoutKind::AbsoluteRealtime);
        assert_eq!(kind(FUTEX_LOCK_PI), TimeoutKind::AbsoluteRealtime);
        assert_eq!(kind(FUTEX_LOCK_PI2), TimeoutKind::AbsoluteMonotonic);
        assert_eq!(kind(FUTEX_LOCK_PI2 | FUTEX_CLOCK_REALTIME), TimeoutKind::AbsoluteRealtime);
        assert_eq!(kind(FUTEX_WAIT_REQUEUE_PI), TimeoutKind::AbsoluteMonotonic);
        assert_eq!(kind(FUTEX_WAIT_REQUEUE_PI | FUTEX_CLOCK_REALTIME), TimeoutKind::AbsoluteRealtime);
        for op in [FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP, FUTEX_WAKE_BITSET] {
            assert_eq!(kind(op), TimeoutKind::Unused, "{op}");
        }
        for op in [FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_CMP_REQUEUE_PI] {
            assert_eq!(kind(op), TimeoutKind::Unused, "{op}");
        }
    }

    /// futex_wake's loop wakes before it compares, so a count that is not
    /// positive as an int still wakes one waiter.
    #[test]
    fn wake_limits() {
        assert_eq!(wake_limit(0), 1);
        assert_eq!(wake_limit(1), 1);
        assert_eq!(wake_limit(5), 5);
        assert_eq!(wake_limit(i32::MAX as u32), i32::MAX as usize);
        assert_eq!(wake_limit(0x8000_0000), 1);
        assert_eq!(wake_limit(u32::MAX), 1);
        // INT_MAX is what libc passes to wake everybody.
        assert!(wake_limit(i32::MAX as u32) >= 1 << 30);
    }

    #[test]
    fn requeue_count_rules() {
        assert_eq!(requeue_counts(0, 0), Ok((0, 0)));
        assert_eq!(requeue_counts(1, 0), Ok((1, 0)));
        assert_eq!(requeue_counts(1, i32::MAX as u32), Ok((1, i32::MAX as usize)));
        assert_eq!(requeue_counts(0x8000_0000, 1), Err(EINVAL));
        assert_eq!(requeue_counts(1, 0x8000_0000), Err(EINVAL));
        assert_eq!(requeue_counts(u32::MAX, u32::MAX), Err(EINVAL));
        // val2 is the low half of the register: a large pointer-sized value
        // can still be a valid count, or a negative one.
        assert_eq!(requeue_counts(1, val2_from_timeout_arg(0x7_0000_0003)), Ok((1, 3)));
        assert_eq!(requeue_counts(1, val2_from_timeout_arg(0xffff_ffff_8000_0000)), Err(EINVAL));
    }

    #[test]
    fn uaddr_rules() {
        assert_eq!(check_uaddr(0), Err(EFAULT));
        for misaligned in [1, 2, 3, 5, 0x1001, 0x1002, usize::MAX] {
            assert_eq!(check_uaddr(misaligned), Err(EINVAL), "{misaligned:#x}");
        }
        for aligned in [4, 8, 0x1000, 0x7fff_ffff_fffc, usize::MAX & !3] {
            assert_eq!(check_uaddr(aligned), Ok(()), "{aligned:#x}");
        }
    }

    #[test]
    fn timespec_to_duration() {
        let ts = |tv_sec, tv_nsec| Timespec { tv_sec, tv_nsec };
        assert_eq!(ts(0, 0).to_duration(), Ok(Duration::ZERO));
        assert_eq!(ts(1, 500_000_000).to_duration(), Ok(Duration::from_millis(1500)));
        assert_eq!(ts(0, 999_999_999).to_duration(), Ok(Duration::new(0, 999_999_999)));
        assert_eq!(ts(i64::MAX, 999_999_999).to_duration(), Ok(Duration::new(i64::MAX as u64, 999_999_999)));
        assert_eq!(ts(0, 1_000_000_000).to_duration(), Err(EINVAL));
        assert_eq!(ts(0, i64::MAX).to_duration(), Err(EINVAL));
        assert_eq!(ts(0, -1).to_duration(), Err(EINVAL));
        assert_eq!(ts(0, i64::MIN).to_duration(), Err(EINVAL));
        assert_eq!(ts(-1, 0).to_duration(), Err(EINVAL));
        assert_eq!(ts(i64::MIN, 0).to_duration(), Err(EINVAL));
    }

    #[test]
    fn timespec_from_duration() {
        let ts = Timespec::from_duration(Duration::new(3, 7));
        assert_eq!(ts, Timespec { tv_sec: 3, tv_nsec: 7 });
        assert_eq!(ts.to_duration(), Ok(Duration::new(3, 7)));
        assert_eq!(Timespec::from_duration(Duration::ZERO), Timespec::default());
        let max = Timespec::from_duration(Duration::MAX);
        assert_eq!(max, Timespec { tv_sec: i64::MAX, tv_nsec: 999_999_999 });
        assert_eq!(max.to_duration(), Ok(Duration::new(i64::MAX as u64, 999_999_999)));
    }

    /// struct __kernel_timespec and struct futex_waitv, field by field.
    #[test]
    fn struct_layouts() {
        assert_eq!((offset_of!(Timespec, tv_sec), offset_of!(Timespec, tv_nsec)), (0, 8));
        assert_eq!(offset_of!(FutexWaitv, val), 0);
        assert_eq!(offset_of!(FutexWaitv, uaddr), 8);
        assert_eq!(offset_of!(FutexWaitv, flags), 16);
        assert_eq!(offset_of!(FutexWaitv, reserved), 20);
        assert_eq!(size_of::<FutexWaitv>() * FUTEX_WAITV_MAX, 3072);
    }

    #[test]
    fn waitv_entry_rules() {
        let entry = |val, flags, reserved| FutexWaitv { val, uaddr: 0x1000, flags, reserved };
        assert_eq!(check_waitv_entry(&entry(0, FUTEX2_SIZE_U32, 0)), Ok(()));
        assert_eq!(check_waitv_entry(&entry(7, FUTEX2_SIZE_U32 | FUTEX2_PRIVATE, 0)), Ok(()));
        assert_eq!(check_waitv_entry(&entry(u64::from(u32::MAX), FUTEX2_SIZE_U32, 0)), Ok(()));
        // reserved must be zero.
        assert_eq!(check_waitv_entry(&entry(0, FUTEX2_SIZE_U32, 1)), Err(EINVAL));
        assert_eq!(check_waitv_entry(&entry(0, FUTEX2_SIZE_U32, 0x8000_0000)), Err(EINVAL));
        // Only 32-bit futexes.
        for size in [FUTEX2_SIZE_U8, FUTEX2_SIZE_U16, FUTEX2_SIZE_U64] {
            assert_eq!(check_waitv_entry(&entry(0, size, 0)), Err(EINVAL), "size {size}");
            assert_eq!(check_waitv_entry(&entry(0, size | FUTEX2_PRIVATE, 0)), Err(EINVAL));
        }
        // NUMA is not implemented; MPOL and the unnamed bits are unknown.
        assert_eq!(check_waitv_entry(&entry(0, FUTEX2_SIZE_U32 | FUTEX2_NUMA, 0)), Err(EINVAL));
        for bit in [FUTEX2_MPOL, 0x10, 0x20, 0x40, 0x100, 0x8000_0000] {
            assert_eq!(check_waitv_entry(&entry(0, FUTEX2_SIZE_U32 | bit, 0)), Err(EINVAL), "{bit:#x}");
        }
        // The value must fit 32 bits.
        assert_eq!(check_waitv_entry(&entry(1 << 32, FUTEX2_SIZE_U32, 0)), Err(EINVAL));
        assert_eq!(check_waitv_entry(&entry(u64::MAX, FUTEX2_SIZE_U32, 0)), Err(EINVAL));
        // The address is not this check's business.
        let odd_address = FutexWaitv { val: 0, uaddr: 3, flags: FUTEX2_SIZE_U32, reserved: 0 };
        assert_eq!(check_waitv_entry(&odd_address), Ok(()));
    }

    #[test]
    fn waitv_call_rules() {
        let array = 0x1000;
        assert_eq!(check_waitv_call(array, 1, 0, false, 0), Ok(1));
        assert_eq!(check_waitv_call(array, 128, 0, true, CLOCK_MONOTONIC), Ok(128));
        assert_eq!(check_waitv_call(array, 2, 0, true, CLOCK_REALTIME), Ok(2));
        // flags first: even an otherwise hopeless call is refused for them.
        assert_eq!(check_waitv_call(0, 0, 1, true, 99), Err(EINVAL));
        assert_eq!(check_waitv_call(array, 1, FUTEX2_PRIVATE, false, 0), Err(EINVAL));
        // Count and array.
        assert_eq!(check_waitv_call(array, 0, 0, false, 0), Err(EINVAL));
        assert_eq!(check_waitv_call(array, 129, 0, false, 0), Err(EINVAL));
        assert_eq!(check_waitv_call(0, 1, 0, false, 0), Err(EINVAL));
        // Only the low 32 bits of the count reach Linux.
        assert_eq!(check_waitv_call(array, 0x1_0000_0001, 0, false, 0), Ok(1));
        assert_eq!(check_waitv_call(array, 0x1_0000_0000, 0, false, 0), Err(EINVAL));
        // The clock only matters with a timeout.
        for clock in [2, 3, 4, 7, -1, i32::MAX] {
            assert_eq!(check_waitv_call(array, 1, 0, true, clock), Err(EINVAL), "{clock}");
            assert_eq!(check_waitv_call(array, 1, 0, false, clock), Ok(1), "{clock} unused");
        }
    }

    /// A FUTEX_CMP_REQUEUE whose counts are fine but whose compare fails is
    /// EAGAIN, decided by the caller after the addresses: this only checks
    /// that the pieces give the order the module documentation lists.
    #[test]
    fn cmp_requeue_order() {
        let op = (FUTEX_CMP_REQUEUE | FUTEX_PRIVATE_FLAG) as i32;
        assert!(!has_timeout(cmd_of(op)));
        assert!(val2_is_count(cmd_of(op)));
        let decoded = decode(op).unwrap();
        assert_eq!(decoded.cmd, Command::CmpRequeue);
        // Negative counts beat a bad address.
        let run = |nr_wake, val2, uaddr, uaddr2, word: u32, val3: u32| {
            requeue_counts(nr_wake, val2)?;
            check_uaddr(uaddr)?;
            check_uaddr(uaddr2)?;
            if word != val3 { Err(EAGAIN) } else { Ok(()) }
        };
        assert_eq!(run(u32::MAX, 1, 1, 0, 0, 0), Err(EINVAL));
        assert_eq!(run(1, 1, 0, 3, 0, 0), Err(EFAULT));
        assert_eq!(run(1, 1, 4, 3, 0, 0), Err(EINVAL));
        assert_eq!(run(1, 1, 4, 8, 1, 0), Err(EAGAIN));
        assert_eq!(run(1, 1, 4, 8, 1, 1), Ok(()));
    }
}
