//! # helloworld — the default app
//!
//! Prints a greeting, the CPU vendor and model, the memory size, the
//! accelerator as seen from inside (the hypervisor CPUID leaf) and the boot
//! time: TSC cycles from the image's first instruction to `main`.
#![no_std]

use ukconsole::println;

/// The app's entry point.
pub fn main(_args: &[&str]) -> i32 {
    // Read first, so the measurement covers only the boot path.
    let now = ukarch::tsc::read();
    let info = ukplat::boot_info();
    let boot_cycles = now.saturating_sub(info.boot_tsc);
    let cpu = ukarch::cpu::info();

    println!("Hello, world! ukrs on {} ({})", ukconfig::platform::NAME, ukplat::boot_info().machine);
    println!(
        "CPU: {} {} (family {:#x} model {:#x} stepping {})",
        cpu.vendor, cpu.brand, cpu.family, cpu.model, cpu.stepping
    );
    println!("Memory: {} MiB RAM, {} KiB free", info.ram_bytes() >> 20, info.free_bytes() >> 10);
    println!("Accelerator: {}", cpu.hypervisor.name());
    match ukarch::tsc::frequency_hz() {
        Some(hz) => println!(
            "Boot: {} cycles from first instruction to main ({} us at {} MHz)",
            boot_cycles,
            ukarch::tsc::cycles_to_ns(boot_cycles, hz) / 1000,
            hz / 1_000_000
        ),
        None => println!(
            "Boot: {boot_cycles} cycles from first instruction to main (TSC frequency not reported by CPUID)"
        ),
    }
    0
}
