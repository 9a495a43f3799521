//! Writes `$OUT_DIR/ukconfig.rs`, the configuration as Rust constants.
//!
//! * `UKRS_CONFIG_RS` set (by `cargo xtask`): that file, generated from the
//!   app's resolved configuration, is copied.
//! * Otherwise (a plain `cargo build`/`cargo test` on the host): the
//!   workspace's declarations are loaded and every library's defaults are
//!   written.
//!
//! A configuration error fails the build with its one-line message.

use std::path::{Path, PathBuf};

/// Fails the build with `message`.
fn fail(message: &str) -> ! {
    println!("cargo::error={message}");
    std::process::exit(0)
}

fn main() {
    let out_dir = std::env::var_os("OUT_DIR").unwrap_or_else(|| fail("OUT_DIR is not set"));
    let out = PathBuf::from(out_dir).join("ukconfig.rs");
    println!("cargo::rerun-if-env-changed=UKRS_CONFIG_RS");

    let source = match std::env::var_os("UKRS_CONFIG_RS") {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo::rerun-if-changed={}", path.display());
            std::fs::read_to_string(&path).unwrap_or_else(|e| {
                fail(&format!("{}: cannot read the file named by UKRS_CONFIG_RS: {e}", path.display()))
            })
        }
        None => {
            let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| fail("CARGO_MANIFEST_DIR is not set"));
            let root = Path::new(&manifest_dir).join("../..");
            let ws = kconfig::Workspace::load(&root).unwrap_or_else(|e| fail(&e.to_string()));
            for file in ws.input_files() {
                println!("cargo::rerun-if-changed={}", file.display());
            }
            ws.defaults_rust()
        }
    };

    // Rewrite only on a change, so that an unchanged configuration does not
    // look new.
    if std::fs::read_to_string(&out).ok().as_deref() != Some(source.as_str()) {
        std::fs::write(&out, source)
            .unwrap_or_else(|e| fail(&format!("{}: cannot write: {e}", out.display())));
    }
}
