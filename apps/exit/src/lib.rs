//! # exit — the smallest image
//!
//! `main` returns 0 at once: the image boots the platform and shuts down.
//! `cargo xtask bench boot` measures it as the baseline cost of the VMM.
#![no_std]

/// Returns success immediately.
pub fn main(_args: &[&str]) -> i32 {
    0
}
