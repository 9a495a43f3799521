//! # sched — the scheduler's test app
//!
//! Without an argument, `main` prints the scheduler's configuration and
//! runs the registered in-guest tests through `uktest`: `uksched`'s,
//! `uklock`'s and `ukvmem`'s own and this app's multi-CPU scenarios. The
//! filter in `config/sched.toml` (`sched::,uksched::,uklock::,ukvmem::`)
//! leaves out `uktime`'s tests, which take over the per-CPU timer that the
//! scheduler owns in this image.
//!
//! Every case passes, or is skipped with the reason, under both policies
//! (`uksched.policy = "coop"` and `"preempt"`) on 1, 2 and 4 CPUs: a case
//! that needs more CPUs than the run has, or preemption under `coop`, ends
//! with `uktest::ut_skip!` and is reported as `skipped: REASON`, never as
//! passed. `cargo xtask test` runs all six
//! combinations under TCG and 2 CPUs with `preempt` under KVM. Loop counts
//! are smaller under KVM, where `kvm_pvm` emulates every instruction.
//!
//! | case | checks |
//! |---|---|
//! | `threads::ping_pong_*` | two threads hand a turn back and forth through two wait queues, N round trips (1000 under TCG, 200 under KVM): each side counts exactly N turns, the turn counter ends at exactly 2N, every turn arrives in order and no wait needed its 2 s safety timeout (a lost wake-up); once with both threads pinned to the same CPU (`ping_pong_on_one_cpu`), once on two different CPUs (`ping_pong_across_cpus`; skipped with 1 CPU) |
//! | `threads::join_returns_each_threads_value` | 32 threads return `i * i`; each `join` gives its own thread's value |
//! | `threads::a_thousand_threads_run_and_are_joined` | 1,000 threads (250 under KVM, where each costs ~7 ms; 16 KiB stacks, all alive at once, yielding until the last one exists so that every CPU's queue gets some), each reporting the CPU of its first run and of its last (`current().cpu()`, which must equal `this_cpu()` both times): every CPU ran at least one (with > 1 CPU), `threads()` counted exactly that many more created and at least that many more exited |
//! | `threads::thread_local_values_are_per_thread_and_dropped_at_exit` | 8 threads (one ending through `uksched::exit`) each see only their own value of two thread-local keys over many yields; main's value is untouched; each thread's values are dropped exactly once when it exits |
//! | `timing::sleep_wakes_no_earlier_than_asked` | `sleep` of 1, 5 and 10 ms on the main thread and 10 ms on a thread pinned to every CPU at once: never earlier than asked, and at most 50 ms later (`timing::SLEEP_SLACK`) |
//! | `timing::a_wait_times_out_without_a_wake` | `wait_until_timeout` on a condition that never holds returns false, not before its 20 ms (and within the slack), leaving nobody on the queue; `wait_with` reports `TimedOut` |
//! | `timing::a_wait_returns_true_when_woken` | a thread on another CPU (the same one with 1 CPU) sets the condition and wakes: `wait_until_timeout` returns true well before its 2 s timeout; `wait_with` reports `Woken` |
//! | `placement::pinned_threads_stay_on_their_cpu` | a thread pinned to each CPU, next to unpinned threads that keep every CPU busy, sees `this_cpu()` (and `current().cpu()`) equal its CPU after each of 300 yields and sleeps (60 under KVM); skipped with 1 CPU (nowhere else to run) |
//! | `placement::set_affinity_moves_the_calling_thread` | a thread re-pinning itself to another CPU runs there as soon as `set_affinity` returns, and stays there; skipped with 1 CPU |
//! | `placement::an_affinity_without_online_cpus_is_refused` | `set_affinity` to an offline CPU is refused and changes neither the affinity nor the CPU; skipped when all `platform.max_cpus` CPUs are online |
//! | `placement::set_affinity_moves_a_yielding_thread` | main re-pins a thread running (and yielding) on another CPU; the thread observes the new CPU within 2 s; skipped with 1 CPU |
//! | `placement::set_affinity_moves_a_spinning_thread` | the same for a thread that spins without ever yielding; skipped under `coop` (it is never switched out) and with 1 CPU |
//! | `placement::a_spinning_thread_does_not_starve_its_cpu` | `preempt`: a thread spinning (until a flag) pinned to a CPU does not keep a second thread pinned there from finishing (within 5 s; the CPU counts preemptions). Skipped under `coop`: a thread that never yields keeps its CPU (see `uksched`'s documentation) |
//! | `smpcalls::calls_run_where_asked_while_threads_migrate` | `preempt`: 2 threads per CPU (at least 8) call for 300 ms — `uksmp::run_on_all(|cpu| (cpu, this_cpu()))`, `run_on(random, this_cpu)`, `run_on_nowait` and `run_on_all_nowait` — while a `mover` thread keeps moving them with `set_affinity` (the one running on another CPU, found with a call there, to its own CPU, and one queued on its own CPU to the other), so that they are preempted and migrated in the middle of calls: every `run_on_all` result ran on the CPU it was issued for, each CPU exactly once; every `run_on` ran on its target; every non-waiting closure ran, on its CPU. Prints the counts; fails unless some call spanned a migration (`this_cpu()` differed before and after it). Skipped under `coop` and with 1 CPU |
//! | `fpu::sse_registers_survive_switches` | two threads pinned to one CPU (both started before either yields) load distinct values into XMM0, XMM8 and XMM15 and yield to each other 500 times (100 under KVM), checking their values after every yield; the CPU's `fpu_restores` (lazy restores after #NM) grew by at least that many |
//! | `stats::hooks_run_on_every_switch_and_idle_entry` | a switch hook and an idle hook, registered once, count calls per CPU: on every CPU both counts grew, and (read on that CPU with preemption disabled) they grew exactly as much as the CPU's `switches` and `idle_entries` |
//! | `stats::cpu_statistics_are_plausible` | on every CPU a thread busy-waits 20 ms, then yields 10 times to a partner and sleeps 20 ms: the CPU's `switches` grew by at least 4, `busy_ns` by at least 20 ms, `idle_ns` by at least 10 ms (half the sleep: the host may deschedule the vCPU between the sleep's deadline and the switch to idle), and busy + idle by no more than the wall time since the threads were created; the thread's own `run_ns` is at least 10 ms (the busy-wait is wall time, which main, spawning the other threads on CPU 0 under `preempt`, may share) and it was switched to at least twice. Main stays on CPU 0 meanwhile, so that it never wakes onto a CPU being measured |
//!
//! With an argument (the first command-line word without `=`), it triggers
//! a fault instead, for `cargo xtask test` to check the report:
//!
//! | argument | what happens | expected |
//! |---|---|---|
//! | `overflow` | a thread named `deep` with a 16 KiB stack recurses until it runs into its guard page | the CPU exception report with ``STACK OVERFLOW in thread `deep` ``, status 111 |
//! | `mutex-relock` | a thread named `relocker` locks a `uklock::Mutex` it holds | the panic report ``uklock: thread `relocker` ...``, status 110 |
//! | `mutex-foreign-unlock` | thread `holder` locks a `uklock::Mutex` and keeps it; thread `intruder` unlocks it | the panic report ``uklock: thread `intruder` ...``, status 110 |
//! | `rcu-block` | thread `reader` sleeps inside an RCU read-side critical section (`ukrcu::read_lock`) | debug builds: ukrcu's line ``a thread blocks, sleeps or yields inside 1 RCU read-side critical section(s)`` and the scheduler's panic report, status 110 |
//! | `rcu-stall` | with `uksched.policy=coop` and a short `ukrcu.stall_timeout_ms`: thread `hog` runs 400 ms on the last CPU inside a read-side section, without a quiescent state, while `main` waits in `ukrcu::synchronize` | ukrcu's stall report naming the CPU and, from that CPU, ``thread `hog` `` (`qsbr`), or the open section (`ukrcu.flavor=refcount`); then the grace period ends, status 0 |
//!
//! ## Bounds
//!
//! * Sleeps and timed waits: never earlier than asked (a hard property),
//!   and no later than 50 ms past the deadline. Measured on the 2-core
//!   build machine (the test prints the longest): 10 ms sleeps took
//!   10.2–12.5 ms under TCG with 1 to 4 vCPUs and 11.7 ms under KVM, and
//!   21 ms once while another job kept a host core busy; the slack covers
//!   a vCPU the host has descheduled (a host time slice is a few ms, more
//!   vCPUs than cores here) and the timer interrupt's delivery.
//! * Lost wake-ups: a ping-pong turn that takes 2 s counts as lost.
//! * Preemption: 5 s for the second thread to finish behind a spinner (the
//!   time slice is `uksched.quantum_us`, 10 ms by default).
//!
//! **Needs:** `uksched`, `uklock`, `uksmp`, `uktime`, `uktest`,
//! `ukconsole`, `ukplat`, `ukarch` (and through `uksched`: `apic`,
//! `ukvmem`, `ukspin`, `ukalloc`).
#![no_std]

extern crate alloc;

mod faults;
mod fpu;
mod placement;
mod smpcalls;
mod stats;
mod threads;
mod timing;

use ukconsole::println;
use uksched::{Builder, CpuSet, JoinHandle};

/// Usage text.
pub const USAGE: &str = "usage: sched [overflow|mutex-relock|mutex-foreign-unlock|rcu-block|rcu-stall] (no argument: run the tests)";

/// The fault requested by `args`: the first argument that is not `key=value`.
pub fn requested<'a>(args: &[&'a str]) -> Option<&'a str> {
    args.iter().copied().find(|a| !a.contains('='))
}

/// The app's entry point: a fault mode, or the tests.
pub fn main(args: &[&str]) -> i32 {
    println!(
        "sched: {} policy on {} CPU(s), time slice {:?}, default stack {} KiB",
        uksched::POLICY,
        cpus(),
        uksched::TIME_SLICE,
        uksched::DEFAULT_STACK_SIZE / 1024
    );
    match requested(args) {
        None => uktest::run_all(),
        Some("overflow") => faults::overflow(),
        Some("mutex-relock") => faults::mutex_relock(),
        Some("mutex-foreign-unlock") => faults::mutex_foreign_unlock(),
        Some("rcu-block") => faults::rcu_block(),
        Some("rcu-stall") => faults::rcu_stall(),
        Some(other) => {
            println!("sched: unknown argument \"{other}\"");
            println!("{USAGE}");
            2
        }
    }
}

/// CPUs online.
pub(crate) fn cpus() -> usize {
    ukplat::cpu::count()
}

/// `tcg` where instructions run natively or translated (TCG, linuxu),
/// `kvm` where the hypervisor emulates each one (this project's PVM-backed
/// KVM): [`uktest::scaled`].
pub(crate) fn scaled(tcg: u64, kvm: u64) -> u64 {
    uktest::scaled(tcg, kvm)
}

/// Spawns `f` on a thread named `name` pinned to `cpu` (any CPU: `None`);
/// a spawn error becomes a test failure.
#[track_caller]
pub(crate) fn spawn_on<T: Send + 'static>(
    name: &str,
    cpu: Option<usize>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, uktest::Stop> {
    let builder = Builder::new().name(name);
    let builder = match cpu {
        Some(c) => builder.affinity(CpuSet::single(c)),
        None => builder,
    };
    builder.spawn(f).map_err(|e| uktest::Stop::failure(format_args!("spawning `{name}`: {e}")))
}

/// Pins the calling thread (the tests' `main`) to one CPU until dropped,
/// then lets it run anywhere again: scenarios that need "another CPU than
/// main's" pick it from a known one.
pub(crate) struct PinnedHere {
    thread: uksched::Thread,
    before: CpuSet,
}

impl PinnedHere {
    /// Moves the caller to `cpu` now.
    #[track_caller]
    pub(crate) fn to(cpu: usize) -> Result<Self, uktest::Stop> {
        let thread = uksched::current();
        let before = thread.affinity();
        thread
            .set_affinity(CpuSet::single(cpu))
            .map_err(|e| uktest::Stop::failure(format_args!("pinning main to CPU {cpu}: {e}")))?;
        Ok(Self { thread, before })
    }
}

impl Drop for PinnedHere {
    fn drop(&mut self) {
        // Restoring an affinity that was valid before cannot fail.
        let _ = self.thread.set_affinity(self.before);
    }
}
