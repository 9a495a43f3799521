//! The build configuration of the image, as typed Rust constants.
//!
//! Every library and platform of ukrs declares its options in its
//! `Kconfig.toml`; an app chooses a platform, selects libraries and sets
//! options in `config/APP.toml`, and `cargo xtask` may override them with
//! `--set LIB.OPTION=VALUE`. The host crate `kconfig` resolves all of that and
//! generates this crate's contents:
//!
//! * [`APP`] and [`LIBRARIES`]: the app and the selected libraries;
//! * module [`platform`]: the platform's `NAME` and its options;
//! * one module per declared library, e.g. `ukalloc`, with `SELECTED` (whether
//!   the library is linked in this image) and one constant per option:
//!   `bool`, `usize` or `i64` for integers (`usize` when the declared range
//!   excludes negative numbers), `&str` for strings, and an enum with
//!   `as_str()` for choices (`"linked-list"` becomes `LinkedList`).
//!
//! Built by `cargo xtask`, the constants are those of the app being built
//! (the generated file is named by the environment variable `UKRS_CONFIG_RS`).
//! Built any other way (e.g. `cargo build`, `cargo test` on the host), they
//! are the declared defaults: `APP` is `""`, every library is selected, and
//! the platform is the first one declared.
//!
//! ```
//! // A library reads its options as constants, so unused branches vanish.
//! if ukconfig::ukboot::BANNER {
//!     let _ = ukconfig::platform::NAME;
//! }
//! ```

#![no_std]

include!(concat!(env!("OUT_DIR"), "/ukconfig.rs"));
