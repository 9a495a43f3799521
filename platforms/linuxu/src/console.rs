//! The console: stdout for output, stdin for input (polled: a read that
//! finds nothing returns `None` at once, as a UART's empty receive register
//! does).

use crate::sys;
use ukplat::console::ConsoleDevice;

/// The process's standard streams.
pub struct Stdio;

/// The registered console.
pub static STDIO: Stdio = Stdio;

impl ConsoleDevice for Stdio {
    fn name(&self) -> &'static str {
        "stdio"
    }

    fn write(&self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match sys::check(sys::write(1, bytes)) {
                Ok(n) => bytes = &bytes[n..],
                Err(errno) if errno == linux_raw_sys::errno::EINTR as i32 => {}
                // stdout closed or broken: nobody reads the console.
                Err(_) => return,
            }
        }
    }

    fn read_byte(&self) -> Option<u8> {
        if sys::poll_one(0, sys::abi::POLLIN as i16, 0) <= 0 {
            return None;
        }
        let mut byte = [0u8];
        (sys::read(0, &mut byte) == 1).then_some(byte[0])
    }
}
