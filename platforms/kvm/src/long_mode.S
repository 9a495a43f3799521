/*
 * ENTER_LONG_MODE: the switch from 32-bit protected mode with paging off to
 * IA-32e mode, shared by the boot CPU (boot.S) and the secondary CPUs
 * (ap_trampoline.S). Expects %eax = physical address of the PML4; clobbers
 * %eax, %ecx, %edx, %esi. Afterwards the CPU runs 32-bit compatibility
 * code with paging on; a far jump to a 64-bit code segment completes the
 * switch.
 *
 * Included (textually, by concat! in the Rust source) at the top of each
 * file that uses it, which ends with `.purgem ENTER_LONG_MODE` so the next
 * file can define it again.
 */
.macro ENTER_LONG_MODE
    movl %eax, %esi

    /*
     * MTRRs: nothing has programmed them (no firmware runs before a PVH
     * entry, and a secondary CPU starts from reset), and the reset value of
     * IA32_MTRR_DEF_TYPE makes all memory uncacheable -- under this
     * project's nested KVM the guest's memory types are honoured, and boot
     * took ~30 ms of UC memory accesses. Enable MTRRs with write-back as the
     * default type; device ranges are made uncached by the page tables
     * (PCD|PWT -> PAT entry 3 = UC). Every CPU that QEMU models has MTRRs.
     */
    movl $0x2ff, %ecx               /* IA32_MTRR_DEF_TYPE */
    rdmsr
    andl $~0xcff, %eax
    orl $((1 << 11) | 6), %eax      /* E = 1, FE = 0, type = WB */
    wrmsr

    /* CR4: PAE, OSFXSR, OSXMMEXCPT */
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    movl %eax, %cr4

    movl %esi, %cr3

    /* EFER: LME, NXE */
    movl $0xC0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr

    /* CR0: PG, WP, NE, MP, PE; clear EM and TS, and CD and NW: an AP
     * leaves INIT with caching disabled (CR0 = 0x60000010), and nothing
     * else would ever enable it */
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | (1 << 5) | (1 << 1) | 1), %eax
    andl $~((1 << 30) | (1 << 29) | (1 << 2) | (1 << 3)), %eax
    movl %eax, %cr0
.endm
