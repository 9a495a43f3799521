//! # smpbench — SMP benchmarks
//!
//! Run by `cargo xtask bench smp`, which boots it several times (release
//! build) and prints medians. Every measurement is one line on the console,
//!
//! ```text
//! bench: metric=NAME key=value ... cycles=N
//! ```
//!
//! with `cycles` in TSC cycles (the host converts with the `tsc_hz` line).
//! Measured here:
//!
//! * `ap_start`: per secondary CPU, TSC cycles from the start of bring-up
//!   (kvm: the first INIT IPI the boot CPU sent) to that CPU reporting
//!   itself alive; `ap_start_total` is the last one (all CPUs start in
//!   parallel);
//! * `ipi_rtt`: IPI round trip between CPU 0 and CPU 1 — CPU 0 sends an
//!   IPI (`ukplat::ipi`), CPU 1's handler answers with one, CPU 0's handler
//!   counts it
//!   (median of `ipi_rounds` round trips, command-line option);
//! * `call_rtt`: the same through `uksmp::run_on` (queue, IPI, run, done
//!   flag), the cost of the library on top of the bare IPI;
//! * `lock`: for every spinlock kind (`tas`, `ticket`, `mcs`, and the
//!   configured one as `spinlock`) and two baselines measured in the same
//!   boot — the `spin` crate's mutex (`spin-crate`) and a bare atomic
//!   increment of one shared line (`atomic`, the floor every lock pays) —
//!   with 1..N CPUs taking the lock in a loop for `lock_ms` milliseconds
//!   (critical section: one increment): total acquisitions (`ops`), the
//!   window in cycles, and the fewest and most acquisitions of one CPU
//!   (`min`, `max`: the fairness figure);
//! * `rwlock_read`: the same with every CPU read-locking `ukspin`'s
//!   reader-writer lock (`rwlock`), against the `spin` crate's (`spin-rwlock`)
//!   and an exclusive ticket lock on the same data (`ticket-exclusive`).
//!
//! With `icount=1` on the command line (`cargo xtask bench icount`, which
//! boots it under TCG with `platform.icount`, where TSC deltas count the
//! instructions of every vCPU) it runs only the instruction counts instead,
//! one line each,
//!
//! ```text
//! bench: metric=icount kind=KIND samples=11 ops=N cycles=C min=A max=B
//! ```
//!
//! with `cycles` the median over 11 samples (after one warm-up) of the
//! cycles `N` operations took in one loop on CPU 0, `min`/`max` the fewest
//! and most: `empty` (the loop with nothing in it, the harness's own cost
//! per iteration) and, with 2 CPUs or more, `run-on` (`uksmp::run_on(1,
//! || ())` round trips: CPU 0's side and CPU 1's, its idle wake-up
//! included).
//!
//! The first line describes the machine: `bench: metric=machine cpus=N
//! tsc_hz=HZ apic=NAME source=SOURCE`, with `apic` the interrupt
//! controller's name (`xAPIC`, `x2APIC`; `none` on linuxu, where
//! interrupts are signals). Everything goes through `ukplat`, so the
//! benchmarks run unchanged on kvm and linuxu.
//!
//! **Needs:** `uksmp`, `uktime`, `ukspin`, `lock_api`, `spin` (baselines),
//! `ukbench`, `ukconsole`, `ukplat`.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use ukbench::{arrive, icount_line, median, option, throughput_line};
use ukconsole::println;
use ukplat::irq::{self, TrapFrame};

static PONG_TO: AtomicU32 = AtomicU32::new(0);
static PONG_VECTOR: AtomicU32 = AtomicU32::new(0);
static PONGS: AtomicU64 = AtomicU64::new(0);

fn on_ping(_frame: &mut TrapFrame) {
    irq::eoi();
    let to = PONG_TO.load(Ordering::Relaxed);
    let vector = PONG_VECTOR.load(Ordering::Relaxed) as u8;
    ukplat::ipi::send(to as usize, vector);
}

fn on_pong(_frame: &mut TrapFrame) {
    irq::eoi();
    PONGS.fetch_add(1, Ordering::Release);
}

fn ap_start() {
    let topology = ukplat::cpu::topology();
    let start = topology.bringup_start_tsc;
    let mut last = 0;
    for (cpu, desc) in topology.cpus.iter().enumerate().skip(1) {
        let cycles = desc.online_tsc.saturating_sub(start);
        last = last.max(cycles);
        println!("bench: metric=ap_start cpu={cpu} cycles={cycles}");
    }
    if topology.cpus.len() > 1 {
        println!("bench: metric=ap_start_total cpus={} cycles={last}", topology.cpus.len());
    }
}

fn ipi_round_trip(rounds: u64) -> Result<(), irq::IrqError> {
    let ping = irq::allocate(on_ping)?;
    let pong = irq::allocate(on_pong)?;
    PONG_TO.store(ukplat::cpu::this_cpu() as u32, Ordering::Relaxed);
    PONG_VECTOR.store(u32::from(pong), Ordering::Relaxed);
    let target = 1;
    let mut samples = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let before = PONGS.load(Ordering::Acquire);
        let t0 = ukarch::tsc::read_ordered();
        ukplat::ipi::send(target, ping);
        ukplat::irq::enable();
        while PONGS.load(Ordering::Acquire) == before {
            core::hint::spin_loop();
        }
        ukplat::irq::disable();
        samples.push(ukarch::tsc::read_ordered() - t0);
    }
    irq::unregister(ping);
    irq::unregister(pong);
    println!("bench: metric=ipi_rtt samples={rounds} cycles={}", median(&mut samples));

    let mut samples: Vec<u64> = (0..rounds)
        .map(|_| {
            let t0 = ukarch::tsc::read_ordered();
            uksmp::run_on(1, || ());
            ukarch::tsc::read_ordered() - t0
        })
        .collect();
    println!("bench: metric=call_rtt samples={rounds} cycles={}", median(&mut samples));
    Ok(())
}

/// Something every CPU does in a loop: one acquisition, a one-increment
/// critical section, one release.
trait Contended: Sync {
    fn once(&self);
}

impl<R: lock_api::RawMutex + Sync> Contended for lock_api::Mutex<R, u64> {
    #[inline(always)]
    fn once(&self) {
        *self.lock() += 1;
    }
}

/// Baseline: the `spin` crate's mutex (test-and-set).
impl Contended for spin::mutex::SpinMutex<u64> {
    #[inline(always)]
    fn once(&self) {
        *self.lock() += 1;
    }
}

/// Baseline: read-locking the `spin` crate's reader-writer lock.
impl Contended for spin::RwLock<u64> {
    #[inline(always)]
    fn once(&self) {
        core::hint::black_box(*self.read());
    }
}

/// The floor: one atomic increment of a shared line, no lock.
struct Atomic(AtomicU64);

impl Contended for Atomic {
    #[inline(always)]
    fn once(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Read-locking a reader-writer lock.
struct ReadLocked<'a, R: lock_api::RawRwLock>(&'a lock_api::RwLock<R, u64>);

impl<R: lock_api::RawRwLock + Sync> Contended for ReadLocked<'_, R> {
    #[inline(always)]
    fn once(&self) {
        core::hint::black_box(*self.0.read());
    }
}

/// Runs `work` on CPUs 0..cpus for `window` TSC cycles, all starting
/// together; returns each participant's iterations.
fn contend(work: &dyn Contended, cpus: usize, window: u64) -> Vec<u64> {
    let arrived = AtomicUsize::new(0);
    let per_cpu = uksmp::run_on_all(|cpu| {
        if cpu >= cpus {
            return None;
        }
        arrive(&arrived, cpus, core::hint::spin_loop);
        let end = ukarch::tsc::read() + window;
        let mut ops = 0u64;
        while ukarch::tsc::read() < end {
            for _ in 0..16 {
                work.once();
            }
            ops += 16;
        }
        Some(ops)
    });
    per_cpu.into_iter().flatten().collect()
}

fn locks(window: u64) {
    static TAS: lock_api::Mutex<ukspin::RawTasLock, u64> = lock_api::Mutex::new(0);
    static TICKET: lock_api::Mutex<ukspin::RawTicketLock, u64> = lock_api::Mutex::new(0);
    static MCS: lock_api::Mutex<ukspin::RawMcsLock, u64> = lock_api::Mutex::new(0);
    static CONFIGURED: ukspin::SpinLock<u64> = ukspin::SpinLock::new(0);
    static SPIN_CRATE: spin::mutex::SpinMutex<u64> = spin::mutex::SpinMutex::new(0);
    static ATOMIC: Atomic = Atomic(AtomicU64::new(0));
    static RW: ukspin::RwSpinLock<u64> = ukspin::RwSpinLock::new(0);
    static SPIN_RW: spin::RwLock<u64> = spin::RwLock::new(0);
    let kinds: [(&str, &dyn Contended); 6] = [
        ("tas", &TAS),
        ("ticket", &TICKET),
        ("mcs", &MCS),
        ("spinlock", &CONFIGURED),
        ("spin-crate", &SPIN_CRATE),
        ("atomic", &ATOMIC),
    ];
    for cpus in 1..=uksmp::cpu_count() {
        for (kind, work) in kinds {
            throughput_line("lock", kind, cpus, window, &contend(work, cpus, window));
        }
        let readers: [(&str, &dyn Contended); 3] =
            [("rwlock", &ReadLocked(&RW)), ("spin-rwlock", &SPIN_RW), ("ticket-exclusive", &TICKET)];
        for (kind, work) in readers {
            throughput_line("rwlock_read", kind, cpus, window, &contend(work, cpus, window));
        }
    }
}

/// Operations per sample of an instruction count (`icount=1`).
const ICOUNT_OPS: u64 = 200;

/// The instruction counts; see the crate documentation.
fn icount(cpus: usize) {
    icount_line("empty", ICOUNT_OPS, || ());
    if cpus > 1 {
        icount_line("run-on", ICOUNT_OPS, || uksmp::run_on(1, || ()));
    }
}

/// Runs the benchmarks; see the crate documentation.
pub fn main(_args: &[&str]) -> i32 {
    let cpus = uksmp::cpu_count();
    println!(
        "bench: metric=machine cpus={cpus} tsc_hz={} apic={} source={}",
        uktime::tsc_hz(),
        irq::controller().map_or("none", |c| c.name()),
        uktime::source().map_or("none", |s| s.name())
    );
    if option("icount", 0) == 1 {
        icount(cpus);
        return 0;
    }
    ap_start();
    if cpus > 1 {
        let rounds = option("ipi_rounds", 1000);
        if let Err(e) = ipi_round_trip(rounds) {
            println!("smpbench: {e}");
            return 1;
        }
    }
    let lock_ms = option("lock_ms", 20);
    locks(uktime::ns_to_cycles(lock_ms * 1_000_000));
    0
}
