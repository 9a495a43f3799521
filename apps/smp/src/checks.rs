//! The app's multi-CPU checks (see the crate documentation).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use ukplat::cpu::{MAX_CPUS, this_cpu};
use ukplat::irq::{self, TrapFrame};
use uktest::{OrFail, Stop, TestResult, ut_assert, ut_assert_eq};

/// Each CPU finds its own header through its per-CPU base, and the header
/// describes it as the topology does. (That the id the local APIC itself
/// reports matches is `apic`'s guest test, on kvm.)
fn every_cpu_has_its_own_per_cpu_header() -> TestResult {
    let topology = ukplat::cpu::topology();
    let seen =
        uksmp::run_on_all(|cpu| (this_cpu(), ukplat::cpu::this_base(), ukplat::cpu::this_apic_id(), cpu));
    for (i, &(index, gs, apic_id, asked)) in seen.iter().enumerate() {
        ut_assert_eq!(index, i, "CPU {} reads index {} through GS", asked, index);
        ut_assert_eq!(gs, ukplat::cpu::local(i) as *const _ as u64);
        ut_assert_eq!(apic_id, topology.cpus[i].apic_id);
    }
    let mut ids: Vec<u32> = seen.iter().map(|s| s.2).collect();
    ids.sort_unstable();
    ids.dedup();
    ut_assert_eq!(ids.len(), seen.len(), "two CPUs share an APIC id");
    // Every CPU other than the boot CPU came online during bring-up.
    for (i, cpu) in topology.cpus.iter().enumerate().skip(1) {
        ut_assert!(cpu.online_tsc >= topology.bringup_start_tsc, "CPU {} has no online stamp", i);
    }
    Ok(())
}
uktest::test_case!(every_cpu_has_its_own_per_cpu_header);

/// The platform's start-up code enabled caching on every CPU. Only where
/// the image runs in ring 0 and the platform started the CPUs (kvm); in a
/// user process (linuxu) the host owns CR0, and reading it faults.
fn every_cpu_runs_with_caches_enabled() -> TestResult {
    // CR0.CD (bit 30) and CR0.NW (bit 29): a CPU leaves INIT with both
    // set, i.e. uncached, until its start-up code clears them.
    const CD_NW: u64 = (1 << 30) | (1 << 29);
    if !ukplat::boot_info().privileged {
        uktest::ut_skip!(
            "not in ring 0 ({}): CR0 is the host's, reading it faults",
            ukplat::boot_info().machine
        );
    }
    for (cpu, cr0) in uksmp::run_on_all(|_| ukarch::regs::cr0()).into_iter().enumerate() {
        ut_assert_eq!(cr0 & CD_NW, 0, "CPU {} runs with caching disabled (CR0 {:#x})", cpu, cr0);
    }
    Ok(())
}
uktest::test_case!(every_cpu_runs_with_caches_enabled);

static IPI_HITS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

fn count_ipi(_frame: &mut TrapFrame) {
    IPI_HITS[this_cpu()].fetch_add(1, Ordering::SeqCst);
    irq::eoi();
}

/// Waits until CPU `cpu` has `want` hits or `limit` passed.
fn wait_hits(cpu: usize, want: u64, limit: Duration) -> u64 {
    let end = uktime::now() + limit;
    while IPI_HITS[cpu].load(Ordering::SeqCst) < want && uktime::now() < end {
        ukarch::barrier::spin_hint();
    }
    IPI_HITS[cpu].load(Ordering::SeqCst)
}

fn an_ipi_reaches_each_cpu_exactly_once() -> TestResult {
    let vector = irq::allocate(count_ipi).or_fail()?;
    let n = uksmp::cpu_count();
    let result = (|| {
        for hits in &IPI_HITS {
            hits.store(0, Ordering::SeqCst);
        }
        // One IPI to each other CPU.
        for cpu in (0..n).filter(|&c| c != this_cpu()) {
            let apic_id = ukplat::cpu::local(cpu).apic_id();
            ukplat::ipi::send(cpu, vector);
            ut_assert_eq!(wait_hits(cpu, 1, Duration::from_secs(2)), 1, "CPU {} (APIC id {})", cpu, apic_id);
        }
        // Nothing doubled, nothing went to a CPU not addressed.
        uktime::busy_wait(Duration::from_millis(10));
        for (cpu, hits) in IPI_HITS.iter().enumerate() {
            let expect = u64::from(cpu < n && cpu != this_cpu());
            ut_assert_eq!(hits.load(Ordering::SeqCst), expect, "CPU {}", cpu);
        }
        // One broadcast: every other CPU exactly once more.
        ukplat::ipi::send_all_others(vector);
        for cpu in (0..n).filter(|&c| c != this_cpu()) {
            ut_assert_eq!(wait_hits(cpu, 2, Duration::from_secs(2)), 2, "broadcast to CPU {}", cpu);
        }
        // And to self, with interrupts enabled for a moment.
        ukplat::ipi::send_self(vector);
        ukplat::irq::enable();
        let own = wait_hits(this_cpu(), 1, Duration::from_secs(2));
        ukplat::irq::disable();
        ut_assert_eq!(own, 1);
        uktime::busy_wait(Duration::from_millis(10));
        for (cpu, hits) in IPI_HITS.iter().enumerate().take(n) {
            let expect = if cpu == this_cpu() { 1 } else { 2 };
            ut_assert_eq!(hits.load(Ordering::SeqCst), expect, "CPU {} after all IPIs", cpu);
        }
        Ok(())
    })();
    irq::unregister(vector);
    result
}
uktest::test_case!(an_ipi_reaches_each_cpu_exactly_once);

/// The latest clock reading any CPU published.
static LATEST: AtomicU64 = AtomicU64::new(0);

fn the_clock_never_goes_backwards_across_cpus() -> TestResult {
    uktest::require_cpus(2, "clock readings of two CPUs to compare")?;
    LATEST.store(0, Ordering::SeqCst);
    let rounds = if ukarch::cpu::hypervisor() == ukarch::cpu::Hypervisor::Kvm { 2_000 } else { 50_000 };
    // Every CPU at once: read what some CPU published, then the clock; the
    // clock must not be behind a reading that (by the acquire) happened
    // before it.
    let violations = uksmp::run_on_all(|_| {
        let mut worst = 0u64;
        for _ in 0..rounds {
            let seen = LATEST.load(Ordering::Acquire);
            let now = uktime::now().as_nanos();
            worst = worst.max(seen.saturating_sub(now));
            LATEST.fetch_max(now, Ordering::AcqRel);
        }
        worst
    });
    for (cpu, &behind) in violations.iter().enumerate() {
        ut_assert_eq!(
            behind,
            0,
            "CPU {} read the clock {} ns behind another CPU's earlier reading",
            cpu,
            behind
        );
    }
    Ok(())
}
uktest::test_case!(the_clock_never_goes_backwards_across_cpus);

/// The APIC timer's rate on every CPU: each CPU (idle, interrupts enabled)
/// runs a periodic tick; the boot CPU waits and compares the ticks counted
/// with the time that passed. Within 5 % at 100 Hz, in the best of eight
/// 300 ms windows 50 ms apart (a vCPU the host deschedules loses ticks, and on the shared build
/// machines such noise can last several windows; see uktime's own test).
fn the_timer_keeps_its_rate_on_every_cpu() -> TestResult {
    // The programmed period (to one timer tick), then delivery over 300 ms windows at
    // 100 Hz (`uktime::timer::plausible_periodic_delivery`: a host that
    // deschedules vCPUs loses ticks, never adds any); 8 vCPUs on 2 host
    // cores lost up to a quarter of them right after heavy builds.
    const HZ: u32 = 100;
    const WINDOW: Duration = Duration::from_millis(300);
    const ATTEMPTS: usize = 8;
    // uktime's own test covers the boot CPU; this one the others.
    uktest::require_cpus(2, "a CPU besides the boot CPU, whose timer uktime's own test covers")?;
    let n = uksmp::cpu_count();
    let others: Vec<usize> = (0..n).filter(|&c| c != this_cpu()).collect();
    let mut worst = Vec::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Out of the noise that spoiled the last window, if it passes.
            uktime::busy_wait(Duration::from_millis(50));
        }
        // Each CPU stamps its own start and stop (clock, ticks so far), so
        // the latency of the calls themselves does not count.
        let mut starts = Vec::new();
        for &cpu in &others {
            let start = uksmp::run_on(cpu, || {
                uktime::timer::start_periodic(HZ)
                    .map(|period| (uktime::now(), uktime::timer::fired_on(this_cpu()), period))
            });
            let (started, fired, period) = start.or_fail()?;
            // The programmed period, as the platform read it back from this
            // CPU's timer (the APIC timer's initial count on kvm): what the
            // rate depends on, 1 / HZ to within one timer tick.
            let tick_hz = uktime::timer::tick_hz();
            if period.tick_hz != tick_hz || !period.is_within_a_tick_of(HZ) {
                return Err(Stop::failure(format_args!(
                    "CPU {cpu}: a period of {period:?}, not {tick_hz} Hz / {HZ} (within one tick)"
                )));
            }
            starts.push((started, fired));
        }
        uktime::busy_wait(WINDOW);
        worst.clear();
        for (&cpu, &(started, fired_before)) in others.iter().zip(&starts) {
            let (stopped, fired_after) = uksmp::run_on(cpu, || {
                uktime::timer::disarm();
                (uktime::now(), uktime::timer::fired_on(this_cpu()))
            });
            let ticks = fired_after - fired_before;
            let expected = u64::from(HZ) * stopped.duration_since(started).as_micros() as u64 / 1_000_000;
            if !uktime::timer::plausible_periodic_delivery(ticks, expected) {
                worst.push((cpu, ticks, expected));
            }
        }
        if worst.is_empty() {
            return Ok(());
        }
    }
    Err(Stop::failure(format_args!(
        "(cpu, ticks, expected) more than the periods or under 60 % of them at {HZ} Hz: {worst:?}"
    )))
}
uktest::test_case!(the_timer_keeps_its_rate_on_every_cpu);
