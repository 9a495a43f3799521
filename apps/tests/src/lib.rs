//! # tests — the in-guest test app
//!
//! `main` runs every test case registered in the image through `uktest`:
//! the libraries' own cases (compiled in because `cargo xtask` enables their
//! `uktest` feature) and this app's end-to-end checks:
//!
//! * the configuration takes effect: `config/tests.toml` sets non-default
//!   values (log level `debug`, log prefix `"[guest] "`, 128 MiB of memory)
//!   and a debug record must reach the console as `[guest] [DEBUG] ...`, a
//!   trace record must not, and the guest must have 128 MiB of RAM;
//! * every selected library with in-guest tests registered them (xtask
//!   enabled its `uktest` feature), and no test comes from an unselected
//!   crate;
//! * the heap backend compiled in is the one the host asked for:
//!   `tests.expect_backend=NAME` on the command line (xtask passes it, also
//!   when it rebuilds with `--set ukalloc.backend=linked-list`) must equal
//!   `ukconfig::ukalloc::BACKEND` (ukalloc's own test checks that the heap
//!   in use behaves as that backend);
//! * the boot information is sane: a memory map, free memory inside RAM and
//!   outside the image;
//! * `ukarch::fpu` (which cannot register cases itself: `uktest` depends on
//!   `ukarch`): the FPU/SSE/AVX state `init_this_cpu` enables (its CR0/CR4
//!   bits only in ring 0, i.e. on kvm; `skipped` on linuxu), and
//!   save/restore through `FpuState`.
//!
//! Each case prints `ok`, `FAILED at ...` or `skipped: REASON` (a case that
//! cannot run in this configuration, e.g. the TSC-deadline timer under
//! TCG); the closing line is uktest's `N passed, N failed, N skipped`, and
//! the exit status is 0 only when no selected test failed.
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
