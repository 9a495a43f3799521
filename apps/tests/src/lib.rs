//! # tests — the in-guest test app
//!
//! `main` runs every test case registered in the image through `uktest`:
//! the libraries' own cases (compiled in because `cargo xtask` enables their
//! `uktest` feature) and this app's end-to-end checks:
//!
//! * the configuration reaches the code: `config/tests.toml` sets non-default
//!   values (log level `debug`, log prefix `"[guest] "`, `max_args` 48,
//!   128 MiB of memory) and the `ukconfig` constants must equal them;
//! * the heap backend in use is the one the host asked for:
//!   `tests.expect_backend=NAME` on the command line (xtask passes it, also
//!   when it rebuilds with `--set ukalloc.backend=linked-list`) must equal
//!   `ukconfig::ukalloc::BACKEND`;
//! * the console: bytes printed with `println!` all reach the device;
//! * the boot information is sane: a memory map, free memory inside RAM and
//!   outside the image;
//! * `ukarch::fpu` (which cannot register cases itself: `uktest` depends on
//!   `ukarch`): the FPU/SSE/AVX state `init_this_cpu` enables, and
//!   save/restore through `FpuState`.
//!
//! The closing line is uktest's `N passed, N failed`; the exit status is 0
//! only when every selected test passed.
//!
//! **Needs:** `uktest`, `ukconsole`, `ukalloc`, `ukboot`, `ukplat`, `ukconfig`,
//! `ukarch` (with its `alloc` feature, for `FpuState`).
#![no_std]

mod checks;
mod fpu;

/// The app's entry point: runs the tests (see the crate docs).
pub fn main(args: &[&str]) -> i32 {
    uktest::main(args)
}
