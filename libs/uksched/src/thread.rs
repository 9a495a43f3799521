//! Threads: creation, identity, joining, exit.

use crate::cpuset::{AtomicCpuSet, CpuSet};
use crate::list::Link;
use crate::state::StateWord;
use crate::wait::WaitQueue;
use crate::{sched, tls};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::any::Any;
use core::cell::{Cell, UnsafeCell};
use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use ukplat::cpu::CpuIndex;

/// What a thread runs: its closure, boxed, returning the boxed exit value.
pub(crate) type Entry = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

/// A thread as the scheduler sees it. Shared (`Arc`) between its handles,
/// the run/wait/timer lists it is on, and the CPU running it.
pub(crate) struct ThreadInner {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) state: StateWord,
    /// The stack pointer saved when it switched out (written by the switch
    /// on its CPU, read by the CPU that switches to it after `on_cpu`
    /// dropped).
    pub(crate) saved_rsp: UnsafeCell<usize>,
    /// True from the moment a CPU picks it until the switch away from it
    /// completed: another CPU must not resume it before.
    pub(crate) on_cpu: AtomicBool,
    /// The CPU it runs or last ran (or is queued) on.
    pub(crate) cpu: AtomicUsize,
    /// The CPU whose run queue holds it, or `sched::NOT_QUEUED`; set and
    /// cleared only under that run queue's lock.
    pub(crate) queued_on: AtomicUsize,
    pub(crate) affinity: AtomicCpuSet,
    /// An idle thread: never queued, runs when nothing else can.
    pub(crate) is_idle: bool,
    /// Its stack, or None for a context adopted at boot (boot stack) and
    /// once it finished (the switch away from it released the stack).
    pub(crate) stack: ukspin::SpinLock<Option<ukvmem::GuardedStack>>,
    /// Whether it has (had) a stack of its own: not a context adopted at
    /// boot.
    pub(crate) owns_stack: bool,
    /// The closure, taken by the thread when it first runs.
    pub(crate) entry: Cell<Option<Entry>>,
    pub(crate) result: ukspin::SpinLock<Option<Box<dyn Any + Send>>>,
    /// Threads waiting in `join`.
    pub(crate) joiners: WaitQueue,
    /// Set once the thread exited *and* switched away for good (its stack
    /// is no longer in use): what `join` waits for.
    pub(crate) finished: AtomicBool,
    pub(crate) run_link: Link,
    pub(crate) timer_link: Link,
    /// Deadline (ns) and wait sequence number of the timer entry (under
    /// that CPU's run-queue lock).
    pub(crate) timer_deadline: Cell<u64>,
    pub(crate) timer_seq: Cell<u64>,
    /// The thread's FPU/SSE/AVX state while it is switched out, allocated
    /// at its first FPU instruction (see `fpu.rs`). Touched only by the CPU
    /// running the thread.
    pub(crate) fpu: UnsafeCell<Option<ukarch::fpu::FpuState>>,
    /// Eager FPU switching: `fpu` holds the state to load when the thread
    /// runs again (it was not all initial when it switched out). The area
    /// itself then exists from the thread's creation on.
    pub(crate) fpu_saved: AtomicBool,
    /// Thread-local values (see `tls.rs`); touched only by the thread.
    pub(crate) tls: UnsafeCell<tls::Table>,
    pub(crate) switches: AtomicU64,
    pub(crate) run_ns: AtomicU64,
}

// SAFETY: the `Cell`/`UnsafeCell` fields are each confined: links and
// their companions to the lock of the list they belong to, `saved_rsp` to
// the switch protocol (`on_cpu`), `entry`, `fpu` and `tls` to the thread
// itself (or its CPU with interrupts disabled). Everything else is atomic
// or locked.
unsafe impl Sync for ThreadInner {}
// SAFETY: as above; nothing in it is tied to a CPU.
unsafe impl Send for ThreadInner {}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl ThreadInner {
    pub(crate) fn new(
        name: Option<String>,
        state: StateWord,
        stack: Option<ukvmem::GuardedStack>,
        affinity: CpuSet,
        is_idle: bool,
        entry: Option<Entry>,
    ) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Self {
            id,
            name: name.unwrap_or_else(|| format!("thread-{id}")),
            state,
            saved_rsp: UnsafeCell::new(0),
            on_cpu: AtomicBool::new(false),
            cpu: AtomicUsize::new(0),
            queued_on: AtomicUsize::new(sched::NOT_QUEUED),
            affinity: AtomicCpuSet::new(affinity),
            is_idle,
            owns_stack: stack.is_some(),
            stack: ukspin::SpinLock::new(stack),
            entry: Cell::new(entry),
            result: ukspin::SpinLock::new(None),
            joiners: WaitQueue::new(),
            finished: AtomicBool::new(false),
            run_link: Link::new(),
            timer_link: Link::new(),
            timer_deadline: Cell::new(u64::MAX),
            timer_seq: Cell::new(0),
            fpu: UnsafeCell::new(crate::fpu::area_at_creation()),
            fpu_saved: AtomicBool::new(false),
            tls: UnsafeCell::new(tls::Table::new()),
            switches: AtomicU64::new(0),
            run_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn allowed_on(&self, cpu: CpuIndex) -> bool {
        self.affinity.contains(cpu)
    }
}

/// A handle to a thread: its identity, CPU, affinity and statistics.
/// Cheap to clone.
#[derive(Clone)]
pub struct Thread(pub(crate) Arc<ThreadInner>);

/// Per-thread statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadStats {
    /// Times a CPU switched to it.
    pub switches: u64,
    /// Time it ran, in nanoseconds (accounted at each switch away).
    pub run_ns: u64,
}

impl Thread {
    /// Its id, unique for the life of the machine (the boot thread `main`
    /// is 1).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Its name (`thread-ID` unless given one).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The CPU it runs on now, or last ran or is queued on.
    pub fn cpu(&self) -> CpuIndex {
        self.0.cpu.load(Ordering::Relaxed)
    }

    /// The CPUs it may run on.
    pub fn affinity(&self) -> CpuSet {
        self.0.affinity.load()
    }

    /// Restricts it to `cpus`, moving it now when it is queued elsewhere;
    /// a running thread moves at its next switch (at once when it is the
    /// caller: this yields).
    ///
    /// # Errors
    /// [`SpawnError::NoCpu`] when no online CPU is in `cpus`; the affinity
    /// is unchanged then.
    pub fn set_affinity(&self, cpus: CpuSet) -> Result<(), SpawnError> {
        sched::set_affinity(&self.0, cpus)
    }

    /// Its statistics.
    pub fn stats(&self) -> ThreadStats {
        ThreadStats {
            switches: self.0.switches.load(Ordering::Relaxed),
            run_ns: self.0.run_ns.load(Ordering::Relaxed),
        }
    }

    /// Whether it has finished: exited and switched away for good.
    pub fn is_finished(&self) -> bool {
        self.0.finished.load(Ordering::Acquire)
    }

    /// The range of its stack (lowest usable address, top), and its guard
    /// page; None for a thread adopted at boot (the boot stack) and for a
    /// finished thread (its stack went back to `ukvmem`).
    pub fn stack(&self) -> Option<(core::ops::Range<usize>, core::ops::Range<usize>)> {
        self.0.stack.lock().as_ref().map(|s| (s.bottom()..s.top(), s.guard()))
    }
}

impl PartialEq for Thread {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Thread {}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread").field("id", &self.id()).field("name", &self.name()).finish()
    }
}

/// Why a thread could not be created.
#[derive(Debug)]
pub enum SpawnError {
    /// No stack: the stack area or the heap is exhausted.
    Stack(ukvmem::StackError),
    /// The affinity names no online CPU.
    NoCpu(CpuSet),
    /// The scheduler has not started (threads exist once `uksched`'s init
    /// ran, at `ukboot::priority::LIBRARY`).
    NotStarted,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stack(e) => write!(f, "no stack for the thread: {e}"),
            Self::NoCpu(set) => {
                write!(f, "the affinity {set:?} names no online CPU ({} online)", uksmp::online_count())
            }
            Self::NotStarted => {
                f.write_str("the scheduler has not started yet (uksched's init runs at LIBRARY level)")
            }
        }
    }
}

/// Configures a thread before it starts.
///
/// ```no_run
/// use uksched::{Builder, CpuSet};
/// let handle = Builder::new()
///     .name("worker")
///     .stack_size(64 * 1024)
///     .affinity(CpuSet::single(1))
///     .spawn(|| 6 * 7)
///     .expect("spawn");
/// assert_eq!(handle.join(), 42);
/// ```
#[derive(Debug)]
pub struct Builder {
    name: Option<String>,
    stack_size: usize,
    affinity: CpuSet,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Defaults: `thread-ID`, `uksched.stack_kib` KiB of stack, any CPU.
    pub fn new() -> Self {
        Self { name: None, stack_size: crate::DEFAULT_STACK_SIZE, affinity: CpuSet::all() }
    }

    /// Names the thread (shown in fault reports and statistics).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(String::from(name));
        self
    }

    /// Its stack size in bytes (rounded up to whole 4 KiB pages; a guard
    /// page comes on top).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// The CPUs it may run on.
    pub fn affinity(mut self, cpus: CpuSet) -> Self {
        self.affinity = cpus;
        self
    }

    /// Creates the thread and makes it runnable on the least loaded CPU
    /// its affinity allows.
    ///
    /// # Errors
    /// See [`SpawnError`].
    pub fn spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let entry: Entry = Box::new(move || Box::new(f()) as Box<dyn Any + Send>);
        let inner = sched::spawn(self.name, self.stack_size, self.affinity, entry)?;
        Ok(JoinHandle { thread: Thread(inner), _result: PhantomData })
    }
}

/// Starts `f` on a new thread with the default settings.
///
/// # Panics
/// When the thread cannot be created (see [`Builder::spawn`] for the
/// fallible form).
///
/// ```no_run
/// let handles: Vec<_> = (0..4).map(|i| uksched::spawn(move || i * i)).collect();
/// let squares: Vec<u32> = handles.into_iter().map(|h| h.join()).collect();
/// assert_eq!(squares, [0, 1, 4, 9]);
/// ```
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn(f) {
        Ok(handle) => handle,
        Err(e) => panic!("uksched::spawn: {e}"),
    }
}

/// Starts `f` on a new thread pinned to CPU `cpu` (affinity
/// `CpuSet::single(cpu)`), otherwise with the default settings.
///
/// # Panics
/// When the thread cannot be created, e.g. `cpu` is not online (see
/// [`Builder::spawn`] for the fallible form).
///
/// ```no_run
/// let on_one = uksched::spawn_pinned(1, || uksched::current().cpu());
/// assert_eq!(on_one.join(), 1);
/// ```
pub fn spawn_pinned<F, T>(cpu: ukplat::cpu::CpuIndex, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().affinity(CpuSet::single(cpu)).spawn(f) {
        Ok(handle) => handle,
        Err(e) => panic!("uksched::spawn_pinned: cannot spawn a thread on CPU {cpu}: {e}"),
    }
}

/// Owns the right to join a thread. Dropping it detaches the thread (it
/// runs on; its exit value is dropped when it finishes).
pub struct JoinHandle<T> {
    thread: Thread,
    _result: PhantomData<fn() -> T>,
}

impl<T: 'static> JoinHandle<T> {
    /// The thread.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// Whether it has finished (then `join` does not block).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread to finish and returns its exit value (what its
    /// closure returned, or what it passed to [`exit`]). The thread has left
    /// its CPU for good by then: once the handle is gone (and no [`Thread`]
    /// clone is left) its stack is back in `ukvmem`'s cache.
    ///
    /// # Panics
    /// When the thread passed [`exit`] a value of another type than `T`, or
    /// when a thread joins itself.
    pub fn join(self) -> T {
        let t = &self.thread.0;
        assert!(
            t.id != current_id(),
            "uksched: thread `{}` joins itself (it would wait for its own end forever)",
            t.name
        );
        t.joiners.wait_until(|| t.finished.load(Ordering::Acquire));
        let value = t.result.lock().take().expect("uksched: a finished thread without an exit value");
        match value.downcast::<T>() {
            Ok(v) => *v,
            Err(_) => panic!(
                "uksched: thread `{}` exited with a value of another type than its JoinHandle's {}",
                t.name,
                core::any::type_name::<T>()
            ),
        }
    }

    /// Lets the thread run on unjoined (the same as dropping the handle).
    pub fn detach(self) {}
}

/// The calling thread.
pub fn current() -> Thread {
    Thread(sched::current())
}

/// The calling thread's id (the same as `current().id()`, without taking a
/// reference: cheap enough for lock owner fields).
pub fn current_id() -> u64 {
    sched::current_id()
}

/// The calling thread's id, or None where no thread runs yet (before the
/// scheduler started on this CPU): one load from the per-CPU header
/// (`ukplat::cpu::current_thread_id`), cheap enough for lock owner fields.
#[inline(always)]
pub fn try_current_id() -> Option<u64> {
    sched::try_current_id()
}

/// Gives the CPU to the next runnable thread on it, if any (the caller is
/// queued behind it). Also where a thread whose affinity no longer allows
/// this CPU moves.
pub fn yield_now() {
    sched::yield_now();
}

/// Yields (see [`yield_now`]) until `done` returns true or `limit` has
/// passed; returns whether `done` holds. For waiting on another thread's
/// progress where no wait queue signals it (tests, start-up handshakes).
///
/// ```no_run
/// use core::sync::atomic::{AtomicBool, Ordering};
/// static STARTED: AtomicBool = AtomicBool::new(false);
/// uksched::spawn(|| STARTED.store(true, Ordering::Release));
/// assert!(uksched::yield_until(core::time::Duration::from_secs(1), || STARTED.load(Ordering::Acquire)));
/// ```
pub fn yield_until(limit: core::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = uktime::now() + limit;
    while !done() {
        if uktime::now() >= deadline {
            return done();
        }
        yield_now();
    }
    true
}

/// Ends the calling thread with exit value `value`, which
/// [`JoinHandle::join`] returns (its `T` must be this type). The thread's
/// stack frames are abandoned, not unwound: values on them are leaked, not
/// dropped (as with `std::process::exit`, for one thread); thread-local
/// values are dropped.
pub fn exit<T: Send + 'static>(value: T) -> ! {
    sched::exit_current(Box::new(value))
}

/// The entry of every new thread, reached from the switch code's
/// trampoline on the thread's own stack, with interrupts disabled and the
/// preemption counter at 1 (the switch's).
pub(crate) extern "C" fn thread_start(me: *const ThreadInner) -> ! {
    sched::finish_switch();
    ukplat::irq::enable();
    ukplat::cpu::preempt_enable();
    // SAFETY: the run queue that switched to us holds a reference (as
    // `current`) for as long as we run.
    let me = unsafe { &*me };
    let entry = me.entry.take().expect("uksched: a thread started twice");
    let value = entry();
    sched::exit_current(value)
}
