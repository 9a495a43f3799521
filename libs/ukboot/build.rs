//! Publishes ukboot's linker-script fragment (`sections.ld`) to the image
//! crate as `DEP_UKBOOT_LINKER_FRAGMENT` (this crate has `links = "ukboot"`).
//! The fragment places the init table's section after `.data`, inside the
//! image, instead of leaving it to the linker's orphan placement.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let fragment = std::path::Path::new(&dir).join("sections.ld");
    println!("cargo:rerun-if-changed={}", fragment.display());
    println!("cargo:linker_fragment={}", fragment.display());
}
