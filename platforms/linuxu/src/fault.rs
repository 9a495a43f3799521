//! CPU exceptions: the kernel turns them into signals (SIGSEGV, SIGBUS,
//! SIGILL, SIGFPE, SIGTRAP) whose ucontext holds the exception's vector
//! (`trapno`), error code (`err`) and page-fault address (`cr2`). The
//! handler runs on the CPU's alternate signal stack (a stack overflow
//! leaves no room on the faulting one) and prints the same report as the
//! kvm platform, through `ukplat::fault::report_fatal`, with one line of
//! its own: the signal.

use crate::sys::{self, abi};
use core::fmt::{self, Write};
use ukplat::fault::FatalPlatform;

/// The signals that stand for CPU exceptions.
const SIGNALS: [(u32, &str); 5] = [
    (abi::SIGSEGV, "SIGSEGV"),
    (abi::SIGBUS, "SIGBUS"),
    (abi::SIGILL, "SIGILL"),
    (abi::SIGFPE, "SIGFPE"),
    (abi::SIGTRAP, "SIGTRAP"),
];

/// Installs [`on_fault_signal`] for every exception signal with `install`.
pub(crate) fn install(install: impl Fn(u32, usize)) {
    for (sig, _) in SIGNALS {
        install(sig, on_fault_signal as *const () as usize);
    }
}

/// What the shared report needs from this platform.
struct Linuxu {
    signal: u32,
    code: i32,
}

impl FatalPlatform for Linuxu {
    fn write_platform_lines(&self, out: &mut dyn Write) -> fmt::Result {
        let name = SIGNALS.iter().find(|(s, _)| *s == self.signal).map_or("?", |(_, n)| n);
        writeln!(out, "signal: {name} ({}), si_code {}", self.signal, self.code)
    }

    fn readable(&self, addr: u64) -> bool {
        sys::readable(addr as usize, 8)
    }

    fn halt_forever(&self) -> ! {
        // The first report's CPU ends the process; this thread waits.
        sys::rt_sigprocmask(abi::SIG_BLOCK, !0);
        let never = core::sync::atomic::AtomicU32::new(0);
        loop {
            sys::futex_wait(&never, 0);
        }
    }
}

extern "C" fn on_fault_signal(sig: u32, info: *mut abi::siginfo, context: *mut sys::UContext) {
    // Interrupts are off for the report, as on kvm.
    crate::vcpu::disable_if_set_up();
    // SAFETY: the kernel passes a valid siginfo and ucontext to an
    // SA_SIGINFO handler.
    let (mc, code) = unsafe { (&(*context).uc_mcontext, (*info).__bindgen_anon_1.__bindgen_anon_1.si_code) };
    let frame = crate::frame_of(mc, mc.trapno as u8, mc.err);
    ukplat::fault::report_fatal(&frame, mc.cr2, &Linuxu { signal: sig, code })
}
