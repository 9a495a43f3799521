/*
 * Application-processor trampoline: real mode -> protected mode -> long
 * mode -> Rust (`kvm_ap_main(slot)`).
 *
 * The boot CPU copies the bytes between ap_trampoline_start and
 * ap_trampoline_end to AP_TRAMPOLINE_BASE (0x8000, below 1 MiB as a SIPI
 * requires: the start-up vector is the page number, 0x08), fills in the
 * parameter block at its end, and sends INIT-SIPI-SIPI. A started CPU
 * begins at CS:IP = 0x0800:0000 in real mode.
 *
 * The blob is position independent in the only way that matters: every
 * reference to its own bytes is written as (symbol - start + BASE), a
 * difference of two labels of this section plus a constant, so it runs at
 * 0x8000 wherever the image put it.
 * It lives in .rodata: it is never executed where it was linked.
 *
 * All CPUs start at once (parallel bring-up): each takes a slot number
 * with `lock xadd` on the parameter block and uses that slot's boot stack;
 * the Rust side then finds its CPU index from its APIC id.
 */

.set AP_TRAMPOLINE_BASE, 0x8000

    .pushsection .rodata.ap_trampoline, "a", @progbits
    .balign 16
    .globl ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds                    /* DS = 0x0800: offsets from the start */
    lgdtl ap_gdt_ptr - ap_trampoline_start
    movl %cr0, %eax
    orl $1, %eax                      /* PE */
    movl %eax, %cr0
    ljmpl $0x08, $((ap_start32 - ap_trampoline_start + AP_TRAMPOLINE_BASE))

    .code32
ap_start32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss

    movl (ap_param_cr3 - ap_trampoline_start + AP_TRAMPOLINE_BASE), %eax
    ENTER_LONG_MODE                 /* long_mode.S */

    ljmpl $0x18, $((ap_start64 - ap_trampoline_start + AP_TRAMPOLINE_BASE))

    .code64
ap_start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs

    /* slot = next_slot++ ; rsp = stacks[slot] */
    movl $1, %eax
    lock xaddl %eax, (ap_param_next_slot - ap_trampoline_start + AP_TRAMPOLINE_BASE)
    movq (ap_param_stacks - ap_trampoline_start + AP_TRAMPOLINE_BASE), %rbx
    movq (%rbx, %rax, 8), %rsp
    xorl %ebp, %ebp
    movl %eax, %edi                   /* arg 0: the slot */
    movq (ap_param_entry - ap_trampoline_start + AP_TRAMPOLINE_BASE), %rax
    call *%rax
1:  cli
    hlt
    jmp 1b

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff          /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff          /* 0x10: data */
    .quad 0x00af9a000000ffff          /* 0x18: 64-bit code */
ap_gdt_end:
    .balign 4
    .word 0
ap_gdt_ptr:
    .word ap_gdt_end - ap_gdt - 1
    .long (ap_gdt - ap_trampoline_start + AP_TRAMPOLINE_BASE)

    /* Parameter block, filled in by the boot CPU after the copy. */
    .balign 8
    .globl ap_param_cr3
ap_param_cr3:
    .long 0                           /* physical address of the PML4 (< 4 GiB) */
    .globl ap_param_next_slot
ap_param_next_slot:
    .long 0                           /* next free boot-stack slot */
    .globl ap_param_stacks
ap_param_stacks:
    .quad 0                           /* address of a u64 array of stack tops */
    .globl ap_param_entry
ap_param_entry:
    .quad 0                           /* extern "C" fn(slot: u32) -> ! */
    .globl ap_trampoline_end
ap_trampoline_end:
    .popsection

.purgem ENTER_LONG_MODE
