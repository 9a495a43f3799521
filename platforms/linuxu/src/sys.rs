//! Linux system calls, made directly with the `syscall` instruction.
//!
//! The numbers, flags and structure layouts come from `linux-raw-sys`
//! (generated from the kernel's UAPI headers); the instruction itself is
//! the few lines below. rustix, which wraps the same crate, cannot be used:
//! its `linux_raw` backend is selected only for `target_os = "linux"`, and
//! our images are built for `x86_64-unknown-none` on both platforms (the
//! libraries run as the same machine code on kvm and here: soft-float, no
//! red zone).
//!
//! Every wrapper returns the kernel's raw result: a value `>= 0`, or
//! `-errno`. [`check`] turns that into a `Result`.

pub use linux_raw_sys::general as abi;

/// `arch_prctl` codes (asm/prctl.h; not in linux-raw-sys).
pub const ARCH_SET_GS: usize = 0x1001;
/// Reads the GS base.
pub const ARCH_GET_GS: usize = 0x1004;

/// The kernel's `struct sigcontext` on x86_64 (asm/sigcontext.h), which
/// `ucontext.uc_mcontext` is; a signal handler may change it, and
/// `rt_sigreturn` restores every field.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs, reason = "register names")]
pub struct SigContext {
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rsp: u64,
    pub rip: u64,
    pub eflags: u64,
    pub cs: u16,
    pub gs: u16,
    pub fs: u16,
    pub ss: u16,
    /// The CPU's error code of the exception behind the signal.
    pub err: u64,
    /// The exception's vector.
    pub trapno: u64,
    pub oldmask: u64,
    /// The faulting address of a page fault.
    pub cr2: u64,
    pub fpstate: u64,
    pub reserved: [u64; 8],
}

/// The kernel's `struct ucontext` on x86_64 (asm/ucontext.h), the third
/// argument of an `SA_SIGINFO` handler.
#[repr(C)]
#[allow(missing_docs, reason = "kernel field names")]
pub struct UContext {
    pub uc_flags: u64,
    pub uc_link: u64,
    pub uc_stack: abi::stack_t,
    pub uc_mcontext: SigContext,
    pub uc_sigmask: u64,
}

/// `-errno` → `Err(errno)`.
pub fn check(ret: isize) -> Result<usize, i32> {
    if (-4095..0).contains(&ret) { Err(-ret as i32) } else { Ok(ret as usize) }
}

macro_rules! syscall {
    ($nr:expr $(, $a:expr)* $(,)?) => {
        syscall!(@go $nr; [$($a),*])
    };
    (@go $nr:expr; []) => {{
        let ret: isize;
        // SAFETY: (of every use) the caller passes arguments valid for this
        // system call; `syscall` clobbers only rcx and r11.
        unsafe { core::arch::asm!("syscall", inlateout("rax") $nr as isize => ret,
            lateout("rcx") _, lateout("r11") _, options(nostack)) };
        ret
    }};
    (@go $nr:expr; [$a:expr]) => {{
        let ret: isize;
        // SAFETY: as in the first arm.
        unsafe { core::arch::asm!("syscall", inlateout("rax") $nr as isize => ret, in("rdi") $a,
            lateout("rcx") _, lateout("r11") _, options(nostack)) };
        ret
    }};
    (@go $nr:expr; [$a:expr, $b:expr]) => {{
        let ret: isize;
        // SAFETY: as in the first arm.
        unsafe { core::arch::asm!("syscall", inlateout("rax") $nr as isize => ret, in("rdi") $a,
            in("rsi") $b, lateout("rcx") _, lateout("r11") _, options(nostack)) };
        ret
    }};
    (@go $nr:expr; [$a:expr, $b:expr, $c:expr]) => {{
        let ret: isize;
        // SAFETY: as in the first arm.
        unsafe { core::arch::asm!("syscall", inlateout("rax") $nr as isize => ret, in("rdi") $a,
            in("rsi") $b, in("rdx") $c, lateout("rcx") _, lateout("r11") _, options(nostack)) };
        ret
    }};
    (@go $nr:expr; [$a:expr, $b:expr, $c:expr, $d:expr]) => {{
        let ret: isize;
        // SAFETY: as in the first arm.
        unsafe { core::arch::asm!("syscall", inlateout("rax") $nr as isize => ret, in("rdi") $a,
            in("rsi") $b, in("rdx") $c, in("r10") $d, lateout("rcx") _, lateout("r11") _,
            options(nostack)) };
        ret
    }};
    (@go $nr:expr; [$a:expr, $b:expr, $c:expr, $d:expr, $e:expr, $f:expr]) => {{
        let ret: isize;
        // SAFETY: as in the first arm.
        unsafe { core::arch::asm!("syscall", inlateout("rax") $nr as isize => ret, in("rdi") $a,
            in("rsi") $b, in("rdx") $c, in("r10") $d, in("r8") $e, in("r9") $f,
            lateout("rcx") _, lateout("r11") _, options(nostack)) };
        ret
    }};
}

/// `write(fd, bytes)`.
pub fn write(fd: i32, bytes: &[u8]) -> isize {
    syscall!(abi::__NR_write, fd as usize, bytes.as_ptr() as usize, bytes.len())
}

/// `read(fd, buf)`.
pub fn read(fd: i32, buf: &mut [u8]) -> isize {
    syscall!(abi::__NR_read, fd as usize, buf.as_mut_ptr() as usize, buf.len())
}

/// `poll` on one descriptor with a timeout in ms (0: just look).
pub fn poll_one(fd: i32, events: i16, timeout_ms: i32) -> isize {
    let mut pfd = abi::pollfd { fd, events, revents: 0 };
    syscall!(abi::__NR_poll, &raw mut pfd as usize, 1usize, timeout_ms as isize as usize)
}

/// `exit_group(status)`: ends every thread of the process.
pub fn exit_group(status: i32) -> ! {
    syscall!(abi::__NR_exit_group, status as isize as usize);
    // SAFETY: exit_group does not return.
    unsafe { core::hint::unreachable_unchecked() }
}

/// `mmap` of anonymous private memory (`MAP_FIXED` when `at` is not 0).
pub fn mmap_anonymous(at: usize, len: usize, prot: u32, extra_flags: u32) -> isize {
    let fixed = if at != 0 { abi::MAP_FIXED } else { 0 };
    let flags = abi::MAP_PRIVATE | abi::MAP_ANONYMOUS | fixed | extra_flags;
    syscall!(abi::__NR_mmap, at, len, prot as usize, flags as usize, usize::MAX, 0usize)
}

/// `mprotect(addr, len, prot)`.
pub fn mprotect(addr: usize, len: usize, prot: u32) -> isize {
    syscall!(abi::__NR_mprotect, addr, len, prot as usize)
}

/// `arch_prctl(code, addr)`.
pub fn arch_prctl(code: usize, addr: usize) -> isize {
    syscall!(abi::__NR_arch_prctl, code, addr)
}

/// `getpid()`.
pub fn getpid() -> i32 {
    syscall!(abi::__NR_getpid) as i32
}

/// `gettid()`.
pub fn gettid() -> i32 {
    syscall!(abi::__NR_gettid) as i32
}

/// `tgkill(tgid, tid, sig)`.
pub fn tgkill(tgid: i32, tid: i32, sig: u32) -> isize {
    syscall!(abi::__NR_tgkill, tgid as usize, tid as usize, sig as usize)
}

/// `rt_sigaction(sig, act, NULL, 8)`.
pub fn rt_sigaction(sig: u32, act: &abi::kernel_sigaction) -> isize {
    syscall!(abi::__NR_rt_sigaction, sig as usize, core::ptr::from_ref(act) as usize, 0usize, 8usize)
}

/// `rt_sigprocmask(how, set, NULL, 8)`.
pub fn rt_sigprocmask(how: u32, set: u64) -> isize {
    syscall!(abi::__NR_rt_sigprocmask, how as usize, &raw const set as usize, 0usize, 8usize)
}

/// `sigaltstack(ss, NULL)`.
pub fn sigaltstack(ss: &abi::stack_t) -> isize {
    syscall!(abi::__NR_sigaltstack, core::ptr::from_ref(ss) as usize, 0usize)
}

/// `clock_gettime(clock)` in nanoseconds.
pub fn clock_gettime_ns(clock: u32) -> u64 {
    let mut ts = abi::__kernel_timespec { tv_sec: 0, tv_nsec: 0 };
    syscall!(abi::__NR_clock_gettime, clock as usize, &raw mut ts as usize);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `timer_create(clock, sev, &id)`.
pub fn timer_create(clock: u32, sev: &mut abi::sigevent, id: &mut i32) -> isize {
    syscall!(
        abi::__NR_timer_create,
        clock as usize,
        core::ptr::from_mut(sev) as usize,
        core::ptr::from_mut(id) as usize
    )
}

/// `timer_settime(id, flags, new, NULL)`.
pub fn timer_settime(id: i32, flags: u32, new: &abi::__kernel_itimerspec) -> isize {
    syscall!(abi::__NR_timer_settime, id as usize, flags as usize, core::ptr::from_ref(new) as usize, 0usize)
}

/// `futex(word, FUTEX_WAIT_PRIVATE, expected, NULL)`: sleeps while `*word ==
/// expected`, until a `FUTEX_WAKE` or a signal.
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32) -> isize {
    let op = abi::FUTEX_WAIT | abi::FUTEX_PRIVATE_FLAG;
    syscall!(abi::__NR_futex, word.as_ptr() as usize, op as usize, expected as usize, 0usize)
}

/// `futex(word, FUTEX_WAKE_PRIVATE, n)`.
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: u32) -> isize {
    let op = abi::FUTEX_WAKE | abi::FUTEX_PRIVATE_FLAG;
    syscall!(abi::__NR_futex, word.as_ptr() as usize, op as usize, n as usize)
}

/// A host CPU set as `sched_getaffinity` fills it (up to 1024 CPUs).
pub type CpuMask = [u64; 16];

/// `sched_setaffinity(0, {host_cpu})` for the calling thread.
pub fn pin_to_host_cpu(host_cpu: usize) -> isize {
    let mut mask: CpuMask = [0; 16];
    mask[(host_cpu / 64) % 16] = 1 << (host_cpu % 64);
    syscall!(abi::__NR_sched_setaffinity, 0usize, size_of_val(&mask), mask.as_ptr() as usize)
}

/// `sched_getaffinity(0)`: the host CPUs the calling thread may run on
/// (`None` when the call fails).
pub fn allowed_host_cpus() -> Option<CpuMask> {
    let mut mask: CpuMask = [0; 16];
    let ret = syscall!(abi::__NR_sched_getaffinity, 0usize, size_of_val(&mask), mask.as_mut_ptr() as usize);
    (ret > 0).then_some(mask)
}

/// The `n`-th host CPU of `mask`, counting round it (`n mod` the CPUs in
/// it), or `None` for an empty mask.
pub fn nth_host_cpu(mask: &CpuMask, n: usize) -> Option<usize> {
    let count: usize = mask.iter().map(|w| w.count_ones() as usize).sum();
    if count == 0 {
        return None;
    }
    (0..mask.len() * 64).filter(|&cpu| mask[cpu / 64] & (1 << (cpu % 64)) != 0).nth(n % count)
}

/// Whether `len` bytes at `addr` can be read without a fault: asks the
/// kernel to copy them (`process_vm_readv` on this process), which fails
/// with `EFAULT` where a load would fault, guard pages included. A system
/// call: for fault reports and error checks, not hot paths.
pub fn readable(addr: usize, len: usize) -> bool {
    let mut buf = [0u8; 64];
    let len = len.min(buf.len());
    let local = abi::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len as _ };
    let remote = abi::iovec { iov_base: addr as *mut _, iov_len: len as _ };
    let ret = syscall!(
        abi::__NR_process_vm_readv,
        getpid() as usize,
        &raw const local as usize,
        1usize,
        &raw const remote as usize,
        1usize,
        0usize
    );
    ret == len as isize
}
