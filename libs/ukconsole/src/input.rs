//! Console input: bytes the device received, buffered by its receive
//! interrupt.
//!
//! At init (level `LIBRARY`, after the interrupt controller), when the
//! option `input` is on and the device has input, the device's ISA IRQ is
//! routed through the platform's interrupt controller to vector
//! `ISA_BASE + irq` on the boot CPU and its receive interrupt enabled; the
//! handler moves every received byte into a 256-byte ring. [`read_byte`]
//! takes from the ring, [`read_line`] waits for a whole line (halting the
//! CPU between interrupts when it is the one the IRQ is routed to).
//!
//! When the IRQ cannot be routed (no interrupt controller), or with
//! `input = false`, reading polls the device instead; the init says which
//! on the console, so the fallback is never silent.
//!
//! The ring has one producer (the interrupt handler, on one CPU) and is
//! read by one reader at a time (a `ukspin::SpinLock` serializes readers).

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use ukplat::irq::{self, TrapFrame};

const RING: usize = 256;

struct Ring {
    bytes: [AtomicU8; RING],
    /// Next slot the producer writes (wraps modulo RING).
    head: AtomicUsize,
    /// Next slot the reader reads.
    tail: AtomicUsize,
}

impl Ring {
    const fn new() -> Self {
        Self {
            bytes: [const { AtomicU8::new(0) }; RING],
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// Producer side: false when the ring is full (the byte is dropped).
    fn push(&self, byte: u8) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        if head.wrapping_sub(self.tail.load(Ordering::Acquire)) == RING {
            return false;
        }
        self.bytes[head % RING].store(byte, Ordering::Relaxed);
        self.head.store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// Reader side.
    fn pop(&self) -> Option<u8> {
        let tail = self.tail.load(Ordering::Relaxed);
        if tail == self.head.load(Ordering::Acquire) {
            return None;
        }
        let byte = self.bytes[tail % RING].load(Ordering::Relaxed);
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Some(byte)
    }
}

static RING_BUFFER: Ring = Ring::new();
/// Serializes readers (not taken by the interrupt handler, so no irqsave).
static READER: ukspin::SpinLock<()> = ukspin::SpinLock::new(());
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// The vector input arrives on (0: input is polled).
static VECTOR: AtomicU8 = AtomicU8::new(0);
/// The CPU the IRQ is routed to.
static ROUTED_TO: AtomicUsize = AtomicUsize::new(0);
static INTERRUPT_DRIVEN: AtomicBool = AtomicBool::new(false);

fn on_input(_frame: &mut TrapFrame) {
    INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    while let Some(byte) = ukplat::console::read_byte() {
        if !RING_BUFFER.push(byte) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    irq::eoi();
}

/// Receive interrupts handled since boot.
pub fn input_interrupts() -> u64 {
    INTERRUPTS.load(Ordering::Relaxed)
}

/// Bytes dropped because the ring was full.
pub fn input_dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The vector console input arrives on, when it is interrupt-driven.
pub fn input_vector() -> Option<u8> {
    INTERRUPT_DRIVEN.load(Ordering::Acquire).then(|| VECTOR.load(Ordering::Relaxed))
}

/// One received byte, if any (never blocks).
pub fn read_byte() -> Option<u8> {
    let _reader = READER.lock();
    if INTERRUPT_DRIVEN.load(Ordering::Acquire) { RING_BUFFER.pop() } else { ukplat::console::read_byte() }
}

/// Reads a line into `buf`: waits until a `\n` arrives (or `buf` is full),
/// drops `\r`, and returns the line without its end.
pub fn read_line(buf: &mut [u8]) -> &[u8] {
    let mut len = 0;
    while len < buf.len() {
        match read_byte() {
            Some(b'\n') => break,
            Some(b'\r') => {}
            Some(byte) => {
                buf[len] = byte;
                len += 1;
            }
            None => wait_for_input(),
        }
    }
    &buf[..len]
}

/// Waits for more input: halts when this CPU receives the input interrupt
/// (the interrupt ends the halt), otherwise spins politely.
fn wait_for_input() {
    #[cfg(target_os = "none")]
    if INTERRUPT_DRIVEN.load(Ordering::Acquire)
        && ROUTED_TO.load(Ordering::Relaxed) == ukplat::cpu::this_cpu()
    {
        let was_enabled = ukplat::irq::save();
        if RING_BUFFER.head.load(Ordering::Acquire) == RING_BUFFER.tail.load(Ordering::Relaxed) {
            ukplat::irq::enable_and_halt();
            ukplat::irq::disable();
        }
        ukplat::irq::restore(was_enabled);
        return;
    }
    ukarch::barrier::spin_hint();
}

/// Routes the device's receive interrupt; says on the console when input
/// stays polled.
#[cfg_attr(not(target_os = "none"), allow(dead_code, reason = "guest-only init"))]
pub(crate) fn init_input() {
    if !ukconfig::ukconsole::INPUT {
        return;
    }
    let Some(isa_irq) = ukplat::console::input_irq() else {
        return;
    };
    let vector = irq::vector::ISA_BASE + isa_irq;
    let cpu = ukplat::cpu::this_cpu();
    let routed = irq::register(vector, on_input).and_then(|()| irq::route_isa_irq(isa_irq, vector, cpu));
    match routed {
        Ok(()) => {
            VECTOR.store(vector, Ordering::Relaxed);
            ROUTED_TO.store(cpu, Ordering::Relaxed);
            INTERRUPT_DRIVEN.store(true, Ordering::Release);
            ukplat::console::enable_input_interrupt();
        }
        Err(e) => {
            irq::unregister(vector);
            crate::println!(
                "ukconsole: input stays polled: cannot route IRQ {isa_irq} to vector {vector:#x}: {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_fifo_and_bounded() {
        let ring = Ring::new();
        assert_eq!(ring.pop(), None);
        for i in 0..RING {
            assert!(ring.push(i as u8));
        }
        assert!(!ring.push(0), "a full ring refuses");
        for i in 0..RING {
            assert_eq!(ring.pop(), Some(i as u8));
        }
        assert_eq!(ring.pop(), None);
        assert!(ring.push(7));
        assert_eq!(ring.pop(), Some(7));
    }
}
