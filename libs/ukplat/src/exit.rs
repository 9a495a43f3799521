//! Shutting the machine down with a status.
//!
//! Status values are small (0..=111): the kvm platform reports them through
//! `isa-debug-exit`, which leaves one byte of QEMU exit code for them (see
//! `platforms/kvm/src/shutdown.rs`); `cargo xtask run` maps the code back and
//! names the reserved values below.

/// The app's `main` returned success.
pub const SUCCESS: u8 = 0;
/// Generic failure (e.g. an in-guest test failed).
pub const FAILURE: u8 = 1;
/// A Rust panic.
pub const PANIC: u8 = 110;
/// An unhandled CPU exception.
pub const CPU_EXCEPTION: u8 = 111;
/// Largest status an app may return; larger values are clamped to [`FAILURE`].
pub const MAX_APP_STATUS: u8 = 108;

/// The platform's shutdown routine. It must not return.
pub type ExitFn = fn(status: u8) -> !;

static EXIT: crate::once::Once<ExitFn> = crate::once::Once::new();

/// Registers the platform's shutdown routine (first registration wins).
pub fn register(exit: ExitFn) {
    EXIT.call_once(|| exit);
}

/// Maps an app's `main` return value to a shutdown status: 0 stays 0, values
/// outside `1..=MAX_APP_STATUS` (negative, or colliding with the reserved
/// statuses) become [`FAILURE`].
pub const fn app_status(code: i32) -> u8 {
    if code >= 0 && code <= MAX_APP_STATUS as i32 { code as u8 } else { FAILURE }
}

/// Shuts the machine down with `status`. Without a registered routine the
/// CPU halts forever (the host-side timeout then reports the hang).
pub fn exit(status: u8) -> ! {
    if let Some(exit) = EXIT.get() {
        exit(status);
    }
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_status_keeps_small_codes_and_clamps_others() {
        assert_eq!(app_status(0), SUCCESS);
        assert_eq!(app_status(7), 7);
        assert_eq!(app_status(MAX_APP_STATUS as i32), MAX_APP_STATUS);
        assert_eq!(app_status(-1), FAILURE);
        assert_eq!(app_status(PANIC as i32), FAILURE);
        assert_eq!(app_status(1000), FAILURE);
    }
}
