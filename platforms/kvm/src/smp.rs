//! Starting the secondary CPUs (application processors, APs).
//!
//! # Sequence
//!
//! 1. The boot CPU reads the MADT (`acpi.rs`) and keeps the first
//!    `platform.cpus` usable CPUs, itself first ([`plan`]).
//! 2. For every AP it reserves, from free RAM before the heap sees it, one
//!    [`ApMemory`]: descriptor tables with IST stacks (`gdt::CpuTables`) and
//!    a boot stack.
//! 3. It copies the real-mode trampoline (`ap_trampoline.S`) to
//!    [`TRAMPOLINE_BASE`], fills in its parameter block (page tables, stack
//!    tops, Rust entry), and sends INIT to every AP, then a start-up IPI to
//!    every AP, then a second one — all back to back, without the 10 ms and
//!    200 µs waits old hardware needed (under a hypervisor INIT and SIPI are
//!    handled synchronously; Linux skips the waits there too). The CPUs
//!    start in parallel.
//! 4. Each AP runs [`kvm_ap_main`]: finds its index from its APIC id, loads
//!    its GDT/TSS and the IDT, points GS at its per-CPU header, enables its
//!    local APIC, reports itself alive with a TSC stamp, and parks: halted
//!    with interrupts enabled until a library releases the secondaries
//!    (`ukplat::cpu::release_secondaries`) and wakes them.
//! 5. The boot CPU waits for every AP to report alive; one that does not
//!    within [`ALIVE_TIMEOUT_CYCLES`] is a boot error naming it.
//!
//! The IDT is shared: each CPU loads the one table (its IDTR points there),
//! as Linux does. Per-CPU IDTs would be 4 KiB copies of identical gates.

use crate::gdt::CpuTables;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use ukplat::cpu::{CpuDesc, MAX_CPUS};

/// Physical address the trampoline is copied to (start-up vector 0x08).
pub const TRAMPOLINE_BASE: u64 = 0x8000;
/// Size of each AP's boot stack.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;
/// APIC timer count (at divide-by-16) of the boot CPU's tick while it
/// waits for the APs: ~1 ms at QEMU's 1 GHz APIC clock; the exact period
/// does not matter, it only bounds each halt so the timeout is seen.
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only bring-up"))]
const WAIT_TICK_COUNT: u32 = 62_500;
/// TSC cycles the boot CPU waits for the APs to report alive: ~6 s at
/// 2.6 GHz, far beyond the milliseconds bring-up takes even under TCG with
/// more vCPUs than host cores.
pub const ALIVE_TIMEOUT_CYCLES: u64 = 1 << 34;

/// What the boot CPU reserves for one AP.
#[repr(C, align(4096))]
pub struct ApMemory {
    /// Descriptor tables and IST stacks.
    pub tables: CpuTables,
    /// The boot stack (the AP's idle loop runs on it).
    pub stack: [u8; BOOT_STACK_SIZE],
}

/// Which CPUs to start.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Index 0 is the boot CPU.
    pub cpus: [CpuDesc; MAX_CPUS],
    /// How many of `cpus` to run.
    pub count: usize,
}

/// Why the CPUs could not be planned or started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmpError {
    /// The boot CPU's APIC id is not in the MADT.
    BootCpuNotListed(u32),
    /// More CPUs configured than the firmware lists.
    TooFewCpus {
        /// `platform.cpus`.
        configured: usize,
        /// Usable CPUs in the MADT.
        found: usize,
    },
    /// No memory left for the APs' tables and stacks.
    OutOfMemory {
        /// Bytes asked for.
        needed: u64,
    },
    /// Some APs did not report alive in time.
    Timeout {
        /// APs that did.
        alive: usize,
        /// APs started.
        expected: usize,
        /// The first (in plan order) that did not.
        first_missing_apic_id: u32,
    },
}

impl core::fmt::Display for SmpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::BootCpuNotListed(id) => write!(f, "the boot CPU (APIC id {id}) is not in the MADT"),
            Self::TooFewCpus { configured, found } => write!(
                f,
                "platform.cpus = {configured} but the machine has {found} usable CPU(s) (MADT); \
                 start QEMU with -smp {configured} or lower platform.cpus"
            ),
            Self::OutOfMemory { needed } => {
                write!(f, "no free RAM block of {needed} bytes for the secondary CPUs' tables and stacks")
            }
            Self::Timeout { alive, expected, first_missing_apic_id } => write!(
                f,
                "only {alive} of {expected} secondary CPUs came up within {ALIVE_TIMEOUT_CYCLES} TSC cycles \
                 (first missing: APIC id {first_missing_apic_id})"
            ),
        }
    }
}

/// Chooses the CPUs to run: the boot CPU first, then the MADT's usable CPUs
/// in firmware order, `configured` in all.
///
/// # Errors
/// [`SmpError::BootCpuNotListed`], [`SmpError::TooFewCpus`].
pub fn plan(firmware: &[CpuDesc], boot_apic_id: u32, configured: usize) -> Result<Plan, SmpError> {
    let boot = firmware
        .iter()
        .find(|c| c.apic_id == boot_apic_id)
        .copied()
        .ok_or(SmpError::BootCpuNotListed(boot_apic_id))?;
    if firmware.len() < configured {
        return Err(SmpError::TooFewCpus { configured, found: firmware.len() });
    }
    let mut cpus = [CpuDesc::default(); MAX_CPUS];
    cpus[0] = boot;
    let others = firmware.iter().filter(|c| c.apic_id != boot_apic_id);
    for (slot, cpu) in cpus[1..configured].iter_mut().zip(others) {
        *slot = *cpu;
    }
    Ok(Plan { cpus, count: configured })
}

/// The CPUs running (set by the boot CPU before it starts the APs; each AP
/// stamps its own `online_tsc`).
static CPUS: [CpuSlot; MAX_CPUS] = [const { CpuSlot::new() }; MAX_CPUS];
/// How many entries of [`CPUS`] are in use.
static CPU_COUNT: AtomicUsize = AtomicUsize::new(0);
/// APs that reported alive.
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only bring-up"))]
static ALIVE: AtomicUsize = AtomicUsize::new(0);
/// Each AP's reserved memory, by CPU index.
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only bring-up"))]
static AP_MEMORY: [AtomicPtr<ApMemory>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
/// Boot-stack tops by trampoline slot (read by `ap_trampoline.S`).
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only bring-up"))]
static STACK_TOPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

struct CpuSlot {
    apic_id: AtomicU64,
    acpi_uid: AtomicU64,
    online_tsc: AtomicU64,
}

impl CpuSlot {
    const fn new() -> Self {
        Self { apic_id: AtomicU64::new(0), acpi_uid: AtomicU64::new(0), online_tsc: AtomicU64::new(0) }
    }
}

/// The CPU descriptions as they stand (after bring-up: with online stamps).
pub fn descriptions(out: &mut [CpuDesc; MAX_CPUS]) -> usize {
    let n = CPU_COUNT.load(Ordering::Acquire);
    for (desc, slot) in out.iter_mut().zip(&CPUS[..n]) {
        *desc = CpuDesc {
            apic_id: slot.apic_id.load(Ordering::Relaxed) as u32,
            acpi_uid: slot.acpi_uid.load(Ordering::Relaxed) as u32,
            online_tsc: slot.online_tsc.load(Ordering::Acquire),
        };
    }
    n
}

/// Records the plan (the boot CPU's entry gets `boot_tsc` as its online
/// stamp).
pub fn record(plan: &Plan, boot_tsc: u64) {
    for (slot, cpu) in CPUS.iter().zip(&plan.cpus[..plan.count]) {
        slot.apic_id.store(u64::from(cpu.apic_id), Ordering::Relaxed);
        slot.acpi_uid.store(u64::from(cpu.acpi_uid), Ordering::Relaxed);
    }
    CPUS[0].online_tsc.store(boot_tsc, Ordering::Relaxed);
    CPU_COUNT.store(plan.count, Ordering::Release);
}

#[cfg(target_os = "none")]
mod start {
    use super::*;
    use apic::ipi::{self, Delivery, Destination};

    unsafe extern "C" {
        static ap_trampoline_start: u8;
        static ap_trampoline_end: u8;
        static ap_param_cr3: u32;
        static ap_param_next_slot: u32;
        static ap_param_stacks: u64;
        static ap_param_entry: u64;
        static kvm_boot_pml4: u64;
    }

    /// The address at [`TRAMPOLINE_BASE`] of a symbol inside the trampoline.
    fn relocated(symbol: *const u8) -> u64 {
        let start = core::ptr::addr_of!(ap_trampoline_start) as u64;
        TRAMPOLINE_BASE + (symbol as u64 - start)
    }

    /// Starts APs 1..count of the recorded plan, whose memory `memory` (a
    /// block of `count - 1` [`ApMemory`]s) the caller reserved. Returns the
    /// TSC when the first INIT went out.
    ///
    /// # Errors
    /// [`SmpError::Timeout`] naming the first CPU that did not come up.
    ///
    /// # Safety
    /// Call once, on the boot CPU, with interrupts disabled, after
    /// `apic::init_boot_cpu`; `memory` must be free RAM, identity-mapped,
    /// 4 KiB aligned, `(count - 1) * size_of::<ApMemory>()` bytes; the
    /// page at [`TRAMPOLINE_BASE`] must be free low memory.
    pub unsafe fn start_secondaries(count: usize, memory: u64) -> Result<u64, SmpError> {
        let aps = count - 1;
        for i in 0..aps {
            let block = (memory as *mut ApMemory).wrapping_add(i);
            // SAFETY: the caller reserved `aps` blocks at `memory` for us.
            // `CpuTables::new()` is all zeroes, so zeroing the bytes in
            // place initialises the tables without a 64 KiB temporary on
            // this (64 KiB) stack; the stack needs no initial value.
            // `addr_of_mut!` avoids a reference to the uninitialised block.
            unsafe { core::ptr::addr_of_mut!((*block).tables).write_bytes(0, 1) };
            AP_MEMORY[i + 1].store(block, Ordering::Release);
            // Slot i's stack (slots are taken in arrival order).
            // SAFETY: in bounds of the block just described.
            let top = unsafe { core::ptr::addr_of_mut!((*block).stack) } as u64 + BOOT_STACK_SIZE as u64;
            STACK_TOPS[i].store(top, Ordering::Relaxed);
        }

        let start = core::ptr::addr_of!(ap_trampoline_start);
        let len = core::ptr::addr_of!(ap_trampoline_end) as usize - start as usize;
        // SAFETY: the trampoline page is free low memory (caller contract),
        // identity-mapped; the source is the image's read-only copy; the
        // parameter writes land inside the copied blob.
        unsafe {
            core::ptr::copy_nonoverlapping(start, TRAMPOLINE_BASE as *mut u8, len);
            let pml4 = core::ptr::addr_of!(kvm_boot_pml4) as u64;
            (relocated(core::ptr::addr_of!(ap_param_cr3).cast()) as *mut u32).write_volatile(pml4 as u32);
            (relocated(core::ptr::addr_of!(ap_param_next_slot).cast()) as *mut u32).write_volatile(0);
            (relocated(core::ptr::addr_of!(ap_param_stacks).cast()) as *mut u64)
                .write_volatile(STACK_TOPS.as_ptr() as u64);
            (relocated(core::ptr::addr_of!(ap_param_entry).cast()) as *mut u64)
                .write_volatile(kvm_ap_main as *const () as u64);
        }
        ukarch::barrier::full();

        let targets = || CPUS[1..count].iter().map(|s| s.apic_id.load(Ordering::Relaxed) as u32);
        let began = ukarch::tsc::read();
        for id in targets() {
            ipi::send(Destination::Apic(id), Delivery::Init);
        }
        let page = (TRAMPOLINE_BASE >> 12) as u8;
        for _ in 0..2 {
            for id in targets() {
                ipi::send(Destination::Apic(id), Delivery::Startup(page));
            }
        }

        // Halt between checks instead of spinning: under TCG the APs are
        // host threads competing with this vCPU for the host's cores. Each
        // AP sends a wake-up IPI when it is alive; a periodic APIC tick on
        // the wake-up vector bounds every halt, so the timeout is checked
        // even if an AP never comes.
        apic::timer::periodic(ukplat::irq::vector::WAKEUP, WAIT_TICK_COUNT, apic::timer::Divide::By16);
        while ALIVE.load(Ordering::Acquire) < aps {
            ukarch::irq::enable_and_halt();
            ukarch::irq::disable();
            if ukarch::tsc::read() - began > ALIVE_TIMEOUT_CYCLES {
                apic::timer::stop();
                let missing = CPUS[1..count]
                    .iter()
                    .find(|s| s.online_tsc.load(Ordering::Acquire) == 0)
                    .map_or(0, |s| s.apic_id.load(Ordering::Relaxed) as u32);
                return Err(SmpError::Timeout {
                    alive: ALIVE.load(Ordering::Acquire),
                    expected: aps,
                    first_missing_apic_id: missing,
                });
            }
        }
        apic::timer::stop();
        Ok(began)
    }

    /// Rust entry of an AP, called by the trampoline on its boot stack with
    /// the slot it took.
    extern "C" fn kvm_ap_main(_slot: u32) -> ! {
        let apic_id = ukarch::cpu::apic_id();
        let count = CPU_COUNT.load(Ordering::Acquire);
        let Some(index) =
            CPUS[..count].iter().position(|s| s.apic_id.load(Ordering::Relaxed) == u64::from(apic_id))
        else {
            // Not a CPU we started (cannot happen: SIPIs go to listed CPUs).
            park_forever()
        };
        let memory = AP_MEMORY[index].load(Ordering::Acquire);
        // SAFETY: the boot CPU reserved and initialised this block for CPU
        // `index` and hands it to this CPU only (indices are unique per
        // APIC id); nothing else references it.
        let tables = unsafe { &mut (*memory).tables };
        // SAFETY: first thing on this CPU, interrupts disabled (the
        // trampoline ran `cli`), before its GS base is set.
        unsafe { crate::trap::init_secondary(tables) };
        // Same FPU/SSE/AVX configuration as the boot CPU (after the IDT, so
        // a fault here is reported).
        ukarch::fpu::init_this_cpu();
        // SAFETY: this CPU is CPU `index` (found by its APIC id above);
        // interrupts are disabled.
        unsafe { ukplat::cpu::init_this_cpu(index, apic_id) };
        // SAFETY: on this CPU, interrupts disabled, after the boot CPU's
        // init_boot_cpu (it sent us the SIPI after it).
        unsafe { apic::init_this_cpu() };
        CPUS[index].online_tsc.store(ukarch::tsc::read(), Ordering::Release);
        ALIVE.fetch_add(1, Ordering::AcqRel);
        let boot_cpu = CPUS[0].apic_id.load(Ordering::Relaxed) as u32;
        apic::ipi::send_vector(apic::ipi::Destination::Apic(boot_cpu), ukplat::irq::vector::WAKEUP);
        ukplat::cpu::park_secondary(index)
    }
}

#[cfg(target_os = "none")]
pub use start::start_secondaries;

/// Halts this CPU for good.
#[cfg(target_os = "none")]
fn park_forever() -> ! {
    loop {
        ukarch::irq::disable();
        ukarch::regs::halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(apic_id: u32) -> CpuDesc {
        CpuDesc { apic_id, acpi_uid: apic_id, online_tsc: 0 }
    }

    #[test]
    fn plan_puts_the_boot_cpu_first() {
        let firmware = [cpu(0), cpu(1), cpu(2), cpu(3)];
        let plan = plan(&firmware, 2, 3).unwrap();
        assert_eq!(plan.count, 3);
        assert_eq!(plan.cpus[..3].iter().map(|c| c.apic_id).collect::<Vec<_>>(), [2, 0, 1]);
    }

    #[test]
    fn plan_errors() {
        let firmware = [cpu(0), cpu(1)];
        assert_eq!(plan(&firmware, 5, 1), Err(SmpError::BootCpuNotListed(5)));
        assert_eq!(plan(&firmware, 0, 4), Err(SmpError::TooFewCpus { configured: 4, found: 2 }));
        assert!(
            SmpError::TooFewCpus { configured: 4, found: 2 }.to_string().contains("start QEMU with -smp 4")
        );
    }

    #[test]
    fn ap_memory_is_page_aligned() {
        assert_eq!(align_of::<ApMemory>(), 4096);
        assert_eq!(size_of::<ApMemory>() % 4096, 0);
    }
}
