//! The FPU trap that lazy FPU switching needs: the platform can make the
//! next x87/SSE/AVX instruction on a CPU raise #NM (vector 7), or it
//! cannot (a platform in user mode), and then a scheduler switches the
//! state eagerly.
//!
//! ```no_run
//! if ukplat::fpu::can_trap() {
//!     ukplat::fpu::set_trap(true); // the next FPU instruction raises #NM
//! }
//! ```

/// Whether the platform can make FPU instructions trap.
#[inline(always)]
pub fn can_trap() -> bool {
    imp::can_trap()
}

/// Arms (`true`) or disarms this CPU's FPU trap. Call only when
/// [`can_trap`].
#[inline(always)]
pub fn set_trap(armed: bool) {
    imp::set_trap(armed);
}

#[cfg(target_os = "none")]
mod imp {
    pub(super) use crate::platform::imports::{fpu_can_trap as can_trap, fpu_set_trap as set_trap};
}

/// Host builds: no trap (the scheduler's host tests switch eagerly).
#[cfg(not(target_os = "none"))]
mod imp {
    pub(super) fn can_trap() -> bool {
        false
    }

    pub(super) fn set_trap(armed: bool) {
        panic!("ukplat::fpu::set_trap({armed}): host builds cannot trap FPU instructions");
    }
}
