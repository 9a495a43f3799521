//! # smp — the multi-CPU test app
//!
//! `main` prints one line per CPU, each gathered on that CPU itself (a
//! cross-CPU call): its index, its local APIC id read from the APIC, the
//! address of its per-CPU header (its GS base) and when it came online
//! during bring-up. Then it runs every registered in-guest test through
//! `uktest`: the libraries' own (`apic`, `uktime`, `uksmp`, ...) and this
//! app's multi-CPU checks (`checks.rs`): IPIs delivered exactly once to
//! every CPU, the clock never going backwards across CPUs, and the APIC
//! timer's rate on every CPU.
//!
//! `cargo xtask test` runs it under TCG with 1, 2, 4 and 8 CPUs and under
//! KVM with 2, in both APIC modes where the machine has them.
//!
//! **Needs:** `uksmp`, `uktime`, `apic`, `uktest`, `ukconsole`, `ukplat`.
#![no_std]

extern crate alloc;

mod checks;

use ukconsole::println;

/// What each CPU reports about itself.
struct Report {
    cpu: usize,
    apic_id: u32,
    gs_base: u64,
    online_tsc: u64,
}

/// The app's entry point: the per-CPU lines, then the tests.
pub fn main(args: &[&str]) -> i32 {
    let topology = ukplat::cpu::topology();
    let reports = uksmp::run_on_all(|cpu| Report {
        cpu: ukplat::cpu::this_cpu(),
        apic_id: apic::id(),
        gs_base: ukarch::regs::gs_base(),
        online_tsc: topology.cpus[cpu].online_tsc,
    });
    println!(
        "smp: {} CPUs online ({} in the firmware), local APIC in {} mode, TSC {} MHz ({})",
        reports.len(),
        topology.cpus_in_firmware,
        apic::mode().name(),
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
    uktest::main(args)
}
