/*
 * Trap entry stubs: one 16-byte stub per IDT vector (all 256), and the common
 * path that builds a `TrapFrame` (trap.rs) and calls `trap_dispatch`.
 *
 * Stub for vector v lives at `trap_stubs + 16 * v` (trap.rs computes the gate
 * addresses from that, so there is no table of absolute addresses and the
 * file assembles position-independently, host test binaries included).
 *
 * Stack after the stub (top = lowest address), matching `TrapFrame`:
 *     vector, error code (CPU-pushed or a dummy 0), RIP, CS, RFLAGS, RSP, SS
 * trap_common then pushes the 15 general-purpose registers, RAX first.
 *
 * In 64-bit mode the CPU aligns RSP to 16 bytes before pushing its 5-word
 * frame; 5 + 2 + 15 = 22 words keep it 16-byte aligned, but trap_common
 * re-aligns anyway (cheap, and robust against a misaligned IST or a frame
 * from a future path). No SSE state is saved: guest Rust code is built for
 * x86_64-unknown-none (soft-float, no red zone), so it never touches XMM
 * registers. No swapgs: nothing runs in user mode.
 *
 * Only AT&T syntax, only 64-bit code; explicit `.code64` so nothing depends on
 * the mode another global_asm block (boot.S) was left in.
 */

    .code64
    .pushsection .text.trap_entry, "ax", @progbits

    .balign 16
    .globl trap_stubs
trap_stubs:
    .set trap_vec, 0
    .rept 256
    .balign 16
    /* Vectors for which the CPU pushes an error code: #DF 8, #TS 10, #NP 11,
     * #SS 12, #GP 13, #PF 14, #AC 17, #CP 21, #VC 29, #SX 30. */
    .if (trap_vec == 8) || ((trap_vec >= 10) && (trap_vec <= 14)) || (trap_vec == 17) || (trap_vec == 21) || (trap_vec == 29) || (trap_vec == 30)
    .else
    pushq $0
    .endif
    pushq $trap_vec
    jmp trap_common
    .set trap_vec, trap_vec + 1
    .endr
    .balign 16
    .globl trap_stubs_end
trap_stubs_end:

    .balign 16
trap_common:
    cld
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi            /* arg 0: &mut TrapFrame */
    movq %rsp, %rbx            /* callee-saved: the frame, to undo alignment */
    andq $-16, %rsp
    call trap_dispatch
    movq %rbx, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp             /* vector and error code */
    iretq

    .popsection
