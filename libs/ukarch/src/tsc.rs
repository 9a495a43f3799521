//! The time-stamp counter.
//!
//! Frequency: CPUID leaf 0x15 (crystal ratio) or the hypervisor leaf
//! 0x40000010, the two leaves that state the TSC's rate exactly. Leaf 0x16
//! (the processor's nominal base frequency) is deliberately not used: it is
//! not the TSC rate. Under this project's KVM and TCG neither leaf is
//! present, so [`frequency_hz`] returns `None`; calibration against a
//! reference clock belongs to the platform (`platforms/kvm/src/clock.rs`,
//! behind `ukplat::clock::init`).

/// Reads the TSC (not ordered against surrounding instructions).
#[inline(always)]
pub fn read() -> u64 {
    // SAFETY: `rdtsc` has no memory effects and is allowed at CPL 0.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads the TSC after all earlier instructions completed (`lfence; rdtsc`),
/// for the end of a measured interval.
///
/// Not `rdtscp`: the CPU model of this project's nested KVM lacks it (the
/// guest died on it), while `lfence` is part of SSE2 and dispatch-serialising
/// on Intel and on AMD under Linux/KVM.
#[inline(always)]
pub fn read_ordered() -> u64 {
    // SAFETY: `lfence` and `rdtsc` have no memory effects and are allowed at
    // CPL 0 on every x86_64 CPU.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        core::arch::x86_64::_rdtsc()
    }
}

/// The TSC frequency in Hz, when CPUID states it exactly (leaf 0x15 or
/// 0x40000010; see the module documentation).
pub fn frequency_hz() -> Option<u64> {
    let cpuid = raw_cpuid::CpuId::new();
    if let Some(hz) = cpuid.get_tsc_info().and_then(|info| info.tsc_frequency()).filter(|&hz| hz != 0) {
        return Some(hz);
    }
    cpuid
        .get_hypervisor_info()
        .and_then(|hv| hv.tsc_frequency())
        .filter(|&khz| khz != 0)
        .map(|khz| u64::from(khz) * 1000)
}

/// Converts a cycle count to nanoseconds at `hz`.
pub const fn cycles_to_ns(cycles: u64, hz: u64) -> u64 {
    ((cycles as u128 * 1_000_000_000) / hz as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_is_monotonic_on_one_cpu() {
        let a = read();
        let b = read_ordered();
        assert!(b >= a);
    }

    #[test]
    fn cycle_conversion() {
        assert_eq!(cycles_to_ns(3_000, 3_000_000_000), 1_000);
        assert_eq!(cycles_to_ns(u64::MAX, u64::MAX), 1_000_000_000);
    }
}
