//! CPU identification through CPUID.
//!
//! CPUID is cheap on bare metal but a VM exit under a hypervisor (~15,000 TSC
//! cycles under this project's nested KVM): call these at boot or in reports,
//! never on hot paths.

use raw_cpuid::CpuId;

/// A fixed-capacity string for CPUID text (vendor: 12 bytes, brand: 48).
#[derive(Clone, Copy)]
pub struct CpuString<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> CpuString<N> {
    fn from_str(s: &str) -> Self {
        let mut bytes = [0u8; N];
        let s = s.trim();
        let len = s.len().min(N);
        bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        Self { bytes, len }
    }

    /// The text (CPUID strings are ASCII; anything else yields "?").
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

impl<const N: usize> core::fmt::Display for CpuString<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who runs us, from the hypervisor CPUID leaf (0x40000000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypervisor {
    /// CPUID.1:ECX.hypervisor is clear.
    None,
    /// "KVMKVMKVM": hardware virtualisation through KVM.
    Kvm,
    /// "TCGTCGTCGTCG": QEMU's software emulation.
    Tcg,
    /// Any other hypervisor.
    Other,
}

impl Hypervisor {
    /// A short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none (bare metal)",
            Self::Kvm => "KVM",
            Self::Tcg => "TCG (QEMU emulation)",
            Self::Other => "other hypervisor",
        }
    }
}

/// Identification of the running CPU.
#[derive(Clone, Copy)]
pub struct CpuInfo {
    /// "GenuineIntel", "AuthenticAMD", ...
    pub vendor: CpuString<12>,
    /// The brand string, or "unknown" when the CPU has none.
    pub brand: CpuString<48>,
    /// Display family.
    pub family: u8,
    /// Display model.
    pub model: u8,
    /// Stepping.
    pub stepping: u8,
    /// The hypervisor, if any.
    pub hypervisor: Hypervisor,
}

/// Reads the CPU identification.
pub fn info() -> CpuInfo {
    let cpuid = CpuId::new();
    let vendor = cpuid
        .get_vendor_info()
        .map(|v| CpuString::from_str(v.as_str()))
        .unwrap_or_else(|| CpuString::from_str("unknown"));
    let brand = cpuid
        .get_processor_brand_string()
        .map(|b| CpuString::from_str(b.as_str()))
        .unwrap_or_else(|| CpuString::from_str("unknown"));
    let (family, model, stepping) =
        cpuid.get_feature_info().map(|f| (f.family_id(), f.model_id(), f.stepping_id())).unwrap_or((0, 0, 0));
    CpuInfo { vendor, brand, family, model, stepping, hypervisor: hypervisor() }
}

/// The hypervisor, from the hypervisor CPUID leaf.
pub fn hypervisor() -> Hypervisor {
    let cpuid = CpuId::new();
    let present = cpuid.get_feature_info().is_some_and(|f| f.has_hypervisor());
    if !present {
        return Hypervisor::None;
    }
    match cpuid.get_hypervisor_info().map(|h| h.identify()) {
        Some(raw_cpuid::Hypervisor::KVM) => Hypervisor::Kvm,
        // raw-cpuid names QEMU's "TCGTCGTCGTCG" signature `QEMU`.
        Some(raw_cpuid::Hypervisor::QEMU) => Hypervisor::Tcg,
        _ => Hypervisor::Other,
    }
}

/// The APIC id of the running CPU as CPUID reports it: the 32-bit x2APIC id
/// of leaf 0xB when the CPU has that leaf, else the 8-bit initial APIC id of
/// leaf 1 (EBX[31:24]). Valid before the local APIC is enabled, in either
/// mode.
pub fn apic_id() -> u32 {
    let cpuid = CpuId::new();
    if let Some(id) =
        cpuid.get_extended_topology_info().and_then(|mut levels| levels.next()).map(|l| l.x2apic_id())
    {
        return id;
    }
    cpuid.get_feature_info().map_or(0, |f| u32::from(f.initial_local_apic_id()))
}

/// CPU features the platform services decide on at boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// CPUID.1:ECX[21]: the local APIC supports x2APIC mode.
    pub x2apic: bool,
    /// CPUID.1:ECX[24]: the local APIC timer has a TSC-deadline mode.
    pub tsc_deadline: bool,
    /// CPUID.80000007H:EDX[8]: the TSC runs at a constant rate in every
    /// power state.
    pub invariant_tsc: bool,
    /// CPUID.1:EDX[9]: a local APIC is present at all.
    pub apic: bool,
    /// CPUID.1:ECX[31]: running under a hypervisor.
    pub hypervisor: bool,
    /// KVM's paravirtual features (CPUID 0x40000001 EAX), 0 when the
    /// hypervisor is not KVM. Bit 3 is `KVM_FEATURE_CLOCKSOURCE2`
    /// (kvmclock at MSR 0x4b564d01).
    pub kvm_features: u32,
}

/// `KVM_FEATURE_CLOCKSOURCE2` in [`Features::kvm_features`].
pub const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;

/// Reads the [`Features`] of the running CPU (a few CPUID leaves: call at
/// boot, not on hot paths).
pub fn features() -> Features {
    let cpuid = CpuId::new();
    let leaf1 = cpuid.get_feature_info();
    let hypervisor = leaf1.as_ref().is_some_and(|f| f.has_hypervisor());
    let kvm_features = if hypervisor
        && cpuid.get_hypervisor_info().map(|h| h.identify()) == Some(raw_cpuid::Hypervisor::KVM)
    {
        raw_cpuid::cpuid!(0x4000_0001).eax
    } else {
        0
    };
    Features {
        x2apic: leaf1.as_ref().is_some_and(|f| f.has_x2apic()),
        tsc_deadline: leaf1.as_ref().is_some_and(|f| f.has_tsc_deadline()),
        invariant_tsc: cpuid.get_advanced_power_mgmt_info().is_some_and(|p| p.has_invariant_tsc()),
        apic: leaf1.as_ref().is_some_and(|f| f.has_apic()),
        hypervisor,
        kvm_features,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cpu_has_a_vendor() {
        let info = info();
        assert!(!info.vendor.as_str().is_empty());
        assert_ne!(info.vendor.as_str(), "?");
    }

    #[test]
    fn host_cpu_has_an_apic() {
        // Every x86_64 CPU (and every hypervisor's model of one) has one.
        assert!(features().apic);
    }

    #[test]
    fn cpu_string_truncates_and_trims() {
        let s = CpuString::<4>::from_str("  abcdef ");
        assert_eq!(s.as_str(), "abcd");
    }
}
