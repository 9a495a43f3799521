//! The `log` backend.

use core::fmt;

use ukconfig::ukconsole::{LOG_LEVEL, LOG_PREFIX, LogLevel};

/// The most verbose level printed, from the `ukconsole.log_level` option.
///
/// ```
/// // The default configuration prints info and above.
/// assert!(ukconsole::level_filter() <= log::LevelFilter::Trace);
/// ```
pub const fn level_filter() -> log::LevelFilter {
    match LOG_LEVEL {
        LogLevel::Off => log::LevelFilter::Off,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}

/// Writes one record as `{LOG_PREFIX}[LEVEL] target: message\n`.
///
/// ```
/// let mut out = ukconsole::BufWriter::<64>::new();
/// let state = "down";
/// ukconsole::format_record(
///     &log::Record::builder()
///         .level(log::Level::Warn)
///         .target("net")
///         .args(format_args!("link {state}"))
///         .build(),
///     &mut out,
/// )
/// .unwrap();
/// // With the default (empty) prefix:
/// assert!(out.as_str().ends_with("[WARN] net: link down\n"));
/// ```
///
/// # Errors
/// Only when `out` or the record's arguments fail.
pub fn format_record(record: &log::Record<'_>, out: &mut dyn fmt::Write) -> fmt::Result {
    writeln!(out, "{}[{}] {}: {}", LOG_PREFIX, record.level(), record.target(), record.args())
}

/// The `log::Log` implementation writing to the console. Installed by
/// [`init_logger`] (which `ukboot` runs at priority `CONSOLE`).
#[derive(Debug)]
pub struct ConsoleLogger;

/// The logger instance handed to `log::set_logger`.
pub static LOGGER: ConsoleLogger = ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= level_filter()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // One critical section per record, so records never interleave.
        let _ = crate::write_with(|out| format_record(record, out));
    }

    fn flush(&self) {}
}

/// Installs [`LOGGER`] as the `log` backend with the configured maximum
/// level. Idempotent: later calls (or another logger installed first) leave
/// the installed logger in place.
pub fn init_logger() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level_filter());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_formatted_with_prefix_level_and_target() {
        let mut out = crate::BufWriter::<96>::new();
        let n = std::hint::black_box(12);
        format_record(
            &log::Record::builder()
                .level(log::Level::Error)
                .target("ukalloc")
                .args(format_args!("{n} bytes"))
                .build(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.as_str(), format!("{LOG_PREFIX}[ERROR] ukalloc: 12 bytes\n"));
    }

    #[test]
    fn logger_filters_by_configured_level() {
        use log::Log;
        let enabled = |level| LOGGER.enabled(&log::Metadata::builder().level(level).build());
        for level in
            [log::Level::Error, log::Level::Warn, log::Level::Info, log::Level::Debug, log::Level::Trace]
        {
            assert_eq!(enabled(level), level <= level_filter());
        }
    }
}
