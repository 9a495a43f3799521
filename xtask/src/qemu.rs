//! Running an image under QEMU: accelerator choice, command line, timeout,
//! serial capture and the guest's exit status. The watcher itself (timeout,
//! capture, typing) is [`crate::guest`]'s, shared with the images that run
//! as Linux processes.

use anyhow::{Result, bail};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// Added by the kvm platform to the status it writes to `isa-debug-exit`
/// (`platforms/kvm/src/shutdown.rs`).
const STATUS_OFFSET: i32 = 16;

/// QEMU accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// QEMU's name.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Whether `/dev/kvm` really works: it opens read-write, speaks API version
/// 12 and creates a VM. Returns why not otherwise.
pub fn kvm_usable() -> Result<(), String> {
    use std::os::fd::AsRawFd;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xae00;
    const KVM_CREATE_VM: libc::c_ulong = 0xae01;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))?;
    // SAFETY: plain ioctls on a file descriptor we own; no pointers passed.
    let version = unsafe { libc::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != 12 {
        return Err(format!("/dev/kvm: API version {version}, expected 12"));
    }
    // SAFETY: as above; the returned descriptor is closed right away.
    let vm = unsafe { libc::ioctl(file.as_raw_fd(), KVM_CREATE_VM, 0) };
    if vm < 0 {
        return Err(format!("/dev/kvm: KVM_CREATE_VM failed: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `vm` is a descriptor the kernel just gave us.
    unsafe { libc::close(vm) };
    Ok(())
}

/// What provides `/dev/kvm` on this host, from the loaded kernel modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmKind {
    /// `kvm_intel` or `kvm_amd`: hardware virtualisation (VMX/SVM).
    Hardware,
    /// `kvm_pvm` alone: the PVM hypervisor ("pagetable-based virtual
    /// machine"), which runs only paravirtualised PVM guests natively, at
    /// hardware CPL 3. A guest that is not PVM-aware, like ours, stays in
    /// PVM's bootstrap mode and is emulated instruction by instruction.
    Pvm,
    /// Neither module is visible (e.g. no /sys): assume hardware.
    Unknown,
}

/// Which KVM implementation backs `/dev/kvm`, from `/sys/module`.
pub fn kvm_kind() -> KvmKind {
    kvm_kind_from(|module| Path::new("/sys/module").join(module).exists())
}

/// [`kvm_kind`] over a predicate "is this module loaded" (host-testable).
pub fn kvm_kind_from(loaded: impl Fn(&str) -> bool) -> KvmKind {
    if loaded("kvm_intel") || loaded("kvm_amd") {
        KvmKind::Hardware
    } else if loaded("kvm_pvm") {
        KvmKind::Pvm
    } else {
        KvmKind::Unknown
    }
}

/// Why `auto` does not pick a PVM-backed KVM (printed with the choice).
pub const PVM_REASON: &str = "/dev/kvm is kvm_pvm, which emulates a guest that is not PVM-aware \
     instruction by instruction (~2 us per instruction here, ~1000x slower than TCG); --accel kvm forces it";

/// Resolves `auto`/`kvm`/`tcg` to an accelerator, with the reason for the choice.
///
/// `auto` takes KVM when `/dev/kvm` works and is hardware-backed; on a
/// PVM-backed `/dev/kvm` it takes TCG and says why (see [`KvmKind::Pvm`]).
/// `kvm` takes KVM whenever `/dev/kvm` works, PVM included.
pub fn choose_accel(requested: &str) -> Result<(Accel, String)> {
    match requested {
        "tcg" => Ok((Accel::Tcg, "requested".into())),
        "kvm" => match kvm_usable() {
            Ok(()) if kvm_kind() == KvmKind::Pvm => {
                Ok((Accel::Kvm, "requested; kvm_pvm emulates this guest, expect it to be slow".into()))
            }
            Ok(()) => Ok((Accel::Kvm, "requested".into())),
            Err(why) => bail!("--accel kvm requested but KVM is not usable: {why}"),
        },
        "auto" => Ok(match (kvm_usable(), kvm_kind()) {
            (Ok(()), KvmKind::Pvm) => (Accel::Tcg, format!("auto: {PVM_REASON}")),
            (Ok(()), _) => (Accel::Kvm, "auto: /dev/kvm works".into()),
            (Err(why), _) => (Accel::Tcg, format!("auto: KVM not usable ({why})")),
        }),
        other => bail!("unknown accelerator {other:?}; allowed: auto, kvm, tcg"),
    }
}

/// Everything needed to start QEMU.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// `microvm` or `q35`.
    pub machine: String,
    /// CPUs.
    pub cpus: u32,
    /// MiB.
    pub memory_mib: u64,
    /// Accelerator.
    pub accel: Accel,
    /// Guest command line.
    pub cmdline: String,
    /// Start QEMU's gdb stub on this local TCP port and keep the guest
    /// stopped until a debugger continues it.
    pub gdb: Option<u16>,
    /// TCG's instruction counting (`platform.icount`): the guest's TSC
    /// counts instructions, the same on every run.
    pub icount: bool,
    /// Extra QEMU arguments (`--qemu-arg`), appended last.
    pub extra_args: Vec<String>,
}

/// The QEMU command for `image`.
pub fn command(image: &Path, vm: &VmConfig) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    let machine = match vm.machine.as_str() {
        // No option ROMs (nothing the platform uses; they cost boot time).
        // The RTC is on: uktime reads the time of day from it at boot (the
        // realtime clock, for FUTEX_CLOCK_REALTIME deadlines).
        "microvm" => "microvm,x-option-roms=off,rtc=on".to_string(),
        other => other.to_string(),
    };
    cmd.args(["-M", &machine]);
    match vm.accel {
        // `-cpu host` alone aborts under this nested KVM ("failed to set MSR 0x10a").
        Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host,-arch-capabilities"]),
        Accel::Tcg => cmd.args(["-accel", "tcg", "-cpu", "max"]),
    };
    if vm.icount {
        // One instruction per virtual nanosecond, not slowed to real time,
        // no sleeping: the TSC (derived from it) counts instructions.
        cmd.args(["-icount", "shift=0,align=off,sleep=off"]);
    }
    cmd.args(["-m", &format!("{}M", vm.memory_mib), "-smp", &vm.cpus.to_string()])
        .args(["-nodefaults", "-no-user-config", "-no-reboot", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(image);
    if !vm.cmdline.is_empty() {
        cmd.args(["-append", &vm.cmdline]);
    }
    if let Some(port) = vm.gdb {
        cmd.args(["-gdb", &format!("tcp:127.0.0.1:{port}"), "-S"]);
    }
    cmd.args(&vm.extra_args);
    cmd
}

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest reported a status through `isa-debug-exit`.
    Status(u8),
    /// QEMU exited 0: the guest stopped without reporting (reset, triple fault).
    NoStatus,
    /// QEMU itself failed.
    QemuFailed(i32),
    /// Killed after the timeout.
    TimedOut,
    /// Killed by this signal (QEMU, or a linuxu image, which handles the
    /// signals its faults raise and exits with a status instead).
    Signal(i32),
}

impl Outcome {
    /// Decodes QEMU's exit code.
    pub fn from_exit_code(code: i32) -> Outcome {
        if code == 0 {
            Outcome::NoStatus
        } else if code & 1 == 1 && code > 2 * STATUS_OFFSET {
            Outcome::Status(((code >> 1) - STATUS_OFFSET) as u8)
        } else {
            Outcome::QemuFailed(code)
        }
    }

    /// Decodes the exit code of an image that ran as a Linux process
    /// (`linuxu`): the code (0..=255 on Linux) is the image's status.
    pub fn from_process_code(code: i32) -> Outcome {
        Outcome::Status((code & 0xff) as u8)
    }

    /// The exit code xtask passes on: the guest's status, or 1 for other failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Status(s) => i32::from(*s),
            _ => 1,
        }
    }

    /// A description for humans.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Status(0) => "guest exited with status 0 (success)".into(),
            Outcome::Status(110) => "guest exited with status 110 (panic)".into(),
            Outcome::Status(111) => "guest exited with status 111 (CPU exception)".into(),
            Outcome::Status(s) => format!("guest exited with status {s} (failure)"),
            Outcome::NoStatus => "guest stopped without reporting a status (reset or triple fault)".into(),
            Outcome::QemuFailed(code) => format!("QEMU failed with exit code {code}"),
            Outcome::TimedOut => "guest timed out".into(),
            Outcome::Signal(n) => format!("guest killed by signal {} ({n})", crate::guest::signal_name(*n)),
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// How it ended.
    pub outcome: Outcome,
    /// Everything the guest wrote to the serial console (QEMU's standard
    /// output, or a linuxu image's).
    pub serial: String,
    /// QEMU's own stderr, or a linuxu image's.
    pub stderr: String,
    /// Wall time from spawning QEMU (or the image) to its exit.
    pub wall: Duration,
}

/// Runs `cmd` (a QEMU command) with a timeout and no input, capturing the
/// serial console (QEMU's stdout); with `echo` the console is also copied
/// to our stdout as it arrives. See [`crate::guest`] for the watcher, and
/// [`crate::guest::Guest::run`] for typing into the console.
pub fn run(mut cmd: Command, timeout: Option<Duration>, echo: bool) -> Result<RunResult> {
    cmd.stdin(Stdio::null());
    crate::setup::program(crate::setup::Program::Qemu)?;
    crate::guest::watch(cmd, timeout, echo, None, decode)
}

/// What to type into the serial console, and when.
#[derive(Clone, Copy, Debug)]
pub struct Typing<'a> {
    /// Type once the guest has printed this (as a person waits for a
    /// prompt: bytes sent before the guest set its UART up are lost, since
    /// enabling the UART's FIFOs clears them).
    pub after: &'a str,
    /// The bytes.
    pub bytes: &'a [u8],
}

/// How a QEMU run ended, from QEMU's exit status.
pub fn decode(status: ExitStatus) -> Outcome {
    match status.signal() {
        Some(signal) => Outcome::Signal(signal),
        None => Outcome::from_exit_code(status.code().unwrap_or(-1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_decode() {
        assert_eq!(Outcome::from_exit_code(33), Outcome::Status(0));
        assert_eq!(Outcome::from_exit_code(2 * (16 + 111) + 1), Outcome::Status(111));
        assert_eq!(Outcome::from_exit_code(0), Outcome::NoStatus);
        assert_eq!(Outcome::from_exit_code(1), Outcome::QemuFailed(1));
        assert_eq!(Outcome::from_exit_code(-1), Outcome::QemuFailed(-1));
        assert_eq!(Outcome::Status(3).exit_code(), 3);
        assert_eq!(Outcome::TimedOut.exit_code(), 1);
        assert_eq!(Outcome::from_process_code(0), Outcome::Status(0));
        assert_eq!(Outcome::from_process_code(111), Outcome::Status(111));
        assert_eq!(Outcome::Signal(9).exit_code(), 1);
        assert_eq!(Outcome::Signal(9).describe(), "guest killed by signal SIGKILL (9)");
    }

    #[test]
    fn kvm_kind_from_modules() {
        assert_eq!(kvm_kind_from(|m| m == "kvm_intel"), KvmKind::Hardware);
        assert_eq!(kvm_kind_from(|m| m == "kvm_amd" || m == "kvm_pvm"), KvmKind::Hardware);
        assert_eq!(kvm_kind_from(|m| m == "kvm_pvm"), KvmKind::Pvm);
        assert_eq!(kvm_kind_from(|_| false), KvmKind::Unknown);
    }

    #[test]
    fn command_line_per_accelerator() {
        let vm = VmConfig {
            machine: "microvm".into(),
            cpus: 1,
            memory_mib: 64,
            accel: Accel::Kvm,
            cmdline: "a b".into(),
            gdb: None,
            icount: false,
            extra_args: vec!["-d".into(), "int".into()],
        };
        let args: Vec<String> =
            command(Path::new("img"), &vm).get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.windows(2).any(|w| w == ["-cpu", "host,-arch-capabilities"]));
        assert!(args.windows(2).any(|w| w == ["-append", "a b"]));
        assert_eq!(args[args.len() - 2..], ["-d", "int"], "extra arguments come last");
        assert!(!args.iter().any(|a| a == "-S" || a == "-gdb" || a == "-icount"));
        let tcg = VmConfig { accel: Accel::Tcg, machine: "q35".into(), ..vm };
        let args: Vec<String> =
            command(Path::new("img"), &tcg).get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.windows(2).any(|w| w == ["-cpu", "max"]));
        assert!(args.windows(2).any(|w| w == ["-M", "q35"]));
        let debug = VmConfig { gdb: Some(4321), extra_args: vec![], ..tcg };
        let args: Vec<String> =
            command(Path::new("img"), &debug).get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.windows(3).any(|w| w == ["-gdb", "tcp:127.0.0.1:4321", "-S"]));
        let counted = VmConfig { icount: true, ..debug };
        let args: Vec<String> = command(Path::new("img"), &counted)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.windows(2).any(|w| w == ["-icount", "shift=0,align=off,sleep=off"]));
    }
}
