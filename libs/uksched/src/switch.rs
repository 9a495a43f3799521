//! The context switch and a new thread's first frame.
//!
//! A switched-out thread is nothing but its stack pointer: the switch
//! pushes the callee-saved registers of the System V ABI (RBP, RBX,
//! R12–R15) on the old stack, stores RSP in the old thread, loads the new
//! thread's RSP, pops the same registers and returns — into the new
//! thread's own call of the switch. Caller-saved registers need no saving:
//! the compiler already assumes a call clobbers them. RFLAGS needs none:
//! the switch always runs with interrupts disabled and the scheduler
//! restores each thread's interrupt state after it. Extended (FPU/SSE/AVX)
//! state is saved lazily, elsewhere (`fpu.rs`).
//!
//! A new thread's stack is made to look like one that switched out: six
//! zero registers except R12, which holds the thread, and the address of
//! [`thread_trampoline`] as the return address. The trampoline aligns the
//! stack, clears the frame pointer (the end of every backtrace) and calls
//! `thread_start` with R12 as its argument.

use crate::thread::{ThreadInner, thread_start};

core::arch::global_asm!(
    ".pushsection .text.uksched_switch, \"ax\", @progbits",
    ".balign 16",
    ".globl uksched_switch_context",
    "uksched_switch_context:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rdi], rsp",
    "mov rsp, rsi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".balign 16",
    ".globl uksched_thread_trampoline",
    "uksched_thread_trampoline:",
    "mov rdi, r12",
    "xor ebp, ebp",
    "and rsp, -16",
    "call {start}",
    "ud2",
    ".popsection",
    start = sym thread_start,
);

unsafe extern "C" {
    /// Saves the callee-saved registers and RSP into `*save_rsp`, then
    /// resumes the context whose stack pointer is `resume_rsp`.
    fn uksched_switch_context(save_rsp: *mut usize, resume_rsp: usize);
    /// Where a new thread starts (see the module documentation).
    fn uksched_thread_trampoline();
}

/// Switches from the running context to the one saved at `resume_rsp`;
/// returns when some CPU switches back to this one.
///
/// # Safety
/// Interrupts must be disabled. `save_rsp` must be the running thread's
/// slot, and `resume_rsp` a context saved by this function (or built by
/// [`initial_frame`]) that no CPU is running or will resume concurrently.
#[inline(always)]
pub(crate) unsafe fn switch_context(save_rsp: *mut usize, resume_rsp: usize) {
    // SAFETY: the caller's contract; the callee follows the C ABI.
    unsafe { uksched_switch_context(save_rsp, resume_rsp) }
}

/// Number of words in a new thread's first frame.
const FRAME_WORDS: usize = 8;

/// Builds a new thread's first frame below `stack_top` and returns its
/// stack pointer, for [`switch_context`] to resume.
///
/// # Safety
/// `[stack_top - 64, stack_top)` must be writable memory that nothing else
/// uses (the top of the thread's own, not yet running, stack).
pub(crate) unsafe fn initial_frame(stack_top: usize, thread: *const ThreadInner) -> usize {
    let top = stack_top & !15;
    let sp = top - FRAME_WORDS * 8;
    let words: [usize; FRAME_WORDS] = [
        0,                                               // r15
        0,                                               // r14
        0,                                               // r13
        thread as usize,                                 // r12: thread_start's argument
        0,                                               // rbx
        0,                                               // rbp
        uksched_thread_trampoline as *const () as usize, // return address
        0,                                               // padding (the trampoline re-aligns)
    ];
    // SAFETY: the caller guarantees the range is writable and unused; `sp`
    // is 16-byte aligned.
    unsafe { core::ptr::copy_nonoverlapping(words.as_ptr(), sp as *mut usize, FRAME_WORDS) };
    sp
}
