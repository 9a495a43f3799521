//! Shutdown through QEMU's `isa-debug-exit` device (port 0xf4, 4 bytes).
//!
//! Writing `v` makes QEMU exit with `(v << 1) | 1`. The platform writes
//! `status + STATUS_OFFSET`, so a guest status lands at QEMU exit code
//! `2 * (status + 16) + 1` (33..=255) and can never be mistaken for QEMU's own
//! failure code 1 or for 0, which means the guest stopped without a status
//! (a triple fault with `-no-reboot`). `cargo xtask run` maps it back.

/// The port `cargo xtask run` configures the device at.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Added to the status before it is written; keep in sync with xtask's decoder.
pub const STATUS_OFFSET: u32 = 16;

/// Shuts the machine down with `status`; registered as `ukplat`'s exit.
pub fn exit(status: u8) -> ! {
    #[cfg(target_os = "none")]
    {
        use core::fmt::Write;
        // SAFETY: the platform owns the debug-exit port; the write ends the VM.
        unsafe { ukarch::regs::outl(DEBUG_EXIT_PORT, u32::from(status) + STATUS_OFFSET) };
        let _ = writeln!(
            ukplat::console::Writer,
            "kvm: still running after writing status {status} to isa-debug-exit (port {DEBUG_EXIT_PORT:#x}): \
             start QEMU with -device isa-debug-exit,iobase=0xf4,iosize=0x04; halting"
        );
        ukarch::irq::disable();
        loop {
            ukarch::regs::halt();
        }
    }
    #[cfg(not(target_os = "none"))]
    {
        // Host builds (unit tests) never shut a machine down.
        let _ = status;
        loop {
            core::hint::spin_loop();
        }
    }
}
