//! 16550 UART at I/O port 0x3f8: the console device.
//!
//! Every port access is a VM exit under KVM, and console output dominates the
//! guest's cost there (see `docs/platform-notes.md`, "Console cost"): the
//! transmitter is polled once per 16-byte FIFO load instead of once per byte.

use ukarch::regs::{inb, outb};

const COM1: u16 = 0x3f8;
const THR: u16 = 0; // transmit holding register (DLAB = 0, write)
const RBR: u16 = 0; // receive buffer register (DLAB = 0, read)
const DLL: u16 = 0; // divisor latch low (DLAB = 1)
const IER: u16 = 1; // interrupt enable (DLAB = 0)
const DLM: u16 = 1; // divisor latch high (DLAB = 1)
const FCR: u16 = 2; // FIFO control
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status
const LSR_THR_EMPTY: u8 = 1 << 5;
const LSR_DATA_READY: u8 = 1 << 0;
const IER_RX_DATA: u8 = 1 << 0;
/// COM1's ISA IRQ.
const COM1_IRQ: u8 = 4;
const FIFO_DEPTH: usize = 16;

/// The boot CPU's serial console.
pub struct Serial16550 {
    base: u16,
}

/// COM1, registered as the console by `kvm_main`.
pub static COM1_CONSOLE: Serial16550 = Serial16550 { base: COM1 };

impl Serial16550 {
    /// 115200 baud, 8N1, FIFOs on, interrupts off; DTR, RTS and OUT2 (the
    /// PC's interrupt-line enable) set.
    pub fn init(&self) {
        // SAFETY: the platform owns COM1; these writes only configure the UART.
        unsafe {
            outb(self.base + IER, 0x00);
            outb(self.base + LCR, 0x80);
            outb(self.base + DLL, 0x01);
            outb(self.base + DLM, 0x00);
            outb(self.base + LCR, 0x03);
            outb(self.base + FCR, 0xc7);
            outb(self.base + MCR, 0x0b);
        }
    }
}

impl ukplat::console::ConsoleDevice for Serial16550 {
    fn name(&self) -> &'static str {
        "16550 UART at 0x3f8"
    }

    fn write(&self, bytes: &[u8]) {
        for chunk in bytes.chunks(FIFO_DEPTH) {
            // SAFETY: reading LSR and writing THR of the UART the platform owns.
            unsafe {
                while inb(self.base + LSR) & LSR_THR_EMPTY == 0 {
                    core::hint::spin_loop();
                }
                for &byte in chunk {
                    outb(self.base + THR, byte);
                }
            }
        }
    }

    fn read_byte(&self) -> Option<u8> {
        // SAFETY: reading LSR and RBR of the UART the platform owns; reading
        // RBR consumes the byte, which is what the caller asks for.
        unsafe { (inb(self.base + LSR) & LSR_DATA_READY != 0).then(|| inb(self.base + RBR)) }
    }

    fn input_irq(&self) -> Option<u8> {
        Some(COM1_IRQ)
    }

    fn enable_input_interrupt(&self) {
        // SAFETY: IER of the UART the platform owns: receive-data interrupt
        // only (transmission is polled).
        unsafe { outb(self.base + IER, IER_RX_DATA) };
    }
}
