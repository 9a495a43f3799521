//! Formatting without allocation: a fixed-capacity buffer and a writer that
//! hands whole chunks to a sink.

use core::fmt;

/// A fixed-capacity text buffer implementing [`fmt::Write`].
///
/// Text that does not fit is dropped (cut at a character boundary, so the
/// content stays valid UTF-8) and [`BufWriter::is_truncated`] turns true;
/// writing never fails. The print macros format through one of these (see
/// [`ChunkedWriter`]); it is also the way to format into memory without a heap.
///
/// ```
/// use core::fmt::Write;
/// let mut buf = ukconsole::BufWriter::<16>::new();
/// write!(buf, "{}-{:#x}", 42, 255).unwrap();
/// assert_eq!(buf.as_str(), "42-0xff");
///
/// let long = ukconsole::BufWriter::<4>::format(format_args!("{}", "héllo"));
/// assert_eq!(long.as_str(), "hél"); // 4 bytes: 'é' takes two
/// assert!(long.is_truncated());
/// ```
#[derive(Clone)]
pub struct BufWriter<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> BufWriter<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { buf: [0; N], len: 0, truncated: false }
    }

    /// Formats `args` into a new buffer (truncating what does not fit).
    pub fn format(args: fmt::Arguments<'_>) -> Self {
        let mut buf = Self::new();
        // Writing into a BufWriter never fails; a `Display` impl may, which
        // leaves the text written so far.
        let _ = fmt::Write::write_fmt(&mut buf, args);
        buf
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole `str`s or prefixes cut at a char boundary are copied in.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Bytes written so far.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was written.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Bytes that still fit.
    pub const fn remaining(&self) -> usize {
        N - self.len
    }

    /// True when some text did not fit and was dropped.
    pub const fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// Empties the buffer (and clears the truncation flag).
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }

    /// Appends as much of `s` as fits, cut at a character boundary; returns
    /// the number of bytes taken.
    pub fn push_str(&mut self, s: &str) -> usize {
        let mut take = s.len().min(self.remaining());
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            self.truncated = true;
        }
        take
    }
}

impl<const N: usize> Default for BufWriter<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for BufWriter<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

impl<const N: usize> fmt::Display for BufWriter<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for BufWriter<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> PartialEq<str> for BufWriter<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for BufWriter<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A [`fmt::Write`] that collects text in an `N`-byte [`BufWriter`] and hands
/// it to `sink` in whole chunks: when the next piece does not fit, and on
/// [`ChunkedWriter::flush`]. Pieces larger than the buffer go to the sink
/// directly, so nothing is ever lost.
///
/// This is the print path: `println!` formats through a
/// `ChunkedWriter<CHUNK>` whose sink is the console device, so the device sees
/// a few large writes rather than one per formatting piece.
///
/// ```
/// let mut seen = [0usize; 8];
/// let mut calls = 0;
/// let mut sink = |bytes: &[u8]| { seen[calls] = bytes.len(); calls += 1; };
/// let (a, b) = ("abcdef", "ghij");
/// ukconsole::write_fmt_chunked::<8>(format_args!("{a}{b}"), &mut sink).unwrap();
/// assert_eq!(&seen[..calls], [6, 4]);
/// ```
pub struct ChunkedWriter<'a, const N: usize> {
    buf: BufWriter<N>,
    sink: &'a mut dyn FnMut(&[u8]),
}

impl<'a, const N: usize> ChunkedWriter<'a, N> {
    /// A writer over `sink`.
    pub fn new(sink: &'a mut dyn FnMut(&[u8])) -> Self {
        Self { buf: BufWriter::new(), sink }
    }

    /// Hands the buffered text to the sink.
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            (self.sink)(self.buf.as_bytes());
            self.buf.clear();
        }
    }
}

impl<const N: usize> fmt::Write for ChunkedWriter<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() > self.buf.remaining() {
            self.flush();
            if s.len() > N {
                (self.sink)(s.as_bytes());
                return Ok(());
            }
        }
        self.buf.push_str(s);
        Ok(())
    }
}

impl<const N: usize> Drop for ChunkedWriter<'_, N> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Formats `args` through an `N`-byte [`ChunkedWriter`] into `sink` and
/// flushes. The print macros call this with the console as the sink.
///
/// # Errors
/// Only when a `Display`/`Debug` implementation among the arguments fails.
pub fn write_fmt_chunked<const N: usize>(
    args: fmt::Arguments<'_>,
    sink: &mut dyn FnMut(&[u8]),
) -> fmt::Result {
    let mut writer = ChunkedWriter::<N>::new(sink);
    let result = fmt::Write::write_fmt(&mut writer, args);
    writer.flush();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn buf_writer_formats_numbers_and_strings() {
        let mut b = BufWriter::<64>::new();
        write!(b, "{} {:>4} {:#x} {:.2} {:?}", -7i32, "ab", 3054u32, 1.5f64, "q").unwrap();
        assert_eq!(b.as_str(), "-7   ab 0xbee 1.50 \"q\"");
        assert!(!b.is_truncated());
        assert_eq!(b.len(), b.as_str().len());
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn buf_writer_truncates_at_char_boundary() {
        let b = BufWriter::<4>::format(format_args!("h\u{e9}llo"));
        assert_eq!(b.as_str(), "h\u{e9}l");
        assert!(b.is_truncated());
        let b = BufWriter::<2>::format(format_args!("a\u{e9}"));
        assert_eq!(b.as_str(), "a");
        assert_eq!(b.remaining(), 1);
    }

    #[test]
    fn chunked_writer_hands_over_whole_chunks_and_loses_nothing() {
        let mut out = std::vec::Vec::new();
        let mut sizes = std::vec::Vec::new();
        let mut sink = |bytes: &[u8]| {
            sizes.push(bytes.len());
            out.extend_from_slice(bytes);
        };
        let long = "x".repeat(20);
        let (n, m) = (std::hint::black_box(12345), std::hint::black_box(6));
        write_fmt_chunked::<8>(format_args!("ab{n}cd{long}ef{m}"), &mut sink).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), format!("ab12345cd{long}ef6"));
        assert!(sizes.iter().all(|&s| s <= 8 || s == 20), "{sizes:?}");
        assert_eq!(sizes.len(), 4, "{sizes:?}"); // "ab12345", "cd", 20 x, "ef6"
    }

    #[test]
    fn empty_format_writes_nothing() {
        let mut calls = 0;
        let mut sink = |_: &[u8]| calls += 1;
        write_fmt_chunked::<8>(format_args!(""), &mut sink).unwrap();
        assert_eq!(calls, 0);
    }
}
