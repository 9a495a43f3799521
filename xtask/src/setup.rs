//! Set-up on first use: what the README's two commands need besides cargo.
//!
//! * The pinned toolchain's guest target and components (`rust-toolchain.toml`
//!   lists them). rustup installs them together with a toolchain it installs
//!   itself, but not into a toolchain that was already installed without them
//!   (a machine with 1.95.0 preinstalled for the host only): [`toolchain`]
//!   adds what is missing with `rustup`, saying so in one line.
//! * Host programs: `qemu-system-x86_64` to boot images and `gdb` for the
//!   debugger test. [`program`] finds one on `PATH`; when it is missing it
//!   installs the distribution's package where it can (as root on Debian or
//!   Ubuntu, with `apt-get`), saying so, and otherwise stops with the exact
//!   command to run for the distributions it recognises.
//!
//! Each check runs at most once per xtask process.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The guest target triple.
pub const TARGET: &str = "x86_64-unknown-none";

/// What `rust-toolchain.toml` pins.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pinned {
    /// `channel`, e.g. `1.95.0`.
    pub channel: String,
    /// `components`, e.g. `rustfmt`, `clippy`.
    pub components: Vec<String>,
    /// `targets`, e.g. `x86_64-unknown-none`.
    pub targets: Vec<String>,
}

/// Parses `rust-toolchain.toml`.
pub fn parse_pinned(text: &str) -> Result<Pinned> {
    #[derive(serde::Deserialize)]
    struct File {
        toolchain: Toolchain,
    }
    #[derive(serde::Deserialize)]
    struct Toolchain {
        channel: String,
        #[serde(default)]
        components: Vec<String>,
        #[serde(default)]
        targets: Vec<String>,
    }
    let file: File = toml::from_str(text)?;
    let t = file.toolchain;
    Ok(Pinned { channel: t.channel, components: t.components, targets: t.targets })
}

/// The files in a toolchain's sysroot that show a component is installed
/// (rustup's component names; `rustc`, `cargo` and `rust-std` are always there).
fn component_marker(component: &str) -> Option<&'static str> {
    match component {
        "rustfmt" => Some("bin/rustfmt"),
        "clippy" => Some("bin/cargo-clippy"),
        "rust-src" => Some("lib/rustlib/src/rust/library"),
        "llvm-tools" | "llvm-tools-preview" => Some("lib/rustlib"),
        _ => None,
    }
}

/// What the pinned toolchain at `sysroot` lacks: (targets, components).
pub fn missing(pinned: &Pinned, sysroot: &Path) -> (Vec<String>, Vec<String>) {
    let targets = pinned
        .targets
        .iter()
        .filter(|t| !sysroot.join("lib/rustlib").join(t).join("lib").is_dir())
        .cloned()
        .collect();
    let components = pinned
        .components
        .iter()
        .filter(|c| component_marker(c).is_some_and(|m| !sysroot.join(m).exists()))
        .cloned()
        .collect();
    (targets, components)
}

fn sysroot(root: &Path) -> Result<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(&rustc)
        .current_dir(root)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("running {rustc} --print sysroot"))?;
    if !output.status.success() {
        bail!("{rustc} --print sysroot failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// Makes sure the toolchain in use has every target and component that
/// `rust-toolchain.toml` lists, adding the missing ones with rustup (one line
/// each says so). Without rustup it stops and says what is missing.
pub fn toolchain(root: &Path) -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| ensure_toolchain(root).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn ensure_toolchain(root: &Path) -> Result<()> {
    let file = root.join("rust-toolchain.toml");
    let pinned =
        parse_pinned(&std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?)
            .with_context(|| format!("parsing {}", file.display()))?;
    let sysroot = sysroot(root)?;
    let (targets, components) = missing(&pinned, &sysroot);
    if targets.is_empty() && components.is_empty() {
        return Ok(());
    }
    let have_rustup =
        Command::new("rustup").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    if !targets.is_empty() {
        let mut args = vec!["target".to_string(), "add".into(), "--toolchain".into(), pinned.channel.clone()];
        args.extend(targets.iter().cloned());
        steps.push((format!("target {}", targets.join(", ")), args));
    }
    if !components.is_empty() {
        let mut args =
            vec!["component".to_string(), "add".into(), "--toolchain".into(), pinned.channel.clone()];
        args.extend(components.iter().cloned());
        steps.push((format!("component {}", components.join(", ")), args));
    }
    if !have_rustup.is_ok_and(|s| s.success()) {
        let commands: Vec<String> = steps.iter().map(|(_, a)| format!("rustup {}", a.join(" "))).collect();
        bail!(
            "the toolchain at {} lacks what rust-toolchain.toml lists ({}) and rustup is not on PATH to add it; \
             install rustup (https://rustup.rs) or run: {}",
            sysroot.display(),
            steps.iter().map(|(what, _)| what.as_str()).collect::<Vec<_>>().join("; "),
            commands.join(" && ")
        );
    }
    for (what, args) in steps {
        eprintln!(
            "xtask: toolchain {} lacks {what} (listed in rust-toolchain.toml): running rustup {}",
            pinned.channel,
            args.join(" ")
        );
        let output = Command::new("rustup")
            .current_dir(root)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .context("running rustup")?;
        if !output.status.success() {
            bail!(
                "rustup {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    let (targets, components) = missing(&pinned, &sysroot);
    if !targets.is_empty() || !components.is_empty() {
        bail!(
            "after rustup, the toolchain at {} still lacks targets {targets:?} and components {components:?}",
            sysroot.display()
        );
    }
    Ok(())
}

/// A host program xtask runs, and the package that provides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `qemu-system-x86_64`.
    Qemu,
    /// `gdb`.
    Gdb,
}

impl Program {
    /// The executable's name.
    pub fn binary(self) -> &'static str {
        match self {
            Program::Qemu => "qemu-system-x86_64",
            Program::Gdb => "gdb",
        }
    }

    /// What it is needed for (in messages).
    fn purpose(self) -> &'static str {
        match self {
            Program::Qemu => "to boot images",
            Program::Gdb => "for the debugger (`run --gdb` and its test)",
        }
    }
}

/// Linux distribution families xtask knows how to install packages on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distro {
    /// Debian, Ubuntu and their derivatives (`apt-get`).
    Debian,
    /// Fedora, RHEL, CentOS (`dnf`).
    Fedora,
    /// Arch Linux (`pacman`).
    Arch,
    /// openSUSE, SLES (`zypper`).
    Suse,
    /// Alpine (`apk`).
    Alpine,
}

/// The distribution family from `/etc/os-release` contents (`ID` and `ID_LIKE`).
pub fn distro_from_os_release(text: &str) -> Option<Distro> {
    let mut ids = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("ID=").or_else(|| line.strip_prefix("ID_LIKE=")) {
            ids.extend(v.trim_matches('"').split_whitespace().map(str::to_string));
        }
    }
    ids.iter().find_map(|id| match id.as_str() {
        "debian" | "ubuntu" => Some(Distro::Debian),
        "fedora" | "rhel" | "centos" => Some(Distro::Fedora),
        "arch" => Some(Distro::Arch),
        "suse" | "opensuse" | "sles" => Some(Distro::Suse),
        "alpine" => Some(Distro::Alpine),
        _ => None,
    })
}

/// The command that installs `program` on `distro` (with `sudo` unless root).
pub fn install_command(distro: Distro, program: Program, root: bool) -> String {
    let sudo = if root { "" } else { "sudo " };
    let package = match (distro, program) {
        (_, Program::Gdb) => "gdb",
        (Distro::Debian | Distro::Fedora | Distro::Arch, Program::Qemu) => "qemu-system-x86",
        (Distro::Suse, Program::Qemu) => "qemu-x86",
        (Distro::Alpine, Program::Qemu) => "qemu-system-x86_64",
    };
    match distro {
        Distro::Debian => format!("{sudo}apt-get install -y {package}"),
        Distro::Fedora => format!("{sudo}dnf install -y {package}"),
        Distro::Arch => format!("{sudo}pacman -S --noconfirm {package}"),
        Distro::Suse => format!("{sudo}zypper install -y {package}"),
        Distro::Alpine => format!("{sudo}apk add {package}"),
    }
}

/// Makes sure a development package (headers and libraries, no program to
/// look for on `PATH`) is installed: `present` says whether it is; when it is
/// not, installs `package(distro)` as root on Debian or Ubuntu (saying so, as
/// for [`program`]), and otherwise fails with the command to run. Used for
/// `liburcu-dev` by the benchmarks' native peers ([`crate::anchors`]).
pub fn package(package: fn(Distro) -> &'static str, purpose: &str, present: impl Fn() -> bool) -> Result<()> {
    if present() {
        return Ok(());
    }
    let distro = std::fs::read_to_string("/etc/os-release").ok().as_deref().and_then(distro_from_os_release);
    let root = is_root();
    let command = |d: Distro| {
        let name = package(d);
        let sudo = if root { "" } else { "sudo " };
        match d {
            Distro::Debian => format!("{sudo}apt-get install -y {name}"),
            Distro::Fedora => format!("{sudo}dnf install -y {name}"),
            Distro::Arch => format!("{sudo}pacman -S --noconfirm {name}"),
            Distro::Suse => format!("{sudo}zypper install -y {name}"),
            Distro::Alpine => format!("{sudo}apk add {name}"),
        }
    };
    match distro {
        Some(Distro::Debian) if root && which("apt-get").is_some() => {
            let name = package(Distro::Debian);
            eprintln!(
                "xtask: {name} is missing ({purpose}): running apt-get update && apt-get install -y {name}"
            );
            apt_get(&["update", "-qq"])?;
            apt_get(&["install", "-y", "-qq", name])?;
            if !present() {
                bail!("installed {name} but it is still not usable");
            }
            eprintln!("xtask: installed {name}");
            Ok(())
        }
        Some(d) => bail!("{} is not installed ({purpose}); install it with: {}", package(d), command(d)),
        None => bail!(
            "{} is not installed ({purpose}) and this system is not one xtask knows how to install it on \
             (Debian/Ubuntu: {})",
            package(Distro::Debian),
            command(Distro::Debian)
        ),
    }
}

/// `name` on `PATH`, if it is there.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Makes sure `program` is on `PATH`: installs it as root on Debian or
/// Ubuntu (saying so), and otherwise fails with the command to run.
pub fn program(program: Program) -> Result<()> {
    static DONE: Mutex<Vec<Program>> = Mutex::new(Vec::new());
    let mut done = DONE.lock().expect("setup lock");
    if done.contains(&program) {
        return Ok(());
    }
    ensure_program(program)?;
    done.push(program);
    Ok(())
}

/// Runs `apt-get ARGS` non-interactively; its error output becomes the
/// error on failure.
fn apt_get(args: &[&str]) -> Result<()> {
    let output = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .context("running apt-get")?;
    if !output.status.success() {
        bail!(
            "apt-get {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn ensure_program(program: Program) -> Result<()> {
    let name = program.binary();
    if which(name).is_some() {
        return Ok(());
    }
    let distro = std::fs::read_to_string("/etc/os-release").ok().as_deref().and_then(distro_from_os_release);
    let root = is_root();
    match distro {
        Some(Distro::Debian) if root && which("apt-get").is_some() => {
            let command = install_command(Distro::Debian, program, true);
            eprintln!(
                "xtask: {name} is missing ({}): running apt-get update && {command}",
                program.purpose()
            );
            apt_get(&["update", "-qq"])?;
            let package = command.rsplit(' ').next().expect("install command names a package");
            apt_get(&["install", "-y", "-qq", package])?;
            if which(name).is_none() {
                bail!("installed {package} but {name} is still not on PATH");
            }
            Ok(())
        }
        Some(distro) => bail!(
            "{name} is not installed ({}); install it with: {}",
            program.purpose(),
            install_command(distro, program, root)
        ),
        None => bail!(
            "{name} is not installed ({}) and this system is not one xtask knows how to install it on; \
             install QEMU's x86_64 system emulator{} with your package manager \
             (Debian/Ubuntu: apt-get install {}; Fedora: dnf install {})",
            program.purpose(),
            if program == Program::Gdb { " debugger gdb" } else { "" },
            if program == Program::Gdb { "gdb" } else { "qemu-system-x86" },
            if program == Program::Gdb { "gdb" } else { "qemu-system-x86" },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_toolchain_is_read() {
        let p = parse_pinned(
            "[toolchain]\nchannel = \"1.95.0\"\ncomponents = [\"rustfmt\", \"clippy\"]\ntargets = [\"x86_64-unknown-none\"]\n",
        )
        .unwrap();
        assert_eq!(p.channel, "1.95.0");
        assert_eq!(p.components, ["rustfmt", "clippy"]);
        assert_eq!(p.targets, ["x86_64-unknown-none"]);
        assert!(parse_pinned("[toolchain]\n").is_err());
    }

    #[test]
    fn missing_targets_and_components_are_found_in_a_sysroot() {
        let dir = std::env::temp_dir().join(format!("xtask-setup-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let pinned = Pinned {
            channel: "1.95.0".into(),
            components: vec!["rustfmt".into(), "clippy".into()],
            targets: vec![TARGET.into()],
        };
        assert_eq!(
            missing(&pinned, &dir),
            (vec![TARGET.to_string()], vec!["rustfmt".into(), "clippy".into()])
        );
        std::fs::write(dir.join("bin/rustfmt"), "").unwrap();
        std::fs::create_dir_all(dir.join("lib/rustlib").join(TARGET).join("lib")).unwrap();
        assert_eq!(missing(&pinned, &dir), (vec![], vec!["clippy".to_string()]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn distributions_are_recognised_and_get_their_command() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(distro_from_os_release(debian), Some(Distro::Debian));
        let mint = "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n";
        assert_eq!(distro_from_os_release(mint), Some(Distro::Debian));
        assert_eq!(distro_from_os_release("ID=fedora\n"), Some(Distro::Fedora));
        assert_eq!(
            distro_from_os_release("ID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n"),
            Some(Distro::Suse)
        );
        assert_eq!(distro_from_os_release("ID=nixos\n"), None);
        assert_eq!(
            install_command(Distro::Debian, Program::Qemu, true),
            "apt-get install -y qemu-system-x86"
        );
        assert_eq!(install_command(Distro::Fedora, Program::Gdb, false), "sudo dnf install -y gdb");
        assert_eq!(install_command(Distro::Suse, Program::Qemu, false), "sudo zypper install -y qemu-x86");
    }

    #[test]
    fn which_finds_executables_only() {
        assert!(which("sh").is_some());
        assert!(which("no-such-program-ukrs").is_none());
    }
}
