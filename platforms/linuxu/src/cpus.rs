//! CPUs as host threads: the signal set-up, starting the secondary CPUs
//! (`clone`), and what each CPU does first.
//!
//! The boot CPU is the process's main thread. Every other CPU is a thread
//! of the same process (`CLONE_VM | CLONE_THREAD | ...`) on a stack of its
//! own (`mmap`, with an inaccessible guard page below), started at boot and
//! parked (`ukplat::cpu::park_secondary`) until a library releases the
//! secondaries, as on kvm. With `platform.pin = true` CPU `i` is pinned to
//! the `(i mod n)`-th of the n host CPUs the process was allowed at boot.

use crate::sys::{self, abi};
use crate::vcpu::{self, ALIVE};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use ukplat::cpu::{CpuDesc, CpuIndex, MAX_CPUS};

/// Size of a secondary CPU's boot stack (its idle loop and the parking
/// loop run on it; threads have stacks of their own).
const CPU_STACK: usize = 256 * 1024;
/// Size of each CPU's alternate signal stack, where fault signals run (a
/// stack overflow leaves no room on the faulting stack).
const ALT_STACK: usize = 64 * 1024;
const PAGE: usize = 4096;

/// The host CPUs the process could run on at boot, read by CPU 0 before it
/// pins itself (the other CPUs' threads inherit its pinned mask).
static ALLOWED: ukplat::once::Once<sys::CpuMask> = ukplat::once::Once::new();

/// CPUs started (the boot CPU included).
static STARTED: AtomicUsize = AtomicUsize::new(1);
/// Time stamp when each CPU came up.
static ONLINE_TSC: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// How many CPUs run.
pub fn started() -> usize {
    STARTED.load(Ordering::Acquire)
}

/// The interrupt signals, as a mask.
const INTERRUPT_SIGNALS: u64 = 1 << (vcpu::SIG_IPI - 1) | 1 << (vcpu::SIG_TIMER - 1);

core::arch::global_asm!(
    ".pushsection .text.linuxu_sigreturn, \"ax\", @progbits",
    ".globl linuxu_sigreturn",
    "linuxu_sigreturn:",
    "mov eax, {nr}",
    "syscall",
    "ud2",
    ".popsection",
    nr = const abi::__NR_rt_sigreturn,
);

unsafe extern "C" {
    /// The signal restorer: `rt_sigreturn`.
    fn linuxu_sigreturn();
}

/// Installs `handler` for `sig`.
fn install(sig: u32, handler: usize, flags: u32) {
    let act = abi::kernel_sigaction {
        sa_handler_kernel: Some(
            // SAFETY: `handler` is an `extern "C" fn(u32, *mut siginfo, *mut
            // UContext)`, which is what the kernel calls for SA_SIGINFO;
            // the field's type only differs in its declared arguments.
            unsafe { core::mem::transmute::<usize, unsafe extern "C" fn(i32)>(handler) },
        ),
        sa_flags: u64::from(flags | abi::SA_SIGINFO | abi::SA_RESTORER),
        sa_restorer: Some(linuxu_sigreturn),
        sa_mask: abi::kernel_sigset_t { sig: [0] },
    };
    let ret = sys::rt_sigaction(sig, &act);
    if ret < 0 {
        crate::fail(format_args!("rt_sigaction({sig}): errno {}", -ret));
    }
}

/// Installs the signal handlers (once, for the whole process) and blocks
/// the interrupt signals on the calling thread until [`become_cpu`].
pub fn init_signals() {
    sys::rt_sigprocmask(abi::SIG_BLOCK, INTERRUPT_SIGNALS);
    let interrupt = vcpu::on_interrupt_signal as *const () as usize;
    install(vcpu::SIG_IPI, interrupt, abi::SA_NODEFER);
    install(vcpu::SIG_TIMER, interrupt, abi::SA_NODEFER);
    crate::fault::install(|sig, handler| install(sig, handler, abi::SA_ONSTACK));
}

/// Maps `len` bytes of read-write memory with an inaccessible guard page
/// below; returns the top.
fn stack(len: usize, what: &str) -> usize {
    let base = sys::mmap_anonymous(0, len + PAGE, abi::PROT_READ | abi::PROT_WRITE, abi::MAP_NORESERVE);
    if base < 0 {
        crate::fail(format_args!("cannot map a {len}-byte {what}: errno {}", -base));
    }
    sys::mprotect(base as usize, PAGE, abi::PROT_NONE);
    base as usize + PAGE + len
}

/// Makes the calling thread CPU `index`: its per-CPU header (GS), its
/// alternate signal stack, its pinning; then lets interrupt signals in
/// (the virtual flag stays clear).
///
/// # Safety
/// Once per CPU index, on a thread that is no other CPU, before any
/// per-CPU data is read on it.
pub unsafe fn become_cpu(index: CpuIndex) {
    vcpu::vcpu(index).tid.store(sys::gettid(), Ordering::Release);
    // SAFETY: the caller's contract; interrupts are disabled (the virtual
    // flag starts clear and the signals are blocked).
    unsafe { ukplat::cpu::init_this_cpu(index, index as u32) };
    let top = stack(ALT_STACK, "signal stack");
    let ss = abi::stack_t { ss_sp: (top - ALT_STACK) as *mut _, ss_flags: 0, ss_size: ALT_STACK as u64 };
    sys::sigaltstack(&ss);
    if ukconfig::platform::PIN {
        let allowed = ALLOWED.call_once(|| {
            sys::allowed_host_cpus()
                .unwrap_or_else(|| crate::fail(format_args!("sched_getaffinity failed (platform.pin)")))
        });
        let Some(host) = sys::nth_host_cpu(allowed, index) else {
            crate::fail(format_args!(
                "no host CPU to pin CPU {index} to (platform.pin): the allowed set is empty"
            ))
        };
        let ret = sys::pin_to_host_cpu(host);
        if ret < 0 {
            crate::fail(format_args!(
                "cannot pin CPU {index} to host CPU {host} (platform.pin): errno {}",
                -ret
            ));
        }
    }
    ONLINE_TSC[index].store(ukarch::tsc::read(), Ordering::Release);
    sys::rt_sigprocmask(abi::SIG_UNBLOCK, INTERRUPT_SIGNALS);
}

/// Starts CPUs `1..count` and waits until each is up; returns the time
/// stamp taken before the first was started.
pub fn start_secondaries(count: usize) -> u64 {
    let began = ukarch::tsc::read();
    for index in 1..count {
        let top = stack(CPU_STACK, "CPU stack");
        // SAFETY: `top` is the top of a fresh stack that only this thread
        // will use; `secondary_main` never returns.
        let tid = unsafe { spawn(top, secondary_main, index) };
        if tid < 0 {
            crate::fail(format_args!("cannot start CPU {index} (clone): errno {}", -tid));
        }
    }
    loop {
        let alive = ALIVE.load(Ordering::Acquire);
        if alive as usize == count - 1 {
            break;
        }
        sys::futex_wait(&ALIVE, alive);
    }
    STARTED.store(count, Ordering::Release);
    began
}

/// Fills in the descriptions of the started CPUs.
pub fn descriptions(cpus: &mut [CpuDesc], boot_tsc: u64) {
    for (i, cpu) in cpus.iter_mut().enumerate() {
        let online = if i == 0 { boot_tsc } else { ONLINE_TSC[i].load(Ordering::Acquire) };
        *cpu = CpuDesc { apic_id: i as u32, acpi_uid: i as u32, online_tsc: online };
    }
}

/// The first Rust code of a secondary CPU's thread.
extern "C" fn secondary_main(index: usize) -> ! {
    // SAFETY: each index is started once, on its own new thread.
    unsafe { become_cpu(index) };
    ALIVE.fetch_add(1, Ordering::AcqRel);
    sys::futex_wake(&ALIVE, 1);
    ukplat::cpu::park_secondary(index)
}

/// Starts a thread of this process that runs `entry(arg)` on the stack
/// ending at `top`; returns its thread id or `-errno`.
///
/// # Safety
/// `top` is the 16-byte aligned top of memory that nothing else uses.
unsafe fn spawn(top: usize, entry: extern "C" fn(usize) -> !, arg: usize) -> isize {
    let flags = abi::CLONE_VM
        | abi::CLONE_FS
        | abi::CLONE_FILES
        | abi::CLONE_SIGHAND
        | abi::CLONE_THREAD
        | abi::CLONE_SYSVSEM;
    // The child starts on the new stack with the registers of the parent:
    // it finds its entry and argument there.
    let sp = top - 16;
    // SAFETY: the caller gives us the stack; two words at its top.
    unsafe {
        *(sp as *mut usize) = entry as usize;
        *((sp + 8) as *mut usize) = arg;
    }
    let ret: isize;
    // SAFETY: clone with these flags creates a thread sharing this address
    // space; the child never leaves the asm block (it calls `entry`, which
    // does not return), the parent gets the child's id in rax.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            // Child: rsp = sp (the new stack).
            "pop rax",
            "pop rdi",
            "xor ebp, ebp",
            "and rsp, -16",
            "call rax",
            "ud2",
            "2:",
            inlateout("rax") abi::__NR_clone as isize => ret,
            in("rdi") flags as usize,
            in("rsi") sp,
            in("rdx") 0usize,
            in("r10") 0usize,
            in("r8") 0usize,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}
