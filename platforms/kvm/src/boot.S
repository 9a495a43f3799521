/*
 * PVH entry of the kvm platform.
 *
 * QEMU (like Firecracker and cloud-hypervisor) finds the 32-bit entry point in
 * the XEN_ELFNOTE_PHYS32_ENTRY note and jumps there in 32-bit protected mode,
 * paging off, flat segments, %ebx = physical address of struct hvm_start_info.
 *
 * This code records the TSC first (the boot-time benchmark starts here) and
 * enters long mode at once: under this project's nested KVM, code running
 * with paging off is very slow (a loop that built the tables and zeroed .bss
 * in 32-bit mode took ~90 ms), so all real work happens in 64-bit mode: zero
 * .bss, call kvm_main(start_info_paddr) on the boot stack.
 *
 * Boot map (identity): the first 4 GiB in 2 MiB pages, except the first
 * 2 MiB in 4 KiB pages (so page 0 can be unmapped to catch null pointers);
 * 0xFE000000-0xFFFFFFFF (I/O APIC, local APIC, ...) uncached. 1 GiB pages are
 * avoided: they fault under this project's nested KVM. The whole map is
 * static data, assembled into the image (28 KiB: PML4, PDPT, four page
 * directories, the first 2 MiB's page table), so no instruction builds it
 * and no live page table is ever written during boot (under shadow paging,
 * as with this project's nested KVM, every such write traps).
 */

.set PTE_P, 0x001
.set PTE_RW, 0x002
.set PTE_PWT, 0x008
.set PTE_PCD, 0x010
.set PTE_PS, 0x080

/* ELF note: name "Xen", type 18 (XEN_ELFNOTE_PHYS32_ENTRY), value = entry. */
.section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .balign 4

.section .data.boot, "aw", @progbits

    .balign 8
.globl kvm_boot_tsc
kvm_boot_tsc:
    .quad 0
kvm_start_info_paddr:
    .long 0

.section .rodata.boot, "a", @progbits
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00cf92000000ffff    /* 0x10: data */
boot_gdt_end:
    .balign 4
    .word 0
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

/*
 * The boot map, complete in the image (see the top of this file): no code
 * writes it before kvm_main unmaps page 0 (PT0 entry 0).
 */
.section .data.boot_pagetables, "aw", @progbits
    .balign 4096
.globl kvm_boot_pml4
kvm_boot_pml4:
    .quad kvm_boot_pdpt + (PTE_P | PTE_RW)
    .fill 511, 8, 0
kvm_boot_pdpt:
    .quad kvm_boot_pd + 0 * 4096 + (PTE_P | PTE_RW)
    .quad kvm_boot_pd + 1 * 4096 + (PTE_P | PTE_RW)
    .quad kvm_boot_pd + 2 * 4096 + (PTE_P | PTE_RW)
    .quad kvm_boot_pd + 3 * 4096 + (PTE_P | PTE_RW)
    .fill 508, 8, 0
/* PD0..PD3: 0..4 GiB in 2 MiB pages; PD0[0] points at PT0 instead, and the
 * last 16 pages (0xFE000000..4 GiB: device registers) are uncached. */
kvm_boot_pd:
    .quad kvm_boot_pt0 + (PTE_P | PTE_RW)
    .set page, 1
    .rept 4 * 512 - 1
    .if page >= (0xFE000000 >> 21)
    .quad (page << 21) | (PTE_P | PTE_RW | PTE_PS | PTE_PCD | PTE_PWT)
    .else
    .quad (page << 21) | (PTE_P | PTE_RW | PTE_PS)
    .endif
    .set page, page + 1
    .endr
/* PT0: the first 2 MiB in 4 KiB pages. */
.globl kvm_boot_pt0
kvm_boot_pt0:
    .set page, 0
    .rept 512
    .quad (page << 12) | (PTE_P | PTE_RW)
    .set page, page + 1
    .endr

/* Stacks are not zeroed: see the .stack section in link.ld. */
.section .stack, "aw", @nobits
    .balign 4096
.globl kvm_boot_stack_bottom
kvm_boot_stack_bottom:
    .skip 64 * 1024
.globl kvm_boot_stack_top
kvm_boot_stack_top:

.section .text.boot, "ax", @progbits
.code32
.globl pvh_start32
pvh_start32:
    rdtsc
    movl %eax, kvm_boot_tsc
    movl %edx, kvm_boot_tsc + 4
    movl %ebx, kvm_start_info_paddr

    movl $kvm_boot_pml4, %eax
    ENTER_LONG_MODE                 /* long_mode.S */

    lgdt boot_gdt_ptr
    ljmp $0x08, $pvh_start64

.code64
pvh_start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    cld

    /* Zero .bss (8-byte aligned and sized by link.ld). */
    movabsq $__bss_start, %rdi
    movabsq $__bss_end, %rcx
    subq %rdi, %rcx
    shrq $3, %rcx
    xorl %eax, %eax
    rep stosq

    movabsq $kvm_boot_stack_top, %rsp
    xorl %ebp, %ebp
    movl kvm_start_info_paddr(%rip), %edi
    call kvm_main
4:  cli
    hlt
    jmp 4b

.purgem ENTER_LONG_MODE
