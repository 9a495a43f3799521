//! # smp — the multi-CPU test app
//!
//! `main` prints one line per CPU, each gathered on that CPU itself (a
//! cross-CPU call): its index, its local APIC id as its per-CPU header
//! holds it, the address of its per-CPU header (its per-CPU base) and when
//! it came online during bring-up. Then it runs every registered in-guest
//! test through `uktest`: the libraries' own (`uktime`, `uksmp`, ...; on
//! kvm also `apic`'s, which check each CPU's APIC id in the hardware and
//! NMIs to every other CPU) and this app's multi-CPU checks, all through
//! `ukplat` so that they run on every platform: IPIs delivered exactly
//! once to every CPU, the clock never going backwards across CPUs, the
//! timer's rate on every CPU, caching enabled on every CPU (in ring 0
//! only: skipped on linuxu, where the host owns CR0) (`checks.rs`); every
//! spinlock kind counting exactly with all CPUs contending, the irqsave
//! locks shared with a real interrupt handler, and the reader-writer
//! lock's readers never seeing half a write (`locks.rs`).
//!
//! With `echo=N` on the command line it first reads N lines from the
//! console and prints each back as `echo: LINE`, with the vector and the
//! number of receive interrupts that brought it: console input arrives by
//! the serial port's IRQ, routed through the I/O APIC (`cargo xtask test`
//! feeds a line into QEMU's standard input and checks the echo).
//!
//! With `ud-on-cpu=N` it instead makes CPU N execute `ud2` (through a
//! cross-CPU call): the machine must stop with the exception report of CPU
//! N — its own per-CPU header and APIC id — and status 111.
//!
//! `cargo xtask test` runs it under TCG with 1, 2, 4 and 8 CPUs and under
//! KVM with 2, in both APIC modes where the machine has them. A check that
//! needs more CPUs than the run has (the clock compared across CPUs, the
//! other CPUs' timers, locks contended by several CPUs, a chain of calls
//! across three) ends with `uktest::require_cpus` and is reported as
//! `skipped: needs N CPUs (...)`, not as passed.
//!
//! **Needs:** `uksmp`, `uktime`, `ukspin` (and `lock_api` for the lock
//! types generic over their raw lock), `uktest`, `ukconsole`, `ukplat`.
#![no_std]

extern crate alloc;

mod checks;
mod locks;

use ukconsole::println;

/// What each CPU reports about itself.
struct Report {
    cpu: usize,
    apic_id: u32,
    gs_base: u64,
    online_tsc: u64,
}

/// The interrupt controller, for the summary line: `local APIC in xAPIC
/// mode` (`cargo xtask test` looks for that), `no interrupt controller`
/// (linuxu: interrupts are signals).
struct InterruptController(Option<&'static str>);

impl core::fmt::Display for InterruptController {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(mode @ ("xAPIC" | "x2APIC")) => write!(f, "local APIC in {mode} mode"),
            Some(other) => write!(f, "interrupt controller {other}"),
            None => f.write_str("no interrupt controller"),
        }
    }
}

/// The app's entry point: the per-CPU lines, then the tests.
pub fn main(_args: &[&str]) -> i32 {
    let topology = ukplat::cpu::topology();
    let reports = uksmp::run_on_all(|cpu| Report {
        cpu: ukplat::cpu::this_cpu(),
        apic_id: ukplat::cpu::this_apic_id(),
        gs_base: ukplat::cpu::this_base(),
        online_tsc: topology.cpus[cpu].online_tsc,
    });
    println!(
        "smp: {} CPUs online ({} in the firmware), {}, TSC {} MHz ({})",
        reports.len(),
        topology.cpus_in_firmware,
        InterruptController(ukplat::irq::controller().map(|c| c.name())),
        uktime::tsc_hz() / 1_000_000,
        uktime::source().map_or("uncalibrated", |s| s.name())
    );
    for r in &reports {
        let since = if r.cpu == 0 || topology.bringup_start_tsc == 0 {
            0
        } else {
            uktime::cycles_to_ns(r.online_tsc.saturating_sub(topology.bringup_start_tsc)) / 1000
        };
        println!(
            "cpu {}: APIC id {}, per-CPU header at {:#x}, online {} us after bring-up began",
            r.cpu, r.apic_id, r.gs_base, since
        );
    }
    let cmdline = ukplat::boot_info().cmdline;
    let option = |key| ukboot::cmdline_value(cmdline, key).and_then(|v| v.parse::<usize>().ok());
    if let Some(cpu) = option("ud-on-cpu") {
        println!("smp: CPU {cpu} executes ud2");
        uksmp::run_on_nowait(cpu, || {
            // SAFETY: `ud2` raises #UD on purpose; the exception report ends
            // the run.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
        });
        loop {
            ukarch::barrier::spin_hint();
        }
    }
    let echoes = option("echo");
    if let Some(n) = echoes {
        println!("smp: type {n} line(s)");
    }
    for _ in 0..echoes.unwrap_or(0) {
        let mut buf = [0u8; 128];
        let line = ukconsole::read_line(&mut buf);
        let line = core::str::from_utf8(line).unwrap_or("(not UTF-8)");
        match ukconsole::input_vector() {
            Some(vector) => println!(
                "echo: {line} (interrupt-driven: vector {vector:#x}, {} receive interrupts)",
                ukconsole::input_interrupts()
            ),
            None => println!("echo: {line} (polled)"),
        }
    }
    uktest::main(&[])
}
