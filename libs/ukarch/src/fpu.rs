//! x87/SSE/AVX ("extended") state: enabling it on each CPU, and save areas
//! for a scheduler.
//!
//! Rust code in the image is built soft-float (`x86_64-unknown-none` never
//! emits SSE), so the kernel itself never touches these registers; code that
//! does (inline asm, objects compiled elsewhere) needs every CPU to enable
//! them and the scheduler to save and restore them per thread. This module
//! provides the pieces for a *lazy* scheme:
//!
//! 1. switching away from a thread whose time slice used the FPU (CR0.TS
//!    clear): [`FpuState::save`] into its area, then [`set_task_switched`];
//! 2. the first FPU/SSE/AVX instruction of the next thread traps with #NM
//!    (vector 7); the handler runs [`clear_task_switched`] and
//!    [`FpuState::restore`] from that thread's area.
//!
//! # What is enabled
//!
//! [`init_this_cpu`] (run by the platform on every CPU at bring-up) sets
//! CR4.OSFXSR and CR4.OSXMMEXCPT, clears CR0.EM and sets CR0.MP. When CPUID
//! offers XSAVE it also sets CR4.OSXSAVE and programs XCR0 with:
//!
//! * x87 and SSE (always);
//! * AVX, when CPUID.1:ECX.AVX is set and leaf 0xD lists the component;
//! * AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM, all three or none), when
//!   CPUID.7:EBX.AVX512F is set and leaf 0xD lists all three. Enabled so
//!   that application code using AVX-512 runs instead of faulting with #UD;
//!   the cost is a bigger save area (2432 bytes on AMD Zen 4, 2688 on
//!   Intel, instead of 832)
//!   and, with XSAVEOPT, nothing per switch for threads that never touch
//!   those registers (components in their initial state are not written).
//!
//! Not enabled: MPX, PKRU (needs CR4.PKE), AMX (needs the XFD permission
//! protocol and 8 KiB per thread), supervisor components (XSAVES).
//!
//! The decision is made once from CPUID (and the check below) and cached;
//! every CPU of a machine gets the same configuration. Saving uses XSAVEOPT
//! when CPUID offers it, else XSAVE, else FXSAVE (no XSAVE: x87 and SSE
//! only, a 512-byte area); see [`config`], [`save_instruction`],
//! [`components`], [`area_size`].
//!
//! CR0.TS is left clear and the registers hold the initial state: until a
//! scheduler takes over, whatever runs may use the FPU.
//!
//! # Under an instruction emulator
//!
//! `/dev/kvm` on this project's build machines is PVM, which runs a guest
//! that is not PVM-aware, like ours, through KVM's instruction emulator
//! (see the README). That emulator executes FXSAVE/FXRSTOR, FNINIT, FNSTCW,
//! MOVDQU and CLTS, but not XSAVE/XSAVEOPT/XRSTOR, XGETBV, LDMXCSR/STMXCSR,
//! FLDCW, PXOR or anything VEX/EVEX-encoded: each of those stops the VM
//! with "KVM internal error. Suberror: 1" (measured), although CPUID
//! (`-cpu host`) offers XSAVE, AVX and AVX-512. No CPUID leaf tells PVM
//! apart from hardware KVM, so under a KVM signature the configuration
//! times a register-only loop (`dec; jnz`, the fastest of three runs): more
//! than 100 TSC cycles an iteration means emulation (hardware runs one in
//! 1–2 cycles, PVM in thousands). Then [`Config::emulated`] is set and
//! only FXSAVE with x87 and SSE is used, CR4.OSXSAVE stays clear (so code
//! that checks OSXSAVE does not use AVX). Elsewhere the loop is not run.
//!
//! # Save areas need the `alloc` feature
//!
//! [`FpuState`] lives on the heap, so it exists only with ukarch's `alloc`
//! cargo feature (see the crate documentation): an image that links the
//! `alloc` crate needs a global allocator, which not every image has.
//!
//! # Example
//!
//! ```
//! use ukarch::fpu;
//!
//! fpu::init_this_cpu(); // the platform does this on every CPU
//! println!("{}: components {:#x}, {}-byte areas", fpu::save_instruction().name(),
//!     fpu::components(), fpu::area_size());
//! # #[cfg(feature = "alloc")]
//! # {
//! let mut state = fpu::FpuState::new(); // what a fresh thread starts with
//! assert_eq!(state.size(), fpu::area_size());
//! assert_eq!(state.mxcsr(), 0x1f80);
//! assert_eq!(state.fcw(), 0x37f);
//! // On a context switch away from a thread that used the FPU (TS clear):
//! // SAFETY: init ran on this CPU, TS is clear, the registers are the
//! // thread's.
//! unsafe { state.save() };
//! fpu::set_task_switched();
//! // In the #NM handler, on the thread's next FPU instruction:
//! fpu::clear_task_switched();
//! // SAFETY: as above; `state` holds a saved state.
//! unsafe { state.restore() };
//! # }
//! ```
//!
//! # On the host
//!
//! The crate's host unit tests build this module too: the CPUID decisions,
//! [`FpuState`] and the save/restore instructions (unprivileged) are real;
//! the privileged parts are harmless there: [`init_this_cpu`],
//! [`set_task_switched`] and [`clear_task_switched`] do nothing and
//! [`task_switched`] reads `false`.

// Without the `alloc` feature `FpuState` does not exist, and the links to it
// in these docs have no target.
#![cfg_attr(not(any(feature = "alloc", test)), allow(rustdoc::broken_intra_doc_links))]

use core::sync::atomic::{AtomicU64, Ordering};

#[cfg(any(feature = "alloc", test))]
pub use area::FpuState;

/// XCR0 / XSTATE_BV bits of the state components.
pub mod component {
    /// x87 FPU state.
    pub const X87: u64 = 1 << 0;
    /// SSE state: XMM0–15 and MXCSR.
    pub const SSE: u64 = 1 << 1;
    /// AVX state: the upper halves of YMM0–15.
    pub const AVX: u64 = 1 << 2;
    /// AVX-512 opmask registers K0–7.
    pub const OPMASK: u64 = 1 << 5;
    /// AVX-512: the upper halves of ZMM0–15.
    pub const ZMM_HI256: u64 = 1 << 6;
    /// AVX-512: ZMM16–31.
    pub const HI16_ZMM: u64 = 1 << 7;
    /// The three AVX-512 components (enabled together or not at all).
    pub const AVX512: u64 = OPMASK | ZMM_HI256 | HI16_ZMM;
}

/// Alignment of every save area (XSAVE needs 64, FXSAVE 16).
pub const AREA_ALIGN: usize = 64;
/// Size of the legacy (FXSAVE) region.
pub const LEGACY_SIZE: usize = 512;
/// Size of the XSAVE header that follows the legacy region.
pub const XSAVE_HEADER_SIZE: usize = 64;

/// Initial x87 control word (all exceptions masked, 64-bit precision, round
/// to nearest), as `fninit` sets it.
pub const FCW_INIT: u16 = 0x037f;
/// Initial MXCSR (all exceptions masked, round to nearest).
pub const MXCSR_INIT: u32 = 0x1f80;

/// Byte offsets in the legacy region and the XSAVE header.
const FCW_OFFSET: usize = 0;
const MXCSR_OFFSET: usize = 24;

/// CR0 bits.
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only CR0 access"))]
const CR0_MP: u64 = 1 << 1;
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only CR0 access"))]
const CR0_EM: u64 = 1 << 2;
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only CR0 access"))]
const CR0_TS: u64 = 1 << 3;
/// CR4 bits.
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only CR4 access"))]
const CR4_OSFXSR: u64 = 1 << 9;
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only CR4 access"))]
const CR4_OSXMMEXCPT: u64 = 1 << 10;
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only CR4 access"))]
const CR4_OSXSAVE: u64 = 1 << 18;

/// The instruction [`FpuState::save`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveInstruction {
    /// `xsaveopt64`: skips components in their initial state or unmodified
    /// since they were restored from the same area (CPUID.(0Dh,1):EAX bit 0).
    Xsaveopt,
    /// `xsave64` (CPUID.1:ECX.XSAVE without XSAVEOPT).
    Xsave,
    /// `fxsave64`: no XSAVE; x87 and SSE only, a 512-byte area.
    Fxsave,
}

impl SaveInstruction {
    /// The mnemonic, for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Xsaveopt => "xsaveopt",
            Self::Xsave => "xsave",
            Self::Fxsave => "fxsave",
        }
    }

    /// Whether this is one of the XSAVE family (XCR0 and the XSAVE header
    /// are in use).
    pub const fn is_xsave(self) -> bool {
        !matches!(self, Self::Fxsave)
    }

    const fn code(self) -> u64 {
        match self {
            Self::Xsaveopt => 1,
            Self::Xsave => 2,
            Self::Fxsave => 3,
        }
    }

    const fn from_code(code: u64) -> Self {
        match code {
            1 => Self::Xsaveopt,
            2 => Self::Xsave,
            _ => Self::Fxsave,
        }
    }
}

/// The machine's configuration: what [`init_this_cpu`] enables and how
/// areas are saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The save instruction.
    pub instruction: SaveInstruction,
    /// The enabled components ([`component`] bits): the value of XCR0 with
    /// XSAVE; `X87 | SSE` with FXSAVE.
    pub components: u64,
    /// Bytes of a save area for `components` (standard, non-compacted
    /// format): CPUID.(EAX=0Dh,ECX=0).EBX once XCR0 holds `components`;
    /// 512 with FXSAVE.
    pub area_size: usize,
    /// The hypervisor emulates this CPU's instructions one by one (see
    /// [the module documentation](self#under-an-instruction-emulator)):
    /// FXSAVE, x87 and SSE only, whatever CPUID offers.
    pub emulated: bool,
}

/// What CPUID says, as far as the decision needs it.
#[derive(Clone, Copy, Debug, Default)]
struct CpuidFacts {
    /// CPUID.1:ECX.
    leaf1_ecx: u32,
    /// CPUID.(7,0):EBX (0 when the leaf is absent).
    leaf7_ebx: u32,
    /// CPUID.(0Dh,0):EDX:EAX, the components XCR0 may hold (0 when the
    /// leaf is absent).
    xcr0_supported: u64,
    /// CPUID.(0Dh,1):EAX (0 when the leaf is absent).
    leaf_d1_eax: u32,
    /// Instructions are emulated one by one ([`instructions_are_emulated`]).
    emulated: bool,
}

const LEAF1_ECX_XSAVE: u32 = 1 << 26;
const LEAF1_ECX_OSXSAVE: u32 = 1 << 27;
const LEAF1_ECX_AVX: u32 = 1 << 28;
const LEAF7_EBX_AVX512F: u32 = 1 << 16;
const LEAF_D1_EAX_XSAVEOPT: u32 = 1 << 0;

/// The decision (see the module documentation). `extent(i)` is
/// CPUID.(0Dh,i): (EAX = size, EBX = offset) of component `i`.
fn decide(facts: CpuidFacts, extent: impl Fn(u32) -> (u32, u32)) -> Config {
    if facts.emulated
        || facts.leaf1_ecx & LEAF1_ECX_XSAVE == 0
        || facts.xcr0_supported & (component::X87 | component::SSE) == 0
    {
        return Config {
            instruction: SaveInstruction::Fxsave,
            components: component::X87 | component::SSE,
            area_size: LEGACY_SIZE,
            emulated: facts.emulated,
        };
    }
    let mut components = component::X87 | component::SSE;
    if facts.leaf1_ecx & LEAF1_ECX_AVX != 0 && facts.xcr0_supported & component::AVX != 0 {
        components |= component::AVX;
        if facts.leaf7_ebx & LEAF7_EBX_AVX512F != 0
            && facts.xcr0_supported & component::AVX512 == component::AVX512
        {
            components |= component::AVX512;
        }
    }
    let mut area_size = LEGACY_SIZE + XSAVE_HEADER_SIZE;
    for i in 2..64 {
        if components & (1 << i) != 0 {
            let (size, offset) = extent(i);
            area_size = area_size.max(offset as usize + size as usize);
        }
    }
    let instruction = if facts.leaf_d1_eax & LEAF_D1_EAX_XSAVEOPT != 0 {
        SaveInstruction::Xsaveopt
    } else {
        SaveInstruction::Xsave
    };
    Config { instruction, components, area_size: area_size.next_multiple_of(AREA_ALIGN), emulated: false }
}

/// Reads the CPUID leaves the decision needs (a few CPUID instructions:
/// each a VM exit under a hypervisor).
fn detect() -> Config {
    let max_leaf = raw_cpuid::cpuid!(0).eax;
    let leaf1_ecx = raw_cpuid::cpuid!(1).ecx;
    let leaf7_ebx = if max_leaf >= 7 { raw_cpuid::cpuid!(7, 0).ebx } else { 0 };
    let (xcr0_supported, leaf_d1_eax) = if max_leaf >= 0xd {
        let d0 = raw_cpuid::cpuid!(0xd, 0);
        (u64::from(d0.eax) | (u64::from(d0.edx) << 32), raw_cpuid::cpuid!(0xd, 1).eax)
    } else {
        (0, 0)
    };
    let emulated = crate::cpu::hypervisor() == crate::cpu::Hypervisor::Kvm && instructions_are_emulated();
    let facts = CpuidFacts { leaf1_ecx, leaf7_ebx, xcr0_supported, leaf_d1_eax, emulated };
    decide(facts, |i| {
        let r = raw_cpuid::cpuid!(0xd, i);
        (r.eax, r.ebx)
    })
}

/// Iterations of the timed loop in [`instructions_are_emulated`].
const EMULATION_PROBE_ITERATIONS: u32 = 256;
/// TSC cycles per iteration above which the loop was emulated: hardware
/// (bare or VT-x/SVM) runs an iteration in 1–2 cycles, TCG in a few;
/// PVM's emulator took ~1.9 µs (thousands of cycles).
const EMULATION_CYCLES_PER_ITERATION: u64 = 100;

/// Whether this CPU's instructions are emulated one by one by the
/// hypervisor: times a register-only loop (`dec; jnz`) three times and
/// takes the fastest run, so an interrupt or a host preemption during one
/// run does not count.
fn instructions_are_emulated() -> bool {
    let fastest = (0..3)
        .map(|_| {
            let start = crate::tsc::read();
            // SAFETY: a register-only loop: no memory, no stack.
            unsafe {
                core::arch::asm!("2:", "dec {n:e}", "jnz 2b",
                    n = inout(reg) EMULATION_PROBE_ITERATIONS => _, options(nomem, nostack));
            }
            crate::tsc::read_ordered().wrapping_sub(start)
        })
        .min()
        .unwrap_or(0);
    fastest > u64::from(EMULATION_PROBE_ITERATIONS) * EMULATION_CYCLES_PER_ITERATION
}

/// The cached [`Config`]: 0 before the first [`config`], else the area
/// size in bits 0..32, the instruction code in bits 32..36, `emulated` in
/// bit 36 and the components in bits 40..64.
static CONFIG: AtomicU64 = AtomicU64::new(0);

/// The machine's configuration (CPUID on the first call, then cached).
pub fn config() -> Config {
    let packed = CONFIG.load(Ordering::Relaxed);
    if packed != 0 {
        return Config {
            instruction: SaveInstruction::from_code((packed >> 32) & 0xf),
            components: packed >> 40,
            area_size: (packed & 0xffff_ffff) as usize,
            emulated: packed & (1 << 36) != 0,
        };
    }
    let config = detect();
    // Racing first calls compute the same value.
    CONFIG.store(
        config.area_size as u64
            | (config.instruction.code() << 32)
            | (u64::from(config.emulated) << 36)
            | (config.components << 40),
        Ordering::Relaxed,
    );
    config
}

/// The instruction [`FpuState::save`] uses.
pub fn save_instruction() -> SaveInstruction {
    config().instruction
}

/// The enabled state components ([`component`] bits; XCR0 after
/// [`init_this_cpu`] when the CPU has XSAVE).
pub fn components() -> u64 {
    config().components
}

/// Whether AVX (YMM registers) is enabled.
pub fn has_avx() -> bool {
    components() & component::AVX != 0
}

/// Whether AVX-512 (ZMM0–31, K0–7) is enabled.
pub fn has_avx512() -> bool {
    components() & component::AVX512 == component::AVX512
}

/// Bytes of a save area ([`FpuState::size`]).
pub fn area_size() -> usize {
    config().area_size
}

/// XCR0, when CR4.OSXSAVE is set on this CPU (CPUID.1:ECX.OSXSAVE says
/// so); `None` otherwise (before [`init_this_cpu`], or without XSAVE).
pub fn xcr0() -> Option<u64> {
    if raw_cpuid::cpuid!(1).ecx & LEAF1_ECX_OSXSAVE == 0 {
        return None;
    }
    let (low, high): (u32, u32);
    // SAFETY: CR4.OSXSAVE is set (checked above), so `xgetbv` with ECX = 0
    // is defined at any privilege level; it only reads XCR0.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") low, out("edx") high,
            options(nomem, nostack, preserves_flags));
    }
    Some(u64::from(low) | (u64::from(high) << 32))
}

/// The initial state as a save area: legacy region with FCW and MXCSR at
/// their initial values, everything else zero, and an XSAVE header with
/// XSTATE_BV = 0 (so `xrstor` puts every enabled component in its initial
/// state without reading it).
#[repr(C, align(64))]
struct InitImage([u8; LEGACY_SIZE + XSAVE_HEADER_SIZE]);

const fn init_image() -> [u8; LEGACY_SIZE + XSAVE_HEADER_SIZE] {
    let mut bytes = [0u8; LEGACY_SIZE + XSAVE_HEADER_SIZE];
    let fcw = FCW_INIT.to_le_bytes();
    bytes[FCW_OFFSET] = fcw[0];
    bytes[FCW_OFFSET + 1] = fcw[1];
    let mxcsr = MXCSR_INIT.to_le_bytes();
    let mut i = 0;
    while i < 4 {
        bytes[MXCSR_OFFSET + i] = mxcsr[i];
        i += 1;
    }
    bytes
}

#[cfg_attr(
    not(any(target_os = "none", feature = "alloc", test)),
    allow(dead_code, reason = "used by the guest's init_this_cpu and by FpuState")
)]
static INIT_IMAGE: InitImage = InitImage(init_image());

/// Enables x87/SSE (and with XSAVE, AVX and AVX-512 where offered; see the
/// module documentation) on the calling CPU, then loads the initial state
/// and leaves CR0.TS clear: afterwards the CPU's FPU is usable and in the
/// state a fresh [`FpuState`] holds.
///
/// For bring-up: the platform calls it on every CPU, early, with interrupts
/// disabled. Idempotent (the boot code already set CR4.OSFXSR/OSXMMEXCPT),
/// but it discards the calling CPU's FPU/SSE/AVX register contents, so it
/// must not run while a scheduler keeps a thread's state in them.
///
/// # Panics
/// When CPUID.(0Dh,0).EBX, read back after XCR0 is set, exceeds
/// [`area_size`] (a CPU that reports inconsistent sizes: saving would
/// overrun the areas).
pub fn init_this_cpu() {
    let config = config();
    #[cfg(target_os = "none")]
    {
        use x86_64::registers::control::{Cr0, Cr4};

        let mut cr4 = Cr4::read_raw() | CR4_OSFXSR | CR4_OSXMMEXCPT;
        if config.instruction.is_xsave() {
            cr4 |= CR4_OSXSAVE;
        }
        // SAFETY: CPL 0; the bits only enable FXSAVE/SSE, unmasked SIMD
        // exceptions as #XM and XSAVE (offered by CPUID when set); no
        // memory or mapping changes.
        unsafe { Cr4::write_raw(cr4) };
        if config.instruction.is_xsave() {
            // SAFETY: CR4.OSXSAVE was just set; `components` holds x87 and
            // SSE and only components CPUID lists as supported, with AVX
            // before AVX-512 and the AVX-512 group complete, so `xsetbv`
            // does not fault.
            unsafe {
                core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") config.components as u32,
                    in("edx") (config.components >> 32) as u32, options(nomem, nostack, preserves_flags));
            }
            let needed = raw_cpuid::cpuid!(0xd, 0).ebx as usize;
            assert!(
                needed <= config.area_size,
                "fpu: CPUID says {needed} bytes of XSAVE area for XCR0 {:#x}, sized {}",
                config.components,
                config.area_size
            );
        }
        let cr0 = (Cr0::read_raw() & !(CR0_EM | CR0_TS)) | CR0_MP;
        // SAFETY: CPL 0; only the FPU control bits change (no FPU
        // emulation, WAIT honours TS, TS clear).
        unsafe { Cr0::write_raw(cr0) };
        // SAFETY: the features are enabled above and TS is clear; the image
        // is a valid, 64-byte aligned initial-state area (XSTATE_BV = 0,
        // reserved header bytes zero, MXCSR without reserved bits).
        unsafe { restore_raw(INIT_IMAGE.0.as_ptr(), config) };
    }
    #[cfg(not(target_os = "none"))]
    let _ = config;
}

/// The enabled state components that are not in their initial state on
/// this CPU (XINUSE, read with `xgetbv` ECX = 1), or every enabled one when
/// the CPU cannot tell (no XSAVE, or no XGETBV_ECX_1 in
/// CPUID.(0Dh,1):EAX[2]). A thread whose registers are all initial has
/// nothing worth saving: an eager switch skips the save.
#[inline]
pub fn in_use() -> u64 {
    // Whether XGETBV with ECX = 1 works: 0 unknown, 1 no, 2 yes. Cached:
    // CPUID is a VM exit under a hypervisor, far too slow for a switch.
    static XINUSE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
    let config = config();
    let mut known = XINUSE.load(Ordering::Relaxed);
    if known == 0 {
        let works = config.instruction.is_xsave() && raw_cpuid::cpuid!(0xd, 1).eax & (1 << 2) != 0;
        known = if works { 2 } else { 1 };
        XINUSE.store(known, Ordering::Relaxed);
    }
    if known != 2 {
        return config.components;
    }
    let (low, high): (u32, u32);
    // SAFETY: XSAVE is enabled (the save instruction is an XSAVE one) and
    // CPUID offers XGETBV with ECX = 1, which only reads XINUSE.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 1u32, out("eax") low, out("edx") high,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(low) | (u64::from(high) << 32)) & config.components
}

/// Loads the initial state ([`FpuState::new`]'s) into this CPU's registers:
/// what a thread that never used the FPU must find.
///
/// # Safety
/// The FPU is usable on this CPU (CR0.TS clear, after [`init_this_cpu`] or
/// a platform that enabled it) and no one keeps state in its registers.
#[inline]
pub unsafe fn load_initial() {
    // SAFETY: the caller's contract; the initial image is 64-byte aligned
    // and its XSTATE_BV is 0 (nothing beyond the header is read).
    unsafe { restore_raw(INIT_IMAGE.0.as_ptr(), config()) };
}

/// Sets CR0.TS: the next x87/SSE/AVX instruction on this CPU traps with #NM
/// (vector 7). The scheduler's lazy switch sets it after saving the state
/// of the thread it leaves. On the host: does nothing.
#[inline(always)]
pub fn set_task_switched() {
    #[cfg(target_os = "none")]
    {
        let cr0 = x86_64::registers::control::Cr0::read_raw();
        // SAFETY: CPL 0; setting TS only makes FPU instructions trap with
        // #NM; no memory effect.
        unsafe { x86_64::registers::control::Cr0::write_raw(cr0 | CR0_TS) };
    }
}

/// Clears CR0.TS (`clts`): FPU instructions run again on this CPU. The #NM
/// handler clears it before restoring the thread's state. On the host:
/// does nothing.
#[inline(always)]
pub fn clear_task_switched() {
    #[cfg(target_os = "none")]
    // SAFETY: `clts` at CPL 0 only clears CR0.TS.
    unsafe {
        core::arch::asm!("clts", options(nomem, nostack, preserves_flags));
    }
}

/// Whether CR0.TS is set on this CPU (an FPU instruction would trap). On
/// the host: `false`.
#[inline(always)]
pub fn task_switched() -> bool {
    #[cfg(target_os = "none")]
    {
        x86_64::registers::control::Cr0::read_raw() & CR0_TS != 0
    }
    #[cfg(not(target_os = "none"))]
    {
        false
    }
}

/// Loads the state at `area` with the instruction family of `config`.
///
/// # Safety
/// As for [`FpuState::restore`]; `area` is 64-byte aligned and readable for
/// the whole area of `config` (the legacy region and header with XSTATE_BV
/// naming no component outside `components`: only those are read).
#[cfg_attr(
    not(any(target_os = "none", feature = "alloc", test)),
    allow(dead_code, reason = "used by the guest's init_this_cpu and by FpuState")
)]
#[inline(always)]
unsafe fn restore_raw(area: *const u8, config: Config) {
    let low = config.components as u32;
    let high = (config.components >> 32) as u32;
    // On the host the compiler keeps values in vector and x87 registers:
    // tell it they change. In the guest it never uses them (soft-float), and
    // naming them is not even allowed there.
    macro_rules! restore_asm {
        ($($insn:literal)*) => {
            #[cfg(target_os = "none")]
            // SAFETY: forwarded contract.
            unsafe {
                core::arch::asm!($($insn,)* area = in(reg) area, in("eax") low, in("edx") high,
                    options(readonly, nostack, preserves_flags));
            }
            #[cfg(not(target_os = "none"))]
            // SAFETY: forwarded contract; the clobbers cover the registers
            // the compiler may use (vector, x87, MMX).
            unsafe {
                core::arch::asm!($($insn,)* area = in(reg) area, in("eax") low, in("edx") high,
                    clobber_abi("C"), options(readonly, nostack, preserves_flags));
            }
        };
    }
    if config.instruction.is_xsave() {
        restore_asm!("xrstor64 [{area}]");
    } else {
        restore_asm!("fxrstor64 [{area}]");
    }
}

/// [`FpuState`]: needs a global allocator, so only with the `alloc` feature
/// (and in host tests).
#[cfg(any(feature = "alloc", test))]
mod area {
    use super::{AREA_ALIGN, FCW_INIT, FCW_OFFSET, INIT_IMAGE, LEGACY_SIZE, MXCSR_OFFSET, SaveInstruction};
    use super::{XSAVE_HEADER_SIZE, area_size, component, config, restore_raw, save_instruction};
    use alloc::alloc::{Layout, alloc, alloc_zeroed, dealloc, handle_alloc_error};
    use core::fmt;
    use core::ptr::NonNull;
    use core::sync::atomic::{AtomicBool, Ordering};

    /// XSTATE_BV, the first field of the XSAVE header.
    const XSTATE_BV_OFFSET: usize = LEGACY_SIZE;
    /// ST0–ST7 (MM0–MM7) in the legacy region, 16 bytes each.
    const X87_REGS: core::ops::Range<usize> = 32..160;

    /// A save area for one thread's x87/SSE/AVX state: [`area_size`] bytes,
    /// 64-byte aligned, on the heap.
    ///
    /// [`FpuState::new`] holds the initial state (FCW 0x37F, MXCSR 0x1F80, all
    /// registers zero; with XSAVE, XSTATE_BV = 0 so `xrstor` loads every
    /// component's initial state). [`save`](Self::save) and
    /// [`restore`](Self::restore) move the state between this CPU and the
    /// area.
    pub struct FpuState {
        area: NonNull<u8>,
        size: usize,
        /// Set by `restore`, cleared when the contents are replaced otherwise
        /// (`new`, `reset`, `clone`): `save` uses XSAVEOPT only when set.
        restored: AtomicBool,
    }

    // SAFETY: the area is owned (like a `Box<[u8]>`); nothing ties it to a CPU
    // or thread.
    unsafe impl Send for FpuState {}
    // SAFETY: `&self` methods only read the area; `restored` is atomic.
    unsafe impl Sync for FpuState {}

    impl FpuState {
        /// A save area in the initial state, sized for this machine
        /// ([`area_size`]). Allocates (the image's global allocator);
        /// `handle_alloc_error` on exhaustion.
        pub fn new() -> Self {
            let size = area_size();
            let layout = Self::layout(size);
            // SAFETY: `layout` has a non-zero size (at least 512 bytes).
            let Some(area) = NonNull::new(unsafe { alloc_zeroed(layout) }) else {
                handle_alloc_error(layout)
            };
            let mut state = Self { area, size, restored: AtomicBool::new(false) };
            state.write_init();
            state
        }

        fn layout(size: usize) -> Layout {
            match Layout::from_size_align(size, AREA_ALIGN) {
                Ok(layout) => layout,
                Err(_) => unreachable!("fpu: an area of {size} bytes is a valid layout"),
            }
        }

        /// Writes the initial state over the legacy region and header (the rest
        /// is not read while XSTATE_BV is 0, and zero from `new` anyway).
        fn write_init(&mut self) {
            let init = &INIT_IMAGE.0[..self.size.min(INIT_IMAGE.0.len())];
            // SAFETY: the area holds `size` bytes, `init` at most that many,
            // and the two do not overlap (the area is on the heap).
            unsafe { core::ptr::copy_nonoverlapping(init.as_ptr(), self.area.as_ptr(), init.len()) };
            self.restored.store(false, Ordering::Relaxed);
        }

        /// Puts the area back into the initial state (to reuse it for a new
        /// thread).
        pub fn reset(&mut self) {
            if self.size > INIT_IMAGE.0.len() {
                // SAFETY: the area holds `size` bytes; clear the components
                // beyond the header so the area is byte-identical to a new one.
                unsafe {
                    core::ptr::write_bytes(
                        self.area.as_ptr().add(INIT_IMAGE.0.len()),
                        0,
                        self.size - INIT_IMAGE.0.len(),
                    )
                };
            }
            self.write_init();
        }

        /// Bytes of the area.
        pub fn size(&self) -> usize {
            self.size
        }

        /// The raw area (legacy region, then with XSAVE the header and the
        /// components at the offsets CPUID leaf 0xD gives).
        pub fn as_bytes(&self) -> &[u8] {
            // SAFETY: the area holds `size` initialised bytes (zeroed at
            // allocation, later written by the CPU or this type), borrowed
            // for `self`'s lifetime.
            unsafe { core::slice::from_raw_parts(self.area.as_ptr(), self.size) }
        }

        fn read_u16(&self, offset: usize) -> u16 {
            let b = self.as_bytes();
            u16::from_le_bytes([b[offset], b[offset + 1]])
        }

        fn read_u32(&self, offset: usize) -> u32 {
            let b = self.as_bytes();
            u32::from_le_bytes([b[offset], b[offset + 1], b[offset + 2], b[offset + 3]])
        }

        #[cfg(test)]
        pub(super) fn bytes_mut_for_test(&mut self) -> &mut [u8] {
            self.bytes_mut()
        }

        fn bytes_mut(&mut self) -> &mut [u8] {
            // The contents change under a possible XSAVEOPT tracking of
            // this address: the next save must be a full one.
            self.restored.store(false, Ordering::Relaxed);
            // SAFETY: as for `as_bytes`, borrowed mutably for `self`'s
            // lifetime.
            unsafe { core::slice::from_raw_parts_mut(self.area.as_ptr(), self.size) }
        }

        /// The saved x87 control word (with XSAVE, [`FCW_INIT`] when
        /// XSTATE_BV says the x87 state is initial: the region is then not
        /// written by the CPU and may be stale).
        pub fn fcw(&self) -> u16 {
            match self.xstate_bv() {
                Some(bv) if bv & component::X87 == 0 => FCW_INIT,
                _ => self.read_u16(FCW_OFFSET),
            }
        }

        /// The saved MXCSR (always written by the save instructions, always
        /// loaded by the restore instructions).
        pub fn mxcsr(&self) -> u32 {
            self.read_u32(MXCSR_OFFSET)
        }

        /// Sets the x87 control word the next [`restore`](Self::restore)
        /// loads (e.g. a thread that wants another precision or rounding).
        /// With XSAVE, an x87 state recorded as initial is first written out
        /// as the initial state (registers empty) and marked present in
        /// XSTATE_BV, since `xrstor` ignores the region otherwise.
        pub fn set_fcw(&mut self, fcw: u16) {
            let xsave = self.xstate_bv();
            let bytes = self.bytes_mut();
            if let Some(bv) = xsave {
                if bv & component::X87 == 0 {
                    // FSW, FTW (all empty), FOP, FIP, FDP, then ST0-7.
                    bytes[..MXCSR_OFFSET].fill(0);
                    bytes[X87_REGS].fill(0);
                }
                let bv = (bv | component::X87).to_le_bytes();
                bytes[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&bv);
            }
            bytes[FCW_OFFSET..FCW_OFFSET + 2].copy_from_slice(&fcw.to_le_bytes());
        }

        /// Sets the MXCSR the next [`restore`](Self::restore) loads.
        ///
        /// # Panics
        /// When `mxcsr` has bits above bit 15 set (reserved: the restore
        /// would fault). DAZ (bit 6) needs a CPU that supports it.
        pub fn set_mxcsr(&mut self, mxcsr: u32) {
            assert!(mxcsr <= 0xffff, "fpu: MXCSR {mxcsr:#x} sets reserved bits");
            self.bytes_mut()[MXCSR_OFFSET..MXCSR_OFFSET + 4].copy_from_slice(&mxcsr.to_le_bytes());
        }

        /// XSTATE_BV from the XSAVE header (which components the area holds
        /// non-initial values for); `None` with FXSAVE (no header).
        pub fn xstate_bv(&self) -> Option<u64> {
            if self.size < LEGACY_SIZE + XSAVE_HEADER_SIZE || !save_instruction().is_xsave() {
                return None;
            }
            let low = self.read_u32(XSTATE_BV_OFFSET);
            let high = self.read_u32(XSTATE_BV_OFFSET + 4);
            Some(u64::from(low) | (u64::from(high) << 32))
        }

        /// Saves this CPU's x87/SSE/AVX state (the enabled [`components`](super::components)) into
        /// the area: `xsaveopt64` or `xsave64` with the enabled mask, or
        /// `fxsave64`.
        ///
        /// XSAVEOPT is used only when the area was [`restore`](Self::restore)d
        /// from since it was created or reset: XSAVEOPT skips components that
        /// are unmodified since the last `xrstor` *from the same address* on
        /// this CPU, which is wrong for an area whose memory was rewritten in
        /// between (a new area allocated where a freed one was restored from).
        /// A thread's first save (e.g. of a thread that ran with the FPU
        /// enabled from boot) therefore uses XSAVE.
        ///
        /// # Safety
        /// * [`init_this_cpu`](super::init_this_cpu) ran on this CPU;
        /// * CR0.TS is clear (else #NM);
        /// * the registers hold the state of the thread this area belongs to
        ///   (saving another thread's registers is not memory-unsafe but
        ///   corrupts that thread's state); if they were loaded by `restore`,
        ///   it was from this area, on this CPU.
        pub unsafe fn save(&mut self) {
            let config = config();
            let low = config.components as u32;
            let high = (config.components >> 32) as u32;
            let area = self.area.as_ptr();
            match config.instruction {
                SaveInstruction::Xsaveopt if self.restored.load(Ordering::Relaxed) => {
                    // SAFETY: XSAVE is enabled (caller contract: init ran), TS
                    // is clear (caller contract); the area is 64-byte aligned and
                    // `area_size` bytes, enough for the enabled components, and
                    // exclusively borrowed.
                    unsafe {
                        core::arch::asm!("xsaveopt64 [{area}]", area = in(reg) area, in("eax") low,
                            in("edx") high, options(nostack, preserves_flags));
                    }
                }
                SaveInstruction::Xsaveopt | SaveInstruction::Xsave => {
                    // SAFETY: as for the XSAVEOPT arm.
                    unsafe {
                        core::arch::asm!("xsave64 [{area}]", area = in(reg) area, in("eax") low,
                            in("edx") high, options(nostack, preserves_flags));
                    }
                }
                SaveInstruction::Fxsave => {
                    // SAFETY: CR4.OSFXSR is set (init ran), TS is clear (caller
                    // contract); the area is 64-byte aligned, 512 bytes and
                    // exclusively borrowed.
                    unsafe {
                        core::arch::asm!("fxsave64 [{area}]", area = in(reg) area,
                            options(nostack, preserves_flags));
                    }
                }
            }
        }

        /// Loads this CPU's x87/SSE/AVX state from the area (`xrstor64` with the
        /// enabled mask, or `fxrstor64`), replacing what the registers held.
        ///
        /// # Safety
        /// * [`init_this_cpu`](super::init_this_cpu) ran on this CPU;
        /// * CR0.TS is clear (else #NM);
        /// * the area holds a state saved by [`save`](Self::save) on this
        ///   machine or the initial state (an area edited through other means
        ///   may fault with #GP: reserved MXCSR or header bits);
        /// * the registers' previous contents are no longer needed (saved, or
        ///   owned by the thread that now gets this state).
        pub unsafe fn restore(&self) {
            // SAFETY: forwarded contract; the area is 64-byte aligned and
            // `area_size` bytes for this machine's configuration.
            unsafe { restore_raw(self.area.as_ptr(), config()) };
            self.restored.store(true, Ordering::Relaxed);
        }
    }

    impl Default for FpuState {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Clone for FpuState {
        /// A copy of the area (e.g. for a forked thread), never restored from.
        fn clone(&self) -> Self {
            let layout = Self::layout(self.size);
            // SAFETY: `layout` has a non-zero size; every byte is written
            // just below.
            let Some(area) = NonNull::new(unsafe { alloc(layout) }) else { handle_alloc_error(layout) };
            // SAFETY: both areas hold `size` bytes and are distinct allocations.
            unsafe { core::ptr::copy_nonoverlapping(self.area.as_ptr(), area.as_ptr(), self.size) };
            Self { area, size: self.size, restored: AtomicBool::new(false) }
        }
    }

    impl Drop for FpuState {
        fn drop(&mut self) {
            // SAFETY: allocated in `new`/`clone` with this layout.
            unsafe { dealloc(self.area.as_ptr(), Self::layout(self.size)) };
        }
    }

    impl fmt::Debug for FpuState {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("FpuState")
                .field("size", &self.size)
                .field("fcw", &format_args!("{:#x}", self.fcw()))
                .field("mxcsr", &format_args!("{:#x}", self.mxcsr()))
                .field("xstate_bv", &self.xstate_bv().map(Hex))
                .finish()
        }
    }

    /// Debug-prints a value in hex.
    struct Hex(u64);

    impl fmt::Debug for Hex {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:#x}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(leaf1_ecx: u32, leaf7_ebx: u32, xcr0_supported: u64, leaf_d1_eax: u32) -> CpuidFacts {
        CpuidFacts { leaf1_ecx, leaf7_ebx, xcr0_supported, leaf_d1_eax, emulated: false }
    }

    /// Intel's standard-format offsets (Skylake-SP: MPX at 960..1088 sits
    /// between AVX and AVX-512).
    fn intel_extent(i: u32) -> (u32, u32) {
        match i {
            2 => (256, 576),
            3 => (64, 960),
            4 => (64, 1024),
            5 => (64, 1088),
            6 => (512, 1152),
            7 => (1024, 1664),
            9 => (8, 2688),
            _ => (0, 0),
        }
    }

    #[test]
    fn without_xsave_fxsave_is_used() {
        let c = decide(facts(LEAF1_ECX_AVX, 0, 0x7, 1), intel_extent);
        assert_eq!(
            c,
            Config { instruction: SaveInstruction::Fxsave, components: 0x3, area_size: 512, emulated: false }
        );
    }

    #[test]
    fn xsave_without_avx() {
        let c = decide(facts(LEAF1_ECX_XSAVE, 0, 0x3, 0), intel_extent);
        assert_eq!(
            c,
            Config { instruction: SaveInstruction::Xsave, components: 0x3, area_size: 576, emulated: false }
        );
    }

    #[test]
    fn avx_with_xsaveopt() {
        let c = decide(facts(LEAF1_ECX_XSAVE | LEAF1_ECX_AVX, 0, 0x7, 1), intel_extent);
        assert_eq!(
            c,
            Config {
                instruction: SaveInstruction::Xsaveopt,
                components: 0x7,
                area_size: 832,
                emulated: false
            }
        );
    }

    #[test]
    fn under_an_emulator_fxsave_is_used() {
        let mut f = facts(LEAF1_ECX_XSAVE | LEAF1_ECX_AVX, LEAF7_EBX_AVX512F, 0xe7, 1);
        f.emulated = true;
        let c = decide(f, intel_extent);
        assert_eq!(
            c,
            Config { instruction: SaveInstruction::Fxsave, components: 0x3, area_size: 512, emulated: true }
        );
    }

    #[test]
    fn the_host_cpu_is_not_emulated() {
        assert!(!instructions_are_emulated());
    }

    #[test]
    fn avx_needs_the_xcr0_component_too() {
        let c = decide(facts(LEAF1_ECX_XSAVE | LEAF1_ECX_AVX, 0, 0x3, 1), intel_extent);
        assert_eq!(c.components, 0x3);
    }

    #[test]
    fn avx512_all_three_components_or_none() {
        let all = decide(facts(LEAF1_ECX_XSAVE | LEAF1_ECX_AVX, LEAF7_EBX_AVX512F, 0x2ff, 1), intel_extent);
        assert_eq!(all.components, 0xe7, "MPX and PKRU are never enabled");
        assert_eq!(all.area_size, 2688);
        let partial =
            decide(facts(LEAF1_ECX_XSAVE | LEAF1_ECX_AVX, LEAF7_EBX_AVX512F, 0x67, 1), intel_extent);
        assert_eq!(partial.components, 0x7);
        let no_avx = decide(facts(LEAF1_ECX_XSAVE, LEAF7_EBX_AVX512F, 0xe7, 1), intel_extent);
        assert_eq!(no_avx.components, 0x3, "AVX-512 needs AVX");
    }

    #[test]
    fn config_is_cached_and_consistent() {
        let a = config();
        assert_eq!(a, config());
        assert_eq!(a, detect());
        assert_eq!(a.components & 0x3, 0x3);
        assert_eq!(a.area_size % AREA_ALIGN, 0);
        if a.instruction.is_xsave() {
            // Linux enables at least what we enable; our area must fit.
            let xcr0 = xcr0().expect("OSXSAVE with XSAVE");
            assert_eq!(xcr0 & a.components, a.components);
        }
    }

    #[test]
    fn new_area_holds_the_initial_state() {
        let s = FpuState::new();
        assert_eq!(s.size(), area_size());
        assert_eq!(s.as_bytes().as_ptr() as usize % AREA_ALIGN, 0);
        assert_eq!(s.fcw(), FCW_INIT);
        assert_eq!(s.mxcsr(), MXCSR_INIT);
        if save_instruction().is_xsave() {
            assert_eq!(s.xstate_bv(), Some(0));
        }
        let b = s.as_bytes();
        assert!(b[2..MXCSR_OFFSET].iter().all(|&x| x == 0));
        assert!(b[MXCSR_OFFSET + 4..].iter().all(|&x| x == 0));
        let c = s.clone();
        assert_eq!(c.as_bytes(), s.as_bytes());
        assert!(format!("{s:?}").contains("0x1f80"));
    }

    #[test]
    fn save_and_restore_on_the_host() {
        let mut s = FpuState::new();
        let before = s.as_bytes().to_vec();
        // SAFETY: on the host the OS enabled the FPU/XSAVE; TS is managed
        // by the OS; saving only writes the area.
        unsafe { s.save() };
        assert_eq!(s.fcw(), FCW_INIT, "Rust code runs with the default control word");
        assert_eq!(s.mxcsr(), MXCSR_INIT);
        if let Some(bv) = s.xstate_bv() {
            assert_eq!(bv & !components(), 0);
        }
        let fresh = FpuState::new();
        assert_eq!(fresh.as_bytes(), &before[..]);
        // SAFETY: as above; the restore clobbers registers the asm declares
        // clobbered, and the initial state's control words are the ones
        // Rust code runs with.
        unsafe { fresh.restore() };
        let mut after = FpuState::new();
        // SAFETY: as above.
        unsafe { after.save() };
        assert_eq!(after.mxcsr(), MXCSR_INIT);
        assert_eq!(after.fcw(), FCW_INIT);
        s.reset();
        assert_eq!(s.as_bytes(), &before[..]);
    }

    #[test]
    fn control_words_set_in_an_area_are_loaded() {
        let mut c = FpuState::new();
        c.set_fcw(0x027f);
        c.set_mxcsr(0x3f80);
        assert_eq!((c.fcw(), c.mxcsr()), (0x027f, 0x3f80));
        if let Some(bv) = c.xstate_bv() {
            assert_eq!(bv, component::X87, "the x87 state is marked present");
        }
        let mut d = FpuState::new();
        // SAFETY: on the host the OS enabled the FPU/XSAVE; the restore's
        // clobbers cover the registers the compiler uses; the default
        // control words are restored before any float code runs.
        unsafe {
            c.restore();
            d.save();
            FpuState::new().restore();
        }
        assert_eq!((d.fcw(), d.mxcsr()), (0x027f, 0x3f80));
        let mut e = FpuState::new();
        // SAFETY: as above.
        unsafe { e.save() };
        assert_eq!((e.fcw(), e.mxcsr()), (FCW_INIT, MXCSR_INIT));
    }

    /// The XSAVEOPT hazard `save` avoids: an area allocated where a freed
    /// one was restored from. Reports whether a bare `xsaveopt` would have
    /// lost the x87 state (the CPU's tracking is not guaranteed to survive,
    /// so only our path is asserted).
    #[test]
    fn a_reused_address_is_saved_in_full() {
        if save_instruction() != SaveInstruction::Xsaveopt {
            return;
        }
        let mut hazard = 0;
        let mut reused = 0;
        for _ in 0..20 {
            let mut a = FpuState::new();
            a.set_fcw(0x027f);
            let old = a.as_bytes().as_ptr();
            // SAFETY: on the host the OS enabled XSAVE; the restore's
            // clobbers cover the registers the compiler uses; the default
            // control words are restored below before float code runs.
            unsafe { a.restore() };
            drop(a);
            let mut b = FpuState::new();
            let mut naive = FpuState::new();
            if b.as_bytes().as_ptr() == old {
                reused += 1;
                let mask = components();
                // SAFETY: as above; xsaveopt into `b`'s own area, the same
                // size, then the real save overwrites it.
                unsafe {
                    core::arch::asm!("xsaveopt64 [{}]", in(reg) b.as_bytes().as_ptr(), in("eax") mask as u32,
                        in("edx") (mask >> 32) as u32, options(nostack, preserves_flags));
                }
                naive.bytes_mut_for_test().copy_from_slice(b.as_bytes());
                if naive.fcw() != 0x027f {
                    hazard += 1;
                }
            }
            // SAFETY: as above.
            unsafe { b.save() };
            assert_eq!(b.fcw(), 0x027f);
            // SAFETY: as above.
            unsafe { FpuState::new().restore() };
        }
        println!("address reused {reused}/20 times, bare xsaveopt lost the x87 state {hazard} times");
    }

    #[test]
    #[should_panic(expected = "reserved bits")]
    fn reserved_mxcsr_bits_are_refused() {
        FpuState::new().set_mxcsr(0x1_1f80);
    }

    #[test]
    fn task_switched_is_clear_on_the_host() {
        set_task_switched();
        clear_task_switched();
        assert!(!task_switched());
        init_this_cpu();
    }
}
