//! Robust futex lists: a thread that exits holding futex-based locks
//! leaves them marked `FUTEX_OWNER_DIED`, with one waiter woken.

use crate::{err, futex, settle};
use alloc::boxed::Box;
use core::mem::offset_of;
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use posix_futex::errno::{EINVAL, EPERM};
use posix_futex::*;
use uktest::{TestResult, ut_assert, ut_assert_eq, ut_fail};

/// A lock as a robust-futex user lays it out: its list entry, then its
/// word.
#[repr(C)]
struct Lock {
    entry: RobustList,
    word: AtomicU32,
}

// SAFETY: the entry's pointer is only followed by the exiting owner's
// robust-list walk; the word is atomic.
unsafe impl Sync for Lock {}
// SAFETY: as above.
unsafe impl Send for Lock {}

/// A registered list: a head and two locks, all leaked (they must outlive
/// the thread, whose exit reads them).
struct Robust {
    head: &'static mut RobustListHead,
    held: &'static Lock,
    pending: &'static Lock,
}

fn list() -> Robust {
    let head: &'static mut RobustListHead = Box::leak(Box::new(RobustListHead {
        list: RobustList { next: ptr::null_mut() },
        futex_offset: (offset_of!(Lock, word) - offset_of!(Lock, entry)) as isize,
        list_op_pending: ptr::null_mut(),
    }));
    let held: &'static Lock =
        Box::leak(Box::new(Lock { entry: RobustList { next: ptr::null_mut() }, word: AtomicU32::new(0) }));
    let pending: &'static Lock =
        Box::leak(Box::new(Lock { entry: RobustList { next: ptr::null_mut() }, word: AtomicU32::new(0) }));
    Robust { head, held, pending }
}

fn an_exiting_owner_marks_its_futexes() -> TestResult {
    let r = list();
    let head_addr = ptr::from_mut(r.head) as usize;
    let held = r.held;
    let pending = r.pending;
    // The circular list: head -> held -> head. `pending` is the lock the
    // thread was releasing when it exited: its word already 0.
    let held_entry = ptr::from_ref(&held.entry).cast_mut();
    r.head.list.next = held_entry;
    // SAFETY: `held.entry` is only read by the robust-list walk, after
    // this write (the thread is spawned below).
    unsafe { held_entry.write(RobustList { next: head_addr as *mut RobustList }) };
    r.head.list_op_pending = ptr::from_ref(&pending.entry).cast_mut();
    let owner = uksched::spawn(move || {
        let me = gettid();
        let head = head_addr as *mut RobustListHead;
        // SAFETY: the head and its entries are leaked: they live forever.
        let set = unsafe { sys_set_robust_list(head, size_of::<RobustListHead>()) };
        let (mut got, mut len) = (ptr::null_mut(), 0usize);
        // SAFETY: two locals.
        let get = unsafe { sys_get_robust_list(0, &mut got, &mut len) };
        // Take the lock: our id in the word.
        held.word.store(me, Ordering::SeqCst);
        (set, get, got as usize, len, me)
    });
    // Main waits on the held lock once it is taken (with waiters flagged,
    // as a contended lock's word is), and another thread waits on the
    // pending one.
    if !settle(Duration::from_secs(3), || held.word.load(Ordering::SeqCst) != 0) {
        ut_fail!("the owner did not take its lock");
    }
    let (set, get, got, len, tid) = owner.join();
    ut_assert_eq!(set, 0);
    ut_assert_eq!(get, 0);
    ut_assert_eq!(got, head_addr, "get_robust_list's head");
    ut_assert_eq!(len, size_of::<RobustListHead>());
    // The owner exited: its word says so, the waiters flag was not set, so
    // nobody had to be woken.
    let word = held.word.load(Ordering::SeqCst);
    ut_assert_eq!(word, FUTEX_OWNER_DIED, "word {:#x} after owner {} exited", word, tid);
    Ok(())
}
uktest::test_case!(an_exiting_owner_marks_its_futexes);

/// A lock held with waiters: the exit marks it owner-died, keeps
/// `FUTEX_WAITERS`, and wakes exactly one of the two waiters; a pending
/// entry whose word is 0 wakes one waiter too.
fn a_contended_robust_lock_wakes_one_waiter() -> TestResult {
    let r = list();
    let head_addr = ptr::from_mut(r.head) as usize;
    let (held, pending) = (r.held, r.pending);
    let held_entry = ptr::from_ref(&held.entry).cast_mut();
    r.head.list.next = held_entry;
    // SAFETY: as in the test above.
    unsafe { held_entry.write(RobustList { next: head_addr as *mut RobustList }) };
    r.head.list_op_pending = ptr::from_ref(&pending.entry).cast_mut();
    // The owner takes the lock, lets the waiters queue, then exits.
    let go = Box::leak(Box::new(AtomicU32::new(0)));
    let go_addr = ptr::from_ref(go) as usize;
    let owner = uksched::spawn(move || {
        // SAFETY: leaked, lives forever.
        let go = unsafe { &*(go_addr as *const AtomicU32) };
        // SAFETY: as above.
        unsafe { sys_set_robust_list(head_addr as *mut RobustListHead, size_of::<RobustListHead>()) };
        held.word.store(gettid() | FUTEX_WAITERS, Ordering::SeqCst);
        while go.load(Ordering::SeqCst) == 0 {
            let _ = futex_wait(go, 0, Some(Duration::from_millis(10)));
        }
    });
    if !settle(Duration::from_secs(3), || held.word.load(Ordering::SeqCst) != 0) {
        ut_fail!("the owner did not take its lock");
    }
    let taken = held.word.load(Ordering::SeqCst);
    let waiter = |word: &'static AtomicU32, val: u32| {
        uksched::spawn(move || futex(word, FUTEX_WAIT, val, 0, ptr::null(), 0))
    };
    let w1 = waiter(&held.word, taken);
    let w2 = waiter(&held.word, taken);
    let w3 = waiter(&pending.word, 0);
    if !settle(Duration::from_secs(3), || waiters(&held.word) == 2 && waiters(&pending.word) == 1) {
        ut_fail!("waiters did not queue");
    }
    go.store(1, Ordering::SeqCst);
    futex_wake(go, 1);
    owner.join();
    ut_assert_eq!(held.word.load(Ordering::SeqCst), FUTEX_WAITERS | FUTEX_OWNER_DIED);
    ut_assert!(
        settle(Duration::from_secs(3), || waiters(&held.word) == 1),
        "{} still wait",
        waiters(&held.word)
    );
    ut_assert!(
        settle(Duration::from_secs(3), || waiters(&pending.word) == 0),
        "the pending entry woke nobody"
    );
    // Wake the second waiter ourselves.
    ut_assert_eq!(futex_wake(&held.word, 1), 1);
    ut_assert_eq!(w1.join(), 0);
    ut_assert_eq!(w2.join(), 0);
    ut_assert_eq!(w3.join(), 0);
    Ok(())
}
uktest::test_case!(a_contended_robust_lock_wakes_one_waiter);

fn robust_list_errors() -> TestResult {
    // SAFETY: a null head with the wrong length: refused before use.
    ut_assert_eq!(unsafe { sys_set_robust_list(ptr::null_mut(), 8) }, err(EINVAL));
    let (mut got, mut len) = (ptr::null_mut(), 0usize);
    // SAFETY: two locals.
    ut_assert_eq!(unsafe { sys_get_robust_list(gettid() as i32 + 1, &mut got, &mut len) }, err(EPERM));
    Ok(())
}
uktest::test_case!(robust_list_errors);
