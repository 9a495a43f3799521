//! The console device: output, and input where the device has it.
//!
//! The platform registers its device (a 16550 UART on `kvm`) before anything
//! else runs; `ukconsole` builds `print!` and `log` on top of [`write()`], and
//! its input buffer on [`read_byte`] and the device's receive interrupt
//! ([`input_irq`], [`enable_input_interrupt`]).

/// The console device the platform provides. Implementations must be
/// callable from any context (including exception and interrupt handlers)
/// and must not allocate.
pub trait ConsoleDevice: Sync {
    /// A short name for reports ("16550 at 0x3f8").
    fn name(&self) -> &'static str;
    /// Writes all of `bytes`, blocking until the device accepted them.
    fn write(&self, bytes: &[u8]);
    /// One received byte, if the device has one (never blocks). Devices
    /// without input return `None`.
    fn read_byte(&self) -> Option<u8> {
        None
    }
    /// The ISA IRQ the device raises when input arrives, if it has input.
    fn input_irq(&self) -> Option<u8> {
        None
    }
    /// Makes the device raise [`ConsoleDevice::input_irq`] when input
    /// arrives (route the IRQ first).
    fn enable_input_interrupt(&self) {}
}

static DEVICE: crate::once::Once<&'static dyn ConsoleDevice> = crate::once::Once::new();

/// Registers the console device. The first registration wins; later calls
/// are ignored and return `false`.
pub fn register(device: &'static dyn ConsoleDevice) -> bool {
    crate::register_once(&DEVICE, device)
}

/// Writes bytes to the registered console; a no-op before registration.
pub fn write(bytes: &[u8]) {
    if let Some(device) = DEVICE.get() {
        device.write(bytes);
    }
}

/// One received byte from the registered device, if any (never blocks).
pub fn read_byte() -> Option<u8> {
    DEVICE.get().and_then(|d| d.read_byte())
}

/// The ISA IRQ of the registered device's input, if it has input.
pub fn input_irq() -> Option<u8> {
    DEVICE.get().and_then(|d| d.input_irq())
}

/// Enables the registered device's receive interrupt.
pub fn enable_input_interrupt() {
    if let Some(device) = DEVICE.get() {
        device.enable_input_interrupt();
    }
}

/// The registered device's name, if one is registered.
pub fn device_name() -> Option<&'static str> {
    DEVICE.get().map(|d| d.name())
}

/// A `core::fmt::Write` adapter over [`write()`], for code below `ukconsole`
/// (panic and exception reports).
pub struct Writer;

impl core::fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write(s.as_bytes());
        Ok(())
    }
}
