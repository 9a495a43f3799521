//! In-guest tests (feature `uktest`): the macros, the log backend, the
//! configured level and prefix, checked on the real console.

use core::fmt::Write;

use uktest::{TestResult, test_case, ut_assert, ut_assert_eq};

use crate::{BufWriter, bytes_written, set_tap};

static CAPTURE: ukspin::SpinLockIrq<BufWriter<512>> = ukspin::SpinLockIrq::new(BufWriter::new());

fn capture(bytes: &[u8]) {
    // The tap runs inside the console's critical section; CAPTURE is only
    // locked here and in `captured`, never while printing.
    let mut buf = CAPTURE.lock();
    for chunk in bytes.utf8_chunks() {
        buf.push_str(chunk.valid());
    }
}

/// Runs `f` with the console output captured; returns the capture and the
/// bytes the device received meanwhile.
fn captured(f: impl FnOnce()) -> (BufWriter<512>, u64) {
    CAPTURE.lock().clear();
    let previous = set_tap(Some(capture));
    let before = bytes_written();
    f();
    let written = bytes_written() - before;
    set_tap(previous);
    (CAPTURE.lock().clone(), written)
}

/// `println!` formats numbers and strings and hands every byte to the device.
fn macros_format_numbers_and_strings() -> TestResult {
    let (n, s, x, f) = (core::hint::black_box(-42i64), "str", 0xbeef_u32, 2.5f32);
    let (out, written) = captured(|| {
        crate::println!("n={n} s={s:>5} x={x:#x} f={f:.3} {:?}", Some(1u8));
        crate::print!("{}", 7u128);
        crate::eprintln!("|{:<4}|{:08b}|", "ab", 5u8);
    });
    ut_assert_eq!(out.as_str(), "n=-42 s=  str x=0xbeef f=2.500 Some(1)\n7|ab  |00000101|\n");
    ut_assert_eq!(written, out.len() as u64);
    ut_assert!(!out.is_truncated());
    Ok(())
}
test_case!(macros_format_numbers_and_strings);

/// A line longer than the chunk buffer arrives whole.
fn long_lines_arrive_whole() -> TestResult {
    let (out, written) = captured(|| {
        crate::print!("<");
        for i in 0..100 {
            crate::print!("{}", i % 10);
        }
        crate::println!(">{}", "x".repeat_free(3 * crate::CHUNK));
    });
    ut_assert_eq!(written as usize, 1 + 100 + 1 + 3 * crate::CHUNK + 1);
    ut_assert!(out.as_str().starts_with("<0123456789012"));
    ut_assert!(out.as_str().ends_with("xxx\n"));
    Ok(())
}
test_case!(long_lines_arrive_whole);

/// A `Display` of a repeated character without allocation.
trait RepeatFree {
    fn repeat_free(self, n: usize) -> Repeat;
}
impl RepeatFree for &'static str {
    fn repeat_free(self, n: usize) -> Repeat {
        Repeat(self, n)
    }
}
struct Repeat(&'static str, usize);
impl core::fmt::Display for Repeat {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for _ in 0..self.1 {
            f.write_str(self.0)?;
        }
        Ok(())
    }
}

/// `BufWriter` formats into memory and truncates at its capacity.
fn buf_writer_formats_and_truncates() -> TestResult {
    let mut b = BufWriter::<16>::new();
    let (id, n) = (core::hint::black_box("id"), core::hint::black_box(42));
    let _ = write!(b, "{id}:{n:04}");
    ut_assert_eq!(b.as_str(), "id:0042");
    let _ = b.write_str("0123456789abcdef");
    ut_assert_eq!(b.len(), 16);
    ut_assert!(b.is_truncated());
    ut_assert_eq!(b.as_str(), "id:0042012345678");
    Ok(())
}
test_case!(buf_writer_formats_and_truncates);

/// Records up to the configured level are printed, more verbose ones are
/// discarded before any byte reaches the device.
fn log_level_filters_records() -> TestResult {
    let max = crate::level_filter();
    ut_assert_eq!(log::max_level(), max, "logger installed with the configured level");
    for level in [log::Level::Error, log::Level::Warn, log::Level::Info, log::Level::Debug, log::Level::Trace]
    {
        let expected = level <= max;
        ut_assert_eq!(log::log_enabled!(level), expected, "log_enabled!({})", level);
        let (_, written) = captured(|| log::log!(level, "level filter probe"));
        ut_assert_eq!(written > 0, expected, "record at {} printed", level);
    }
    Ok(())
}
test_case!(log_level_filters_records);

/// Each record is `{prefix}[LEVEL] target: message`.
fn log_records_carry_prefix_level_and_target() -> TestResult {
    let (out, _) = captured(|| log::error!(target: "probe", "code {}", 7));
    let mut expected = BufWriter::<128>::new();
    let _ = writeln!(expected, "{}[ERROR] probe: code 7", ukconfig::ukconsole::LOG_PREFIX);
    if crate::level_filter() >= log::LevelFilter::Error {
        ut_assert_eq!(out.as_str(), expected.as_str());
    } else {
        ut_assert!(out.is_empty());
    }
    Ok(())
}
test_case!(log_records_carry_prefix_level_and_target);
