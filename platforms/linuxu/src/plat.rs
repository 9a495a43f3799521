//! The linuxu platform's implementation of [`ukplat::platform::Platform`]:
//! the virtual interrupt flag, IPIs as signals, GS through `arch_prctl`.

use crate::{sys, time, vcpu};
use ukplat::clock::{ClockError, ClockInfo, WallTime};
use ukplat::cpu::CpuLocal;
use ukplat::platform::{IpiTarget, Platform};
use ukplat::timer::{Period, TimerError, TimerInfo};

/// The platform type behind `ukplat`'s symbols.
pub struct Linuxu;

impl Platform for Linuxu {
    #[inline(always)]
    fn irq_enable() {
        vcpu::enable();
    }

    #[inline(always)]
    fn irq_disable() {
        vcpu::disable();
    }

    #[inline(always)]
    fn irq_enabled() -> bool {
        vcpu::enabled()
    }

    #[inline(always)]
    fn irq_enable_and_halt() {
        vcpu::enable_and_halt();
    }

    fn ipi_send(target: IpiTarget, vector: u8) {
        let me = ukplat::cpu::this_cpu();
        match target {
            IpiTarget::Cpu(cpu) => vcpu::send(cpu, vector),
            IpiTarget::ToSelf => vcpu::send(me, vector),
            IpiTarget::AllOthers => {
                for cpu in (0..crate::cpus::started()).filter(|&c| c != me) {
                    vcpu::send(cpu, vector);
                }
            }
        }
    }

    fn cpu_set_base(local: &'static CpuLocal) {
        let ret = sys::arch_prctl(sys::ARCH_SET_GS, core::ptr::from_ref(local) as usize);
        if ret < 0 {
            crate::fail(format_args!("arch_prctl(ARCH_SET_GS): errno {}", -ret));
        }
    }

    fn cpu_base() -> u64 {
        let mut base = 0u64;
        sys::arch_prctl(sys::ARCH_GET_GS, &raw mut base as usize);
        base
    }

    fn clock_init() -> Result<ClockInfo, ClockError> {
        time::clock_init()
    }

    #[inline(always)]
    fn clock_read() -> u64 {
        ukarch::tsc::read()
    }

    #[inline(always)]
    fn clock_read_ordered() -> u64 {
        ukarch::tsc::read_ordered()
    }

    fn clock_wall_time() -> Option<WallTime> {
        time::clock_wall_time()
    }

    fn timer_init() -> Result<TimerInfo, TimerError> {
        time::timer_init()
    }

    fn timer_arm(deadline: u64) {
        time::timer_arm(deadline);
    }

    fn timer_periodic(hz: u32) -> Result<Period, TimerError> {
        time::timer_periodic(hz)
    }

    fn timer_stop() {
        time::timer_stop();
    }

    #[inline(always)]
    fn fpu_can_trap() -> bool {
        false
    }

    fn fpu_set_trap(armed: bool) {
        crate::fail(format_args!(
            "ukplat::fpu::set_trap({armed}): a process cannot make FPU instructions trap"
        ));
    }

    #[inline(always)]
    fn vmem_page_tables() -> Option<u64> {
        None
    }

    fn vmem_map(start: usize, len: usize) -> Result<(), i32> {
        let prot = sys::abi::PROT_READ | sys::abi::PROT_WRITE;
        let got = sys::mmap_anonymous(start, len, prot, sys::abi::MAP_FIXED_NOREPLACE);
        sys::check(got).map(drop)
    }

    fn vmem_readable(addr: usize) -> bool {
        sys::readable(addr, 1)
    }
}

ukplat::platform!(Linuxu);
