//! Why a test stopped before passing: a failed assertion, or a skip.

use core::fmt;
use core::panic::Location;

/// Bytes of message a [`Stop`] keeps; longer messages end in `...`.
///
/// Small on purpose: a [`Stop`] (location, message, kind) stays under 128
/// bytes, so test functions returning `Result<(), Stop>` pass clippy's
/// `result_large_err`.
pub const MESSAGE_CAPACITY: usize = 109;

/// A fixed-capacity message (no heap): a failure's text or a skip's reason. Text past
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
const _: () = assert!(core::mem::size_of::<Stop>() < 128);

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

/// Whether a [`Stop`] is a failure or a skip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// An assertion failed ([`ut_assert!`](crate::ut_assert) and friends,
    /// [`ut_fail!`](crate::ut_fail)): the test counts as failed.
    Failed,
    /// The test cannot run in this configuration
    /// ([`ut_skip!`](crate::ut_skip)): it counts as skipped, never as
    /// passed.
    Skipped,
}

/// Why a test stopped before passing — the error type of
/// [`TestResult`](crate::TestResult): a failed assertion or a skip, where
/// ([`#[track_caller]`](core::panic::Location::caller): the line of the
/// macro in the test or helper) and a message or reason ([`Message`], no
/// heap).
///
/// Made by the macros ([`ut_assert!`](crate::ut_assert),
/// [`ut_fail!`](crate::ut_fail), [`ut_skip!`](crate::ut_skip), ...) or by
/// [`Stop::failure`] / [`Stop::skip`] (e.g. in a `map_err`). Its `Display`
/// is what the runner prints after `test NAME ... `: `FAILED at FILE:LINE:
/// MESSAGE` or `skipped: REASON`.
///
/// ```
/// use uktest::{Stop, StopKind};
/// let f = Stop::failure(format_args!("{} != {}", 1, 2));
/// assert_eq!((f.kind(), f.message()), (StopKind::Failed, "1 != 2"));
/// assert_eq!(f.line(), line!() - 2);
/// assert_eq!(format!("{f}"), format!("FAILED at {}:{}: 1 != 2", file!(), f.line()));
///
/// let s = Stop::skip(format_args!("needs {} CPUs", 2));
/// assert!(s.is_skip() && !s.is_failure());
/// assert_eq!(format!("{s}"), "skipped: needs 2 CPUs");
/// ```
#[derive(Clone, Debug)]
pub struct Stop {
    location: &'static Location<'static>,
    message: Message,
    kind: StopKind,
}

impl Stop {
    /// A failure with the message `args`, located at the caller.
    #[cold]
    #[track_caller]
    pub fn failure(args: fmt::Arguments<'_>) -> Self {
        Self::new(StopKind::Failed, args)
    }

    /// A skip with the reason `args`, located at the caller.
    #[cold]
    #[track_caller]
    pub fn skip(args: fmt::Arguments<'_>) -> Self {
        Self::new(StopKind::Skipped, args)
    }

    /// Formats `args` into a new stop of `kind` located at the caller.
    #[cold]
    #[track_caller]
    pub fn new(kind: StopKind, args: fmt::Arguments<'_>) -> Self {
        let mut message = Message::new();
        // Writing into a Message never fails; a failing Display impl in the
        // arguments leaves what it wrote, which is still worth reporting.
        let _ = fmt::Write::write_fmt(&mut message, args);
        Self { location: Location::caller(), message, kind }
    }

    /// Failure or skip.
    pub const fn kind(&self) -> StopKind {
        self.kind
    }

    /// True for a failed assertion.
    pub fn is_failure(&self) -> bool {
        self.kind == StopKind::Failed
    }

    /// True for a skip.
    pub fn is_skip(&self) -> bool {
        self.kind == StopKind::Skipped
    }

    /// Source file of the assertion or skip.
    pub fn file(&self) -> &'static str {
        self.location.file()
    }

    /// Line of the assertion or skip.
    pub fn line(&self) -> u32 {
        self.location.line()
    }

    /// The message (a failure) or reason (a skip).
    pub fn message(&self) -> &str {
        self.message.as_str()
    }

    /// The message buffer (with its truncation flag).
    pub const fn message_buf(&self) -> &Message {
        &self.message
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            StopKind::Failed => write!(f, "FAILED at {}:{}: {}", self.file(), self.line(), self.message),
            StopKind::Skipped => write!(f, "skipped: {}", self.message),
        }
    }
}

/// Turns any displayable error into a failed test: `result.or_fail()?`
/// instead of `result.or_fail()?`.
/// The failure is located at the caller.
///
/// ```
/// use uktest::{OrFail, TestResult};
/// fn parse(text: &str) -> TestResult {
///     let n: u32 = text.parse().or_fail()?;
///     uktest::ut_assert!(n > 0);
///     Ok(())
/// }
/// assert!(parse("7").is_ok());
/// assert_eq!(parse("x").unwrap_err().message(), "invalid digit found in string");
/// ```
pub trait OrFail<T> {
    /// `Ok` as it is; an error as a [`Stop::failure`] with its text.
    fn or_fail(self) -> Result<T, Stop>;
}

impl<T, E: fmt::Display> OrFail<T> for Result<T, E> {
    #[track_caller]
    fn or_fail(self) -> Result<T, Stop> {
        match self {
            Ok(value) => Ok(value),
            Err(e) => Err(Stop::failure(format_args!("{e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_and_marked() {
        let long = "a".repeat(MESSAGE_CAPACITY + 10);
        let f = Stop::failure(format_args!("{long}"));
        assert!(f.message_buf().is_truncated());
        assert_eq!(f.message().len(), MESSAGE_CAPACITY);
        assert!(f.message().ends_with("aaa..."));
    }

    #[test]
    fn exact_fit_is_not_truncated() {
        let exact = "b".repeat(MESSAGE_CAPACITY);
        let f = Stop::failure(format_args!("{exact}"));
        assert!(!f.message_buf().is_truncated());
        assert_eq!(f.message(), exact);
    }

    #[test]
    fn multibyte_cut_stays_valid_utf8() {
        let long = "\u{e9}".repeat(MESSAGE_CAPACITY);
        let f = Stop::failure(format_args!("x{long}"));
        assert!(f.message().ends_with("\u{e9}..."), "{}", f.message());
        assert!(f.message().len() <= MESSAGE_CAPACITY);
    }

    #[test]
    fn a_skip_keeps_its_reason_kind_and_location() {
        let line = line!() + 1;
        let s = Stop::skip(format_args!("needs {} CPUs, {} configured", 2, 1));
        assert_eq!(s.kind(), StopKind::Skipped);
        assert!(s.is_skip() && !s.is_failure());
        assert_eq!((s.file(), s.line()), (file!(), line));
        assert_eq!(s.message(), "needs 2 CPUs, 1 configured");
        assert_eq!(s.to_string(), "skipped: needs 2 CPUs, 1 configured");
        let long = Stop::skip(format_args!("{}", "c".repeat(MESSAGE_CAPACITY + 1)));
        assert!(long.is_skip() && long.message_buf().is_truncated());
        assert!(long.to_string().ends_with("ccc..."));
    }

    #[test]
    fn a_failure_shows_where_it_failed() {
        let line = line!() + 1;
        let f = Stop::new(StopKind::Failed, format_args!("boom {}", 1));
        assert!(f.is_failure() && !f.is_skip());
        assert_eq!(f.to_string(), format!("FAILED at {}:{line}: boom 1", file!()));
    }
}
