//! In-guest tests of the local APIC: on the boot CPU, and on every CPU the
//! hardware side of multi-CPU operation — each CPU's APIC id as the APIC
//! reports it, and NMIs by APIC id. They run in every kvm image with
//! `uktest` (the `smp` app's with 1 to 8 CPUs). This crate sits below
//! `uksmp` and `uktime`, so it reaches the other CPUs with its own IPIs
//! (the platform parks idle CPUs halted with interrupts enabled, and
//! `uksmp`'s idle loop does the same) and bounds its waits in clock
//! counter cycles. The platform-independent IPI tests (through
//! `ukplat::ipi`) are in the `smp` app.

use crate::ioapic::Redirection;
use crate::{Mode, ipi, local, timer};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use ukplat::cpu::{MAX_CPUS, this_cpu};
use ukplat::irq::{self, TrapFrame};
use uktest::{OrFail, TestResult, ut_assert, ut_assert_eq, ut_assert_ne};

/// TSC cycles after which an expected interrupt counts as lost (over a
/// second at any plausible TSC rate; the tests wait for microseconds).
const PATIENCE: u64 = 1 << 32;
/// TSC cycles to watch for an interrupt that must *not* come (a few
/// milliseconds: hundreds of times the timer periods used below).
const QUIET: u64 = 1 << 24;
/// Clock counter cycles to wait for another CPU's answer (seconds at any
/// plausible TSC rate: under TCG with more vCPUs than host cores the
/// target may wait long for a host core). A wait ends at the answer.
const OTHER_CPU_PATIENCE: u64 = 1 << 34;
/// Clock counter cycles to watch for a duplicate from another CPU (tens of
/// milliseconds).
const OTHER_CPU_QUIET: u64 = 1 << 26;

static HITS: AtomicU32 = AtomicU32::new(0);

fn count_and_eoi(_frame: &mut TrapFrame) {
    HITS.fetch_add(1, Ordering::SeqCst);
    local::eoi();
}

/// Runs `f` with a fresh vector counting into HITS, then frees the vector.
fn with_counting_vector(f: impl FnOnce(u8) -> TestResult) -> TestResult {
    HITS.store(0, Ordering::SeqCst);
    let vector = irq::allocate(count_and_eoi).or_fail()?;
    let result = f(vector);
    irq::unregister(vector);
    result
}

/// Enables interrupts until HITS reaches `want` or PATIENCE runs out;
/// returns the count.
fn wait_for_hits(want: u32) -> u32 {
    wait_for_hits_within(want, PATIENCE)
}

/// Like [`wait_for_hits`] for an interrupt that should not come: watches
/// for QUIET cycles only.
fn no_more_hits_than(have: u32) -> u32 {
    wait_for_hits_within(have + 1, QUIET)
}

fn wait_for_hits_within(want: u32, cycles: u64) -> u32 {
    let start = ukarch::tsc::read();
    ukplat::irq::enable();
    while HITS.load(Ordering::SeqCst) < want && ukarch::tsc::read() - start < cycles {
        core::hint::spin_loop();
    }
    ukplat::irq::disable();
    HITS.load(Ordering::SeqCst)
}

fn mode_follows_config_and_cpuid() -> TestResult {
    let x2apic = ukarch::cpu::features().x2apic;
    let expected = match ukconfig::apic::MODE {
        ukconfig::apic::Mode::Auto if x2apic => Mode::X2Apic,
        ukconfig::apic::Mode::Auto | ukconfig::apic::Mode::Xapic => Mode::XApic,
        ukconfig::apic::Mode::X2apic => Mode::X2Apic,
    };
    ut_assert_eq!(crate::mode(), expected);
    // The platform's header and the register agree on who we are.
    ut_assert_eq!(crate::id(), ukplat::cpu::this_apic_id());
    ut_assert_eq!(ukplat::irq::controller().map(|c| c.name()), Some(expected.name()));
    Ok(())
}
uktest::test_case!(mode_follows_config_and_cpuid);

fn self_ipi_is_delivered_exactly_once() -> TestResult {
    with_counting_vector(|vector| {
        let _irq = ukplat::irq::IrqGuard::new();
        ipi::send_vector(ipi::Destination::ToSelf, vector);
        ut_assert_eq!(HITS.load(Ordering::SeqCst), 0, "delivered while interrupts were disabled");
        ut_assert_eq!(wait_for_hits(1), 1);
        // Nothing else arrives.
        ut_assert_eq!(no_more_hits_than(1), 1);
        Ok(())
    })
}
uktest::test_case!(self_ipi_is_delivered_exactly_once);

fn oneshot_timer_fires_once() -> TestResult {
    with_counting_vector(|vector| {
        let _irq = ukplat::irq::IrqGuard::new();
        timer::oneshot(vector, 50_000, timer::Divide::By1);
        ut_assert_eq!(wait_for_hits(1), 1, "the one-shot timer did not fire");
        ut_assert_eq!(timer::current_count(), 0);
        ut_assert_eq!(no_more_hits_than(1), 1, "a one-shot timer fired twice");
        timer::stop();
        Ok(())
    })
}
uktest::test_case!(oneshot_timer_fires_once);

fn periodic_timer_repeats_until_stopped() -> TestResult {
    with_counting_vector(|vector| {
        let _irq = ukplat::irq::IrqGuard::new();
        timer::periodic(vector, 100_000, timer::Divide::By1);
        let hits = wait_for_hits(3);
        timer::stop();
        ut_assert!(hits >= 3, "periodic timer fired {} times", hits);
        // A tick may already be pending when the timer stops.
        let stopped_at = no_more_hits_than(hits + 1);
        ut_assert!(stopped_at <= hits + 1, "ticks went on after stop: {} -> {}", hits, stopped_at);
        Ok(())
    })
}
uktest::test_case!(periodic_timer_repeats_until_stopped);

fn tsc_deadline_timer_fires_under_kvm() -> TestResult {
    if !timer::has_tsc_deadline() {
        // KVM emulates the mode for every CPU model (`-cpu host` whatever the
        // host has): its absence there is a failure. QEMU 7.2's TCG does not
        // offer it (CPUID.1:ECX[24] = 0), so under TCG the test cannot run;
        // it runs in the KVM configurations of `cargo xtask test`.
        ut_assert!(
            ukarch::cpu::hypervisor() != ukarch::cpu::Hypervisor::Kvm,
            "KVM stopped offering the TSC-deadline timer (CPUID.1:ECX[24])"
        );
        uktest::ut_skip!(
            "no TSC-deadline timer on this CPU (CPUID.1:ECX[24] = 0) under {}",
            ukarch::cpu::hypervisor().name()
        );
    }
    with_counting_vector(|vector| {
        let _irq = ukplat::irq::IrqGuard::new();
        timer::enter_tsc_deadline_mode(vector);
        timer::set_tsc_deadline(ukarch::tsc::read() + 100_000);
        ut_assert_eq!(wait_for_hits(1), 1, "the TSC deadline passed without an interrupt");
        ut_assert_eq!(no_more_hits_than(1), 1, "a TSC deadline fired twice");
        timer::stop();
        Ok(())
    })
}
uktest::test_case!(tsc_deadline_timer_fires_under_kvm);

fn io_apic_entries_read_back() -> TestResult {
    let apics = crate::io_apics();
    ut_assert!(!apics.is_empty(), "no I/O APIC was set up (the MADT lists one on microvm and q35)");
    let apic = &apics[0];
    let pins = apic.pins();
    ut_assert!(pins >= 16, "I/O APIC has only {} inputs", pins);
    // The last input is unused by QEMU's ISA devices.
    let pin = pins - 1;
    let before = apic.get(pin);
    ut_assert!(before.masked, "inputs are masked at boot");
    let entry =
        Redirection { vector: 0x3e, destination: 0, active_low: true, level_triggered: true, masked: true };
    apic.set(pin, entry);
    ut_assert_eq!(apic.get(pin), entry);
    apic.set(pin, before);
    ut_assert_eq!(apic.get(pin), before);
    Ok(())
}
uktest::test_case!(io_apic_entries_read_back);

fn no_apic_errors_so_far() -> TestResult {
    ut_assert_eq!(crate::error_count(), 0);
    ut_assert_eq!(local::error_status(), 0);
    Ok(())
}
uktest::test_case!(no_apic_errors_so_far);

/// Per CPU, by the index in its per-CPU header: the local APIC id its
/// handler read from the APIC, plus one (0: no answer yet).
static APIC_ID_SEEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: how often its handler ran.
static APIC_ID_ANSWERS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

fn record_apic_id(_frame: &mut TrapFrame) {
    let cpu = this_cpu();
    APIC_ID_SEEN[cpu].store(u64::from(crate::id()) + 1, Ordering::SeqCst);
    APIC_ID_ANSWERS[cpu].fetch_add(1, Ordering::SeqCst);
    local::eoi();
}

/// Spins until `done` or `cycles` clock counter cycles passed since
/// `start`; returns `done()`.
fn spin_until(start: u64, cycles: u64, done: impl Fn() -> bool) -> bool {
    while !done() && ukplat::clock::read().wrapping_sub(start) < cycles {
        core::hint::spin_loop();
    }
    done()
}

/// Every CPU reads from its own local APIC the id that the topology and
/// its per-CPU header hold for it (the platform matched them at bring-up;
/// IPIs by CPU index and the exception reports rely on it), and the ids
/// are distinct. The other CPUs answer one broadcast IPI, which does not
/// depend on the ids under test, exactly once.
fn every_cpu_reads_its_topology_apic_id_from_its_apic() -> TestResult {
    let topology = ukplat::cpu::topology();
    let n = topology.cpus.len();
    // No migration and no interrupt here: the waits need none.
    let _irq = ukplat::irq::IrqGuard::new();
    let me = this_cpu();
    for (seen, answers) in APIC_ID_SEEN.iter().zip(&APIC_ID_ANSWERS) {
        seen.store(0, Ordering::SeqCst);
        answers.store(0, Ordering::SeqCst);
    }
    let vector = irq::allocate(record_apic_id).or_fail()?;
    let result = (|| {
        APIC_ID_SEEN[me].store(u64::from(crate::id()) + 1, Ordering::SeqCst);
        if n > 1 {
            ipi::send_vector(ipi::Destination::AllButSelf, vector);
            let start = ukplat::clock::read();
            for cpu in (0..n).filter(|&c| c != me) {
                let answered =
                    spin_until(start, OTHER_CPU_PATIENCE, || APIC_ID_ANSWERS[cpu].load(Ordering::SeqCst) > 0);
                ut_assert!(answered, "CPU {} did not answer a broadcast IPI", cpu);
            }
            spin_until(ukplat::clock::read(), OTHER_CPU_QUIET, || false);
        }
        for (cpu, desc) in topology.cpus.iter().enumerate() {
            let id = (APIC_ID_SEEN[cpu].load(Ordering::SeqCst) - 1) as u32;
            ut_assert_eq!(id, desc.apic_id, "CPU {}: the APIC's id, the topology's", cpu);
            ut_assert_eq!(id, ukplat::cpu::local(cpu).apic_id(), "CPU {}: the APIC's id, the header's", cpu);
            let expect = u32::from(cpu != me);
            ut_assert_eq!(
                APIC_ID_ANSWERS[cpu].load(Ordering::SeqCst),
                expect,
                "broadcast IPIs on CPU {}",
                cpu
            );
            for other in 0..cpu {
                ut_assert_ne!(desc.apic_id, topology.cpus[other].apic_id, "CPUs {} and {}", other, cpu);
            }
        }
        Ok(())
    })();
    irq::unregister(vector);
    result
}
uktest::test_case!(every_cpu_reads_its_topology_apic_id_from_its_apic);

/// The NMI vector.
const NMI_VECTOR: u8 = 2;

/// NMIs taken per CPU.
static NMI_HITS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// NMI (vector 2, on its own stack) needs no end-of-interrupt.
fn count_nmi(_frame: &mut TrapFrame) {
    NMI_HITS[this_cpu()].fetch_add(1, Ordering::SeqCst);
}

/// An NMI sent by APIC id reaches that CPU — whatever it is doing, even
/// with interrupts disabled — exactly once, and no other CPU.
fn an_nmi_reaches_each_other_cpu_exactly_once() -> TestResult {
    uktest::require_cpus(2, "another CPU to send NMIs to")?;
    let topology = ukplat::cpu::topology();
    let n = topology.cpus.len();
    // No migration here: the sender's index must stay the same.
    let _irq = ukplat::irq::IrqGuard::new();
    let me = this_cpu();
    for hits in &NMI_HITS {
        hits.store(0, Ordering::SeqCst);
    }
    irq::register(NMI_VECTOR, count_nmi).or_fail()?;
    let result = (|| {
        for cpu in (0..n).filter(|&c| c != me) {
            let apic_id = topology.cpus[cpu].apic_id;
            ipi::send(ipi::Destination::Apic(apic_id), ipi::Delivery::Nmi);
            let start = ukplat::clock::read();
            let arrived = spin_until(start, OTHER_CPU_PATIENCE, || NMI_HITS[cpu].load(Ordering::SeqCst) > 0);
            ut_assert!(arrived, "no NMI on CPU {} (APIC id {})", cpu, apic_id);
        }
        spin_until(ukplat::clock::read(), OTHER_CPU_QUIET, || false);
        for (cpu, hits) in NMI_HITS.iter().enumerate().take(n) {
            let expect = u32::from(cpu != me);
            ut_assert_eq!(hits.load(Ordering::SeqCst), expect, "NMIs on CPU {}", cpu);
        }
        Ok(())
    })();
    irq::unregister(NMI_VECTOR);
    result
}
uktest::test_case!(an_nmi_reaches_each_other_cpu_exactly_once);
