//! The register state saved when a trap (exception or interrupt) enters the
//! kernel.
//!
//! The layout is part of the architecture contract between the platform's
//! entry stubs (which build it on the stack) and everything that handles
//! traps (which reads and may modify it): `platforms/kvm/src/trap_entry.S`
//! pushes the hardware frame, an error code, the vector and the 15
//! general-purpose registers, and passes a pointer to this struct.

/// The saved state of the interrupted code, lowest address first. A handler
/// may change it; the entry path restores every field on return (`iretq`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs, reason = "register names")]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Pushed by the entry stub.
    pub vector: u64,
    /// Pushed by the CPU, or 0 by the stub for vectors without one.
    pub error_code: u64,
    // The hardware frame.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// The vector number (0–255).
    pub const fn vector(&self) -> u8 {
        (self.vector & 0xff) as u8
    }

    /// Whether interrupts were enabled in the interrupted code (RFLAGS.IF).
    pub const fn interrupts_were_enabled(&self) -> bool {
        self.rflags & (1 << 9) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_22_words() {
        assert_eq!(size_of::<TrapFrame>(), 22 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, rax), 14 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, vector), 15 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, rip), 17 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, ss), 21 * 8);
    }

    #[test]
    fn accessors() {
        let f = TrapFrame { vector: 0x1_20, rflags: 0x202, ..TrapFrame::default() };
        assert_eq!(f.vector(), 0x20);
        assert!(f.interrupts_were_enabled());
        assert!(!TrapFrame::default().interrupts_were_enabled());
    }
}
