//! # ukconsole — printing and logging over the platform console
//!
//! What it offers:
//!
//! * [`print!`], [`println!`], [`eprint!`], [`eprintln!`] with the usual
//!   `format_args!` syntax, writing to the platform console
//!   ([`ukplat::console::write`]). Text is formatted into a small stack buffer
//!   ([`CHUNK`] bytes, no heap) and handed to the device in whole chunks. One
//!   macro call is one critical section under the console lock (below), so
//!   lines from different CPUs or from interrupt handlers never interleave.
//!   There is one console, so `eprint!` and `print!` go to the same device.
//! * [`BufWriter`]: formatting into a fixed-size buffer (what the macros use;
//!   also handy to build messages without a heap), and [`write_fmt_chunked`]
//!   for formatting into any byte sink.
//! * A [`log`] backend ([`ConsoleLogger`]) installed before anything else runs
//!   (init priority `ukboot::priority::CONSOLE`), printing each record as
//!   `{log_prefix}[LEVEL] target: message`. Records more verbose than
//!   `ukconsole.log_level` are discarded by the `log` macros themselves.
//! * Input: [`read_byte`] and [`read_line`] over a buffer the device's
//!   receive interrupt fills (the serial port's IRQ 4 routed through the
//!   I/O APIC by the platform's interrupt controller; see `input.rs`), or by
//!   polling the device when input is not interrupt-driven.
//! * Observability for tests: [`bytes_written`] counts every byte handed to
//!   the device, and [`set_tap`] mirrors the output into a function.
//!
//! **Locks.** Output: a `ukspin::SpinLockIrq` (interrupts and preemption
//! disabled while held), so `ukspin.kind` applies to the console; with
//! `platform.cpus = 1` it reduces to interrupt and preemption control. It is
//! only ever *tried*, never waited on blindly, and it is not re-entrant: do
//! not print from inside a `Display` implementation that is itself being
//! printed. Should that happen, or should a CPU die holding the lock, the
//! writer gives up after about 2^30 TSC cycles of trying (at once with one
//! CPU, where the holder can only be the code it interrupted) and writes
//! anyway with interrupts off, so output is garbled, never lost and never
//! deadlocked. Panic and exception reports bypass this crate
//! (`ukplat::console::Writer`). Input: readers are serialized by a plain
//! `ukspin::SpinLock` (the receive interrupt's handler only fills the ring
//! and takes no lock). The locks use the CPU's per-CPU header (GS), which
//! the platform sets up before any library code: this crate prints nothing
//! before `ukboot` runs the init functions.
//!
//! **Needs:** `ukplat` (the console device), `ukspin` (the locks and
//! nested interrupt disabling; selected by this library), `ukarch` (TSC),
//! `ukboot` (init registration), `ukconfig`.
//!
//! **Config options:** `log_level` (`off`, `error`, `warn`, `info`, `debug`,
//! `trace`; default `info`), `log_prefix` (string printed before every record;
//! default empty), `input` (route the device's receive interrupt; default
//! on).
//!
//! **Why these crates:** `log` is the facade every Rust library already logs
//! through, so third-party crates' records reach the console without glue.
//!
//! ```
//! let mut buf = ukconsole::BufWriter::<32>::new();
//! use core::fmt::Write;
//! write!(buf, "{} MiB free", 126).unwrap();
//! assert_eq!(buf.as_str(), "126 MiB free");
//! ```
#![cfg_attr(not(test), no_std)]

mod buf;
#[cfg(feature = "uktest")]
mod guest_tests;
mod input;
mod logger;

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use ukplat::slot::FnSlot;

pub use buf::{BufWriter, ChunkedWriter, write_fmt_chunked};
pub use input::{input_dropped, input_interrupts, input_vector, read_byte, read_line};
pub use logger::{ConsoleLogger, LOGGER, format_record, init_logger, level_filter};

/// Size of the stack buffer the print macros format into; the device gets
/// writes of at most this many bytes (longer single pieces go through whole).
pub const CHUNK: usize = 128;

/// TSC cycles to wait for the console lock before writing without it.
const LOCK_PATIENCE_CYCLES: u64 = 1 << 30;

static LOCK: ukspin::SpinLockIrq<()> = ukspin::SpinLockIrq::new(());
static BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);
/// The tap function, if one is installed.
static TAP: FnSlot<fn(&[u8])> = FnSlot::new();

/// Total bytes this crate handed to the console device since boot.
///
/// ```
/// let before = ukconsole::bytes_written();
/// ukconsole::print!("{}", 12);
/// assert_eq!(ukconsole::bytes_written() - before, 2);
/// ```
pub fn bytes_written() -> u64 {
    BYTES_WRITTEN.load(Ordering::Relaxed)
}

/// Installs `tap` (or removes it with `None`): every chunk written to the
/// console is also passed to it, inside the console's critical section.
/// Returns the previous tap. For tests that capture output.
///
/// The tap runs with interrupts off and the console lock held: it must not
/// print, and should not block.
pub fn set_tap(tap: Option<fn(&[u8])>) -> Option<fn(&[u8])> {
    TAP.swap(tap)
}

/// The sink of every console write: device, counter, tap.
fn emit(bytes: &[u8]) {
    ukplat::console::write(bytes);
    BYTES_WRITTEN.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    if let Some(tap) = TAP.load() {
        tap(bytes);
    }
}

/// Runs `f` inside the console's critical section: interrupts off on this
/// CPU (on the host: `ukspin`'s simulated flag) and, unless it stayed taken
/// for too long, the console lock held.
fn critical<R>(f: impl FnOnce() -> R) -> R {
    let _guard = lock_patiently();
    f()
}

/// The console lock (`Ok`), or, when it stayed taken for too long (a nested
/// print, or a CPU that died holding it), only interrupts disabled (`Err`):
/// the caller then writes without the lock. Interrupts stay off while
/// waiting.
fn lock_patiently() -> Result<ukspin::SpinLockIrqGuard<'static, ()>, ukspin::irq::PushOffGuard> {
    if let Some(guard) = LOCK.try_lock() {
        return Ok(guard);
    }
    // Interrupts off from here: if the lock is taken below, the guard's own
    // level keeps them off when this one is dropped on return.
    let irq_off = ukspin::irq::PushOffGuard::new();
    // With one CPU the holder can only be code this call interrupted or
    // nests in (interrupts are off, nothing else runs here): waiting would
    // never end, so give up at once.
    if !ukspin::SINGLE_CPU {
        let start = ukarch::tsc::read();
        while ukarch::tsc::read().wrapping_sub(start) <= LOCK_PATIENCE_CYCLES {
            if let Some(guard) = LOCK.try_lock() {
                return Ok(guard);
            }
            ukarch::barrier::spin_hint();
        }
    }
    Err(irq_off)
}

/// Formats `args` to the console as one uninterrupted write sequence.
///
/// # Errors
/// Only when a `Display`/`Debug` implementation among the arguments fails.
pub fn write_fmt(args: fmt::Arguments<'_>) -> fmt::Result {
    critical(|| write_fmt_chunked::<CHUNK>(args, &mut emit))
}

/// Runs `f` with a chunked console writer inside one critical section.
pub(crate) fn write_with(f: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) -> fmt::Result {
    critical(|| {
        let mut sink = emit;
        let mut writer = ChunkedWriter::<CHUNK>::new(&mut sink);
        let result = f(&mut writer);
        writer.flush();
        result
    })
}

/// Writes raw bytes to the console (counted, tapped, serialized).
pub fn write_bytes(bytes: &[u8]) {
    critical(|| emit(bytes));
}

/// A [`fmt::Write`] handle on the console. Each `write_str` is serialized on
/// its own; prefer the macros (one critical section per call) for whole lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }

    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> fmt::Result {
        write_fmt(args)
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // A failing `Display` impl leaves what it wrote; nothing else can fail.
    let _ = write_fmt(args);
}

/// Prints to the console, like `std::print!`.
///
/// ```
/// ukconsole::print!("{} + {} = {}", 1, 2, 1 + 2);
/// ```
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::_print(::core::format_args!($($arg)*))
    };
}

/// Prints to the console with a newline, like `std::println!`. The line,
/// newline included, is written in one critical section.
///
/// ```
/// ukconsole::println!();
/// ukconsole::println!("heap: {} KiB", 256);
/// ```
#[macro_export]
macro_rules! println {
    () => {
        $crate::_print(::core::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

/// Like [`print!`]: the unikernel has one console, shared by "stdout" and
/// "stderr".
///
/// ```
/// ukconsole::eprint!("warning: {}", "low memory");
/// ```
#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => {
        $crate::_print(::core::format_args!($($arg)*))
    };
}

/// Like [`println!`] (one console for both streams).
///
/// ```
/// ukconsole::eprintln!("error: {}", 5);
/// ```
#[macro_export]
macro_rules! eprintln {
    () => {
        $crate::_print(::core::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

ukboot::init!(ukboot::priority::CONSOLE, init_logger);
// After the interrupt controller (PLATFORM) is up.
#[cfg(target_os = "none")]
ukboot::init!(ukboot::priority::LIBRARY, input::init_input);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static CAPTURE: Mutex<std::vec::Vec<u8>> = Mutex::new(std::vec::Vec::new());
    /// Tests sharing the global counter and tap run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn capture(bytes: &[u8]) {
        CAPTURE.lock().unwrap().extend_from_slice(bytes);
    }

    #[test]
    fn macros_count_and_tap_what_they_write() {
        let _serial = SERIAL.lock().unwrap();
        CAPTURE.lock().unwrap().clear();
        let old = set_tap(Some(capture));
        let before = bytes_written();
        println!("n={} s={} x={:#06x}", -3, "str", 0xbeefu32);
        print!("a");
        eprint!("b");
        eprintln!("c{}", 1);
        println!();
        let long = "y".repeat(3 * CHUNK + 5);
        println!("{long}");
        set_tap(old);
        let text = std::string::String::from_utf8(CAPTURE.lock().unwrap().clone()).unwrap();
        let expected = format!("n=-3 s=str x=0xbeef\nabc1\n\n{long}\n");
        assert_eq!(text, expected);
        assert_eq!(bytes_written() - before, expected.len() as u64);
    }

    #[test]
    fn tap_can_be_removed() {
        let _serial = SERIAL.lock().unwrap();
        CAPTURE.lock().unwrap().clear();
        set_tap(Some(capture));
        assert_eq!(set_tap(None).map(|f| f as usize), Some(capture as fn(&[u8]) as usize));
        print!("unseen");
        assert!(CAPTURE.lock().unwrap().is_empty());
    }

    /// A print nested in a print (here: inside a `Display` being printed)
    /// cannot take the console lock: it waits out the patience, writes
    /// anyway, and leaves the lock and the interrupt state as they were.
    #[test]
    fn a_nested_print_writes_anyway() {
        struct Nested;
        impl fmt::Display for Nested {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                print!("inner ");
                f.write_str("outer")
            }
        }
        let _serial = SERIAL.lock().unwrap();
        CAPTURE.lock().unwrap().clear();
        let old = set_tap(Some(capture));
        println!("{Nested}");
        set_tap(old);
        assert_eq!(CAPTURE.lock().unwrap().as_slice(), b"inner outer\n");
        assert!(!LOCK.is_locked());
        assert!(ukspin::irq::enabled());
        assert_eq!(ukspin::irq::depth(), 0);
    }

    #[test]
    fn console_writer_writes() {
        let _serial = SERIAL.lock().unwrap();
        let before = bytes_written();
        fmt::Write::write_fmt(&mut Console, format_args!("{}", 1234)).unwrap();
        fmt::Write::write_str(&mut Console, "ab").unwrap();
        assert_eq!(bytes_written() - before, 6);
    }
}
