//! Publishes the platform's linker script to the image crate (as the kvm
//! platform does): `cargo:linker_script` reaches the generated image crate
//! as `DEP_UKPLAT_LINUXU_LINKER_SCRIPT`, whose build script adds `-T<script>`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&dir).join("link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:linker_script={}", script.display());
}
