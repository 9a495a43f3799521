//! The console output device.
//!
//! The platform registers its device (a 16550 UART on `kvm`) before anything
//! else runs; `ukconsole` builds `print!` and `log` on top of [`write`].

/// A byte sink the platform provides. Implementations must be callable from
/// any context (including exception handlers) and must not allocate.
pub trait ConsoleDevice: Sync {
    /// A short name for reports ("16550 at 0x3f8").
    fn name(&self) -> &'static str;
    /// Writes all of `bytes`, blocking until the device accepted them.
    fn write(&self, bytes: &[u8]);
}

static DEVICE: spin::Once<&'static dyn ConsoleDevice> = spin::Once::new();

/// Registers the console device. The first registration wins; later calls
/// are ignored and return `false`.
pub fn register(device: &'static dyn ConsoleDevice) -> bool {
    let mut first = false;
    DEVICE.call_once(|| {
        first = true;
        device
    });
    first
}

/// Writes bytes to the registered console; a no-op before registration.
pub fn write(bytes: &[u8]) {
    if let Some(device) = DEVICE.get() {
        device.write(bytes);
    }
}

/// The registered device's name, if one is registered.
pub fn device_name() -> Option<&'static str> {
    DEVICE.get().map(|d| d.name())
}

/// A `core::fmt::Write` adapter over [`write`], for code below `ukconsole`
/// (panic and exception reports).
pub struct Writer;

impl core::fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write(s.as_bytes());
        Ok(())
    }
}
