//! The ABI layer used the way a `futex(2)` / `futex_waitv(2)` entry point
//! uses it: the checks chained in Linux's order, answering a table of calls
//! whose results were worked out from Linux's `kernel/futex/` sources.

use core::sync::atomic::{AtomicU32, Ordering};
use posix_futex::abi::*;
use posix_futex::errno::*;

/// One `futex(2)` call: the six arguments (`arg4` is the raw fourth
/// register, a timeout pointer or `val2`), the timespec stored at `arg4`
/// and the value of the word at `uaddr`.
#[derive(Clone, Copy, Debug)]
struct Call {
    op: u32,
    val: u32,
    arg4: usize,
    timespec: Timespec,
    uaddr: usize,
    uaddr2: usize,
    val3: u32,
    word: u32,
}

const GOOD: usize = 0x1000;
const GOOD2: usize = 0x2000;
/// Where the test's timespec "lives"; any non-null value.
const TS_PTR: usize = 0x3000;

/// A well-formed call, to be varied by each row.
const BASE: Call = Call {
    op: FUTEX_WAIT,
    val: 0,
    arg4: 0,
    timespec: Timespec { tv_sec: 1, tv_nsec: 0 },
    uaddr: GOOD,
    uaddr2: GOOD2,
    val3: 0,
    word: 0,
};

/// The argument checks of `futex(2)` up to the point where the futex word
/// would be read (the word's value is given), in `sys_futex`'s order.
fn futex_checks(call: Call) -> Result<(), i32> {
    let Call { op, val, arg4, timespec, uaddr, uaddr2, val3, word } = call;
    let op = op as i32;
    let cmd = cmd_of(op);
    if has_timeout(cmd) && arg4 != 0 {
        timespec.to_duration()?;
    }
    let decoded = decode(op)?;
    let val2 = if val2_is_count(cmd) { val2_from_timeout_arg(arg4) } else { 0 };
    match decoded.cmd {
        Command::Wait | Command::WaitBitset => {
            if decoded.cmd.bitset(val3) == Some(0) {
                return Err(EINVAL);
            }
            check_uaddr(uaddr)?;
            if word != val {
                return Err(EAGAIN);
            }
        }
        Command::Wake | Command::WakeBitset => {
            if decoded.cmd.bitset(val3) == Some(0) {
                return Err(EINVAL);
            }
            check_uaddr(uaddr)?;
        }
        Command::Requeue | Command::CmpRequeue => {
            requeue_counts(val, val2)?;
            check_uaddr(uaddr)?;
            check_uaddr(uaddr2)?;
            if decoded.cmd == Command::CmpRequeue && word != val3 {
                return Err(EAGAIN);
            }
        }
        Command::WakeOp => {
            check_uaddr(uaddr)?;
            check_uaddr(uaddr2)?;
            WakeOp::decode(val3)?;
        }
        // A kernel without PI support still checks these counts first.
        Command::Pi(FUTEX_CMP_REQUEUE_PI) => {
            requeue_counts(val, val2)?;
            return Err(ENOSYS);
        }
        Command::Pi(_) => return Err(ENOSYS),
    }
    Ok(())
}

#[test]
fn futex_call_table() {
    let rt = FUTEX_CLOCK_REALTIME;
    let private = FUTEX_PRIVATE_FLAG;
    let bad = Timespec { tv_sec: 0, tv_nsec: 1_000_000_000 };
    let negative = Timespec { tv_sec: -1, tv_nsec: 0 };
    let add_gt_0 = futex_op(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_GT, 0);
    let op_5 = futex_op(5, 1, FUTEX_OP_CMP_GT, 0);
    let table: &[(Call, Result<(), i32>)] = &[
        (Call { op: FUTEX_WAIT, ..BASE }, Ok(())),
        (Call { op: FUTEX_WAIT | private, val: 1, arg4: TS_PTR, ..BASE }, Err(EAGAIN)),
        (Call { op: FUTEX_WAIT, arg4: TS_PTR, timespec: bad, ..BASE }, Err(EINVAL)),
        (Call { op: FUTEX_WAIT, arg4: TS_PTR, timespec: negative, ..BASE }, Err(EINVAL)),
        // A null timeout pointer is not read.
        (Call { op: FUTEX_WAIT, arg4: 0, timespec: bad, ..BASE }, Ok(())),
        // The timeout is checked before the misplaced clock flag...
        (Call { op: FUTEX_WAIT | rt, arg4: TS_PTR, timespec: bad, ..BASE }, Err(EINVAL)),
        // ...which then makes a well-formed call ENOSYS.
        (Call { op: FUTEX_WAIT | rt, arg4: TS_PTR, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_WAIT | rt, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_WAIT_BITSET | private | rt, arg4: TS_PTR, val3: 1, ..BASE }, Ok(())),
        // A zero bitset is refused before the address is looked at.
        (Call { op: FUTEX_WAIT_BITSET, uaddr: 3, ..BASE }, Err(EINVAL)),
        (Call { op: FUTEX_WAIT_BITSET, uaddr: 0, ..BASE }, Err(EINVAL)),
        (Call { op: FUTEX_WAIT_BITSET, uaddr: 0, val3: 1, ..BASE }, Err(EFAULT)),
        // FUTEX_WAIT ignores val3; its address must be aligned.
        (Call { op: FUTEX_WAIT, val3: 0, ..BASE }, Ok(())),
        (Call { op: FUTEX_WAIT, uaddr: GOOD + 2, ..BASE }, Err(EINVAL)),
        (Call { op: FUTEX_WAKE, val: 1, ..BASE }, Ok(())),
        // The fourth argument of a wake is never read.
        (Call { op: FUTEX_WAKE, arg4: TS_PTR, timespec: bad, ..BASE }, Ok(())),
        (Call { op: FUTEX_WAKE | rt, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_WAKE_BITSET, val3: 0, ..BASE }, Err(EINVAL)),
        (Call { op: FUTEX_WAKE_BITSET, val3: 2, ..BASE }, Ok(())),
        (Call { op: FUTEX_WAKE, uaddr: 1, ..BASE }, Err(EINVAL)),
        (Call { op: FUTEX_WAKE, uaddr: 0, ..BASE }, Err(EFAULT)),
        (Call { op: FUTEX_FD, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_REQUEUE, val: 1, arg4: 5, ..BASE }, Ok(())),
        // Negative counts beat bad addresses.
        (Call { op: FUTEX_REQUEUE, val: 0x8000_0000, arg4: 5, uaddr: 1, uaddr2: 0, ..BASE }, Err(EINVAL)),
        // val2 is the low 32 bits of the fourth argument.
        (Call { op: FUTEX_REQUEUE, val: 1, arg4: 0xffff_ffff, ..BASE }, Err(EINVAL)),
        (Call { op: FUTEX_REQUEUE, val: 1, arg4: 0x1_0000_0001, ..BASE }, Ok(())),
        (Call { op: FUTEX_REQUEUE, val: 1, uaddr2: 0, ..BASE }, Err(EFAULT)),
        (Call { op: FUTEX_CMP_REQUEUE, val: 1, arg4: 1, val3: 7, word: 7, ..BASE }, Ok(())),
        (Call { op: FUTEX_CMP_REQUEUE, val: 1, arg4: 1, val3: 7, word: 8, ..BASE }, Err(EAGAIN)),
        (Call { op: FUTEX_CMP_REQUEUE, uaddr2: 6, val3: 7, word: 8, ..BASE }, Err(EINVAL)),
        (Call { op: FUTEX_WAKE_OP, val: 1, arg4: 1, val3: add_gt_0, ..BASE }, Ok(())),
        (Call { op: FUTEX_WAKE_OP, val3: op_5, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_WAKE_OP, uaddr2: 0, val3: op_5, ..BASE }, Err(EFAULT)),
        // An unknown comparison passes these checks (Linux fails it after the update).
        (Call { op: FUTEX_WAKE_OP, val3: futex_op(FUTEX_OP_SET, 1, 9, 0), ..BASE }, Ok(())),
        (Call { op: FUTEX_LOCK_PI, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_LOCK_PI, arg4: TS_PTR, timespec: bad, ..BASE }, Err(EINVAL)),
        (Call { op: FUTEX_LOCK_PI | rt, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_LOCK_PI2 | rt, arg4: TS_PTR, timespec: bad, ..BASE }, Err(EINVAL)),
        (Call { op: FUTEX_UNLOCK_PI, arg4: TS_PTR, timespec: bad, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_TRYLOCK_PI, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_WAIT_REQUEUE_PI | rt, arg4: TS_PTR, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_CMP_REQUEUE_PI, val: 1, arg4: 1, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_CMP_REQUEUE_PI, val: u32::MAX, arg4: 1, ..BASE }, Err(EINVAL)),
        (Call { op: 14, ..BASE }, Err(ENOSYS)),
        (Call { op: FUTEX_WAKE | 512, ..BASE }, Err(ENOSYS)),
    ];
    for (i, &(call, expected)) in table.iter().enumerate() {
        let got = futex_checks(call);
        assert_eq!(
            got,
            expected,
            "row {i}: {call:?} gave {}, expected {}",
            got.err().map_or("ok", name),
            expected.err().map_or("ok", name)
        );
    }
}

/// FUTEX_WAKE_OP on a model of two queues: how many Linux would wake.
fn wake_op(val: u32, val2: u32, val3: u32, word2: &AtomicU32, waiters: (usize, usize)) -> Result<usize, i32> {
    let op = WakeOp::decode(val3)?;
    let old = rmw(word2, &op);
    let wake_second = op.compare(old)?;
    let mut woken = waiters.0.min(wake_limit(val));
    if wake_second {
        woken += waiters.1.min(wake_limit(val2));
    }
    Ok(woken)
}

#[test]
fn wake_op_model() {
    let word = AtomicU32::new(0);
    let add_gt_0 = futex_op(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_GT, 0);
    // Old value 0: only uaddr's waiters.
    assert_eq!(wake_op(1, 1, add_gt_0, &word, (3, 3)), Ok(1));
    // Old value 1 > 0: both.
    assert_eq!(wake_op(1, 2, add_gt_0, &word, (3, 3)), Ok(3));
    // Counts of 0 still wake one on each side.
    assert_eq!(wake_op(0, 0, add_gt_0, &word, (3, 3)), Ok(2));
    // ...but nobody if nobody waits.
    assert_eq!(wake_op(0, 0, add_gt_0, &word, (0, 0)), Ok(0));
    assert_eq!(word.load(Ordering::SeqCst), 4);
    // An unknown comparison: the word changes, the call fails, nobody wakes.
    let set_bad_cmp = futex_op(FUTEX_OP_SET, 9, 6, 0);
    assert_eq!(wake_op(1, 1, set_bad_cmp, &word, (3, 3)), Err(ENOSYS));
    assert_eq!(word.load(Ordering::SeqCst), 9);
    // An unknown operation: nothing changes.
    assert_eq!(wake_op(1, 1, futex_op(7, 1, FUTEX_OP_CMP_EQ, 0), &word, (3, 3)), Err(ENOSYS));
    assert_eq!(word.load(Ordering::SeqCst), 9);
}

/// FUTEX_REQUEUE on a model queue: exact counts, unlike a wake.
#[test]
fn requeue_model() {
    let requeue = |val: u32, val2: u32, waiters: usize| -> Result<(usize, usize), i32> {
        let (nr_wake, nr_requeue) = requeue_counts(val, val2)?;
        let woken = waiters.min(nr_wake);
        Ok((woken, (waiters - woken).min(nr_requeue)))
    };
    assert_eq!(requeue(0, 0, 5), Ok((0, 0)));
    assert_eq!(requeue(1, i32::MAX as u32, 5), Ok((1, 4)));
    assert_eq!(requeue(2, 1, 5), Ok((2, 1)));
    assert_eq!(requeue(0, 3, 2), Ok((0, 2)));
    assert_eq!(requeue(u32::MAX, 0, 5), Err(EINVAL));
}

/// futex_waitv: the call checks, then each entry in order.
#[test]
fn waitv_flow() {
    let waitv = |entries: &[FutexWaitv], flags: u32, timeout: Option<(Timespec, i32)>| -> Result<(), i32> {
        let ptr = if entries.is_empty() { 0 } else { entries.as_ptr() as usize };
        let (has_timeout, clockid) = timeout.map_or((false, -1), |(_, clock)| (true, clock));
        let nr = check_waitv_call(ptr, entries.len(), flags, has_timeout, clockid)?;
        if let Some((ts, _)) = timeout {
            ts.to_duration()?;
        }
        entries[..nr].iter().try_for_each(check_waitv_entry)?;
        entries[..nr].iter().try_for_each(|entry| check_uaddr(entry.uaddr as usize))
    };
    let ok = FutexWaitv { val: 1, uaddr: GOOD as u64, flags: FUTEX2_SIZE_U32 | FUTEX2_PRIVATE, reserved: 0 };
    let wide = FutexWaitv { val: 1 << 32, ..ok };
    let odd = FutexWaitv { uaddr: GOOD as u64 + 1, ..ok };
    let reserved = FutexWaitv { reserved: 1, ..ok };
    let good_ts = Timespec { tv_sec: 1, tv_nsec: 0 };
    let bad_ts = Timespec { tv_sec: 1, tv_nsec: -1 };

    assert_eq!(waitv(&[ok, ok], 0, None), Ok(()));
    assert_eq!(waitv(&[ok], 0, Some((good_ts, CLOCK_REALTIME))), Ok(()));
    assert_eq!(waitv(&[], 0, None), Err(EINVAL));
    assert_eq!(waitv(&[ok; 129], 0, None), Err(EINVAL));
    assert_eq!(waitv(&[ok; 128], 0, None), Ok(()));
    assert_eq!(waitv(&[ok], 1, None), Err(EINVAL));
    // The clock is checked before the timespec's contents.
    assert_eq!(waitv(&[ok], 0, Some((bad_ts, 5))), Err(EINVAL));
    assert_eq!(waitv(&[ok], 0, Some((bad_ts, CLOCK_MONOTONIC))), Err(EINVAL));
    // Entry checks come before any address check: a bad value in entry 1
    // wins over a misaligned address in entry 0.
    assert_eq!(waitv(&[odd, wide], 0, None), Err(EINVAL));
    assert_eq!(waitv(&[ok, reserved], 0, None), Err(EINVAL));
    assert_eq!(waitv(&[ok, odd], 0, None), Err(EINVAL));
    let null = FutexWaitv { uaddr: 0, ..ok };
    assert_eq!(waitv(&[ok, null], 0, None), Err(EFAULT));
}
