//! # ukplat-linuxu — the image as a Linux process
//!
//! `platform.name = "linuxu"` links the app and its libraries into a static
//! x86_64 Linux executable, with no libc: `cargo xtask run --app NAME --set
//! platform.name=linuxu` builds it and runs it directly, no QEMU. The
//! libraries are the same machine code as on kvm (both platforms build for
//! `x86_64-unknown-none`), so measurements here are of our code on a real
//! CPU, beside native peers.
//!
//! | piece | how | file |
//! |---|---|---|
//! | entry | `_start` (the kernel's initial stack: argc, argv, envp) | [`entry`](self) |
//! | system calls | the `syscall` instruction, numbers and layouts from `linux-raw-sys` | [`sys`] |
//! | CPUs | one host thread per CPU (`clone`), pinned, with `platform.pin`, to the `(i mod n)`-th of the n host CPUs allowed at boot | [`cpus`] |
//! | per-CPU base | GS, through `arch_prctl(ARCH_SET_GS)` | [`plat`] |
//! | interrupts | a virtual flag and pending mask per CPU; signals deliver them | [`vcpu`] |
//! | IPIs | the pending bit, then `tgkill` with `SIGUSR1` | [`vcpu`] |
//! | halt | `FUTEX_WAIT` on the CPU's interrupt counter | [`vcpu`] |
//! | clock, timers | TSC calibrated against `CLOCK_MONOTONIC`; a POSIX timer per CPU (`SIGEV_THREAD_ID`, `SIGUSR2`) | [`time`] |
//! | console | stdout (writes), stdin (polled reads) | [`console`] |
//! | exit | `exit_group(status)`: the process's exit status is the image's | [`entry`](self) |
//! | memory | the heap is one anonymous `mmap` (`platform.memory` MiB, the image included); thread stacks are mapped by `ukvmem` through `ukplat::vmem::map` (`mmap` at fixed addresses), their guard pages left unmapped | [`entry`](self), [`plat`] |
//! | CPU exceptions | SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP on an alternate signal stack, reported by `ukplat::fault::report_fatal` like kvm's (`STACK OVERFLOW in thread ...` included) | [`fault`](self) |
//!
//! # What differs from kvm
//!
//! * **Time is shared.** A CPU is a host thread: the host scheduler may
//!   stop it at any instruction, for as long as it likes, interrupts
//!   enabled or not. Timings include that, and with more CPUs than host
//!   cores (allowed) a spinning CPU may wait for a descheduled one. A timer
//!   event arrives when the host runs the thread.
//! * **Interrupts are signals**, checked against a virtual flag: masking
//!   costs one store, but a signal costs a kernel entry and exit (a few
//!   microseconds), far more than an APIC interrupt.
//! * **No devices**: no APIC, no I/O APIC, no ACPI, no PCI, no port I/O.
//!   Apps that need devices do not run here.
//! * **The memory is virtual**: `BootInfo`'s ranges are addresses in this
//!   process, not physical addresses; there are no page tables of the
//!   image's (`ukplat::vmem::page_tables()` is `None`, `ukvmem::translate`
//!   answers `None`), and "can this address be read" is a system call
//!   (`process_vm_readv`) outside the image, the heap and the stacks.
//! * **FPU state is switched eagerly**: user mode cannot make FPU
//!   instructions trap (no CR0.TS), so the scheduler saves a thread's
//!   x87/SSE/AVX state at each switch when it is not in its initial state
//!   (one `xgetbv` tells), instead of at its first FPU instruction.
//! * **Not ring 0**: control registers, MSRs and port I/O fault; the checks
//!   that read them on kvm say "skipped" here.
//! * **Stdin is polled**: no input interrupt; a reader spins (politely)
//!   between `poll`s.
//!
//! **Needs:** `ukplat`, `ukarch`, `ukconfig`, `linux-raw-sys`.
//! **Config options** (`[platform]`): `cpus`, `max_cpus`, `memory`, `pin`,
//! `cmdline` — see `Kconfig.toml`.
#![cfg_attr(not(test), no_std)]

pub mod console;
pub mod cpus;
mod fault;
pub mod plat;
pub mod sys;
pub mod time;
pub mod vcpu;

use core::fmt::Write;
use ukplat::irq::TrapFrame;

/// Reports a platform failure in one line and exits with status 1.
pub(crate) fn fail(what: core::fmt::Arguments<'_>) -> ! {
    let _ = writeln!(ukplat::console::Writer, "linuxu: {what}");
    sys::exit_group(i32::from(ukplat::exit::FAILURE))
}

/// The register state of a signal's ucontext as a trap frame.
pub(crate) fn frame_of(mc: &sys::SigContext, vector: u8, error_code: u64) -> TrapFrame {
    TrapFrame {
        r15: mc.r15,
        r14: mc.r14,
        r13: mc.r13,
        r12: mc.r12,
        r11: mc.r11,
        r10: mc.r10,
        r9: mc.r9,
        r8: mc.r8,
        rbp: mc.rbp,
        rdi: mc.rdi,
        rsi: mc.rsi,
        rdx: mc.rdx,
        rcx: mc.rcx,
        rbx: mc.rbx,
        rax: mc.rax,
        vector: u64::from(vector),
        error_code,
        rip: mc.rip,
        cs: u64::from(mc.cs),
        // The host's flags, with IF standing for the virtual flag, which
        // was set (the handlers run only then).
        rflags: mc.eflags | 1 << 9,
        rsp: mc.rsp,
        ss: u64::from(mc.ss),
    }
}

/// Takes one interrupt the virtual CPU delivers.
pub(crate) fn take_interrupt(frame: &mut TrapFrame) {
    if !ukplat::irq::take_interrupt(frame) {
        fail(format_args!(
            "UNHANDLED INTERRUPT vector {:#x} on CPU {}",
            frame.vector,
            ukplat::cpu::this_cpu()
        ));
    }
}

#[cfg(target_os = "none")]
mod entry {
    use crate::sys::{self, abi};
    use core::sync::atomic::Ordering;
    use ukplat::cpu::{CpuDesc, MAX_CPUS, Topology};
    use ukplat::once::Once;
    use ukplat::{MemoryKind, MemoryRegion, PhysRange};

    core::arch::global_asm!(
        ".pushsection .text._start, \"ax\", @progbits",
        ".globl _start",
        "_start:",
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {main}",
        "ud2",
        ".popsection",
        main = sym linuxu_main,
    );

    unsafe extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }

    static MEMORY: Once<[MemoryRegion; 2]> = Once::new();
    static FREE: Once<[PhysRange; 1]> = Once::new();
    static CPUS: Once<[CpuDesc; MAX_CPUS]> = Once::new();
    static CMDLINE: Once<([u8; 4096], usize)> = Once::new();

    /// The command line: the arguments after the program's name, joined
    /// with spaces (or `platform.cmdline` when there are none).
    ///
    /// # Safety
    /// `sp` is the initial stack pointer the kernel passed to `_start`.
    unsafe fn cmdline(sp: *const usize) -> &'static str {
        let (buf, len) = CMDLINE.call_once(|| {
            let mut buf = [0u8; 4096];
            let mut len = 0;
            // SAFETY: the kernel's initial stack: argc, then argc pointers
            // to NUL-terminated strings.
            let argc = unsafe { *sp };
            for i in 1..argc {
                // SAFETY: as above; argv[i] for i < argc is a valid C string.
                let arg = unsafe { core::ffi::CStr::from_ptr(*sp.add(1 + i) as *const core::ffi::c_char) };
                let bytes = arg.to_bytes();
                let sep = usize::from(len > 0);
                if len + sep + bytes.len() > buf.len() {
                    crate::fail(format_args!("the command line is longer than {} bytes", buf.len()));
                }
                if sep == 1 {
                    buf[len] = b' ';
                }
                buf[len + sep..len + sep + bytes.len()].copy_from_slice(bytes);
                len += sep + bytes.len();
            }
            if len == 0 {
                let configured = ukconfig::platform::CMDLINE.as_bytes();
                let n = configured.len().min(buf.len());
                buf[..n].copy_from_slice(&configured[..n]);
                len = n;
            }
            (buf, len)
        });
        core::str::from_utf8(&buf[..*len])
            .unwrap_or_else(|_| crate::fail(format_args!("the command line is not UTF-8")))
    }

    extern "C" fn linuxu_main(sp: *const usize) -> ! {
        let boot_tsc = ukarch::tsc::read();
        ukplat::console::register(&crate::console::STDIO);
        ukplat::exit::register(exit);
        crate::vcpu::PID.store(sys::getpid(), Ordering::Relaxed);
        crate::cpus::init_signals();
        // SAFETY: the boot CPU is CPU 0; its interrupt signals are blocked
        // (init_signals) until its header exists.
        unsafe { crate::cpus::become_cpu(0) };

        // The wake-up vector only ends a halt (on kvm the APIC library
        // registers it, for its end of interrupt).
        if let Err(error) = ukplat::irq::register(ukplat::irq::vector::WAKEUP, |_| {}) {
            crate::fail(format_args!("cannot register the wake-up vector: {error}"));
        }
        // SAFETY: `sp` is what the kernel passed to `_start`.
        let cmdline = unsafe { cmdline(sp) };
        let image = PhysRange {
            start: core::ptr::addr_of!(__image_start) as u64,
            end: core::ptr::addr_of!(__image_end) as u64,
        };
        // `platform.memory` is the RAM in all, the image included (as on
        // kvm): the heap gets the rest.
        let configured = ukconfig::platform::MEMORY * 1024 * 1024;
        let bytes = configured.saturating_sub((image.len() as usize).next_multiple_of(4096));
        if bytes == 0 {
            crate::fail(format_args!(
                "platform.memory = {} MiB does not hold the image",
                ukconfig::platform::MEMORY
            ));
        }
        let heap = sys::mmap_anonymous(0, bytes, abi::PROT_READ | abi::PROT_WRITE, abi::MAP_NORESERVE);
        if heap < 0 {
            crate::fail(format_args!(
                "cannot map {bytes} bytes of memory (platform.memory): errno {}",
                -heap
            ));
        }
        let heap = PhysRange { start: heap as u64, end: heap as u64 + bytes as u64 };
        // The process's RAM: the image (code, data, bss) and the heap.
        let memory = MEMORY.call_once(|| {
            [
                MemoryRegion { range: image, kind: MemoryKind::Ram },
                MemoryRegion { range: heap, kind: MemoryKind::Ram },
            ]
        });
        let free = FREE.call_once(|| [heap]);

        let count = ukconfig::platform::CPUS;
        let bringup_start_tsc = if count > 1 { crate::cpus::start_secondaries(count) } else { 0 };
        let cpus = CPUS.call_once(|| {
            let mut cpus = [CpuDesc::default(); MAX_CPUS];
            crate::cpus::descriptions(&mut cpus[..count], boot_tsc);
            cpus
        });
        let info = ukplat::BootInfo {
            memory_map: memory,
            free_memory: free,
            cmdline,
            rsdp: None,
            boot_tsc,
            image,
            topology: Topology {
                cpus: &cpus[..count],
                cpus_in_firmware: count,
                bringup_start_tsc,
                local_apic_address: 0,
                io_apics: &[],
                isa_overrides: &[],
                has_8259: false,
            },
            pm_timer: None,
            machine: "linux process",
            // A user process: Linux owns CR0/CR4; privileged instructions fault.
            privileged: false,
        };
        ukplat::enter_main(info)
    }

    /// `ukplat::exit`: the image's status is the process's.
    fn exit(status: u8) -> ! {
        sys::exit_group(i32::from(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_context_becomes_a_trap_frame() {
        let mc = sys::SigContext {
            r8: 8,
            r9: 9,
            r10: 10,
            r11: 11,
            r12: 12,
            r13: 13,
            r14: 14,
            r15: 15,
            rdi: 16,
            rsi: 17,
            rbp: 18,
            rbx: 19,
            rdx: 20,
            rax: 21,
            rcx: 22,
            rsp: 23,
            rip: 24,
            eflags: 0x2,
            cs: 0x33,
            gs: 0,
            fs: 0,
            ss: 0x2b,
            err: 6,
            trapno: 14,
            oldmask: 0,
            cr2: 0x1000,
            fpstate: 0,
            reserved: [0; 8],
        };
        let f = frame_of(&mc, 14, 6);
        assert_eq!((f.r8, f.r15, f.rdi, f.rax, f.rcx, f.rsp, f.rip), (8, 15, 16, 21, 22, 23, 24));
        assert_eq!((f.vector(), f.error_code, f.cs, f.ss), (14, 6, 0x33, 0x2b));
        assert!(f.interrupts_were_enabled(), "handlers run only with the virtual flag set");
    }

    #[test]
    fn sigcontext_has_the_kernels_layout() {
        // asm/sigcontext.h: 18 words of registers, 4 selectors, then err,
        // trapno, oldmask, cr2, fpstate and 8 reserved words.
        assert_eq!(core::mem::offset_of!(sys::SigContext, rip), 16 * 8);
        assert_eq!(core::mem::offset_of!(sys::SigContext, err), 19 * 8);
        assert_eq!(core::mem::offset_of!(sys::SigContext, cr2), 22 * 8);
        assert_eq!(size_of::<sys::SigContext>(), 32 * 8);
        assert_eq!(core::mem::offset_of!(sys::UContext, uc_mcontext), 40);
    }

    #[test]
    fn syscall_results_map_to_errno() {
        assert_eq!(sys::check(5), Ok(5));
        assert_eq!(sys::check(-22), Err(22));
        assert_eq!(sys::check(-4096), Ok((-4096isize) as usize), "below -4095 is a value, not an error");
        assert!(sys::readable(core::ptr::addr_of!(SIGCONTEXT_PROBE) as usize, 8));
        assert!(!sys::readable(8, 8), "page 0");
        assert_eq!(sys::getpid() as u32, std::process::id());
    }

    #[test]
    fn pinning_walks_the_allowed_host_cpus() {
        let mut mask: sys::CpuMask = [0; 16];
        assert_eq!(sys::nth_host_cpu(&mask, 0), None);
        mask[0] = 0b1010_0100; // CPUs 2, 5, 7
        mask[1] = 1; // CPU 64
        let picked: Vec<_> = (0..6).map(|i| sys::nth_host_cpu(&mask, i).unwrap()).collect();
        assert_eq!(picked, [2, 5, 7, 64, 2, 5]);
        assert!(sys::allowed_host_cpus().is_some_and(|m| m.iter().any(|w| *w != 0)));
    }

    static SIGCONTEXT_PROBE: u64 = 7;
}
