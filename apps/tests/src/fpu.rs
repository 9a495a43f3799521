//! In-guest tests of `ukarch::fpu`: the CPU's x87/SSE/AVX state after
//! `init_this_cpu`, and save/restore through `FpuState`.
//!
//! They live here rather than in ukarch: `uktest` depends on `ukarch`, so
//! ukarch cannot register cases itself (Cargo forbids the cycle).
//!
//! The image is soft-float, so the compiler never keeps values in vector or
//! x87 registers: what one `asm!` block leaves there is still there for the
//! next. Each case runs with interrupts disabled (nothing else runs on the
//! CPU in between) and takes the FPU by disarming the platform's FPU trap
//! (`ukplat::fpu::set_trap(false)`: CR0.TS clear on kvm; under a lazy
//! scheduler, TS set means the registers' owner was already saved); every
//! case leaves it disarmed.
//!
//! The control registers are the platform's: the cases that read CR0/CR4
//! (what the kvm platform's `init_this_cpu` set, the TS round trip) run
//! only where the image runs in ring 0 (`ukplat::BootInfo::privileged`)
//! and report `skipped` elsewhere (linuxu, where Linux owns them and
//! reading them faults). The save/restore cases run everywhere.
//!
//! The registers covered follow what is enabled: XMM0–15, MXCSR and the
//! x87 control word always; YMM0–15 with AVX; ZMM0–31 and K0–7 with
//! AVX-512.

use ukarch::fpu::{self, FpuState};
use ukplat::irq::IrqGuard;
use uktest::{TestResult, test_case, ut_assert, ut_assert_eq};

/// Vector registers wide enough for ZMM0–31 (64 bytes each), K0–7 (the low
/// 16 bits, AVX512F's `kmovw`), MXCSR and the x87 control word.
#[repr(C, align(64))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Regs {
    vec: [[u64; 8]; 32],
    k: [u64; 8],
    mxcsr: u32,
    fcw: u16,
}

/// How much of [`Regs`] this CPU has enabled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    Sse,
    Avx,
    Avx512,
}

fn level() -> Level {
    if fpu::has_avx512() {
        Level::Avx512
    } else if fpu::has_avx() {
        Level::Avx
    } else {
        Level::Sse
    }
}

impl Regs {
    const ZERO: Self = Self { vec: [[0; 8]; 32], k: [0; 8], mxcsr: 0, fcw: 0 };

    /// Distinct values in every byte the level covers, different per
    /// `seed`; the control words have different but valid rounding modes.
    fn pattern(seed: u64) -> Self {
        let mut r = Self::ZERO;
        for (i, reg) in r.vec.iter_mut().enumerate() {
            for (j, word) in reg.iter_mut().enumerate() {
                *word = (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (((i as u64) << 8) | j as u64);
            }
        }
        for (i, k) in r.k.iter_mut().enumerate() {
            *k = ((seed << 8) | (i as u64 + 1)) & 0xffff;
        }
        // Rounding control (MXCSR bits 13-14, FCW bits 10-11) from the seed;
        // all exceptions stay masked.
        r.mxcsr = fpu::MXCSR_INIT | (((seed as u32 + 1) % 4) << 13);
        r.fcw = fpu::FCW_INIT | (((seed as u16 + 1) % 4) << 10);
        r.covered()
    }

    /// The initial state as the registers show it.
    fn initial() -> Self {
        Self { mxcsr: fpu::MXCSR_INIT, fcw: fpu::FCW_INIT, ..Self::ZERO }
    }

    /// Only what the level loads and stores; the rest zero.
    fn covered(mut self) -> Self {
        let (regs, words) = match level() {
            Level::Sse => (16, 2),
            Level::Avx => (16, 4),
            Level::Avx512 => (32, 8),
        };
        for (i, reg) in self.vec.iter_mut().enumerate() {
            for (j, word) in reg.iter_mut().enumerate() {
                if i >= regs || j >= words {
                    *word = 0;
                }
            }
        }
        if level() != Level::Avx512 {
            self.k = [0; 8];
        }
        self
    }

    /// Loads the registers the level covers. The control words go through
    /// a save area (FXRSTOR/XRSTOR), not LDMXCSR/FLDCW, which PVM's
    /// emulator cannot run (see `ukarch::fpu`); that restore also resets
    /// the vector registers, loaded afterwards.
    fn load(&self) {
        let mut control = FpuState::new();
        control.set_fcw(self.fcw);
        control.set_mxcsr(self.mxcsr);
        // SAFETY: init ran on this CPU and TS is clear (the cases take the
        // FPU first); the area holds valid control words; the registers are
        // the case's own.
        unsafe { control.restore() };
        let v = self.vec.as_ptr();
        let k = self.k.as_ptr();
        match level() {
            // SAFETY: SSE is enabled and TS clear (the cases take the FPU
            // first); the loads read `self` only; the compiler keeps nothing
            // in these registers (soft-float).
            Level::Sse => unsafe {
                core::arch::asm!(
                    "movdqu xmm0, [{v}]",
                    "movdqu xmm1, [{v} + 64]",
                    "movdqu xmm2, [{v} + 128]",
                    "movdqu xmm3, [{v} + 192]",
                    "movdqu xmm4, [{v} + 256]",
                    "movdqu xmm5, [{v} + 320]",
                    "movdqu xmm6, [{v} + 384]",
                    "movdqu xmm7, [{v} + 448]",
                    "movdqu xmm8, [{v} + 512]",
                    "movdqu xmm9, [{v} + 576]",
                    "movdqu xmm10, [{v} + 640]",
                    "movdqu xmm11, [{v} + 704]",
                    "movdqu xmm12, [{v} + 768]",
                    "movdqu xmm13, [{v} + 832]",
                    "movdqu xmm14, [{v} + 896]",
                    "movdqu xmm15, [{v} + 960]",
                    v = in(reg) v,
                    options(readonly, nostack, preserves_flags),
                );
            },
            // SAFETY: as above, with AVX enabled.
            Level::Avx => unsafe {
                core::arch::asm!(
                    "vmovdqu ymm0, [{v}]",
                    "vmovdqu ymm1, [{v} + 64]",
                    "vmovdqu ymm2, [{v} + 128]",
                    "vmovdqu ymm3, [{v} + 192]",
                    "vmovdqu ymm4, [{v} + 256]",
                    "vmovdqu ymm5, [{v} + 320]",
                    "vmovdqu ymm6, [{v} + 384]",
                    "vmovdqu ymm7, [{v} + 448]",
                    "vmovdqu ymm8, [{v} + 512]",
                    "vmovdqu ymm9, [{v} + 576]",
                    "vmovdqu ymm10, [{v} + 640]",
                    "vmovdqu ymm11, [{v} + 704]",
                    "vmovdqu ymm12, [{v} + 768]",
                    "vmovdqu ymm13, [{v} + 832]",
                    "vmovdqu ymm14, [{v} + 896]",
                    "vmovdqu ymm15, [{v} + 960]",
                    v = in(reg) v,
                    options(readonly, nostack, preserves_flags),
                );
            },
            // SAFETY: as above, with AVX-512 enabled.
            Level::Avx512 => unsafe {
                core::arch::asm!(
                    "vmovdqu64 zmm0, [{v}]",
                    "vmovdqu64 zmm1, [{v} + 64]",
                    "vmovdqu64 zmm2, [{v} + 128]",
                    "vmovdqu64 zmm3, [{v} + 192]",
                    "vmovdqu64 zmm4, [{v} + 256]",
                    "vmovdqu64 zmm5, [{v} + 320]",
                    "vmovdqu64 zmm6, [{v} + 384]",
                    "vmovdqu64 zmm7, [{v} + 448]",
                    "vmovdqu64 zmm8, [{v} + 512]",
                    "vmovdqu64 zmm9, [{v} + 576]",
                    "vmovdqu64 zmm10, [{v} + 640]",
                    "vmovdqu64 zmm11, [{v} + 704]",
                    "vmovdqu64 zmm12, [{v} + 768]",
                    "vmovdqu64 zmm13, [{v} + 832]",
                    "vmovdqu64 zmm14, [{v} + 896]",
                    "vmovdqu64 zmm15, [{v} + 960]",
                    "vmovdqu64 zmm16, [{v} + 1024]",
                    "vmovdqu64 zmm17, [{v} + 1088]",
                    "vmovdqu64 zmm18, [{v} + 1152]",
                    "vmovdqu64 zmm19, [{v} + 1216]",
                    "vmovdqu64 zmm20, [{v} + 1280]",
                    "vmovdqu64 zmm21, [{v} + 1344]",
                    "vmovdqu64 zmm22, [{v} + 1408]",
                    "vmovdqu64 zmm23, [{v} + 1472]",
                    "vmovdqu64 zmm24, [{v} + 1536]",
                    "vmovdqu64 zmm25, [{v} + 1600]",
                    "vmovdqu64 zmm26, [{v} + 1664]",
                    "vmovdqu64 zmm27, [{v} + 1728]",
                    "vmovdqu64 zmm28, [{v} + 1792]",
                    "vmovdqu64 zmm29, [{v} + 1856]",
                    "vmovdqu64 zmm30, [{v} + 1920]",
                    "vmovdqu64 zmm31, [{v} + 1984]",
                    "kmovw k0, word ptr [{k}]",
                    "kmovw k1, word ptr [{k} + 8]",
                    "kmovw k2, word ptr [{k} + 16]",
                    "kmovw k3, word ptr [{k} + 24]",
                    "kmovw k4, word ptr [{k} + 32]",
                    "kmovw k5, word ptr [{k} + 40]",
                    "kmovw k6, word ptr [{k} + 48]",
                    "kmovw k7, word ptr [{k} + 56]",
                    v = in(reg) v,
                    k = in(reg) k,
                    options(readonly, nostack, preserves_flags),
                );
            },
        }
    }

    /// Reads the registers the level covers (the rest reads zero); the
    /// control words through a save area (see `load`).
    fn store() -> Self {
        let mut r = Self::ZERO;
        let v = r.vec.as_mut_ptr();
        let k = r.k.as_mut_ptr();
        match level() {
            // SAFETY: SSE is enabled and TS clear; the stores write `r`
            // only, within its bounds (16 × 64 bytes).
            Level::Sse => unsafe {
                core::arch::asm!(
                    "movdqu [{v}], xmm0",
                    "movdqu [{v} + 64], xmm1",
                    "movdqu [{v} + 128], xmm2",
                    "movdqu [{v} + 192], xmm3",
                    "movdqu [{v} + 256], xmm4",
                    "movdqu [{v} + 320], xmm5",
                    "movdqu [{v} + 384], xmm6",
                    "movdqu [{v} + 448], xmm7",
                    "movdqu [{v} + 512], xmm8",
                    "movdqu [{v} + 576], xmm9",
                    "movdqu [{v} + 640], xmm10",
                    "movdqu [{v} + 704], xmm11",
                    "movdqu [{v} + 768], xmm12",
                    "movdqu [{v} + 832], xmm13",
                    "movdqu [{v} + 896], xmm14",
                    "movdqu [{v} + 960], xmm15",
                    v = in(reg) v,
                    options(nostack, preserves_flags),
                );
            },
            // SAFETY: as above, with AVX enabled.
            Level::Avx => unsafe {
                core::arch::asm!(
                    "vmovdqu [{v}], ymm0",
                    "vmovdqu [{v} + 64], ymm1",
                    "vmovdqu [{v} + 128], ymm2",
                    "vmovdqu [{v} + 192], ymm3",
                    "vmovdqu [{v} + 256], ymm4",
                    "vmovdqu [{v} + 320], ymm5",
                    "vmovdqu [{v} + 384], ymm6",
                    "vmovdqu [{v} + 448], ymm7",
                    "vmovdqu [{v} + 512], ymm8",
                    "vmovdqu [{v} + 576], ymm9",
                    "vmovdqu [{v} + 640], ymm10",
                    "vmovdqu [{v} + 704], ymm11",
                    "vmovdqu [{v} + 768], ymm12",
                    "vmovdqu [{v} + 832], ymm13",
                    "vmovdqu [{v} + 896], ymm14",
                    "vmovdqu [{v} + 960], ymm15",
                    v = in(reg) v,
                    options(nostack, preserves_flags),
                );
            },
            // SAFETY: as above, with AVX-512 enabled (32 × 64 bytes and
            // 8 × 2 bytes of K).
            Level::Avx512 => unsafe {
                core::arch::asm!(
                    "vmovdqu64 [{v}], zmm0",
                    "vmovdqu64 [{v} + 64], zmm1",
                    "vmovdqu64 [{v} + 128], zmm2",
                    "vmovdqu64 [{v} + 192], zmm3",
                    "vmovdqu64 [{v} + 256], zmm4",
                    "vmovdqu64 [{v} + 320], zmm5",
                    "vmovdqu64 [{v} + 384], zmm6",
                    "vmovdqu64 [{v} + 448], zmm7",
                    "vmovdqu64 [{v} + 512], zmm8",
                    "vmovdqu64 [{v} + 576], zmm9",
                    "vmovdqu64 [{v} + 640], zmm10",
                    "vmovdqu64 [{v} + 704], zmm11",
                    "vmovdqu64 [{v} + 768], zmm12",
                    "vmovdqu64 [{v} + 832], zmm13",
                    "vmovdqu64 [{v} + 896], zmm14",
                    "vmovdqu64 [{v} + 960], zmm15",
                    "vmovdqu64 [{v} + 1024], zmm16",
                    "vmovdqu64 [{v} + 1088], zmm17",
                    "vmovdqu64 [{v} + 1152], zmm18",
                    "vmovdqu64 [{v} + 1216], zmm19",
                    "vmovdqu64 [{v} + 1280], zmm20",
                    "vmovdqu64 [{v} + 1344], zmm21",
                    "vmovdqu64 [{v} + 1408], zmm22",
                    "vmovdqu64 [{v} + 1472], zmm23",
                    "vmovdqu64 [{v} + 1536], zmm24",
                    "vmovdqu64 [{v} + 1600], zmm25",
                    "vmovdqu64 [{v} + 1664], zmm26",
                    "vmovdqu64 [{v} + 1728], zmm27",
                    "vmovdqu64 [{v} + 1792], zmm28",
                    "vmovdqu64 [{v} + 1856], zmm29",
                    "vmovdqu64 [{v} + 1920], zmm30",
                    "vmovdqu64 [{v} + 1984], zmm31",
                    "kmovw word ptr [{k}], k0",
                    "kmovw word ptr [{k} + 8], k1",
                    "kmovw word ptr [{k} + 16], k2",
                    "kmovw word ptr [{k} + 24], k3",
                    "kmovw word ptr [{k} + 32], k4",
                    "kmovw word ptr [{k} + 40], k5",
                    "kmovw word ptr [{k} + 48], k6",
                    "kmovw word ptr [{k} + 56], k7",
                    v = in(reg) v,
                    k = in(reg) k,
                    options(nostack, preserves_flags),
                );
            },
        }
        // The control words through a save area (see `load`).
        let mut control = FpuState::new();
        // SAFETY: as above; the registers are the case's own.
        unsafe { control.save() };
        r.mxcsr = control.mxcsr();
        r.fcw = control.fcw();
        r
    }
}

/// Interrupts off for the case, and the FPU taken (its trap disarmed: TS
/// clear on kvm; a platform that cannot trap FPU instructions has nothing
/// to disarm).
fn take_fpu() -> IrqGuard {
    let guard = IrqGuard::new();
    if ukplat::fpu::can_trap() {
        ukplat::fpu::set_trap(false);
    }
    guard
}

/// Skips the calling case unless the image runs in ring 0, where the
/// control registers are the platform's to set and ours to read.
fn require_ring0(what: &str) -> TestResult {
    let info = ukplat::boot_info();
    if !info.privileged {
        // Short: the host's report cuts the reason at about 100 characters.
        uktest::ut_skip!("{}: not in ring 0 ({}), CR0/CR4 are the host's", what, info.machine);
    }
    Ok(())
}

/// Compares two register sets, naming the first difference.
fn same(what: &str, got: &Regs, want: &Regs) -> TestResult {
    for i in 0..32 {
        ut_assert_eq!(got.vec[i], want.vec[i], "{}: vector register {} differs", what, i);
    }
    ut_assert_eq!(got.k, want.k, "{}: opmask registers differ", what);
    ut_assert_eq!(got.mxcsr, want.mxcsr, "{}: MXCSR differs", what);
    ut_assert_eq!(got.fcw, want.fcw, "{}: FCW differs", what);
    Ok(())
}

/// The configuration is consistent with CPUID and with what is enabled
/// on this CPU, on every platform: XCR0 (readable in any ring) holds every
/// configured component (exactly them is [`fpu_is_enabled_as_configured`]'s
/// check, in ring 0), and a CPU without XSAVE gets 512-byte areas.
fn fpu_configuration_is_enabled_on_this_cpu() -> TestResult {
    let _fpu = take_fpu();
    let config = fpu::config();
    if config.instruction.is_xsave() {
        let xcr0 = fpu::xcr0();
        ut_assert!(
            xcr0.is_some_and(|x| x & config.components == config.components),
            "XCR0 {:#x?} lacks configured components {:#x}",
            xcr0,
            config.components
        );
    } else {
        ut_assert_eq!(config.area_size, 512);
    }
    ukconsole::println!(
        "fpu: {}, components {:#x} ({}), {}-byte areas{}",
        config.instruction.name(),
        config.components,
        match level() {
            Level::Sse => "x87 SSE",
            Level::Avx => "x87 SSE AVX",
            Level::Avx512 => "x87 SSE AVX AVX-512",
        },
        config.area_size,
        if config.emulated { ", instructions emulated by the hypervisor" } else { "" }
    );
    Ok(())
}
test_case!(fpu_configuration_is_enabled_on_this_cpu);

/// init_this_cpu ran at boot (kvm: the platform calls it on every CPU):
/// CR0/CR4/XCR0 as documented, and the areas hold what CPUID says XCR0
/// needs. Ring 0 only.
fn fpu_is_enabled_as_configured() -> TestResult {
    require_ring0("CR0/CR4 as init_this_cpu set them")?;
    let _fpu = take_fpu();
    let config = fpu::config();
    let cr0 = ukarch::regs::cr0();
    let cr4 = ukarch::regs::cr4();
    ut_assert_eq!(cr0 & (1 << 2), 0, "CR0.EM set: {:#x}", cr0);
    ut_assert!(cr0 & (1 << 1) != 0, "CR0.MP clear: {:#x}", cr0);
    ut_assert!(cr4 & (1 << 9) != 0 && cr4 & (1 << 10) != 0, "CR4.OSFXSR/OSXMMEXCPT clear: {:#x}", cr4);
    ut_assert_eq!(cr4 & (1 << 18) != 0, config.instruction.is_xsave(), "CR4.OSXSAVE: {:#x}", cr4);
    if config.instruction.is_xsave() {
        ut_assert_eq!(fpu::xcr0(), Some(config.components));
        let needed = raw_cpuid_leaf_d_ebx();
        ut_assert!(
            needed as usize <= config.area_size,
            "CPUID wants {} bytes, areas have {}",
            needed,
            config.area_size
        );
    } else {
        ut_assert_eq!(fpu::xcr0(), None);
        ut_assert_eq!(config.area_size, 512);
    }
    Ok(())
}
test_case!(fpu_is_enabled_as_configured);

/// CPUID.(EAX=0Dh,ECX=0).EBX: the XSAVE area size for the current XCR0.
fn raw_cpuid_leaf_d_ebx() -> u32 {
    core::arch::x86_64::__cpuid_count(0xd, 0).ebx
}

/// After init the registers hold what is written to them.
fn sse_registers_work_after_init() -> TestResult {
    let _fpu = take_fpu();
    for seed in 0..3 {
        let want = Regs::pattern(seed);
        want.load();
        same("read back", &Regs::store(), &want)?;
    }
    Ok(())
}
test_case!(sse_registers_work_after_init);

/// Save into A, clobber, restore A: the registers are A's again, and the
/// area holds A's control words.
fn save_clobber_restore_round_trip() -> TestResult {
    let _fpu = take_fpu();
    let a = Regs::pattern(1);
    let mut area = FpuState::new();
    a.load();
    // SAFETY: init ran on this CPU, TS is clear, the registers are this
    // case's own.
    unsafe { area.save() };
    ut_assert_eq!(area.mxcsr(), a.mxcsr);
    ut_assert_eq!(area.fcw(), a.fcw);
    if let Some(bv) = area.xstate_bv() {
        ut_assert_eq!(bv & !fpu::components(), 0, "XSTATE_BV {:#x} beyond the enabled components", bv);
        ut_assert!(bv & 0x2 != 0, "XSTATE_BV {:#x} lacks SSE", bv);
    }
    Regs::pattern(2).load();
    same("clobbered", &Regs::store(), &Regs::pattern(2))?;
    // SAFETY: as above; the area holds a state saved on this machine.
    unsafe { area.restore() };
    same("restored", &Regs::store(), &a)
}
test_case!(save_clobber_restore_round_trip);

/// Two areas with different contents restore independently, in any order.
fn two_areas_restore_independently() -> TestResult {
    let _fpu = take_fpu();
    let (p1, p2) = (Regs::pattern(3), Regs::pattern(4));
    let (mut s1, mut s2) = (FpuState::new(), FpuState::new());
    p1.load();
    // SAFETY: init ran, TS clear, the registers are this case's own (for
    // every save and restore below).
    unsafe { s1.save() };
    p2.load();
    // SAFETY: as above.
    unsafe { s2.save() };
    for (area, want, what) in [(&s1, &p1, "s1"), (&s2, &p2, "s2"), (&s1, &p1, "s1 again")] {
        // SAFETY: as above; each area holds a saved state.
        unsafe { area.restore() };
        same(what, &Regs::store(), want)?;
    }
    Ok(())
}
test_case!(two_areas_restore_independently);

/// The XSAVEOPT path: an area saved after being restored from records
/// what changed since (and keeps what did not).
fn save_after_restore_keeps_changes_and_the_rest() -> TestResult {
    let _fpu = take_fpu();
    let (p1, p2) = (Regs::pattern(5), Regs::pattern(6));
    let (mut s1, mut s2) = (FpuState::new(), FpuState::new());
    p2.load();
    // SAFETY: init ran, TS clear, the registers are this case's own (for
    // every save and restore below).
    unsafe { s2.save() };
    p1.load();
    // SAFETY: as above.
    unsafe { s1.save() };
    // Restore s1, change nothing, save again: s1 is unchanged.
    // SAFETY: as above.
    unsafe { s1.restore() };
    // SAFETY: as above.
    unsafe { s1.save() };
    // SAFETY: as above.
    unsafe { s2.restore() };
    // SAFETY: as above.
    unsafe { s1.restore() };
    same("s1 after an unmodified save", &Regs::store(), &p1)?;
    // Change only XMM3 (the low half of YMM3/ZMM3), save: s1 has the
    // change and the rest.
    let mut changed = p1;
    changed.vec[3][0] ^= 0xdead_beef;
    changed.vec[3][1] ^= 0x1234;
    // SAFETY: SSE enabled, TS clear; the compiler keeps nothing in XMM3.
    unsafe {
        core::arch::asm!(
            "movdqu xmm3, [{v}]",
            v = in(reg) changed.vec[3].as_ptr(),
            options(readonly, nostack, preserves_flags),
        );
    }
    // SAFETY: as above.
    unsafe { s1.save() };
    // SAFETY: as above.
    unsafe { s2.restore() };
    same("s2", &Regs::store(), &p2)?;
    // SAFETY: as above.
    unsafe { s1.restore() };
    same("s1 after a modified save", &Regs::store(), &changed)
}
test_case!(save_after_restore_keeps_changes_and_the_rest);

/// A fresh area holds and restores the initial state.
fn new_area_restores_the_initial_state() -> TestResult {
    let _fpu = take_fpu();
    let fresh = FpuState::new();
    ut_assert_eq!(fresh.size(), fpu::area_size());
    ut_assert_eq!(fresh.as_bytes().as_ptr() as usize % fpu::AREA_ALIGN, 0);
    ut_assert_eq!(fresh.fcw(), 0x37f);
    ut_assert_eq!(fresh.mxcsr(), 0x1f80);
    if fpu::save_instruction().is_xsave() {
        ut_assert_eq!(fresh.xstate_bv(), Some(0));
    }
    Regs::pattern(7).load();
    // SAFETY: init ran, TS clear, the registers are this case's own.
    unsafe { fresh.restore() };
    same("after restoring a new area", &Regs::store(), &Regs::initial())?;
    // Saving the initial state and restoring it again changes nothing.
    let mut again = FpuState::new();
    // SAFETY: as above.
    unsafe { again.save() };
    ut_assert_eq!(again.mxcsr(), 0x1f80);
    ut_assert_eq!(again.fcw(), 0x37f);
    Regs::pattern(8).load();
    // SAFETY: as above.
    unsafe { again.restore() };
    same("after restoring a saved initial state", &Regs::store(), &Regs::initial())
}
test_case!(new_area_restores_the_initial_state);

/// A new area allocated where a freed one was restored from is saved in
/// full (XSAVEOPT would skip the components unmodified since that restore
/// and leave the new area's initial values there).
fn reused_address_is_saved_in_full() -> TestResult {
    let _fpu = take_fpu();
    let p1 = Regs::pattern(9);
    let old = {
        let mut a = FpuState::new();
        p1.load();
        // SAFETY: init ran, TS clear, the registers are this case's own
        // (for every save and restore below).
        unsafe { a.save() };
        // SAFETY: as above.
        unsafe { a.restore() };
        a.as_bytes().as_ptr() as usize
    };
    let mut b = FpuState::new();
    let reused = b.as_bytes().as_ptr() as usize == old;
    // Change SSE only: the x87 control word stays p1's, unmodified since
    // the restore from (possibly) this very address.
    let mut want = p1;
    want.vec[0][0] ^= 1;
    // SAFETY: SSE enabled, TS clear; the compiler keeps nothing in XMM0.
    unsafe {
        core::arch::asm!("movdqu xmm0, [{v}]", v = in(reg) want.vec[0].as_ptr(),
            options(readonly, nostack, preserves_flags));
    }
    // SAFETY: as above.
    unsafe { b.save() };
    ut_assert_eq!(b.fcw(), p1.fcw, "x87 state not saved (address reused: {})", reused);
    Regs::pattern(10).load();
    // SAFETY: as above.
    unsafe { b.restore() };
    same("restored from the reused address", &Regs::store(), &want)
}
test_case!(reused_address_is_saved_in_full);

/// CR0.TS set and clear round trip (no FPU instruction while it is set).
/// Ring 0 only.
fn task_switched_round_trip() -> TestResult {
    require_ring0("the CR0.TS round trip")?;
    let _fpu = take_fpu();
    ut_assert!(!fpu::task_switched());
    fpu::set_task_switched();
    let set = fpu::task_switched();
    let cr0 = ukarch::regs::cr0();
    fpu::clear_task_switched();
    ut_assert!(set, "TS not set after set_task_switched");
    ut_assert!(cr0 & (1 << 3) != 0, "CR0 {:#x} lacks TS", cr0);
    ut_assert!(!fpu::task_switched());
    ut_assert_eq!(ukarch::regs::cr0() & (1 << 3), 0);
    Ok(())
}
test_case!(task_switched_round_trip);
