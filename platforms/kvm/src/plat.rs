//! The kvm platform's implementation of [`ukplat::platform::Platform`]: the
//! interrupt flag with `cli`/`sti`/`hlt`, IPIs through the local APIC's
//! interrupt command register, the per-CPU base in the GS base MSR, the
//! clock (the TSC: `rdtsc`, calibrated by [`crate::clock`], the time of day
//! from [`crate::rtc`]) and the per-CPU timer (the local APIC timer:
//! [`crate::timer`]).
//!
//! Every function is `#[inline(always)]` and small: release images are
//! linked with fat LTO, so a library's `ukplat::irq::disable()` becomes one
//! `cli` in its caller.

use apic::ipi::{self, Destination};
use ukplat::clock::{ClockError, ClockInfo, WallTime};
use ukplat::cpu::CpuLocal;
use ukplat::platform::{IpiTarget, Platform};
use ukplat::timer::{Period, TimerError, TimerInfo};

/// The platform type behind `ukplat`'s symbols.
pub struct Kvm;

impl Platform for Kvm {
    #[inline(always)]
    fn irq_enable() {
        ukarch::irq::enable();
    }

    #[inline(always)]
    fn irq_disable() {
        ukarch::irq::disable();
    }

    #[inline(always)]
    fn irq_enabled() -> bool {
        ukarch::irq::enabled()
    }

    #[inline(always)]
    fn irq_enable_and_halt() {
        ukarch::irq::enable_and_halt();
    }

    #[inline(always)]
    fn ipi_send(target: IpiTarget, vector: u8) {
        let destination = match target {
            IpiTarget::Cpu(cpu) => Destination::Apic(ukplat::cpu::local(cpu).apic_id()),
            IpiTarget::AllOthers => Destination::AllButSelf,
            IpiTarget::ToSelf => Destination::ToSelf,
        };
        ipi::send_vector(destination, vector);
    }

    #[inline(always)]
    fn cpu_set_base(local: &'static CpuLocal) {
        // SAFETY: `local` is a 'static per-CPU header, which is what GS must
        // point at; only `ukplat::cpu::init_this_cpu` calls this, on the CPU
        // the header describes (its contract).
        unsafe { ukarch::regs::set_gs_base(core::ptr::from_ref(local) as u64) };
    }

    #[inline(always)]
    fn cpu_base() -> u64 {
        ukarch::regs::gs_base()
    }

    #[inline(always)]
    fn clock_init() -> Result<ClockInfo, ClockError> {
        crate::clock::init()
    }

    #[inline(always)]
    fn clock_read() -> u64 {
        ukarch::tsc::read()
    }

    #[inline(always)]
    fn clock_read_ordered() -> u64 {
        ukarch::tsc::read_ordered()
    }

    #[inline(always)]
    fn clock_wall_time() -> Option<WallTime> {
        crate::rtc::read()
    }

    #[inline(always)]
    fn timer_init() -> Result<TimerInfo, TimerError> {
        crate::timer::init()
    }

    #[inline(always)]
    fn timer_arm(deadline: u64) {
        crate::timer::arm(deadline);
    }

    #[inline(always)]
    fn timer_periodic(hz: u32) -> Result<Period, TimerError> {
        crate::timer::periodic(hz)
    }

    #[inline(always)]
    fn timer_stop() {
        crate::timer::stop();
    }

    #[inline(always)]
    fn fpu_can_trap() -> bool {
        true
    }

    #[inline(always)]
    fn fpu_set_trap(armed: bool) {
        if armed {
            ukarch::fpu::set_task_switched();
        } else {
            ukarch::fpu::clear_task_switched();
        }
    }

    #[inline(always)]
    fn vmem_page_tables() -> Option<u64> {
        const ADDRESS_BITS: u64 = 0x000f_ffff_ffff_f000;
        Some(ukarch::regs::cr3() & ADDRESS_BITS)
    }

    fn vmem_map(start: usize, len: usize) -> Result<(), i32> {
        panic!(
            "kvm: vmem_map({start:#x}, {len}): this platform maps through the image's page tables (ukvmem)"
        )
    }

    fn vmem_readable(addr: usize) -> bool {
        panic!(
            "kvm: vmem_readable({addr:#x}): this platform answers through the image's page tables (ukvmem)"
        )
    }
}

ukplat::platform!(Kvm);
