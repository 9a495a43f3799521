//! What a failed assertion returns.

use core::fmt;
use core::panic::Location;

/// Bytes of message a [`Failure`] keeps; longer messages end in `...`.
///
/// Small on purpose: a [`Failure`] stays under 128 bytes, so test functions
/// returning `Result<(), Failure>` pass clippy's `result_large_err`.
pub const MESSAGE_CAPACITY: usize = 110;

/// A fixed-capacity failure message (no heap). Text past
/// [`MESSAGE_CAPACITY`] is cut at a character boundary and marked with `...`.
#[derive(Clone)]
pub struct Message {
    buf: [u8; MESSAGE_CAPACITY],
    len: u8,
    truncated: bool,
}

impl Message {
    /// An empty message.
    pub const fn new() -> Self {
        Self { buf: [0; MESSAGE_CAPACITY], len: 0, truncated: false }
    }

    /// The text (ending in `...` when it was cut).
    pub fn as_str(&self) -> &str {
        // Only whole `str`s and prefixes cut at char boundaries are copied in.
        core::str::from_utf8(&self.buf[..self.len()]).unwrap_or("<invalid message>")
    }

    /// Bytes of text.
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the message is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the formatted text was longer than the buffer.
    pub const fn is_truncated(&self) -> bool {
        self.truncated
    }

    fn mark_truncated(&mut self) {
        const MARK: &[u8] = b"...";
        let len = self.len();
        let mut keep = len.min(MESSAGE_CAPACITY - MARK.len());
        while keep > 0 && keep < len && (self.buf[keep] & 0xc0) == 0x80 {
            // Do not cut inside a multi-byte character.
            keep -= 1;
        }
        self.buf[keep..keep + MARK.len()].copy_from_slice(MARK);
        self.set_len(keep + MARK.len());
        self.truncated = true;
    }
}

impl Message {
    fn set_len(&mut self, len: usize) {
        // MESSAGE_CAPACITY < 256 (checked at compile time below).
        self.len = len as u8;
    }
}

const _: () = assert!(MESSAGE_CAPACITY < 256);
const _: () = assert!(core::mem::size_of::<Failure>() < 128);

impl Default for Message {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Message {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let len = self.len();
        let room = MESSAGE_CAPACITY - len;
        if s.len() <= room {
            self.buf[len..len + s.len()].copy_from_slice(s.as_bytes());
            self.set_len(len + s.len());
        } else {
            let mut take = room;
            while !s.is_char_boundary(take) {
                take -= 1;
            }
            self.buf[len..len + take].copy_from_slice(&s.as_bytes()[..take]);
            self.set_len(len + take);
            self.mark_truncated();
        }
        Ok(())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed assertion: where, and what. Made by the assertion macros; shown
/// by the runner as `FAILED at FILE:LINE: MESSAGE`.
///
/// The location is the caller's (`#[track_caller]`): for the assertion
/// macros, the line of the assertion in the test.
///
/// ```
/// let f = uktest::Failure::new(format_args!("{} != {}", 1, 2));
/// assert_eq!(f.message(), "1 != 2");
/// assert_eq!(f.line(), line!() - 2);
/// assert_eq!(format!("{f}"), format!("{}:{}: 1 != 2", file!(), f.line()));
/// ```
#[derive(Clone, Debug)]
pub struct Failure {
    location: &'static Location<'static>,
    message: Message,
}

impl Failure {
    /// Formats `args` into a new failure located at the caller.
    #[cold]
    #[track_caller]
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut message = Message::new();
        // Writing into a Message never fails; a failing Display impl in the
        // arguments leaves what it wrote, which is still worth reporting.
        let _ = fmt::Write::write_fmt(&mut message, args);
        Self { location: Location::caller(), message }
    }

    /// Source file of the failed assertion.
    pub fn file(&self) -> &'static str {
        self.location.file()
    }

    /// Line of the failed assertion.
    pub fn line(&self) -> u32 {
        self.location.line()
    }

    /// The message text.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }

    /// The message buffer (with its truncation flag).
    pub const fn message_buf(&self) -> &Message {
        &self.message
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file(), self.line(), self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_and_marked() {
        let long = "a".repeat(MESSAGE_CAPACITY + 10);
        let f = Failure::new(format_args!("{long}"));
        assert!(f.message_buf().is_truncated());
        assert_eq!(f.message().len(), MESSAGE_CAPACITY);
        assert!(f.message().ends_with("aaa..."));
    }

    #[test]
    fn exact_fit_is_not_truncated() {
        let exact = "b".repeat(MESSAGE_CAPACITY);
        let f = Failure::new(format_args!("{exact}"));
        assert!(!f.message_buf().is_truncated());
        assert_eq!(f.message(), exact);
    }

    #[test]
    fn multibyte_cut_stays_valid_utf8() {
        let long = "\u{e9}".repeat(MESSAGE_CAPACITY);
        let f = Failure::new(format_args!("x{long}"));
        assert!(f.message().ends_with("\u{e9}..."), "{}", f.message());
        assert!(f.message().len() <= MESSAGE_CAPACITY);
    }
}
