//! Publishes the platform's linker script to the image crate: Cargo passes
//! `cargo:linker_script` to dependents (this crate has `links = "ukplat_kvm"`)
//! as `DEP_UKPLAT_KVM_LINKER_SCRIPT`, and the generated image crate's build
//! script adds `-T<script>`. The platform owns its memory layout.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&dir).join("link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:linker_script={}", script.display());
}
