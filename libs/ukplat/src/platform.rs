//! The operations every platform implements, resolved when the image links.
//!
//! A platform is chosen at build time (`platform.name`), so the libraries'
//! calls into it need no indirection. The interface is a list of functions
//! written once, in [`interface!`](crate::__ukplat_interface); from that one
//! list this crate generates:
//!
//! - the trait [`Platform`], which a platform implements on a type of its own;
//! - the `extern "Rust"` declarations that this crate's wrappers call
//!   (`__ukplat_irq_enable`, ...);
//! - through [`platform!`](crate::platform), which the platform invokes once
//!   with its type, the `#[no_mangle]` definitions of those symbols, each
//!   calling the platform's trait method.
//!
//! The declarations and the definitions come from the same list, so their
//! signatures cannot drift apart, and the definitions are checked against
//! the trait by the compiler. An image links exactly one platform: a
//! second one is a duplicate-symbol error, none an undefined-symbol error.
//! Release images are built with fat LTO, which merges every crate into one
//! module: the wrappers inline down to the platform's instructions
//! (`cli`, `sti; hlt`, a local APIC register write), with no call left —
//! `cargo xtask test` checks this in helloworld's disassembly.
//!
//! Libraries call the interface through the modules that own each subject:
//! [`irq`](crate::irq) (enable, disable, save, restore, halt),
//! [`ipi`](crate::ipi), [`cpu`](crate::cpu) (the per-CPU base),
//! [`clock`](crate::clock) (the counter, its rate, the time of day at boot),
//! [`timer`](crate::timer) (the per-CPU timer event). Host builds
//! (unit tests and loom models of the libraries) have no platform: there
//! the interrupt flag is a per-thread variable, the clock counts the host's
//! monotonic nanoseconds, and the operations that need hardware panic,
//! saying so.
//!
//! ```ignore
//! // In a platform crate:
//! struct Kvm;
//! impl ukplat::platform::Platform for Kvm {
//!     fn irq_enable() { /* sti */ }
//!     // ... every function of the interface ...
//! }
//! ukplat::platform!(Kvm);
//! ```

/// Where an inter-processor interrupt goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiTarget {
    /// One CPU, by index (it may be the sender).
    Cpu(crate::cpu::CpuIndex),
    /// Every started CPU except the sender.
    AllOthers,
    /// The sender itself.
    ToSelf,
}

/// The interface, written once: expands `$callback!` with the list of
/// functions. Not for direct use: see [`platform!`](crate::platform).
#[doc(hidden)]
#[macro_export]
macro_rules! __ukplat_interface {
    ($($callback:ident)::+ $(, $extra:ty)?) => {
        $($callback)::+! {
            [$($extra)?]
            /// Enables interrupts on this CPU.
            fn irq_enable();
            /// Disables interrupts on this CPU.
            fn irq_disable();
            /// Whether interrupts are enabled on this CPU.
            fn irq_enabled() -> bool;
            /// Enables interrupts and waits until one arrives, atomically:
            /// an interrupt that became pending after the caller's last
            /// check (made with interrupts disabled) ends the wait instead
            /// of being taken before it. Returns after the interrupt's
            /// handler ran, with interrupts enabled.
            fn irq_enable_and_halt();
            /// Raises interrupt `vector` on `target`. The receiving CPU runs
            /// the handler registered for `vector` (`ukplat::irq`).
            fn ipi_send(target: $crate::platform::IpiTarget, vector: u8);
            /// Points this CPU's per-CPU base (GS) at `local`, so that
            /// GS-relative loads read it. Called only by
            /// `ukplat::cpu::init_this_cpu` (whose contract makes it sound:
            /// once per CPU, with the header that describes it).
            fn cpu_set_base(local: &'static $crate::cpu::CpuLocal);
            /// This CPU's per-CPU base as it is now (0 before
            /// `cpu_set_base`), for reports that must not trust it.
            fn cpu_base() -> u64;
            /// Finds the clock counter's rate (kvm: calibrates the TSC
            /// from `platform.clock_source`) and describes the clock. Called
            /// once, by the time library's init; images without one never
            /// pay for calibration. See [`clock`](crate::clock).
            fn clock_init() -> Result<$crate::clock::ClockInfo, $crate::clock::ClockError>;
            /// The clock counter (kvm: `rdtsc`), not ordered against
            /// surrounding instructions.
            fn clock_read() -> u64;
            /// The clock counter, read after every earlier instruction
            /// completed (kvm: `lfence; rdtsc`).
            fn clock_read_ordered() -> u64;
            /// The time of day and the counter value it held at, from the
            /// machine's real-time clock (kvm: the CMOS RTC); `None` when
            /// the machine has none.
            fn clock_wall_time() -> Option<$crate::clock::WallTime>;
            /// Chooses the event timer (kvm: the local APIC timer in
            /// TSC-deadline or one-shot mode, `platform.event_timer`) and
            /// measures its rate. Called once, after `clock_init`. See
            /// [`timer`](crate::timer).
            fn timer_init() -> Result<$crate::timer::TimerInfo, $crate::timer::TimerError>;
            /// Arms this CPU's timer to raise `ukplat::irq::vector::TIMER`
            /// when the clock counter reaches `deadline`, replacing any
            /// pending event or periodic tick. It may fire early; never
            /// much later. Interrupts disabled.
            fn timer_arm(deadline: u64);
            /// Starts this CPU's periodic tick at `hz` and reports the
            /// period as programmed. Interrupts disabled.
            fn timer_periodic(hz: u32) -> Result<$crate::timer::Period, $crate::timer::TimerError>;
            /// Stops this CPU's timer (event or periodic tick). Interrupts
            /// disabled.
            fn timer_stop();
            /// Whether the platform can make the next x87/SSE/AVX
            /// instruction on a CPU trap (kvm: CR0.TS and #NM, vector 7),
            /// which lazy FPU switching needs. Without it (linuxu: user
            /// mode cannot), a scheduler switches FPU state eagerly.
            fn fpu_can_trap() -> bool;
            /// Makes the next FPU instruction on this CPU trap (`armed`) or
            /// run (`!armed`). Called only when `fpu_can_trap()`.
            fn fpu_set_trap(armed: bool);
            /// The physical address of the live 4-level page tables when
            /// the image manages its own (kvm: CR3's page), or `None` when
            /// the host maps memory for it (linuxu). See
            /// [`vmem`](crate::vmem).
            fn vmem_page_tables() -> Option<u64>;
            /// Host-mapped platforms: maps `len` bytes of zeroed read-write
            /// memory at `start` (page-aligned, in an area nothing else
            /// maps), or returns the host's error number. Called only when
            /// `vmem_page_tables()` is `None`.
            fn vmem_map(start: usize, len: usize) -> Result<(), i32>;
            /// Host-mapped platforms: whether the byte at `addr` can be
            /// read without a fault (a system call: for error checks, not
            /// hot paths). Called only when `vmem_page_tables()` is `None`.
            fn vmem_readable(addr: usize) -> bool;
        }
    };
}

macro_rules! __ukplat_trait {
    ([] $($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {
        /// What a platform implements: one associated function per
        /// operation of the interface (see the module documentation). A
        /// platform implements it on a type of its own and passes the type
        /// to [`platform!`](crate::platform).
        pub trait Platform {
            $($(#[$doc])* fn $name($($arg: $ty),*) $(-> $ret)?;)*
        }
    };
}
__ukplat_interface!(crate::platform::__ukplat_trait);
pub(crate) use __ukplat_trait;

macro_rules! __ukplat_imports {
    ([] $($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {
        /// The symbols [`platform!`](crate::platform) defines.
        #[cfg(target_os = "none")]
        pub(crate) mod imports {
            unsafe extern "Rust" {
                $(
                    $(#[$doc])*
                    #[link_name = concat!("__ukplat_", stringify!($name))]
                    pub(crate) safe fn $name($($arg: $ty),*) $(-> $ret)?;
                )*
            }
        }
    };
}
__ukplat_interface!(crate::platform::__ukplat_imports);
pub(crate) use __ukplat_imports;

/// Defines the platform's symbols from its [`Platform`](crate::platform::Platform)
/// implementation. A platform crate invokes it exactly once, at its root.
///
/// ```ignore
/// ukplat::platform!(Kvm);
/// ```
#[macro_export]
macro_rules! platform {
    ($platform:ty) => {
        $crate::__ukplat_interface!($crate::__ukplat_exports, $platform);
    };
}

/// Defines one exported function per operation, calling `$platform`'s
/// implementation. Used by [`platform!`](crate::platform).
#[doc(hidden)]
#[macro_export]
macro_rules! __ukplat_exports {
    ([$platform:ty] $($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {
        #[doc(hidden)]
        pub mod __ukplat_exports {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[doc(hidden)]
                #[inline(always)]
                #[unsafe(export_name = concat!("__ukplat_", stringify!($name)))]
                pub fn $name($($arg: $ty),*) $(-> $ret)? {
                    <$platform as $crate::platform::Platform>::$name($($arg),*)
                }
            )*
        }
    };
}
