//! Thread-local data.
//!
//! Stable Rust offers no `#[thread_local]` without `std`, so thread-local
//! values live in a small table inside each thread, keyed by the address
//! of their [`LocalKey`] static, created on a thread's first access and
//! dropped when it exits (in reverse order of creation). A lookup is a
//! short linear search (a thread typically touches a handful of keys).
//!
//! ```no_run
//! use core::cell::Cell;
//! uksched::thread_local! {
//!     /// Calls made by this thread.
//!     static CALLS: Cell<u32> = Cell::new(0);
//! }
//! CALLS.with(|c| c.set(c.get() + 1));
//! let other = uksched::spawn(|| CALLS.with(|c| c.get()));
//! assert_eq!(other.join(), 0); // each thread has its own
//! assert_eq!(CALLS.with(|c| c.get()), 1);
//! ```

use crate::sched;
use crate::thread::ThreadInner;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::Any;

/// A thread's values: (key address, value).
pub(crate) struct Table(Vec<(usize, Box<dyn Any>)>);

impl Table {
    pub(crate) const fn new() -> Self {
        Self(Vec::new())
    }
}

/// A thread-local value: each thread sees its own, created by the
/// initialiser on the thread's first [`with`](LocalKey::with). Define with
/// [`thread_local!`](crate::thread_local).
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
}

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> Self {
        Self { init }
    }

    /// Calls `f` with this thread's value (created first if needed). The
    /// value is shared by every `with` on the thread: mutate it through a
    /// `Cell`/`RefCell`.
    ///
    /// # Panics
    /// In an interrupt handler (which has no thread of its own), or before
    /// the scheduler runs on this CPU.
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        assert!(!ukplat::cpu::in_interrupt(), "uksched: thread-local data used in an interrupt handler");
        let me = sched::current_ptr();
        assert!(!me.is_null(), "uksched: thread-local data used before the scheduler started");
        let key = self as *const Self as usize;
        // SAFETY: the running thread's record lives while it runs, and
        // only the thread itself touches its table; the borrow ends before
        // any user code runs.
        let found = unsafe {
            (*(*me).tls.get()).0.iter().find(|(k, _)| *k == key).map(|(_, v)| &**v as *const dyn Any)
        };
        let value = match found {
            Some(v) => v,
            None => {
                // The initialiser may use other keys: no borrow across it.
                let boxed: Box<dyn Any> = Box::new((self.init)());
                let ptr = &*boxed as *const dyn Any;
                // SAFETY: as above.
                unsafe { (*(*me).tls.get()).0.push((key, boxed)) };
                ptr
            }
        };
        // SAFETY: the value is boxed, so it stays put while the table
        // grows; it is dropped only when the thread exits, which cannot
        // happen inside `f` (`exit` never returns into it).
        let value = unsafe { &*value };
        f(value.downcast_ref::<T>().expect("a thread-local value of its key's type"))
    }
}

/// Drops the exiting thread's values, newest first; values that
/// destructors create meanwhile are dropped too (up to a bound).
pub(crate) fn destroy(me: &ThreadInner) {
    for _ in 0..8 {
        // SAFETY: the exiting thread itself, no borrow outstanding.
        let mut values = core::mem::take(unsafe { &mut (*me.tls.get()).0 });
        if values.is_empty() {
            return;
        }
        while let Some(v) = values.pop() {
            drop(v);
        }
    }
}

/// Declares thread-local statics of type [`LocalKey`].
///
/// ```no_run
/// uksched::thread_local! {
///     static SCRATCH: core::cell::RefCell<Vec<u8>> = core::cell::RefCell::new(Vec::new());
/// }
/// SCRATCH.with(|s| s.borrow_mut().push(1));
/// ```
#[macro_export]
macro_rules! thread_local {
    ($($(#[$attr:meta])* $vis:vis static $name:ident : $ty:ty = $init:expr;)+) => {
        $(
            $(#[$attr])*
            $vis static $name: $crate::LocalKey<$ty> = $crate::LocalKey::new(|| $init);
        )+
    };
}
